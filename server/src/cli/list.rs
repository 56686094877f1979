//! `kiln list`: like `ollama list`, plus a QUANT column.
use std::path::PathBuf;
use std::time::SystemTime;

use super::{human_bytes, human_time, store};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ListArgs {}

pub fn list(_args: ListArgs, models: Option<PathBuf>) -> anyhow::Result<()> {
    let mut entries = store(models).list()?;
    entries.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.name.cmp(&b.name)));
    let now = SystemTime::now();
    let mut rows = vec![["NAME", "ID", "SIZE", "QUANT", "MODIFIED"].map(String::from)];
    for e in &entries {
        rows.push([
            e.name.clone(),
            e.digest.chars().take(12).collect(),
            human_bytes(e.size),
            e.details.quantization_level.clone(),
            human_time(e.modified, now),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

/// Left-aligned columns separated by at least three spaces, trailing space trimmed.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}   "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
