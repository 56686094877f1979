//! Quantized mat-vec (decode) and token-tiled mat-mat (prefill) over a persistent pool.
//!
//! W: [rows][cols] in a ggml block type, x: [n_tokens][cols] f32 quantized once per input to
//! W's `vec_dot_type`, y: [n_tokens][rows] f32. Threads take row chunks from an atomic counter;
//! in decode, thread t starts on chunk t, and each chunk is cut into grains that a thread with
//! nothing left takes from its back ([`crate::spans`]).
pub use crate::acts::QuantizedActs;
use crate::error::KernelError;
use crate::pool::ThreadPool;
use crate::read_ahead;
use crate::spans::{self, Spans};
use crate::repack::{self, Layout};
use crate::simd;
use crate::types::GgmlType;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A quantized matrix: `rows` rows (output features, ggml ne1) of `cols` elements (ne0), held
/// as `layout` says (row-major as in the GGUF file, or interleaved by [`repack`]).
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
}

impl<'a> QMatrix<'a> {
    pub fn new(ty: GgmlType, data: &'a [u8], rows: usize, cols: usize) -> Result<Self, KernelError> {
        let rb = ty.row_bytes(cols).ok_or(KernelError::BadRowLength { ty: ty.name(), n: cols, block: ty.block_size() })?;
        let expected = rb.checked_mul(rows).ok_or(KernelError::BadLength { what: "matrix bytes", expected: usize::MAX, got: data.len() })?;
        if data.len() != expected {
            return Err(KernelError::BadLength { what: "matrix bytes", expected, got: data.len() });
        }
        Ok(QMatrix { ty, data, rows, cols, layout: Layout::RowMajor })
    }

    /// The same matrix with its bytes held as `layout` (see [`repack`]).
    pub fn with_layout(self, layout: Layout) -> Self {
        QMatrix { layout, ..self }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }
}

/// A raw output pointer shared by threads that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(*mut T);
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    pub(crate) fn new(p: *mut T) -> Self {
        SyncPtr(p)
    }

    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Fewest tokens for which the AMX tiles (when present) take a product.
#[cfg(target_arch = "x86_64")]
const AMX_MIN_TOKENS: usize = 16;
/// Tokens per prefill tile (weights of a row are read once per tile).
const TILE_TOKENS: usize = 8;
/// Bytes of weights a prefill chunk keeps in L2 while 8-token tiles (in L1) pass over it.
const CHUNK_BYTES: usize = 256 * 1024;
/// Most rows in a prefill chunk (the many-row tiles' outputs sit on the stack).
const MAX_CHUNK_ROWS: usize = 256;

/// y[t][r] = Σ_c W[r][c]·x[t][c]; x: [n_tokens][cols] (in `qx`), y: [n_tokens][rows].
/// Uses the mat-vec kernel when n_tokens == 1, the token-tiled kernel otherwise.
pub fn matmul_q(pool: &ThreadPool, w: &QMatrix, qx: &QuantizedActs, n_tokens: usize, y: &mut [f32]) {
    matmul_q_many(pool, &mut [MatmulJob { w: *w, qx, y }], n_tokens);
}

/// Products [`matmul_q_many`] puts in one dispatch.
pub const MAX_JOBS: usize = 4;
const _: () = assert!(spans::MAX >= MAX_JOBS * read_ahead::MAX_THREADS);

/// One product of [`matmul_q_many`].
pub struct MatmulJob<'a, 'b> {
    pub w: QMatrix<'a>,
    pub qx: &'b QuantizedActs,
    pub y: &'b mut [f32],
}

/// How one job is cut into row chunks that threads claim.
struct Plan<'a> {
    w: QMatrix<'a>,
    rb: usize,
    dot: simd::VecDotFn,
    tile: Option<simd::VecDotTileFn>,
    /// Full 8-token tiles over a whole chunk of rows (prefill).
    tile_rows: Option<simd::TileRowsFn>,
    rows: Option<simd::MatvecRowsFn>,
    /// Prefill with rows as vector lanes (interleaved legacy groups, row-major K-quants).
    gemm: Option<simd::GemmFn>,
    /// Whether the kernels above read the weights as they are held (else a row-major copy of
    /// each chunk is made first).
    native: bool,
    /// Prefill through AMX tiles (chunks are then whole 16-row tiles).
    #[cfg(target_arch = "x86_64")]
    amx: Option<simd::amx::Kind>,
    y: SyncPtr<f32>,
    chunk: usize,
    n_chunks: usize,
    /// Rows in one of decode's grains (see [`spans`]).
    grain: usize,
}

