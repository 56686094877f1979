//! One sequence on the GPU: its KV cache in device memory, the prepared graphs, evaluation and
//! generation (driven by [`Sequence`], exactly as the CPU [`crate::Session`]).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_kernels::gpu::{GpuBuffer, GpuContext, GpuError, Kernel};

use super::graph::{output_head, Acts, Graph, Head, CHUNKS, CHUNK_MAX_ALL};
use super::{gpu_err, GpuModel};
use crate::error::{EngineError, Result};
use crate::generate::{self, DoneReason, GenerateOutput, GenerateRequest, Sequence, TokenEvent};
use crate::model::exec::Outputs;

/// Output head over every position, built on first use (tests, perplexity).
struct AllHeads {
    logits: GpuBuffer, // [CHUNK_MAX_ALL][n_vocab]
    heads: Vec<(usize, Head)>,
    staging: wgpu::Buffer,
}

/// A KV cache of `n_ctx` positions on the device and everything a step records.
pub struct GpuSession {
    gpu: Arc<GpuModel>,
    n_ctx: usize,
    /// Positions whose K/V the cache holds.
    len: usize,
    /// The tokens a generation left in context (for prefix reuse by the next request).
    tokens: Vec<u32>,
    /// Per layer K, V [n_ctx][n_head_kv·head_dim], read and written through the graphs' bind groups.
    _kv: Vec<(GpuBuffer, GpuBuffer)>,
    acts: Acts,
    graphs: Vec<Graph>, // one per CHUNKS entry
    /// Logits of x's row 0 (one-token steps) and of x_last (the last row of a longer chunk).
    head_x: Kernel,
    head_last: Kernel,
    all: Option<AllHeads>,
    staging: wgpu::Buffer, // MAP_READ [n_vocab]
    positions: Vec<u32>,
    mapped: (Sender<bool>, Receiver<bool>),
    profile: Option<Profile>,
}

/// Layers recorded per command buffer: the GPU starts on the first layers while the CPU is still
/// recording the rest of the step (on an H100, 4 beat 1 and one buffer for the whole step).
const LAYERS_PER_SUBMIT: usize = 4;

/// Where a session's time went (`KILN_GPU_PROFILE=1`; printed to stderr when it is dropped).
#[derive(Default)]
struct Profile {
    /// Per-kernel GPU times, where the adapter writes timestamps.
    timer: Option<Timer>,
    steps: u32,
    tokens: u64,
    /// Recording and submitting the command buffers.
    record: Duration,
    /// From the last submit until the logits are mapped: GPU work the recording did not hide.
    wait: Duration,
    /// Copying the mapped logits out.
    read: Duration,
}

/// GPU timestamps around every kernel of a step (each kernel then runs in a compute pass of its
/// own, which costs a little), summed per kernel name.
struct Timer {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
    totals: std::collections::BTreeMap<&'static str, (f64, u64)>,
}

/// Kernels a step can time (two timestamps each).
const TIMED_KERNELS: u32 = 1024;

impl Timer {
    fn new(ctx: &GpuContext) -> Option<Timer> {
        if !ctx.has_timestamps() {
            return None;
        }
        let dev = ctx.device();
        let n = u64::from(2 * TIMED_KERNELS) * 8;
        let buffer = |usage| dev.create_buffer(&wgpu::BufferDescriptor { label: Some("timestamps"), size: n, usage, mapped_at_creation: false });
        Some(Timer {
            queries: dev.create_query_set(&wgpu::QuerySetDescriptor { label: Some("kernel times"), ty: wgpu::QueryType::Timestamp, count: 2 * TIMED_KERNELS }),
            resolved: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            staging: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            period_ns: f64::from(ctx.timestamp_period()),
            totals: Default::default(),
        })
    }

    /// Adds the times of the step just finished (`labels[i]` owns timestamps 2i, 2i + 1).
    fn collect(&mut self, ctx: &GpuContext, labels: &[&'static str], mapped: &(Sender<bool>, Receiver<bool>)) -> Result<()> {
        let bytes = (labels.len() * 16) as u64;
        if bytes == 0 {
            return Ok(());
        }
        map_read(ctx, &self.staging, bytes, mapped, "timestamps")?;
        {
            let view = self.staging.get_mapped_range(..bytes).map_err(|e| gpu_err(GpuError::Readback(format!("{e:?}"))))?;
            let ticks: Vec<u64> = view.chunks_exact(8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])).collect();
            for (label, pair) in labels.iter().zip(ticks.chunks_exact(2)) {
                let e = self.totals.entry(label).or_default();
                e.0 += pair[1].saturating_sub(pair[0]) as f64 * self.period_ns;
                e.1 += 1;
            }
        }
        self.staging.unmap();
        Ok(())
    }
}

