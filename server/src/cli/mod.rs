//! Subcommands of `kiln`, one file each, with shared helpers for naming and formatting.
use std::path::PathBuf;
use std::time::SystemTime;

use kiln_engine::store::ModelStore;

pub mod bench;
pub mod list;
pub mod pull;
pub mod run;
pub mod serve;
pub mod show;

/// The store for `--models DIR` (or `KILN_MODELS`), plus the Ollama store from the environment.
pub fn store(models: Option<PathBuf>) -> ModelStore {
    match models {
        Some(dir) => ModelStore::with_models_dir(dir),
        None => ModelStore::from_env(),
    }
}

/// Ollama's `format.HumanBytes` (decimal units): 253113024 -> "253 MB", 1_500_000 -> "1.5 MB".
pub fn human_bytes(b: u64) -> String {
    let units = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")];
    let x = b as f64;
    for (scale, unit) in units {
        if x >= scale {
            let v = x / scale;
            return if v >= 10.0 || v == v.trunc() { format!("{} {unit}", v as u64) } else { format!("{v:.1} {unit}") };
        }
    }
    format!("{b} B")
}

/// Like Ollama's `format.HumanTime`: "Less than a second ago", "2 hours ago", "3 weeks ago".
pub fn human_time(t: SystemTime, now: SystemTime) -> String {
    let Ok(d) = now.duration_since(t) else { return "In the future".into() };
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") };
    match s {
        0 => "Less than a second ago".into(),
        1..=59 => plural(s, "second"),
        60..=119 => "About a minute ago".into(),
        120..=3599 => plural(s / 60, "minute"),
        3600..=7199 => "About an hour ago".into(),
        7200..=172_799 => plural(s / 3600, "hour"),
        172_800..=1_209_599 => plural(s / 86_400, "day"),
        1_209_600..=5_183_999 => plural(s / 604_800, "week"),
        5_184_000..=63_071_999 => plural(s / 2_592_000, "month"),
        _ => plural(s / 31_536_000, "year"),
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bytes_like_ollama() {
        assert_eq!(human_bytes(253_113_024), "253 MB");
        assert_eq!(human_bytes(98_362_432), "98 MB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(2_000_000_000), "2 GB");
        assert_eq!(human_bytes(999), "999 B");
    }

    #[test]
    fn times_like_ollama() {
        let now = SystemTime::now();
        let ago = |s| human_time(now - Duration::from_secs(s), now);
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(2 * 3600 + 5), "2 hours ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(3 * 604_800), "3 weeks ago");
    }
}
