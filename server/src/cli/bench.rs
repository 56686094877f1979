//! `kiln bench MODEL -p 512 -n 128 -t 2`: prompt-processing and decode tokens/s, like llama-bench.

use anyhow::{Context, Result};
use clap::Args;
use kiln_engine::{LoadOptions, Model};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Model: a store name or a path to a .gguf file.
    pub model: String,
    /// Prompt tokens to process.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Worker threads (default: KILN_THREADS or all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Context tokens already in the cache, untimed, before each test (llama-bench's `-d`).
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub depth: usize,
    /// Repetitions of each test (after one warm-up).
    #[arg(short = 'r', long, default_value_t = 3)]
    pub repetitions: usize,
    /// Also time this many decode steps alternately with reads of a step's weights alone (no
    /// arithmetic), and report decode's share of that read rate, both seen in the same moments.
    #[arg(long, default_value_t = 0)]
    pub stream: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the forward pass runs: cpu, gpu or gpu:N (`kiln show --devices`).
    #[arg(long, env = "KILN_DEVICE", default_value = "cpu")]
    pub device: super::run::Device,
}

#[cfg(feature = "gpu")]
fn gpu_bench(model: &std::sync::Arc<Model>, adapter: Option<usize>, name: &str, args: &BenchArgs) -> Result<kiln_engine::bench::BenchResult> {
    let gpu = std::sync::Arc::new(kiln_engine::gpu::GpuModel::load(model, adapter)?);
    eprintln!("device: {}", gpu.adapter());
    Ok(kiln_engine::gpu::bench::run(&gpu, name, args.n_prompt, args.n_gen, args.depth, args.repetitions)?)
}

#[cfg(not(feature = "gpu"))]
fn gpu_bench(_: &std::sync::Arc<Model>, _: Option<usize>, _: &str, _: &BenchArgs) -> Result<kiln_engine::bench::BenchResult> {
    anyhow::bail!("this kiln build has no GPU support: rebuild with `--features gpu` or use --device cpu")
}

pub fn bench(args: BenchArgs, models: Option<std::path::PathBuf>) -> Result<()> {
    // Only the path: hashing the file for a digest is work `list` and the server need, not this.
    let path = super::store(models).locate(&args.model)?;
    let model_path = path.as_path();
    let model = Model::load(model_path, &LoadOptions { threads: args.threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model_path.display()))?;
    let name = model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if args.stream > 0 {
        // Before the other tests, which take a while.
        anyhow::ensure!(matches!(args.device, super::run::Device::Cpu), "--stream measures the CPU's decode only");
        kiln_engine::bench::check_stream(&model, args.depth, args.stream)?;
    }
    let mut r = match args.device {
        super::run::Device::Cpu => kiln_engine::bench::run(&model, &name, args.n_prompt, args.n_gen, args.depth, args.repetitions)?,
        super::run::Device::Gpu(adapter) => gpu_bench(&model, adapter, &name, &args)?,
    };
    if args.stream > 0 {
        r.stream = Some(kiln_engine::bench::stream(&model, args.depth, args.stream)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let info = model.info();
    println!("| model | size | params | threads | test | t/s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let size = format!("{:.2} MiB", info.file_size as f64 / (1024.0 * 1024.0));
    let params = format!("{:.2} M", info.n_params as f64 / 1e6);
    let at = if r.depth > 0 { format!(" @ d{}", r.depth) } else { String::new() };
    for (test, rate) in [(format!("pp{}{at}", r.pp.tokens), &r.pp), (format!("tg{}{at}", r.tg.tokens), &r.tg)] {
        println!("| {} | {size} | {params} | {} | {test} | {:.2} ± {:.2} |", r.model, r.threads, rate.tok_s_mean, rate.tok_s_sd);
    }
    println!("peak RSS: {:.1} MiB", r.peak_rss_bytes as f64 / (1024.0 * 1024.0));
    if let Some(s) = &r.stream {
        println!(
            "weight stream: {:.1} MB a token in {} dispatches, read alone at {:.1} GB/s ({:.1} tok/s); decode alternated with it: {:.1} tok/s, {:.0}% of it ({} tokens each)",
            s.bytes_per_token as f64 / 1e6,
            s.dispatches,
            s.read_gb_s,
            s.read_tok_s,
            s.decode_tok_s,
            100.0 * s.share,
            s.tokens
        );
    }
    Ok(())
}