impl Drop for GpuSession {
    fn drop(&mut self) {
        if let Some(t) = self.profile.as_ref().and_then(|p| p.timer.as_ref()) {
            let steps = f64::from(self.profile.as_ref().map_or(1, |p| p.steps.max(1)));
            let total: f64 = t.totals.values().map(|v| v.0).sum();
            eprintln!("gpu kernel times per step (each kernel in its own timed pass), total {:.3} ms:", total / steps / 1e6);
            for (label, (ns, count)) in &t.totals {
                eprintln!("  {label:<10} {:>9.1} us/step  {:>7.2} us/kernel  x{}", ns / steps / 1e3, ns / (*count).max(1) as f64 / 1e3, count);
            }
        }
        if let Some(p) = &self.profile {
            let per = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(p.steps.max(1));
            eprintln!(
                "gpu profile: {} steps ({} tokens), per step: record+submit {:.3} ms, wait {:.3} ms, read {:.3} ms",
                p.steps,
                p.tokens,
                per(p.record),
                per(p.wait),
                per(p.read)
            );
        }
    }
}

impl GpuSession {
    /// Allocates a KV cache of `n_ctx` positions (capped at the model's context) and builds
    /// every kernel. Nothing more is allocated on the device until the session is dropped.
    pub fn new(gpu: &Arc<GpuModel>, n_ctx: usize) -> Result<GpuSession> {
        let n_ctx = gpu.model.context_len(n_ctx);
        let (ctx, w) = (&gpu.ctx, &gpu.w);
        let hp = &w.hp;
        let kv = (0..hp.n_layer)
            .map(|_| Ok((ctx.zeros_f32(n_ctx * hp.k_width())?, ctx.zeros_f32(n_ctx * hp.v_width())?)))
            .collect::<Result<Vec<_>, GpuError>>()
            .map_err(gpu_err)?;
        let acts = Acts::new(ctx, w).map_err(gpu_err)?;
        let graphs = CHUNKS.iter().map(|&n| Graph::build(ctx, w, &acts, &kv, n)).collect::<Result<Vec<_>, _>>().map_err(gpu_err)?;
        let head_x = output_head(ctx, w, &acts.x, &acts.logits).map_err(gpu_err)?;
        let head_last = output_head(ctx, w, &acts.x_last, &acts.logits).map_err(gpu_err)?;
        Ok(GpuSession {
            staging: staging(ctx, hp.n_vocab),
            gpu: gpu.clone(),
            n_ctx,
            len: 0,
            tokens: Vec::new(),
            _kv: kv,
            acts,
            graphs,
            head_x,
            head_last,
            all: None,
            positions: Vec::with_capacity(CHUNKS[0]),
            mapped: channel(),
            profile: kiln_kernels::gpu::profiling().then(|| Profile { timer: Timer::new(ctx), ..Profile::default() }),
        })
    }

    pub fn gpu(&self) -> &Arc<GpuModel> {
        &self.gpu
    }

