//! Temporary stand-in for `kiln_kernels::GgmlType` (same shape) until the kernels crate
//! exports it; replaced by a re-export once it lands.
#![allow(non_camel_case_types)]

#[repr(u32)]
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported ggml tensor type id {0}")]
pub struct UnsupportedType(pub u32);

#[rustfmt::skip]
const TABLE: [(GgmlType, &str, usize, usize); 15] = [
    (GgmlType::F32, "F32", 1, 4), (GgmlType::F16, "F16", 1, 2), (GgmlType::Q4_0, "Q4_0", 32, 18),
    (GgmlType::Q4_1, "Q4_1", 32, 20), (GgmlType::Q5_0, "Q5_0", 32, 22), (GgmlType::Q5_1, "Q5_1", 32, 24),
    (GgmlType::Q8_0, "Q8_0", 32, 34), (GgmlType::Q8_1, "Q8_1", 32, 36), (GgmlType::Q2_K, "Q2_K", 256, 84),
    (GgmlType::Q3_K, "Q3_K", 256, 110), (GgmlType::Q4_K, "Q4_K", 256, 144), (GgmlType::Q5_K, "Q5_K", 256, 176),
    (GgmlType::Q6_K, "Q6_K", 256, 210), (GgmlType::Q8_K, "Q8_K", 256, 292), (GgmlType::BF16, "BF16", 1, 2),
];

impl GgmlType {
    pub fn from_id(id: u32) -> Result<GgmlType, UnsupportedType> {
        TABLE.iter().find(|t| t.0 as u32 == id).map(|t| t.0).ok_or(UnsupportedType(id))
    }
    fn row(self) -> (GgmlType, &'static str, usize, usize) {
        TABLE.iter().copied().find(|t| t.0 == self).unwrap_or((self, "?", 1, 1))
    }
    pub fn id(self) -> u32 {
        self as u32
    }
    pub fn name(self) -> &'static str {
        self.row().1
    }
    pub fn block_size(self) -> usize {
        self.row().2
    }
    pub fn type_size(self) -> usize {
        self.row().3
    }
}