/// Several products in one dispatch: every job's row chunks go into one queue the threads
/// drain, so Q, K and V (or gate and up) cost one barrier instead of three (or two). Each row's
/// arithmetic is the same as in a lone [`matmul_q`], so results do not depend on grouping.
/// Up to [`MAX_JOBS`] jobs share a dispatch (more are run in groups); nothing is allocated.
pub fn matmul_q_many(pool: &ThreadPool, jobs: &mut [MatmulJob], n_tokens: usize) {
    matmul_q_many_with(pool, jobs, n_tokens, true);
}

/// [`matmul_q_many`], choosing whether batches of 16+ tokens may take the AMX tiles (for
/// measuring them against the other kernels: every path gives a row the same bits, see
/// `simd::avx512::k_quant_step` and `simd::x86::legacy_step`).
pub fn matmul_q_many_with(pool: &ThreadPool, jobs: &mut [MatmulJob], n_tokens: usize, amx: bool) {
    if jobs.len() > MAX_JOBS {
        let (head, tail) = jobs.split_at_mut(MAX_JOBS);
        matmul_q_many_with(pool, head, n_tokens, amx);
        matmul_q_many_with(pool, tail, n_tokens, amx);
        return;
    }
    let mut plans: [Option<Plan>; MAX_JOBS] = [None, None, None, None];
    let mut qxs: [Option<&QuantizedActs>; MAX_JOBS] = [None; MAX_JOBS];
    let mut n_plans = 0;
    for j in jobs.iter_mut() {
        let (w, qx) = (&j.w, j.qx);
        let ok = qx.ty == w.ty.vec_dot_type() && qx.cols == w.cols && qx.n_tokens >= n_tokens && j.y.len() >= n_tokens * w.rows;
        // A caller bug, not a data error: loud in debug builds, a no-op in release.
        debug_assert!(ok, "matmul_q: {} weight {}x{}, acts {} {}x{}, {} tokens, y {}", w.ty, w.rows, w.cols, qx.ty, qx.n_tokens, qx.cols, n_tokens, j.y.len());
        if !ok || n_tokens == 0 || w.rows == 0 || w.data.len() != w.rows * w.ty.row_bytes(w.cols).unwrap_or(0) {
            continue;
        }
        let rb = w.row_bytes();
        // llama.cpp's summation order for the legacy types: its dot kernel for every product.
        let exact = if simd::llamacpp::enabled() { simd::llamacpp::dot_fn(w.ty) } else { None };
        #[cfg(target_arch = "x86_64")]
        let amx = simd::amx::Kind::of(w.ty, w.cols).filter(|_| exact.is_none() && amx && n_tokens >= AMX_MIN_TOKENS && matches!(w.layout, Layout::RowMajor | Layout::Interleaved8) && simd::amx::available());
        #[cfg(not(target_arch = "x86_64"))]
        let amx: Option<()> = {
            let _ = amx;
            None
        };
        let chunk = if n_tokens == 1 {
            // One chunk per thread (at least 16 rows): each thread's rows are one stream the
            // hardware prefetcher follows to its end, where four chunks a thread (claimed in
            // any order to even out stragglers) started four. Decode alternating one and four
            // every 4 tokens in one process (the machine's bandwidth drifts between runs), Zen
            // 4, 2 threads: SmolLM2 +12%, synthetic 1.1B +1.3% / +2.6%. It also lets
            // `read_ahead` know which rows a thread takes first.
            w.rows.div_ceil(pool.n_threads()).max(16)
        } else {
            (CHUNK_BYTES / rb.max(1)).clamp(4, MAX_CHUNK_ROWS).min(w.rows.div_ceil(2 * pool.n_threads()))
        };
        // Rows-as-lanes kernels: prefill, and every product over rows held as lanes.
        let gemm = simd::gemm_fn(w.ty, w.layout).filter(|_| (n_tokens > 1 || w.layout == Layout::Lanes16) && amx.is_none() && exact.is_none());
        // They take 16 rows at a time; repacked weights are cut at group boundaries.
        // Chunks (and decode's grains, see `spans`) start on a multiple of `align` rows.
        let align = if gemm.is_some() { 2 * repack::GROUP } else { 1 }.max(w.layout.group_rows());
        let chunk = if amx.is_some() { chunk.next_multiple_of(16) } else { chunk }.next_multiple_of(align);
        // One token: the rows kernel where there is one, else the K-quant tile or the dot kernel
        // (same bits as the tiles, see `rows_do_not_depend_on_batch_size`). Transposed blocks
        // have all three of their own (and never reach `dot`, see `run_chunk`).
        let transposed = simd::transposed_fns(w.ty).filter(|_| w.layout == Layout::Transposed);
        let (rows, tile, tile_rows) = match transposed {
            Some((rows, tile, tile_rows)) => (Some(rows), Some(tile), Some(tile_rows)),
            None => {
                // A layout this CPU has no kernels for (transposed blocks off AVX2) goes through
                // the row-major copy below, as prefill does.
                let rows = match w.layout {
                    Layout::Interleaved8 => simd::matvec_rows_x8_fn(w.ty),
                    Layout::RowMajor => simd::matvec_rows_fn(w.ty),
                    Layout::Transposed | Layout::Lanes16 => None,
                };
                (rows, simd::tile_fn(w.ty).filter(|_| n_tokens > 1 || w.ty.is_k_quant()), simd::tile_rows_fn(w.ty))
            }
        };
        plans[n_plans] = Some(Plan {
            w: j.w,
            rb,
            dot: exact.unwrap_or_else(|| simd::vec_dot_fn(w.ty)),
            tile: if exact.is_some() { simd::llamacpp::tile_fn(w.ty) } else { tile },
            tile_rows: tile_rows.filter(|_| n_tokens > 1 && chunk <= MAX_CHUNK_ROWS && exact.is_none()),
            rows: rows.filter(|_| n_tokens == 1 && exact.is_none()),
            gemm,
            native: w.layout == Layout::RowMajor || transposed.is_some(),
            #[cfg(target_arch = "x86_64")]
            amx,
            y: SyncPtr(j.y.as_mut_ptr()),
            chunk,
            n_chunks: w.rows.div_ceil(chunk),
            grain: spans::grain_rows(rb, align),
        });
        qxs[n_plans] = Some(qx);
        n_plans += 1;
    }
    let plans: [Option<Plan>; MAX_JOBS] = plans;
    let chunks = |j: usize| plans[j].as_ref().map_or(0, |p| p.n_chunks);
    let total: usize = (0..n_plans).map(chunks).sum();
    if total == 0 {
        return;
    }
    crate::stream::note(plans.iter().flatten().map(|p| p.w.data));
    // Global chunk c as (job, rows r0..r1).
    let locate = |mut c: usize| {
        let mut j = 0;
        while c >= chunks(j) {
            c -= chunks(j);
            j += 1;
        }
        plans[j].as_ref().map(|p| (j, p, c * p.chunk, ((c + 1) * p.chunk).min(p.w.rows)))
    };
    let nt = pool.n_threads();
    // Decode: thread t starts on chunk t, having read its start ahead (`read_ahead`); each
    // chunk is cut into grains, a thread takes its own chunk's from the front and, with none
    // left anywhere else, helps with the back of the fullest chunk (`spans`).
    let decode = n_tokens == 1 && nt > 1 && nt <= read_ahead::MAX_THREADS;
    let ahead = if decode {
        // Every layout keeps a chunk's rows in its bytes r0·rb..r1·rb (repacks stay within a
        // row group).
        let first_chunk = |t| locate(t).map_or((0, 0), |(_, p, r0, r1)| (p.w.data.as_ptr() as usize + r0 * p.rb, (r1 - r0) * p.rb));
        read_ahead::next_firsts(nt, (0..total).map(first_chunk))
    } else {
        None
    };
    let spans = if decode { Spans::new((0..total).map(|c| locate(c).map_or(0, |(_, p, r0, r1)| (r1 - r0).div_ceil(p.grain)))) } else { None };
    // Elsewhere threads claim whole chunks from the counter.
    let first = if decode { nt.min(total) } else { 0 };
    let next = AtomicUsize::new(first);
    // Chunk c's grain g, or the whole chunk.
    let part = |c: usize, g: Option<usize>| {
        if let Some((j, p, r0, r1)) = locate(c) {
            let (a, b) = match g {
                Some(g) => (r0 + g * p.grain, r1.min(r0 + (g + 1) * p.grain)),
                None => (r0, r1),
            };
            if let (Some(qx), true) = (qxs[j], a < b) {
                run_chunk(p, qx, n_tokens, a, b);
            }
        }
    };
    pool.run(|t, _| {
        let mut c = if t < first { t } else { next.fetch_add(1, Ordering::Relaxed) };
        while c < total {
            match &spans {
                Some(s) => {
                    while let Some(g) = s.take_front(c) {
                        part(c, Some(g));
                    }
                }
                None => part(c, None),
            }
            c = next.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(s) = &spans {
            while let Some(c) = s.fullest() {
                while let Some(g) = s.take_back(c) {
                    part(c, Some(g));
                }
            }
        }
        if let Some(&(a, len)) = ahead.as_ref().and_then(|r| r.get(t)) {
            crate::pool::read_while_idle(a as *const u8, len);
        }
    });
}

/// How far ahead of the row being multiplied a mat-vec asks for weight bytes (into L2). The
/// hardware prefetcher alone left decode waiting on memory. `kiln bench -p 16 -n 64 -t 2`, tg
/// tokens/s: no prefetch → L1 hint 1.5 KiB ahead: gemma-3-270m 48.5 → 62.8, synthetic 1.1B
/// 23.2 → 27.2, SmolLM2 104 → 200; L1 hint 1.5 KiB → L2 hint 4 KiB (interleaved runs): gemma
/// 62.8 → 73.3, 1.1B 27.2 → 27.3, SmolLM2 200 → 212. L1/L2/L3/NTA hints and 512 B–16 KiB tried;
/// NTA is far worse, and L1 prefetches stall on the fill buffers. On huge pages (no TLB miss
/// per 4 KiB) the best distance is shorter: `kiln bench -p 16 -n 128`, tg, 4096 → 2048 B:
/// 1.1B 29.6 → 33.0, gemma 75.0 → 73.8, SmolLM2 177 → 178 (1024: 32.4 / 72.8 / 157; 3072:
/// 32.1 / 76.5 / 184; 8192: 1.1B 29.3).
///
/// Those were Intel Xeon and AMD Zen 3 machines. On a Zen 4 (AMD with AVX-512) 2 KiB ahead
/// holds the K-quant rows back: `kiln bench -p 8 -n 64 -t 2 -r 2`, synthetic 1.1B tg, 2048 →
/// 8192 B: 30.8 → 39.4 / 37.5 tok/s (0: 38.8 / 39.5; 1024: 28.7; 4096: 37.7; 16384: 39.5);
/// gemma3 and SmolLM2 (mostly interleaved weights there) within the noise. So 8 KiB on AMD
/// CPUs with AVX-512, 2 KiB elsewhere; `KILN_PREFETCH_BYTES` sets it.
fn prefetch_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| distance_for_this_cpu("KILN_PREFETCH_BYTES", 8192, 2048))
}

