//! `kiln run MODEL [PROMPT]`: one completion streamed to stdout, or an interactive chat.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use kiln_engine::sampling::SamplerConfig;
use kiln_engine::template::ChatMessage;
use kiln_engine::{GenerateOutput, GenerateRequest, LoadOptions, Model, Session};

/// Options named after Ollama's.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Model: a store name (gemma-3-270m-q4_k_m) or a path to a .gguf file.
    pub model: String,
    /// The prompt; without one, an interactive chat starts.
    pub prompt: Vec<String>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<i32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum tokens to generate (-1: until the model stops or the context is full).
    #[arg(long, allow_negative_numbers = true)]
    pub num_predict: Option<i64>,
    #[arg(long)]
    pub num_ctx: Option<usize>,
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    #[arg(long)]
    pub repeat_last_n: Option<i32>,
    /// A stop sequence (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Print timing statistics to stderr.
    #[arg(long)]
    pub verbose: bool,
    /// Worker threads (default: KILN_THREADS or all cores).
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Where the forward pass runs: cpu, gpu (best adapter) or gpu:N (`kiln show --devices`).
    #[arg(long, env = "KILN_DEVICE", default_value = "cpu")]
    pub device: Device,
}

pub use kiln_server::device::Device;

/// A generation stream on either backend.
trait Generate {
    fn generate(&mut self, req: &GenerateRequest, on_token: &mut dyn FnMut(&kiln_engine::TokenEvent) -> bool) -> kiln_engine::error::Result<GenerateOutput>;
}

impl Generate for Session {
    fn generate(&mut self, req: &GenerateRequest, on_token: &mut dyn FnMut(&kiln_engine::TokenEvent) -> bool) -> kiln_engine::error::Result<GenerateOutput> {
        Session::generate(self, req, on_token)
    }
}

#[cfg(feature = "gpu")]
impl Generate for kiln_engine::gpu::GpuSession {
    fn generate(&mut self, req: &GenerateRequest, on_token: &mut dyn FnMut(&kiln_engine::TokenEvent) -> bool) -> kiln_engine::error::Result<GenerateOutput> {
        kiln_engine::gpu::GpuSession::generate(self, req, on_token)
    }
}

#[cfg(feature = "gpu")]
fn gpu_session(model: &Arc<Model>, adapter: Option<usize>, num_ctx: Option<usize>) -> Result<Box<dyn Generate>> {
    let gpu = Arc::new(kiln_engine::gpu::GpuModel::load(model, adapter)?);
    tracing::info!("running on {}", gpu.adapter());
    Ok(Box::new(kiln_engine::gpu::GpuSession::new(&gpu, num_ctx.unwrap_or(0))?))
}

#[cfg(not(feature = "gpu"))]
fn gpu_session(_: &Arc<Model>, _: Option<usize>, _: Option<usize>) -> Result<Box<dyn Generate>> {
    anyhow::bail!("this kiln build has no GPU support: rebuild with `--features gpu` or use --device cpu")
}

impl RunArgs {
    fn sampling(&self) -> Result<SamplerConfig> {
        let mut s = SamplerConfig::default();
        if let Some(v) = self.temperature { s.temperature = v; }
        if let Some(v) = self.top_k { s.top_k = v; }
        if let Some(v) = self.top_p { s.top_p = v; }
        if let Some(v) = self.min_p { s.min_p = v; }
        if let Some(v) = self.repeat_penalty { s.repeat_penalty = v; }
        if let Some(v) = self.repeat_last_n { s.repeat_last_n = v; }
        if self.seed.is_some() { s.seed = self.seed; }
        s.validate()?;
        Ok(s)
    }

    fn request(&self, prompt: Vec<u32>) -> Result<GenerateRequest> {
        Ok(GenerateRequest {
            prompt,
            sampling: self.sampling()?,
            num_predict: self.num_predict.and_then(|n| usize::try_from(n).ok()),
            stop: self.stop.clone(),
            num_ctx: self.num_ctx.unwrap_or(0),
            truncate: false,
        })
    }
}

