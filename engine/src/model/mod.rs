//! A loaded model: the memory-mapped GGUF file, its tokenizer and chat template, the
//! architecture's weights, and the thread pool its forward passes run on.

pub mod attention;
pub mod exec;
pub mod hparams;
pub mod kv;
pub mod linear;
pub mod ops;
pub mod steps;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::arch::Arch;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use exec::{Exec, OutputKind, Outputs, SeqInput};
use kv::KvCache;

/// Largest number of tokens one forward pass takes; longer prompts are evaluated in chunks.
/// 128: each weight chunk still serves 16 token tiles from L2, the scratch buffers are a quarter
/// of 512's and the sliding-window rings smaller. 512 → 256 on a Xeon (`kiln bench -p 512 -n 16`
/// peak RSS): gemma3 292.5 → 283.3 MiB, smollm2 129.6 → 123.5, synthetic 1.1B 723.8 → 700.7, same
/// prefill speed. 256 → 128 on an AMD EPYC (Zen 3) (`-p 512 -n 128`): smollm2 118.7 → 115.4 MiB
/// (1.130x → 1.099x file + KV), gemma3 → 266.6 MiB (1.065x).
pub const MAX_BATCH: usize = 128;
/// Context length used when the caller asks for none (capped at the model's).
pub const DEFAULT_CTX: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Worker threads for the forward pass; `None`: `KILN_THREADS` or the number of cores.
    pub threads: Option<usize>,
    /// How the weights are held (default: huge pages where the OS offers them).
    pub weights: crate::gguf::WeightMemory,
}

/// What a model is, read from its metadata.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub architecture: String,
    pub name: String,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_vocab: usize,
    pub n_params: u64,
    pub file_size: u64,
    /// The dominant weight type, e.g. "Q4_K".
    pub file_type: String,
    pub threads: usize,
}

pub struct Model {
    /// First, so it is dropped first: its pool's threads may read `gguf`'s weights until then
    /// (`ThreadPool::allow_idle_reads`).
    exec: Mutex<Exec>,
    gguf: GgufFile,
    info: ModelInfo,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    arch: Arch,
    load_duration: Duration,
}

