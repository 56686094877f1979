//! Summaries of a file for `kiln show` / `/api/tags`: parameter count, tensor type census,
//! quantization level (llama.cpp's `LLAMA_FTYPE` names).
use std::collections::HashMap;

use super::{GgmlType, GgufFile};

/// Name of a `general.file_type` value (`enum llama_ftype`), as Ollama prints it.
pub fn file_type_name(ftype: u32) -> Option<&'static str> {
    // 1024 is LLAMA_FTYPE_GUESSED, set by llama.cpp when the type was inferred.
    Some(match ftype & !1024 {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

/// Ollama's `format.HumanNumber`: 268098176 -> "268.10M", 3212749824 -> "3.2B".
pub fn human_parameter_count(n: u64) -> String {
    const THOUSAND: f64 = 1e3;
    const MILLION: f64 = 1e6;
    const BILLION: f64 = 1e9;
    let x = n as f64;
    if x >= BILLION {
        let v = x / BILLION;
        if v == v.floor() { format!("{v:.0}B") } else { format!("{v:.1}B") }
    } else if x >= MILLION {
        let v = x / MILLION;
        if v == v.floor() { format!("{v:.0}M") } else { format!("{v:.2}M") }
    } else if x >= THOUSAND {
        format!("{:.0}K", x / THOUSAND)
    } else {
        n.to_string()
    }
}

impl GgufFile {
    /// Total elements over all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.tensors().iter().fold(0u64, |acc, t| acc.saturating_add(t.n_elements))
    }

    /// Tensor count per type, most common first (ties by type id): `[(F32, 109), (Q5_0, 81)]`.
    pub fn type_census(&self) -> Vec<(GgmlType, usize)> {
        let mut counts: HashMap<GgmlType, usize> = HashMap::new();
        for t in self.tensors() {
            *counts.entry(t.ty).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.id().cmp(&b.0.id())));
        v
    }

    /// "F32 109, Q5_0 81, Q4_K 27".
    pub fn type_census_string(&self) -> String {
        let parts: Vec<String> = self.type_census().iter().map(|(t, n)| format!("{} {n}", t.name())).collect();
        parts.join(", ")
    }

    /// `general.file_type` as a name, else the most common type among matrices (2+ dims).
    pub fn quantization_level(&self) -> String {
        if let Some(name) = self.get_u32("general.file_type").ok().and_then(file_type_name) {
            return name.to_string();
        }
        let mut counts: HashMap<GgmlType, usize> = HashMap::new();
        for t in self.tensors().iter().filter(|t| t.dims.len() >= 2) {
            *counts.entry(t.ty).or_default() += 1;
        }
        let best = counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.id().cmp(&a.0.id())));
        best.map(|(t, _)| t.name().to_string()).unwrap_or_else(|| "unknown".to_string())
    }
}
