//! The ggml type table, keyed by the on-disk type id stored in GGUF tensor headers.
use crate::error::KernelError;

/// ggml's `enum ggml_type` restricted to what kiln computes with. Discriminants are the GGUF ids.
#[repr(u32)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    BF16 = 30,
}

/// Elements per K-quant super-block.
pub const QK_K: usize = 256;
/// Elements per legacy block.
pub const QK4_0: usize = 32;
pub const QK4_1: usize = 32;
pub const QK5_0: usize = 32;
pub const QK5_1: usize = 32;
pub const QK8_0: usize = 32;
pub const QK8_1: usize = 32;

struct Traits {
    ty: GgmlType,
    name: &'static str,
    block_size: usize,
    type_size: usize,
    vec_dot_type: GgmlType,
}

/// `type_traits` for the supported types; sizes match `ggml-common.h`'s static asserts.
#[rustfmt::skip]
const TRAITS: [Traits; 15] = [
    Traits { ty: GgmlType::F32,  name: "F32",  block_size: 1,   type_size: 4,   vec_dot_type: GgmlType::F32 },
    Traits { ty: GgmlType::F16,  name: "F16",  block_size: 1,   type_size: 2,   vec_dot_type: GgmlType::F16 },
    Traits { ty: GgmlType::Q4_0, name: "Q4_0", block_size: 32,  type_size: 18,  vec_dot_type: GgmlType::Q8_0 },
    Traits { ty: GgmlType::Q4_1, name: "Q4_1", block_size: 32,  type_size: 20,  vec_dot_type: GgmlType::Q8_1 },
    Traits { ty: GgmlType::Q5_0, name: "Q5_0", block_size: 32,  type_size: 22,  vec_dot_type: GgmlType::Q8_0 },
    Traits { ty: GgmlType::Q5_1, name: "Q5_1", block_size: 32,  type_size: 24,  vec_dot_type: GgmlType::Q8_1 },
    Traits { ty: GgmlType::Q8_0, name: "Q8_0", block_size: 32,  type_size: 34,  vec_dot_type: GgmlType::Q8_0 },
    Traits { ty: GgmlType::Q8_1, name: "Q8_1", block_size: 32,  type_size: 36,  vec_dot_type: GgmlType::Q8_1 },
    Traits { ty: GgmlType::Q2_K, name: "Q2_K", block_size: 256, type_size: 84,  vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::Q3_K, name: "Q3_K", block_size: 256, type_size: 110, vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::Q4_K, name: "Q4_K", block_size: 256, type_size: 144, vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::Q5_K, name: "Q5_K", block_size: 256, type_size: 176, vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::Q6_K, name: "Q6_K", block_size: 256, type_size: 210, vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::Q8_K, name: "Q8_K", block_size: 256, type_size: 292, vec_dot_type: GgmlType::Q8_K },
    Traits { ty: GgmlType::BF16, name: "BF16", block_size: 1,   type_size: 2,   vec_dot_type: GgmlType::BF16 },
];

/// Names of ggml ids kiln knows about but does not implement, for error messages.
fn known_unsupported_name(id: u32) -> Option<&'static str> {
    Some(match id {
        4 => "Q4_2 (removed)",
        5 => "Q4_3 (removed)",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

impl GgmlType {
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
        GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q2_K, GgmlType::Q3_K,
        GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K, GgmlType::BF16,
    ];

    /// Maps a GGUF on-disk type id to a type; unknown or unimplemented ids name the id.
    pub fn from_id(id: u32) -> Result<GgmlType, KernelError> {
        TRAITS
            .iter()
            .find(|t| t.ty as u32 == id)
            .map(|t| t.ty)
            .ok_or(KernelError::UnsupportedType { id, name: known_unsupported_name(id) })
    }

    fn traits(self) -> &'static Traits {
        // TRAITS holds every variant; the position search is over 15 entries.
        match TRAITS.iter().find(|t| t.ty == self) {
            Some(t) => t,
            None => unreachable!("every GgmlType variant has a TRAITS entry"),
        }
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        self.traits().name
    }

    /// Elements per block (1 for F32/F16/BF16).
    pub fn block_size(self) -> usize {
        self.traits().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.traits().type_size
    }

    /// Bytes of a row of `n` elements; None if `n` is not a multiple of the block size.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let bs = self.block_size();
        #[allow(clippy::manual_is_multiple_of)] // rust-version 1.80 predates is_multiple_of
        if n % bs != 0 {
            return None;
        }
        (n / bs).checked_mul(self.type_size())
    }

    /// The activation format this weight type's dot product consumes (`type_traits_cpu.vec_dot_type`).
    pub fn vec_dot_type(self) -> GgmlType {
        self.traits().vec_dot_type
    }

    /// True for the K-quant family (256-element super-blocks).
    pub fn is_k_quant(self) -> bool {
        self.block_size() == QK_K
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Ok(t));
        }
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q4_K.row_bytes(2048), Some(8 * 144));
        assert_eq!(GgmlType::Q4_K.row_bytes(640), None);
        assert_eq!(GgmlType::Q5_0.vec_dot_type(), GgmlType::Q8_0);
        assert_eq!(GgmlType::Q4_1.vec_dot_type(), GgmlType::Q8_1);
    }

    #[test]
    fn unsupported_ids_are_named() {
        let e = GgmlType::from_id(20).unwrap_err();
        assert_eq!(e, KernelError::UnsupportedType { id: 20, name: Some("IQ4_NL") });
        assert!(e.to_string().contains("20") && e.to_string().contains("IQ4_NL"));
        let e = GgmlType::from_id(999).unwrap_err();
        assert!(e.to_string().contains("999"));
    }
}