pub fn default_threads() -> usize {
    std::env::var("KILN_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

impl Model {
    /// Memory-maps and checks a GGUF file and builds everything generation needs.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Arc<Model>> {
        let t0 = Instant::now();
        let path = path.as_ref();
        let mut gguf = GgufFile::open_with(path, opts.weights)?;
        // Before the architecture takes its views, so they see the layouts (KILN_INTERLEAVE=0:
        // none).
        let interleaved = gguf.interleave_weights();
        if interleaved > 0 {
            tracing::debug!("{}: {interleaved} bytes of weights interleaved for decode", path.display());
        }
        let architecture = gguf.get_str("general.architecture")?.to_string();
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let n_vocab = tokenizer.vocab_size();
        let arch = Arch::load(&gguf, &architecture, n_vocab)?;
        let template = match ChatTemplate::from_gguf(&gguf, &tokenizer) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("{}: chat template unusable ({e}); using the built-in one", path.display());
                let piece = |id: Option<u32>| id.and_then(|i| tokenizer.token_text(i)).unwrap_or("").to_string();
                ChatTemplate::builtin_for_arch(&architecture, &piece(tokenizer.bos_id()), &piece(tokenizer.eos_id()))
            }
        };
        let hp = arch.hparams();
        let threads = opts.threads.filter(|&n| n > 0).unwrap_or_else(default_threads);
        let info = ModelInfo {
            path: path.to_path_buf(),
            name: gguf.get_str("general.name").unwrap_or("").to_string(),
            n_ctx_train: hp.n_ctx_train,
            n_embd: hp.n_embd,
            n_layer: hp.n_layer,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            n_vocab,
            n_params: gguf.tensors().iter().map(|t| t.n_elements).sum(),
            file_size: gguf.data().len() as u64,
            file_type: dominant_type(&gguf),
            threads,
            architecture,
        };
        // The tokenizer holds its own vocabulary; `show` and the API read metadata from the file.
        gguf.forget_arrays("tokenizer.ggml.");
        gguf.release_header();
        trim_heap();
        let exec = Exec::new(threads);
        // SAFETY: the weights outlive the pool: `exec` is declared before `gguf` in `Model`,
        // so it is dropped (its workers joined) first, and `gguf`'s bytes never move.
        unsafe { exec.pool.allow_idle_reads(gguf.data()) };
        Ok(Arc::new(Model {
            exec: Mutex::new(exec),
            gguf,
            info,
            tokenizer,
            template,
            arch,
            load_duration: t0.elapsed(),
        }))
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }
    /// How long [`Model::load`] took.
    pub fn load_duration(&self) -> Duration {
        self.load_duration
    }

    /// Tokenizes a prompt the way the model expects: BOS where its rules add one.
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, true, parse_special)?)
    }

    /// Renders `messages` with the chat template (generation prompt added) and tokenizes the
    /// result with special tokens parsed; BOS is added by the model's rules unless the
    /// rendered text already starts with it.
    pub fn chat_tokens(&self, messages: &[crate::template::ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        let add_special = !self.template.starts_with_bos(&text, &self.tokenizer);
        Ok(self.tokenizer.encode(&text, add_special, true)?)
    }

    /// The context length a request gets: `requested` (0 = default) capped at the model's.
    pub fn context_len(&self, requested: usize) -> usize {
        let want = if requested == 0 { DEFAULT_CTX } else { requested };
        want.min(self.info.n_ctx_train.max(1))
    }

    /// An empty KV cache for a sequence of up to `n_ctx` tokens.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        let hp = self.arch.hparams();
        KvCache::new(&self.arch.kv_windows(), hp.k_width(), hp.v_width(), n_ctx)
    }

    /// A cache that keeps every position on every layer (no sliding-window rings): the
    /// reference the ring layout is tested against.
    #[doc(hidden)]
    pub fn new_cache_without_rings(&self, n_ctx: usize) -> KvCache {
        let hp = self.arch.hparams();
        KvCache::new(&vec![None; hp.n_layer], hp.k_width(), hp.v_width(), n_ctx)
    }

    fn exec(&self) -> MutexGuard<'_, Exec> {
        // A panic inside a forward pass cannot leave the scratch buffers in a state that matters.
        self.exec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One forward pass over a batch of sequences; appends one row per output to `out`
    /// (`n_vocab` logits, or `n_embd` hidden values for [`OutputKind::Hidden`]). Each row's
    /// arithmetic is the same whatever else shares the batch (every kernel path sums in the same
    /// order), so a sequence gets the same bits alone or batched: the [`crate::Scheduler`]
    /// relies on it.
    pub fn forward(&self, seqs: &mut [SeqInput], kind: OutputKind, out: &mut Vec<f32>) -> Result<()> {
        let mut ex = self.exec();
        self.arch.forward(self.gguf.data(), &mut ex, seqs, kind, out)
    }

    /// Evaluates `tokens` on `cache` in chunks of [`MAX_BATCH`]; appends logits of every
    /// position (`Outputs::All`) or of the last one to `out`.
    pub fn eval(&self, cache: &mut KvCache, tokens: &[u32], outputs: Outputs, kind: OutputKind, out: &mut Vec<f32>) -> Result<()> {
        let chunks: Vec<&[u32]> = tokens.chunks(MAX_BATCH).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let outputs = if outputs == Outputs::All || last { outputs } else { Outputs::Last };
            let mut scratch = Vec::new();
            let sink = if outputs == Outputs::All || last { &mut *out } else { &mut scratch };
            self.forward(&mut [SeqInput { cache, tokens: chunk, outputs }], kind, sink)?;
        }
        Ok(())
    }

    /// Mean of the final normed hidden states over all tokens of `text` (BOS included, not
    /// normalized), as llama.cpp's mean pooling.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let tokens = self.tokenize(text, true)?;
        self.embed_tokens(&tokens)
    }

    pub fn embed_tokens(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(EngineError::InvalidRequest("cannot embed an empty input".into()));
        }
        let n_ctx = self.info.n_ctx_train.max(1);
        if tokens.len() > n_ctx {
            return Err(EngineError::ContextOverflow { prompt: tokens.len(), ctx: n_ctx });
        }
        let mut cache = self.new_cache(tokens.len());
        let mut hidden = Vec::new();
        self.eval(&mut cache, tokens, Outputs::All, OutputKind::Hidden, &mut hidden)?;
        let e = self.info.n_embd;
        let mut mean = vec![0.0f32; e];
        for row in hidden.chunks_exact(e) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v);
        }
        let inv = 1.0 / tokens.len() as f32;
        mean.iter_mut().for_each(|m| *m *= inv);
        Ok(mean)
    }

    /// The weight bytes one decode step reads, recorded from a real step (one token on a fresh
    /// cache, logits out), as [`Model::read_weight_stream`] reads them again.
    pub fn weight_stream(&self) -> Result<WeightStream> {
        let mut cache = self.new_cache(1);
        let mut logits = Vec::new();
        let token = self.tokenizer.bos_id().unwrap_or(0);
        let (done, log) = kiln_kernels::stream::record(|| self.eval(&mut cache, &[token], Outputs::Last, OutputKind::Logits, &mut logits));
        done?;
        let data = self.gguf.data();
        let outside = || EngineError::BadModel("a decode product read bytes outside the model's weights".into());
        let dispatches = kiln_kernels::stream::within(data, &log).ok_or_else(outside)?;
        Ok(WeightStream { dispatches })
    }

    /// Reads a [`WeightStream`]'s bytes on this model's threads, with no arithmetic
    /// (`kiln_kernels::stream::read`); returns that function's checksum.
    pub fn read_weight_stream(&self, stream: &WeightStream) -> u64 {
        kiln_kernels::stream::read(&self.exec().pool, self.gguf.data(), &stream.dispatches)
    }
}

