//! `kiln show MODEL`: architecture, size and quantization read from the GGUF header;
//! `--verbose` adds every metadata entry and every tensor.
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use kiln_engine::gguf::{GgufFile, Value};

use super::list::table;
use super::store;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ShowArgs {
    /// A model name (`gemma3`, `name:tag`) or a path to a .gguf file
    #[arg(required_unless_present = "devices", default_value = "")]
    pub model: String,
    /// Also print all metadata (long arrays abbreviated) and all tensors
    #[arg(long, short)]
    pub verbose: bool,
    /// List the GPU adapters `--device gpu:N` can use (needs a build with `--features gpu`)
    #[arg(long)]
    pub devices: bool,
}

pub fn show(args: ShowArgs, models: Option<PathBuf>) -> anyhow::Result<()> {
    if args.devices {
        return devices();
    }
    let entry = store(models).resolve(&args.model)?;
    let g = GgufFile::open(&entry.path).with_context(|| format!("cannot read {}", entry.path.display()))?;
    print!("{}", summary(&g));
    if args.verbose {
        print!("{}", metadata(&g));
        print!("{}", tensors(&g));
    }
    Ok(())
}

#[cfg(feature = "gpu")]
fn devices() -> anyhow::Result<()> {
    let adapters = kiln_engine::gpu::list_adapters();
    if adapters.is_empty() {
        println!("no GPU adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers); --device cpu only");
    }
    for a in adapters {
        println!("gpu:{}  {a}", a.index);
    }
    Ok(())
}

#[cfg(not(feature = "gpu"))]
fn devices() -> anyhow::Result<()> {
    println!("this kiln build has no GPU support (rebuild with `--features gpu`); --device cpu only");
    Ok(())
}

fn summary(g: &GgufFile) -> String {
    let arch = g.get_str("general.architecture").unwrap_or("unknown");
    let num = |key: &str| g.get_u64(&format!("{arch}.{key}")).map_or_else(|_| "-".to_string(), |v| v.to_string());
    let template = if g.get("tokenizer.chat_template").is_some() { "present" } else { "absent" };
    let rows = [
        ("architecture", arch.to_string()),
        ("parameters", kiln_engine::gguf::human_parameter_count(g.parameter_count())),
        ("context length", num("context_length")),
        ("embedding length", num("embedding_length")),
        ("block count", num("block_count")),
        ("quantization", g.quantization_level()),
        ("tensor types", g.type_census_string()),
        ("tokenizer", g.get_str("tokenizer.ggml.model").unwrap_or("-").to_string()),
        ("chat template", template.to_string()),
    ]
    .map(|(k, v)| [format!("    {k}"), v]);
    format!("  Model\n{}\n", table(&rows))
}

/// A value on one line: strings cut at 100 characters, arrays at 8 elements.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > 100 => {
            let head: String = s.chars().take(100).collect();
            format!("{head:?}... ({} bytes)", s.len())
        }
        v => v.to_string(),
    }
}

fn metadata(g: &GgufFile) -> String {
    let mut rows = vec![["    KEY".to_string(), "TYPE".to_string(), "VALUE".to_string()]];
    for (k, v) in g.metadata() {
        rows.push([format!("    {k}"), v.type_name(), short(v)]);
    }
    format!("  Metadata (GGUF v{}, alignment {})\n{}\n", g.version(), g.alignment(), table(&rows))
}

fn tensors(g: &GgufFile) -> String {
    let mut rows = vec![["    NAME", "TYPE", "DIMS", "OFFSET"].map(String::from)];
    for t in g.tensors() {
        let mut dims = String::new();
        for (i, d) in t.dims.iter().enumerate() {
            let _ = write!(dims, "{}{d}", if i > 0 { " x " } else { "" });
        }
        rows.push([format!("    {}", t.name), t.ty.name().to_string(), dims, t.offset.to_string()]);
    }
    format!("  Tensors ({}, data at byte {})\n{}", g.tensors().len(), g.data_offset(), table(&rows))
}