    /// Positions the KV cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.n_ctx
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        self.tokens.truncate(self.len);
    }

    /// Evaluates `tokens` after what the cache holds; appends the logits of the last position
    /// (`Outputs::Last`) or of every position (`Outputs::All`), n_vocab each, to `out`.
    pub fn eval(&mut self, tokens: &[u32], outputs: Outputs, out: &mut Vec<f32>) -> Result<()> {
        self.eval_inner(tokens, outputs, out)?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    fn eval_inner(&mut self, tokens: &[u32], outputs: Outputs, out: &mut Vec<f32>) -> Result<()> {
        let n_vocab = self.gpu.w.hp.n_vocab;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::InvalidRequest(format!("token id {bad} is outside the vocabulary of {n_vocab}")));
        }
        if self.len + tokens.len() > self.n_ctx {
            return Err(EngineError::ContextOverflow { prompt: self.len + tokens.len(), ctx: self.n_ctx });
        }
        if outputs == Outputs::All && self.all.is_none() {
            self.all = Some(self.build_all_heads()?);
        }
        let max = if outputs == Outputs::All { CHUNK_MAX_ALL } else { CHUNKS[0] };
        let mut rest = tokens;
        while !rest.is_empty() {
            let gi = CHUNKS.iter().position(|&c| c <= max && c <= rest.len()).unwrap_or(CHUNKS.len() - 1);
            let (chunk, tail) = rest.split_at(CHUNKS[gi].min(rest.len()));
            let last = tail.is_empty();
            let result = self.step(gi, chunk, outputs == Outputs::All, last && outputs == Outputs::Last, out);
            if let Err(e) = result {
                // What the failed step wrote is unreliable: forget the whole sequence.
                self.len = 0;
                self.tokens.clear();
                return Err(e);
            }
            rest = tail;
        }
        Ok(())
    }

    /// One forward step: embedding, every layer, and the wanted output head, recorded into
    /// command buffers of LAYERS_PER_SUBMIT layers each, the logits' copy into the readback
    /// buffer included.
    fn step(&mut self, gi: usize, chunk: &[u32], all: bool, last: bool, out: &mut Vec<f32>) -> Result<()> {
        let started = Instant::now();
        let ctx = &self.gpu.ctx;
        let w = &self.gpu.w;
        let (m, pos0) = (chunk.len(), self.len);
        let e = w.hp.n_embd;
        let graph = &self.graphs[gi];
        debug_assert_eq!(graph.n_tokens, m);
        ctx.write_u32(&self.acts.ids, 0, chunk).map_err(gpu_err)?;
        self.positions.clear();
        self.positions.extend((pos0..pos0 + m).map(|p| p as u32));
        ctx.write_u32(&self.acts.pos, 0, &self.positions).map_err(gpu_err)?;
        let timer = self.profile.as_ref().and_then(|p| p.timer.as_ref());
        let mut labels: Vec<&'static str> = Vec::new();
        let mut record = |step: &mut kiln_kernels::gpu::Step, label: &'static str, k: &Kernel| match timer {
            Some(t) if labels.len() < TIMED_KERNELS as usize => {
                step.record_timed(k, &t.queries, 2 * labels.len() as u32);
                labels.push(label);
            }
            _ => step.record(k),
        };
        let mut step = ctx.begin_step();
        record(&mut step, "embed", &graph.embed);
        for (i, kernels) in graph.layers.iter().enumerate() {
            if i > 0 && i % LAYERS_PER_SUBMIT == 0 {
                ctx.submit(std::mem::replace(&mut step, ctx.begin_step()));
            }
            kernels.iter().for_each(|(label, k)| record(&mut step, label, k));
        }
        let n_vocab = w.hp.n_vocab;
        if last {
            if m == 1 {
                record(&mut step, "head", &self.head_x);
            } else {
                step.copy(&self.acts.x, (m - 1) * e, &self.acts.x_last, 0, e).map_err(gpu_err)?;
                record(&mut step, "head", &self.head_last);
            }
            step.copy_to_staging(&self.acts.logits, &self.staging, n_vocab).map_err(gpu_err)?;
        }
        if let Some(t) = timer {
            step.resolve_timestamps(&t.queries, 2 * labels.len() as u32, &t.resolved);
            step.copy_raw(&t.resolved, &t.staging, (labels.len() * 16) as u64);
        }
        let all_heads = if all { self.all.as_ref() } else { None };
        if let Some(a) = all_heads {
            let head = a.heads.iter().find(|(n, _)| *n == m).map(|(_, h)| h).ok_or_else(|| gpu_err(GpuError::Readback(format!("no output head for {m} rows"))))?;
            step.record(&head.norm);
            step.record(&head.out);
            step.copy_to_staging(&a.logits, &a.staging, m * n_vocab).map_err(gpu_err)?;
        }
        ctx.submit(step);
        self.len += m;
        let submitted = Instant::now();
        let mut read = Duration::ZERO;
        if let Some(a) = all_heads {
            read += read_staging(ctx, &a.staging, m * n_vocab, &self.mapped, out)?;
        }
        if last {
            read += read_staging(ctx, &self.staging, n_vocab, &self.mapped, out)?;
        }
        if let Some(t) = self.profile.as_mut().and_then(|p| p.timer.as_mut()) {
            t.collect(ctx, &labels, &self.mapped)?;
        }
        if let Some(p) = &mut self.profile {
            p.steps += 1;
            p.tokens += m as u64;
            p.record += submitted - started;
            p.wait += submitted.elapsed().saturating_sub(read);
            p.read += read;
        }
        Ok(())
    }

    fn build_all_heads(&self) -> Result<AllHeads> {
        let (ctx, w) = (&self.gpu.ctx, &self.gpu.w);
        let n = CHUNK_MAX_ALL * w.hp.n_vocab;
        let logits = ctx.zeros_f32(n).map_err(gpu_err)?;
        let heads = CHUNKS
            .iter()
            .filter(|&&c| c <= CHUNK_MAX_ALL)
            .map(|&c| Ok((c, Head::all(ctx, w, &self.acts, &logits, c)?)))
            .collect::<Result<Vec<_>, GpuError>>()
            .map_err(gpu_err)?;
        Ok(AllHeads { staging: staging(ctx, n), logits, heads })
    }

    /// Generates for `req` like [`crate::Session::generate`], with the forward passes on the
    /// GPU. The context length is the session's (`req.num_ctx` is not consulted); a prompt that
    /// extends the previous generation's context reuses its cached prefix.
    pub fn generate(&mut self, req: &GenerateRequest, on_token: &mut dyn FnMut(&TokenEvent) -> bool) -> Result<GenerateOutput> {
        let model = self.gpu.model.clone();
        // The sequence's own KV cache only keeps the bookkeeping (its length); it stays empty
        // and is never written: the K/V live in this session's GPU buffers.
        let mut books = model.new_cache(self.n_ctx);
        books.advance(self.len);
        let mut seq = Sequence::new(&model, books, &self.tokens, req)?;
        self.len = seq.cache.len();
        self.tokens.clear();
        let mut logits = Vec::new();
        let result = loop {
            logits.clear();
            let pending = seq.pending().to_vec();
            if let Err(e) = self.eval_inner(&pending, Outputs::Last, &mut logits) {
                break Err(e);
            }
            seq.consumed(pending.len());
            match seq.accept(&model, &logits) {
                generate::Step::Token(ev) => {
                    if !on_token(&ev) {
                        break Ok(seq.output(DoneReason::Cancelled));
                    }
                }
                generate::Step::Done(ev, reason) => {
                    if let Some(ev) = ev {
                        on_token(&ev);
                    }
                    break Ok(seq.output(reason));
                }
            }
        };
        let (_, tokens) = seq.into_cache();
        if result.is_ok() {
            self.tokens = tokens;
        } else {
            self.len = 0;
        }
        result
    }
}