/// A prefetch distance: the environment variable `var` where it is set, else `amd_avx512` on
/// AMD CPUs with AVX-512 (Zen 4) and `other` elsewhere.
fn distance_for_this_cpu(var: &str, amd_avx512: usize, other: usize) -> usize {
    if let Some(n) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if amd_cpu() && simd::isa() == simd::Isa::Avx512 {
        amd_avx512
    } else {
        other
    }
}

/// The CPU's vendor string is "AuthenticAMD".
fn amd_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: cpuid leaf 0 exists on every x86_64 CPU (a safe function in newer Rust).
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        [r.ebx, r.edx, r.ecx].iter().flat_map(|v| v.to_le_bytes()).eq(*b"AuthenticAMD")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The same for the one sequential stream of interleaved weights (`repack`): 4 KiB ahead, but
/// none on AMD CPUs with AVX-512, where the hardware prefetcher follows the stream better
/// alone. Zen 4, `kiln bench -p 1 -n 1 -t 2` with and without the prefetch alternated every 4
/// tokens in one process, tokens/s 4096 B → none: gemma3 125.9 → 134.3, 142.7 → 156.7, 115.0 →
/// 122.0 (+6.1% to +9.8%); SmolLM2 292.3 → 311.1, 284.5 → 312.7 (+6.4%, +9.9%); the synthetic
/// 1.1B, which has no interleaved weights, 0.997 and 1.004. (The earlier figures, one process a
/// setting, had 4096 B and none within their noise.) `KILN_INTERLEAVED_PREFETCH_BYTES` sets it.
#[cfg(target_arch = "x86_64")]
pub(crate) fn interleaved_prefetch_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| distance_for_this_cpu("KILN_INTERLEAVED_PREFETCH_BYTES", 0, 4096))
}