pub fn run(args: RunArgs, models: Option<std::path::PathBuf>) -> Result<()> {
    // Only the path: hashing the file for a digest is work `list` and the server need, not this.
    let path = super::store(models).locate(&args.model)?;
    let model_path = path.as_path();
    let model = Model::load(model_path, &LoadOptions { threads: args.threads, ..Default::default() })
        .with_context(|| format!("cannot load {}", model_path.display()))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Ctrl-C stops the current answer, not the program.
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;
    }
    let mut session: Box<dyn Generate> = match args.device {
        Device::Cpu => Box::new(Session::new(model.clone())),
        Device::Gpu(adapter) => gpu_session(&model, adapter, args.num_ctx)?,
    };
    if !args.prompt.is_empty() {
        let prompt = args.prompt.join(" ");
        let tokens = if args.raw {
            model.tokenize(&prompt, true)?
        } else {
            let mut msgs = Vec::new();
            if let Some(s) = &args.system {
                msgs.push(ChatMessage::new("system", s));
            }
            msgs.push(ChatMessage::new("user", &prompt));
            model.chat_tokens(&msgs)?
        };
        let (out, _) = answer(session.as_mut(), &args, tokens, &interrupted)?;
        println!();
        if args.verbose {
            print_stats(&model, &out, Duration::ZERO);
        }
        return Ok(());
    }
    interactive(&model, session.as_mut(), &args, &interrupted)
}

fn answer(session: &mut dyn Generate, args: &RunArgs, tokens: Vec<u32>, interrupted: &AtomicBool) -> Result<(GenerateOutput, String)> {
    let req = args.request(tokens)?;
    interrupted.store(false, Ordering::SeqCst);
    let mut stdout = std::io::stdout();
    let mut text = String::new();
    let out = session.generate(&req, &mut |ev| {
        text.push_str(&ev.text);
        let _ = stdout.write_all(ev.text.as_bytes());
        let _ = stdout.flush();
        !interrupted.load(Ordering::SeqCst)
    })?;
    Ok((out, text))
}

fn interactive(model: &Arc<Model>, session: &mut dyn Generate, args: &RunArgs, interrupted: &AtomicBool) -> Result<()> {
    let mut history: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &args.system {
        history.push(ChatMessage::new("system", s));
    }
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!(">>> ");
        line.clear();
        interrupted.store(false, Ordering::SeqCst);
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let input = line.trim();
        match input {
            "" => continue,
            "/bye" | "/exit" => return Ok(()),
            "/clear" => {
                history.retain(|m| m.role == "system");
                eprintln!("Cleared session context");
                continue;
            }
            "/?" | "/help" => {
                eprintln!("Available commands:\n  /clear  Clear session context\n  /bye    Exit\nCtrl-C stops an answer; Ctrl-D or /bye exits.");
                continue;
            }
            s if s.starts_with('/') => {
                eprintln!("Unknown command '{s}'. Type /? for help");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", input));
        let tokens = if args.raw { model.tokenize(input, true)? } else { model.chat_tokens(&history)? };
        match answer(session, args, tokens, interrupted) {
            Ok((out, text)) => {
                println!("\n");
                history.push(ChatMessage::new("assistant", &text));
                if args.verbose {
                    print_stats(model, &out, Duration::ZERO);
                }
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e:#}");
            }
        }
    }
}

fn print_stats(model: &Model, out: &GenerateOutput, extra: Duration) {
    let load = model.load_duration();
    let total = load + out.prompt_eval_duration + out.eval_duration + extra;
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    eprintln!("total duration:       {total:?}");
    eprintln!("load duration:        {load:?}");
    eprintln!("prompt eval count:    {} token(s)", out.prompt_eval_count);
    eprintln!("prompt eval duration: {:?}", out.prompt_eval_duration);
    eprintln!("prompt eval rate:     {:.2} tokens/s", rate(out.prompt_eval_count, out.prompt_eval_duration));
    eprintln!("eval count:           {} token(s)", out.eval_count);
    eprintln!("eval duration:        {:?}", out.eval_duration);
    eprintln!("eval rate:            {:.2} tokens/s", rate(out.eval_count, out.eval_duration));
}