/// One decode step's weights, dispatch by dispatch (the products that share a barrier), as
/// byte ranges of the model's data: see [`Model::weight_stream`].
#[derive(Clone, Debug)]
pub struct WeightStream {
    dispatches: Vec<kiln_kernels::stream::Ranges>,
}

impl WeightStream {
    /// Weight bytes a decode step reads.
    pub fn bytes(&self) -> u64 {
        self.dispatches.iter().flatten().map(|r| r.len() as u64).sum()
    }

    /// Dispatches (barriers) in a decode step.
    pub fn dispatches(&self) -> usize {
        self.dispatches.len()
    }

    /// Each dispatch's products, as byte ranges of the model's data.
    pub fn ranges(&self) -> &[kiln_kernels::stream::Ranges] {
        &self.dispatches
    }
}

/// Hands the heap pages freed while loading (the parser's and tokenizer's temporaries, the
/// dropped metadata arrays) back to the OS, so they don't count in RSS for the model's lifetime.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free memory to the OS.
        unsafe { malloc_trim(0) };
    }
}

/// The weight type holding the most bytes among 2-D tensors, e.g. "Q4_K".
fn dominant_type(f: &GgufFile) -> String {
    let mut by_type: Vec<(kiln_kernels::GgmlType, u64)> = Vec::new();
    for t in f.tensors().iter().filter(|t| t.dims.len() >= 2) {
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, b)) => *b += t.n_bytes,
            None => by_type.push((t.ty, t.n_bytes)),
        }
    }
    by_type.iter().max_by_key(|(_, b)| *b).map(|(t, _)| t.name().to_string()).unwrap_or_default()
}