/// Asks for the cache lines of `data[from..to]` (clipped to `data`) into L2; no effect on results.
#[inline(always)]
pub(crate) fn prefetch(data: &[u8], from: usize, to: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut off = from & !63;
        while off < to.min(data.len()) {
            // SAFETY: prefetching never faults, and the address lies inside `data` anyway.
            unsafe { std::arch::x86_64::_mm_prefetch(data.as_ptr().add(off) as *const i8, std::arch::x86_64::_MM_HINT_T1) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, from, to);
}

/// `out[r] = f(row r)` over the consecutive `rb`-byte rows of `w`, prefetching ahead: the
/// mat-vec loop every one-token path shares. NaN everywhere if `w` holds too few rows. Inlined
/// into the kernels' target-feature functions (closures there inherit the features).
#[inline(always)]
pub(crate) fn for_each_row(w: &[u8], rb: usize, out: &mut [f32], mut f: impl FnMut(&[u8]) -> f32) {
    let end = out.len() * rb;
    let Some(w) = w.get(..end) else { return out.fill(f32::NAN) };
    let ahead = prefetch_bytes();
    for (r, o) in out.iter_mut().enumerate() {
        prefetch(w, r * rb + ahead, (r + 1) * rb + ahead);
        *o = f(&w[r * rb..(r + 1) * rb]);
    }
}

/// [`for_each_row`] `G` rows at a time: `fg` gets `G` consecutive rows and returns their
/// results (kernels that keep one row per vector lane); the remainder goes through `f1`.
#[inline(always)]
#[cfg(target_arch = "x86_64")]
pub(crate) fn for_each_row_group<const G: usize>(w: &[u8], rb: usize, out: &mut [f32], mut fg: impl FnMut(&[u8]) -> [f32; G], f1: impl FnMut(&[u8]) -> f32) {
    let end = out.len() * rb;
    let Some(w) = w.get(..end) else { return out.fill(f32::NAN) };
    let (mut r, ahead) = (0, prefetch_bytes());
    while r + G <= out.len() {
        prefetch(w, r * rb + ahead, (r + G) * rb + ahead);
        out[r..r + G].copy_from_slice(&fg(&w[r * rb..(r + G) * rb]));
        r += G;
    }
    for_each_row(&w[r * rb..], rb, &mut out[r..], f1)
}

thread_local! {
    /// A worker's row-major copy of an interleaved chunk (u64s keep blocks aligned); it only
    /// grows, to the largest chunk (about [`CHUNK_BYTES`]).
    static ROW_MAJOR: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows r0..r1 of one job, for every token.
fn run_chunk(p: &Plan, qx: &QuantizedActs, n_tokens: usize, mut r0: usize, r1: usize) {
    let rb = p.rb;
    if let Some(f) = p.gemm {
        // Repacked weights: whole groups here, the row-major tail below.
        let group = p.w.layout.group_rows();
        let full = (p.w.rows / group * group).min(r1);
        if full > r0 {
            // SAFETY: rows r0..full of every token belong to this chunk alone, and y holds
            // n_tokens rows of p.w.rows (checked in matmul_q_many_with).
            unsafe { f(&p.w.data[r0 * rb..full * rb], rb, full - r0, qx.all_rows(), qx.row_bytes, n_tokens, p.y.get().add(r0), p.w.rows) };
            r0 = full;
        }
        if r0 == r1 {
            return;
        }
        if p.w.layout == Layout::Lanes16 {
            // The rows past the last group are row-major.
            return run_chunk_row_major(p, &p.w.data[r0 * rb..r1 * rb], qx, n_tokens, r0, r1);
        }
    }
    if n_tokens == 1 {
        if let Some(f) = p.rows {
            // SAFETY: rows r0..r1 belong to one chunk, claimed by this thread only.
            let out = unsafe { std::slice::from_raw_parts_mut(p.y.get().add(r0), r1 - r0) };
            // Interleaved chunks start at a group (plan), so their bytes are whole groups.
            return f(&p.w.data[r0 * rb..r1 * rb], rb, qx.row(0), out);
        }
    }
    // Interleaved weights: prefill and the fallbacks read a row-major copy of the chunk.
    if p.native {
        return run_chunk_row_major(p, &p.w.data[r0 * rb..r1 * rb], qx, n_tokens, r0, r1);
    }
    ROW_MAJOR.with_borrow_mut(|buf| {
        let bytes = (r1 - r0) * rb;
        if buf.len() * 8 < bytes {
            buf.resize(bytes.div_ceil(8), 0);
        }
        let w = &mut bytemuck::cast_slice_mut::<u64, u8>(buf)[..bytes];
        if repack::rows_row_major(&p.w, r0, r1, w) {
            run_chunk_row_major(p, w, qx, n_tokens, r0, r1);
        }
    })
}

/// [`run_chunk`] on `w`, rows r0..r1 of the job row-major.
fn run_chunk_row_major(p: &Plan, w: &[u8], qx: &QuantizedActs, n_tokens: usize, r0: usize, r1: usize) {
    let (rows, rb) = (p.w.rows, p.rb);
    if n_tokens == 1 {
        let act = qx.row(0);
        // SAFETY: rows r0..r1 belong to one chunk, claimed by this thread only.
        let out = unsafe { std::slice::from_raw_parts_mut(p.y.get().add(r0), r1 - r0) };
        match p.tile {
            Some(f) => for_each_row(w, rb, out, |wr| {
                let mut o = [0f32; 1];
                f(wr, &[act], &mut o);
                o[0]
            }),
            None => for_each_row(w, rb, out, |wr| (p.dot)(wr, act)),
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(kind) = p.amx {
        // SAFETY: `amx` is only set when AMX was detected and granted and `Kind::of` took the
        // type and width; matmul_q_many checked the shapes (weights rows·rb, activations
        // n_tokens rows of its vec_dot_type and width, y n_tokens·rows), and rows r0..r1 of
        // every token belong to this chunk alone.
        unsafe {
            let (acts, act_rb) = (qx.all_rows(), qx.row_bytes);
            simd::amx::matmul(kind, w, rb, r1 - r0, p.w.cols, acts, act_rb, n_tokens, p.y.get().add(r0), rows);
        }
        return;
    }
    let mut out = [0f32; TILE_TOKENS];
    let mut block = [0f32; TILE_TOKENS * MAX_CHUNK_ROWS];
    for t0 in (0..n_tokens).step_by(TILE_TOKENS) {
        let nt = TILE_TOKENS.min(n_tokens - t0);
        let mut ys: [&[u8]; TILE_TOKENS] = [&[]; TILE_TOKENS];
        for (k, y) in ys.iter_mut().enumerate().take(nt) {
            *y = qx.row(t0 + k);
        }
        if let (Some(f), TILE_TOKENS) = (p.tile_rows, nt) {
            let block = &mut block[..(r1 - r0) * TILE_TOKENS];
            f(w, rb, &ys, block);
            for (r, o) in (r0..r1).zip(block.chunks_exact(TILE_TOKENS)) {
                for (k, &v) in o.iter().enumerate() {
                    // SAFETY: rows r0..r1 belong to one chunk, claimed by this thread only.
                    unsafe { *p.y.get().add((t0 + k) * rows + r) = v };
                }
            }
            continue;
        }
        for (r, wr) in (r0..r1).zip(w.chunks_exact(rb)) {
            match p.tile {
                Some(f) => f(wr, &ys[..nt], &mut out[..nt]),
                None => {
                    for k in 0..nt {
                        out[k] = (p.dot)(wr, ys[k]);
                    }
                }
            }
            for (k, &v) in out.iter().enumerate().take(nt) {
                // SAFETY: rows r0..r1 belong to one chunk, claimed by this thread only.
                unsafe { *p.y.get().add((t0 + k) * rows + r) = v };
            }
        }
    }
}

/// Convenience: quantizes x into `scratch` then calls matmul_q.
pub fn matmul(pool: &ThreadPool, w: &QMatrix, x: &[f32], n_tokens: usize, y: &mut [f32], scratch: &mut QuantizedActs) {
    scratch.quantize(pool, w.ty.vec_dot_type(), x, n_tokens, w.cols);
    matmul_q(pool, w, scratch, n_tokens, y);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quants::{dequantize_row, quantize_row};

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// matmul against the f64 product of dequantized weights and dequantized activations.
    fn check(ty: GgmlType, rows: usize, cols: usize, n_tokens: usize, pool: &ThreadPool) {
        let mut seed = 42 + rows as u64;
        let wf: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..n_tokens * cols).map(|_| lcg(&mut seed)).collect();
        let rb = ty.row_bytes(cols).unwrap();
        let mut wq = vec![0u8; rb * rows];
        for r in 0..rows {
            quantize_row(ty, &wf[r * cols..(r + 1) * cols], &mut wq[r * rb..(r + 1) * rb]).unwrap();
        }
        let w = QMatrix::new(ty, &wq, rows, cols).unwrap();
        let mut acts = QuantizedActs::new();
        let mut y = vec![f32::NAN; n_tokens * rows];
        matmul(pool, &w, &x, n_tokens, &mut y, &mut acts);
        let (mut wd, mut xd) = (vec![0f32; cols], vec![0f32; cols]);
        for t in 0..n_tokens {
            dequantize_row(acts.ty(), acts.row(t), &mut xd).unwrap();
            for r in 0..rows {
                dequantize_row(ty, &wq[r * rb..(r + 1) * rb], &mut wd).unwrap();
                let want: f64 = wd.iter().zip(&xd).map(|(a, b)| *a as f64 * *b as f64).sum();
                let got = y[t * rows + r] as f64;
                // Q8_1 stores s = d·Σq as f16, so the *_1 types carry that rounding.
                let tol = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) { 2e-2 } else { 1e-3 };
                assert!((got - want).abs() <= tol * (1.0 + want.abs()), "{ty} t{t} r{r}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn matvec_and_matmul_match_dequantized_reference() {
        let pool = ThreadPool::new(2);
        for ty in GgmlType::ALL {
            if matches!(ty, GgmlType::Q8_1 | GgmlType::Q8_K) {
                continue;
            }
            check(ty, 37, 512, 1, &pool);
            check(ty, 37, 512, 7, &pool);
            // Past AMX_MIN_TOKENS: the AMX tiles where present (a partial token group too).
            check(ty, 37, 512, 21, &pool);
            if !ty.is_k_quant() {
                check(ty, 19, 640, 40, &pool);
            }
        }
    }

    /// A token's outputs are the same bits alone (mat-vec) or in a batch of 21 (8-token tiles
    /// or, where present, AMX tiles): the scheduler's guarantee that a request's text does not
    /// depend on what it is batched with.
    #[test]
    fn rows_do_not_depend_on_batch_size() {
        let pool = ThreadPool::new(2);
        let (rows, cols, n) = (40, 512, 21);
        let mut seed = 9u64;
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q8_0] {
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rb * rows];
            for r in 0..rows {
                let v: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
                quantize_row(ty, &v, &mut wq[r * rb..(r + 1) * rb]).unwrap();
            }
            let w = QMatrix::new(ty, &wq, rows, cols).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
            let mut acts = QuantizedActs::new();
            acts.quantize(&pool, ty.vec_dot_type(), &x, n, cols);
            let (mut exact, mut fast) = (vec![f32::NAN; n * rows], vec![f32::NAN; n * rows]);
            matmul_q_many_with(&pool, &mut [MatmulJob { w, qx: &acts, y: &mut exact }], n, false);
            matmul_q_many_with(&pool, &mut [MatmulJob { w, qx: &acts, y: &mut fast }], n, true);
            let mut one = QuantizedActs::new();
            for t in 0..n {
                one.quantize(&pool, ty.vec_dot_type(), &x[t * cols..(t + 1) * cols], 1, cols);
                let mut y1 = vec![f32::NAN; rows];
                matmul_q_many_with(&pool, &mut [MatmulJob { w, qx: &one, y: &mut y1 }], 1, false);
                for r in 0..rows {
                    let (e, f) = (exact[t * rows + r], fast[t * rows + r]);
                    assert_eq!(e.to_bits(), y1[r].to_bits(), "{ty} t{t} r{r}: batched {e} vs alone {}", y1[r]);
                    assert_eq!(f.to_bits(), y1[r].to_bits(), "{ty} t{t} r{r}: AMX {f} vs alone {}", y1[r]);
                }
            }
        }
    }

    /// Repacked weights (interleaved legacy rows, transposed K-quant blocks, K-quant rows as
    /// lanes) give every path
    /// (mat-vec, tiles of 8 and fewer tokens, AMX where present) the same bits as the row-major
    /// ones, including the row-major tail past the last interleaved group.
    #[test]
    fn decode_grains_give_every_row_its_bits() {
        // Chunks of several grains (`spans`), two products in one dispatch, four threads that
        // take each other's grains: every row as one thread computes it alone.
        let (wide, alone) = (ThreadPool::new(4), ThreadPool::new(1));
        let mut seed = 11u64;
        let cols = 2048;
        let mut mats = Vec::new();
        for (ty, rows) in [(GgmlType::Q4_K, 1000), (GgmlType::Q8_0, 700), (GgmlType::Q4_0, 901)] {
            let rb = ty.row_bytes(cols).unwrap();
            let mut wq = vec![0u8; rb * rows];
            for r in 0..rows {
                let v: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
                quantize_row(ty, &v, &mut wq[r * rb..(r + 1) * rb]).unwrap();
            }
            let layout = repack::best_layout(ty, rows, cols);
            repack::repack_in_place(ty, &mut wq, rows, cols, layout);
            assert!((rows / 4) > spans::grain_rows(rb, 16), "{ty}: a thread's chunk should hold more than one grain");
            mats.push((ty, rows, layout, wq));
        }
        let x: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
        for pair in mats.windows(2) {
            let [(ta, ra, la, wa), (tb, rb_, lb, wb)] = pair else { unreachable!() };
            let ma = QMatrix::new(*ta, wa, *ra, cols).unwrap().with_layout(*la);
            let mb = QMatrix::new(*tb, wb, *rb_, cols).unwrap().with_layout(*lb);
            let (mut qa, mut qb) = (QuantizedActs::new(), QuantizedActs::new());
            qa.quantize(&alone, ta.vec_dot_type(), &x, 1, cols);
            qb.quantize(&alone, tb.vec_dot_type(), &x, 1, cols);
            let run = |pool: &ThreadPool| {
                let (mut ya, mut yb) = (vec![f32::NAN; *ra], vec![f32::NAN; *rb_]);
                for _ in 0..3 {
                    matmul_q_many(pool, &mut [MatmulJob { w: ma, qx: &qa, y: &mut ya }, MatmulJob { w: mb, qx: &qb, y: &mut yb }], 1);
                }
                (ya, yb)
            };
            let (want, got) = (run(&alone), run(&wide));
            for (name, w, g) in [(ta, &want.0, &got.0), (tb, &want.1, &got.1)] {
                for (r, (a, b)) in w.iter().zip(g).enumerate() {
                    assert!(a.is_finite(), "{name} row {r} not written");
                    assert_eq!(a.to_bits(), b.to_bits(), "{name} row {r}: one thread {a}, four {b}");
                }
            }
        }
    }

    #[test]
    fn repacked_rows_give_row_major_bits() {
        let pool = ThreadPool::new(2);
        let mut seed = 5u64;
        let cases = [
            (GgmlType::Q4_0, Layout::Interleaved8, 640),
            (GgmlType::Q4_1, Layout::Interleaved8, 640),
            (GgmlType::Q5_0, Layout::Interleaved8, 640),
            (GgmlType::Q8_0, Layout::Interleaved8, 640),
            (GgmlType::Q4_K, Layout::Transposed, 768),
            (GgmlType::Q6_K, Layout::Transposed, 768),
            (GgmlType::Q4_K, Layout::Lanes16, 768),
            (GgmlType::Q6_K, Layout::Lanes16, 768),
        ];
        for (ty, layout, cols) in cases {
            // One group, groups with a row-major tail, many chunks.
            let first = if layout == Layout::Lanes16 { repack::LANES } else { repack::GROUP };
            for rows in [first, 61, 300] {
                if repack::best_layout(ty, rows, cols) != layout {
                    eprintln!("{ty}: no {layout:?} kernel on this CPU; checking the row-major copy path");
                }
                let rb = ty.row_bytes(cols).unwrap();
                let mut wq = vec![0u8; rb * rows];
                for r in 0..rows {
                    let v: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
                    quantize_row(ty, &v, &mut wq[r * rb..(r + 1) * rb]).unwrap();
                }
                let mut wi = wq.clone();
                assert!(repack::repack_in_place(ty, &mut wi, rows, cols, layout));
                assert_ne!(wi, wq, "{ty}: nothing moved");
                let plain = QMatrix::new(ty, &wq, rows, cols).unwrap();
                let inter = QMatrix::new(ty, &wi, rows, cols).unwrap().with_layout(layout);
                for n in [1, 7, 21] {
                    let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut seed)).collect();
                    let mut acts = QuantizedActs::new();
                    acts.quantize(&pool, ty.vec_dot_type(), &x, n, cols);
                    let (mut a, mut b) = (vec![f32::NAN; n * rows], vec![f32::NAN; n * rows]);
                    matmul_q(&pool, &plain, &acts, n, &mut a);
                    matmul_q(&pool, &inter, &acts, n, &mut b);
                    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                        assert_eq!(x.to_bits(), y.to_bits(), "{ty} {rows} rows, {n} tokens, output {i}: {x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn row_slice_matrix_works() {
        let ty = GgmlType::Q4_K;
        let pool = ThreadPool::new(2);
        let (rows, cols) = (8, 256);
        let rb = ty.row_bytes(cols).unwrap();
        let mut wq = vec![0u8; rb * rows];
        for r in 0..rows {
            let v: Vec<f32> = (0..cols).map(|i| ((i * (r + 1)) as f32).sin()).collect();
            quantize_row(ty, &v, &mut wq[r * rb..(r + 1) * rb]).unwrap();
        }
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.1).cos()).collect();
        let mut acts = QuantizedActs::new();
        let (mut full, mut part) = (vec![0f32; rows], vec![0f32; 3]);
        matmul(&pool, &QMatrix::new(ty, &wq, rows, cols).unwrap(), &x, 1, &mut full, &mut acts);
        matmul(&pool, &QMatrix::new(ty, &wq[2 * rb..5 * rb], 3, cols).unwrap(), &x, 1, &mut part, &mut acts);
        assert_eq!(&full[2..5], &part[..]);
    }

    #[test]
    fn qmatrix_rejects_bad_shapes() {
        assert!(QMatrix::new(GgmlType::Q4_K, &[0u8; 144], 1, 255).is_err());
        assert!(QMatrix::new(GgmlType::Q4_K, &[0u8; 143], 1, 256).is_err());
    }
}