fn staging(ctx: &GpuContext, n: usize) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("logits readback"),
        size: (n.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps the first `n` f32 of `staging` (filled by the step just submitted), appends them to
/// `out` and unmaps; returns the time spent copying out of the mapping.
/// Maps the first `bytes` of a readback buffer filled by work already submitted, waiting for it.
fn map_read(ctx: &GpuContext, staging: &wgpu::Buffer, bytes: u64, mapped: &(Sender<bool>, Receiver<bool>), what: &str) -> Result<()> {
    let tx = mapped.0.clone();
    staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
        let _ = tx.send(r.is_ok());
    });
    ctx.wait().map_err(gpu_err)?;
    if !mapped.1.try_recv().unwrap_or(false) {
        return Err(gpu_err(GpuError::Readback(format!("mapping the {what} failed"))));
    }
    Ok(())
}

fn read_staging(ctx: &GpuContext, staging: &wgpu::Buffer, n: usize, mapped: &(Sender<bool>, Receiver<bool>), out: &mut Vec<f32>) -> Result<Duration> {
    let bytes = (n * 4) as u64;
    map_read(ctx, staging, bytes, mapped, "logits")?;
    let started = Instant::now();
    {
        let view = staging.get_mapped_range(..bytes).map_err(|e| gpu_err(GpuError::Readback(format!("{e:?}"))))?;
        // Mapped ranges are aligned for f32 (one memcpy); the element-wise path is a fallback.
        match bytemuck::try_cast_slice::<u8, f32>(&view) {
            Ok(floats) => out.extend_from_slice(floats),
            Err(_) => out.extend(view.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
    }
    staging.unmap();
    Ok(started.elapsed())
}
