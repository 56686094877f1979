//! AMX int8 tiles for prefill: Q4_K and Q6_K against Q8_K activations, Q4_0, Q5_0 and Q8_0
//! against Q8_0, Q4_1 against Q8_1.
//!
//! A tile product `C[16 tokens][16 rows] += A[16 tokens][k] · B[k][16 rows]` (`tdpbsud`: signed
//! activation bytes times unsigned weight bytes, 32-bit sums) covers one K-quant sub-block
//! (32 elements for Q4_K, 16 for Q6_K; a whole block for the legacy types). Each sub-block has
//! its own scale per weight row, so every int32 tile goes to memory and the AVX-512 epilogue
//! forms the same exact integer block sums and float steps as the other kernels
//! (`avx512::k_quant_step`, `q6_k_step`, `x86::legacy_step`): the scales by vpmulld, the mins
//! (Q4_K) and the −32 offset (Q6_K) against the activations' bsums by vpdpwssd.
//!
//! Weights are unpacked once per row chunk into a panel in the tiles' "VNNI" layout (four
//! consecutive k of one row in each 32-bit lane, 16 rows side by side), then every 16-token
//! group of the prompt runs over it. The activations need no repacking: `tileloadd` reads 16
//! token rows of a `QuantizedActs` buffer with its row stride.
//!
//! Linux only: the kernel must grant the process the tile state (`arch_prctl`); without it,
//! or with `KILN_NO_AMX=1`, callers use the AVX-512 tiles.
use crate::quants::{common::get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1};
use crate::types::GgmlType;
use crate::types::QK_K;
use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Tokens in one tile (the rows of A and C).
pub const TOKENS: usize = 16;
/// Weight rows in one tile (the columns of B and C).
pub const ROWS: usize = 16;

/// True when AMX-INT8 is present, the OS granted the tile state, and AVX-512 kernels are on.
pub fn available() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(detect)
}

fn detect() -> bool {
    if std::env::var("KILN_NO_AMX").is_ok_and(|v| v == "1") || super::isa() != super::Isa::Avx512 {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
    tile && int8 && request_tile_state()
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux hands out AMX per process.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain syscall with integer arguments; rcx and r11 are clobbered by `syscall`.
    unsafe {
        asm!("syscall", inlateout("rax") SYS_ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM,
             in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The `ldtilecfg` operand (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// tmm0/1: C (nt × 16 i32), tmm2/3: A (nt × `sub` bytes), tmm4/5: B (`sub`/4 × 64 bytes).
    fn new(nt: usize, sub: usize) -> Self {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for (t, (rows, colsb)) in [
            (nt, 64),
            (nt, 64),
            (nt, sub),
            (nt, sub),
            (sub / 4, 64),
            (sub / 4, 64),
        ]
        .into_iter()
        .enumerate()
        {
            c.rows[t] = rows as u8;
            c.colsb[t] = colsb as u16;
        }
        c
    }
}

/// A weight type the AMX path handles, against its activation type (Q8_K for the K-quants,
/// Q8_1 for Q4_1, Q8_0 for the other legacy types).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Q4K,
    Q6K,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
}

impl Kind {
    /// The AMX kind for `ty` at `cols` columns, if the tiles take it (legacy types need an
    /// even number of blocks: they go two blocks per tile pair).
    pub fn of(ty: GgmlType, cols: usize) -> Option<Kind> {
        let k = match ty {
            GgmlType::Q4_K => Kind::Q4K,
            GgmlType::Q6_K => Kind::Q6K,
            GgmlType::Q4_0 => Kind::Q4_0,
            GgmlType::Q4_1 => Kind::Q4_1,
            GgmlType::Q5_0 => Kind::Q5_0,
            GgmlType::Q8_0 => Kind::Q8_0,
            _ => return None,
        };
        (cols.is_multiple_of(2 * k.sub()) && cols.is_multiple_of(k.block_elems())).then_some(k)
    }

    /// Elements per tile product (a sub-block, or a whole legacy block).
    const fn sub(self) -> usize {
        match self {
            Kind::Q6K => 16,
            _ => 32,
        }
    }

    const fn k_quant(self) -> bool {
        matches!(self, Kind::Q4K | Kind::Q6K)
    }

    const fn block_elems(self) -> usize {
        if self.k_quant() {
            QK_K
        } else {
            32
        }
    }

    const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4K => std::mem::size_of::<BlockQ4K>(),
            Kind::Q6K => std::mem::size_of::<BlockQ6K>(),
            Kind::Q4_0 => std::mem::size_of::<BlockQ4_0>(),
            Kind::Q4_1 => std::mem::size_of::<BlockQ4_1>(),
            Kind::Q5_0 => std::mem::size_of::<BlockQ5_0>(),
            Kind::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
        }
    }

    /// Bytes of one activation block, and where its quants start.
    const fn act_block(self) -> (usize, usize) {
        match self {
            Kind::Q4K | Kind::Q6K => (std::mem::size_of::<BlockQ8K>(), 4),
            Kind::Q4_1 => (std::mem::size_of::<BlockQ8_1>(), 4),
            _ => (std::mem::size_of::<BlockQ8_0>(), 2),
        }
    }

    /// Signed weight quants (`tdpbssd`); the others are unsigned (`tdpbsud`).
    const fn signed(self) -> bool {
        matches!(self, Kind::Q4_0 | Kind::Q5_0 | Kind::Q8_0)
    }

    /// K-quants: i16 pairs of bsum terms per super-block (Q4_K: 8 sub-blocks, Q6_K: 16 groups).
    const fn bsum_pairs(self) -> usize {
        match self {
            Kind::Q4K => 4,
            _ => 8,
        }
    }
}

/// Per-thread buffers, grown on first use and reused (no allocation in steady state).
#[derive(Default)]
struct Scratch {
    /// [row tile][k/4][16 rows] u32: the weight quants as bytes, in B-tile layout.
    panel: Vec<u32>,
    /// Legacy: [row tile][block][16 rows] d of each block. K-quants: [row tile][block][2][16]
    /// (d, −dmin for Q4_K; d, 0 for Q6_K).
    scale: Vec<f32>,
    /// Legacy Q4_1: [row tile][block][16 rows] m.
    bias: Vec<f32>,
    /// K-quants: [row tile][block][sub-block][16 rows] the integer sub-block scales.
    iscale: Vec<i32>,
    /// K-quants: [row tile][block][pair][16 rows] two i16 per lane: (min, min) of two adjacent
    /// sub-blocks for Q4_K, (scale, scale) of two adjacent 16-element groups for Q6_K.
    pairs: Vec<u32>,
    /// [activation block][16 tokens]: the activation scale d of each token of the group.
    act_d: Vec<f32>,
    /// Legacy Q4_1: [block][16 tokens] Q8_1's s.
    act_bias: Vec<f32>,
    /// K-quants: [block][pair][16 tokens] two i16 bsums matching `pairs` (Q4_K: sums of the
    /// two 16-groups of a sub-block; Q6_K: the 16-groups themselves).
    act_pairs: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn grow<T: Default + Clone>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// i16 pairs in a u32 lane, as `vpdpwssd` reads them.
fn pair(lo: i32, hi: i32) -> u32 {
    (lo as i16 as u16 as u32) | ((hi as i16 as u16 as u32) << 16)
}

/// One row tile's packing targets (see [`Scratch`]).
struct Pack<'a> {
    panel: &'a mut [u32],
    scale: &'a mut [f32],
    bias: &'a mut [f32],
    iscale: &'a mut [i32],
    pairs: &'a mut [u32],
}

/// Writes row `n` of a row tile: the quants of every block as bytes in B-tile layout, plus the
/// scales and bias terms the epilogue needs.
fn pack_row(kind: Kind, row: &[u8], n: usize, p: &mut Pack) {
    let (be, bb) = (kind.block_elems(), kind.block_bytes());
    let mut q = [0u8; QK_K];
    for blk in 0..row.len() / bb {
        let bytes = &row[blk * bb..(blk + 1) * bb];
        match kind {
            Kind::Q4K => {
                let b: &BlockQ4K = bytemuck::from_bytes(bytes);
                for c in 0..4 {
                    for l in 0..32 {
                        q[64 * c + l] = b.qs[32 * c + l] & 0xF;
                        q[64 * c + 32 + l] = b.qs[32 * c + l] >> 4;
                    }
                }
                let sm: [(u8, u8); 8] = std::array::from_fn(|j| get_scale_min_k4(j, &b.scales));
                for (j, &(sc, _)) in sm.iter().enumerate() {
                    p.iscale[(blk * 8 + j) * ROWS + n] = sc as i32;
                }
                for i in 0..4 {
                    p.pairs[(blk * 8 + i) * ROWS + n] = pair(sm[2 * i].1 as i32, sm[2 * i + 1].1 as i32);
                }
                p.scale[(blk * 2) * ROWS + n] = b.d.to_f32();
                p.scale[(blk * 2 + 1) * ROWS + n] = -b.dmin.to_f32();
            }
            Kind::Q6K => {
                let b: &BlockQ6K = bytemuck::from_bytes(bytes);
                for half in 0..2 {
                    for l in 0..32 {
                        let (lo0, lo1, hi) = (b.ql[64 * half + l], b.ql[64 * half + 32 + l], b.qh[32 * half + l]);
                        let e = 128 * half + l;
                        q[e] = (lo0 & 0xF) | ((hi & 3) << 4);
                        q[e + 32] = (lo1 & 0xF) | (((hi >> 2) & 3) << 4);
                        q[e + 64] = (lo0 >> 4) | (((hi >> 4) & 3) << 4);
                        q[e + 96] = (lo1 >> 4) | (((hi >> 6) & 3) << 4);
                    }
                }
                for (g, &sc) in b.scales.iter().enumerate() {
                    p.iscale[(blk * 16 + g) * ROWS + n] = sc as i32;
                }
                for i in 0..8 {
                    p.pairs[(blk * 8 + i) * ROWS + n] = pair(b.scales[2 * i] as i32, b.scales[2 * i + 1] as i32);
                }
                p.scale[(blk * 2) * ROWS + n] = b.d.to_f32();
            }
            Kind::Q4_0 => {
                let b: &BlockQ4_0 = bytemuck::from_bytes(bytes);
                for l in 0..16 {
                    q[l] = ((b.qs[l] & 0xF) as i8 - 8) as u8;
                    q[l + 16] = ((b.qs[l] >> 4) as i8 - 8) as u8;
                }
                p.scale[blk * ROWS + n] = b.d.to_f32();
            }
            Kind::Q4_1 => {
                let b: &BlockQ4_1 = bytemuck::from_bytes(bytes);
                for l in 0..16 {
                    q[l] = b.qs[l] & 0xF;
                    q[l + 16] = b.qs[l] >> 4;
                }
                p.scale[blk * ROWS + n] = b.d.to_f32();
                p.bias[blk * ROWS + n] = b.m.to_f32();
            }
            Kind::Q5_0 => {
                let b: &BlockQ5_0 = bytemuck::from_bytes(bytes);
                let qh = u32::from_le_bytes(b.qh);
                for l in 0..16 {
                    let lo = (b.qs[l] & 0xF) | ((((qh >> l) & 1) as u8) << 4);
                    let hi = (b.qs[l] >> 4) | ((((qh >> (l + 16)) & 1) as u8) << 4);
                    q[l] = (lo as i8 - 16) as u8;
                    q[l + 16] = (hi as i8 - 16) as u8;
                }
                p.scale[blk * ROWS + n] = b.d.to_f32();
            }
            Kind::Q8_0 => {
                let b: &BlockQ8_0 = bytemuck::from_bytes(bytes);
                for (q, &v) in q.iter_mut().zip(&b.qs) {
                    *q = v as u8;
                }
                p.scale[blk * ROWS + n] = b.d.to_f32();
            }
        }
        let dst = &mut p.panel[blk * (be / 4) * ROWS..];
        for (w, four) in q[..be].chunks_exact(4).enumerate() {
            dst[w * ROWS + n] = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
        }
    }
}

/// Reads a little-endian f16 or f32 at `off`.
fn act_scalar(acts: &[u8], off: usize, f16: bool) -> f32 {
    if f16 {
        half::f16::from_le_bytes([acts[off], acts[off + 1]]).to_f32()
    } else {
        f32::from_le_bytes([acts[off], acts[off + 1], acts[off + 2], acts[off + 3]])
    }
}

/// Q8_K bsum `g` of the block at `off`.
fn act_bsum(acts: &[u8], off: usize, g: usize) -> i32 {
    let at = off + 4 + QK_K + 2 * g;
    i16::from_le_bytes([acts[at], acts[at + 1]]) as i32
}

/// `y[t·y_stride + r] = Σ_c W[r][c]·x[t][c]` for the `n_rows` rows of `w` (`rb` bytes each,
/// `cols` columns of `kind` blocks) and the `n_tokens` activation rows of `acts` (`act_rb`
/// bytes each). Every row gets the same bits as from the one-token and tile kernels: exact
/// integer block sums, then the same float steps in the same order.
///
/// # Safety
/// [`available`] must be true and `Kind::of(ty, cols)` gave `kind`; `y` must be writable at
/// `t·y_stride + r` for every t < n_tokens, r < n_rows; `w` must hold n_rows·rb bytes, `acts`
/// n_tokens·act_rb.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul(kind: Kind, w: &[u8], rb: usize, n_rows: usize, cols: usize, acts: &[u8], act_rb: usize, n_tokens: usize, y: *mut f32, y_stride: usize) {
    let (ab, aq) = kind.act_block();
    // Weight and activation blocks cover the same elements (256 for K-quants, 32 otherwise).
    let nb = cols / kind.block_elems();
    debug_assert!(rb == nb * kind.block_bytes() && act_rb == nb * ab);
    debug_assert!(w.len() >= n_rows * rb && acts.len() >= n_tokens * act_rb);
    let (kq, nsub) = (kind.k_quant(), QK_K / kind.sub());
    SCRATCH.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else { return };
        let s = &mut *s;
        let tiles = n_rows.div_ceil(ROWS);
        let panel_len = cols / 4 * ROWS;
        let scale_len = if kq { nb * 2 * ROWS } else { nb * ROWS };
        let bias_len = if kind == Kind::Q4_1 { nb * ROWS } else { 0 };
        let (iscale_len, pairs_len) = if kq { (nb * nsub * ROWS, nb * 8 * ROWS) } else { (0, 0) };
        grow(&mut s.panel, tiles * panel_len);
        grow(&mut s.scale, tiles * scale_len);
        grow(&mut s.bias, tiles * bias_len);
        grow(&mut s.iscale, tiles * iscale_len);
        grow(&mut s.pairs, tiles * pairs_len);
        grow(&mut s.act_d, nb * TOKENS);
        grow(&mut s.act_bias, if kind == Kind::Q4_1 { nb * TOKENS } else { 0 });
        grow(&mut s.act_pairs, if kq { nb * 8 * TOKENS } else { 0 });
        for tile in 0..tiles {
            let mut p = Pack {
                panel: &mut s.panel[tile * panel_len..(tile + 1) * panel_len],
                scale: &mut s.scale[tile * scale_len..(tile + 1) * scale_len],
                bias: &mut s.bias[tile * bias_len..(tile + 1) * bias_len],
                iscale: &mut s.iscale[tile * iscale_len..(tile + 1) * iscale_len],
                pairs: &mut s.pairs[tile * pairs_len..(tile + 1) * pairs_len],
            };
            let live = (n_rows - tile * ROWS).min(ROWS);
            if live < ROWS {
                p.panel.fill(0);
                p.scale.fill(0.0);
                p.bias.fill(0.0);
                p.iscale.fill(0);
                p.pairs.fill(0);
            }
            for n in 0..live {
                let r = tile * ROWS + n;
                pack_row(kind, &w[r * rb..(r + 1) * rb], n, &mut p);
            }
        }
        let mut loaded = 0;
        for t0 in (0..n_tokens).step_by(TOKENS) {
            let nt = TOKENS.min(n_tokens - t0);
            if nt != loaded {
                let cfg = TileConfig::new(nt, kind.sub());
                asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly));
                loaded = nt;
            }
            // The group's activation scales and bias terms, token-minor for broadcasting.
            for t in 0..TOKENS {
                let row = (t < nt).then(|| (t0 + t) * act_rb);
                for blk in 0..nb {
                    s.act_d[blk * TOKENS + t] = row.map_or(0.0, |r| act_scalar(acts, r + blk * ab, !kq));
                }
                if kind == Kind::Q4_1 {
                    for blk in 0..nb {
                        s.act_bias[blk * TOKENS + t] = row.map_or(0.0, |r| act_scalar(acts, r + blk * ab + 2, true));
                    }
                }
                if kq {
                    for blk in 0..nb {
                        let bs = |g: usize| row.map_or(0, |r| act_bsum(acts, r + blk * ab, g));
                        for i in 0..kind.bsum_pairs() {
                            s.act_pairs[(blk * 8 + i) * TOKENS + t] = match kind {
                                // Pairs of sub-block sums (two 16-groups each).
                                Kind::Q4K => pair(bs(4 * i) + bs(4 * i + 1), bs(4 * i + 2) + bs(4 * i + 3)),
                                _ => pair(bs(2 * i), bs(2 * i + 1)),
                            };
                        }
                    }
                }
            }
            let a = acts.as_ptr().add(t0 * act_rb + aq);
            for tile in 0..tiles {
                let live = (n_rows - tile * ROWS).min(ROWS);
                let p = Panel {
                    q: &s.panel[tile * panel_len..],
                    scale: &s.scale[tile * scale_len..],
                    bias: &s.bias[tile * bias_len..],
                    iscale: &s.iscale[tile * iscale_len..],
                    pairs: &s.pairs[tile * pairs_len..],
                };
                let out = if kq {
                    tile_group_k(kind, a, act_rb, nb, &p, &s.act_d, &s.act_pairs)
                } else {
                    tile_group_legacy(kind, a, act_rb, ab, nb, &p, &s.act_d, &s.act_bias)
                };
                let mask: __mmask16 = if live == ROWS { 0xFFFF } else { (1u16 << live) - 1 };
                for (t, v) in out.iter().enumerate().take(nt) {
                    _mm512_mask_storeu_ps(y.add((t0 + t) * y_stride + tile * ROWS), mask, *v);
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    });
}

/// One row tile's packed weights (see [`Scratch`]).
struct Panel<'a> {
    q: &'a [u32],
    scale: &'a [f32],
    bias: &'a [f32],
    iscale: &'a [i32],
    pairs: &'a [u32],
}

#[repr(C, align(64))]
struct CBuf([[i32; 16 * TOKENS]; 16]);

/// K-quants, one 16-token group against one 16-row tile: per super-block a tile product per
/// sub-block, then per token the exact sums s = Σ scale·C_j (vpmulld) and m = Σ min·bsum
/// (Q4_K) or o = Σ scale·bsum (Q6_K) (vpdpwssd), and the float steps of
/// `avx512::k_quant_step` / `q6_k_step`, lane by lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
unsafe fn tile_group_k(kind: Kind, a: *const u8, act_rb: usize, nb: usize, p: &Panel, act_d: &[f32], act_pairs: &[u32]) -> [__m512; TOKENS] {
    let mut c = CBuf([[0; 16 * TOKENS]; 16]);
    let mut acc = [_mm512_setzero_ps(); TOKENS];
    let sub = kind.sub();
    let nsub = QK_K / sub;
    let npairs = kind.bsum_pairs();
    for blk in 0..nb {
        let ab = a.add(blk * std::mem::size_of::<BlockQ8K>());
        let pb = p.q.as_ptr().add(blk * (QK_K / 4) * ROWS) as *const u8;
        for j in (0..nsub).step_by(2) {
            let (aj, bj, cj) = (ab.add(j * sub), pb.add(j * sub * ROWS), c.0[j].as_mut_ptr());
            pair_su(aj, sub, act_rb, bj, sub * ROWS, cj);
        }
        let sc = p.iscale.as_ptr().add(blk * nsub * ROWS);
        let wp = p.pairs.as_ptr().add(blk * 8 * ROWS);
        let d = _mm512_loadu_ps(p.scale.as_ptr().add(blk * 2 * ROWS));
        let dm = _mm512_loadu_ps(p.scale.as_ptr().add((blk * 2 + 1) * ROWS));
        for (t, acc) in acc.iter_mut().enumerate() {
            let mut s = _mm512_setzero_si512();
            for j in 0..nsub {
                let v = _mm512_load_si512(c.0[j].as_ptr().add(16 * t) as *const __m512i);
                s = _mm512_add_epi32(s, _mm512_mullo_epi32(v, _mm512_loadu_si512(sc.add(j * ROWS) as *const __m512i)));
            }
            let mut m = _mm512_setzero_si512();
            for i in 0..npairs {
                let bs = _mm512_set1_epi32(*act_pairs.get_unchecked((blk * 8 + i) * TOKENS + t) as i32);
                m = _mm512_dpwssd_epi32(m, _mm512_loadu_si512(wp.add(i * ROWS) as *const __m512i), bs);
            }
            let d8 = _mm512_set1_ps(*act_d.get_unchecked(blk * TOKENS + t));
            if kind == Kind::Q4K {
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s), d), d8, *acc);
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(m), dm), d8, *acc);
            } else {
                let t32 = _mm512_sub_epi32(s, _mm512_slli_epi32(m, 5));
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(t32), d), d8, *acc);
            }
        }
    }
    acc
}

/// Legacy 32-element blocks, two per tile pair: d_w·d_x·Σq·q' (+ m·s for Q4_1).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
unsafe fn tile_group_legacy(kind: Kind, a: *const u8, act_rb: usize, ab: usize, nb: usize, p: &Panel, act_d: &[f32], act_bias: &[f32]) -> [__m512; TOKENS] {
    let mut c = CBuf([[0; 16 * TOKENS]; 16]);
    let mut acc = [_mm512_setzero_ps(); TOKENS];
    let with_bias = kind == Kind::Q4_1;
    for blk in (0..nb).step_by(2) {
        let (aj, bj) = (a.add(blk * ab), (p.q.as_ptr() as *const u8).add(blk * 32 * ROWS));
        if kind.signed() {
            pair_ss(aj, ab, act_rb, bj, 32 * ROWS, c.0[0].as_mut_ptr());
        } else {
            pair_su(aj, ab, act_rb, bj, 32 * ROWS, c.0[0].as_mut_ptr());
        }
        for h in 0..2 {
            let b = blk + h;
            let dw = _mm512_loadu_ps(p.scale.as_ptr().add(b * ROWS));
            let mw = if with_bias { _mm512_loadu_ps(p.bias.as_ptr().add(b * ROWS)) } else { _mm512_setzero_ps() };
            for (t, acc) in acc.iter_mut().enumerate() {
                let v = _mm512_cvtepi32_ps(_mm512_load_si512(c.0[h].as_ptr().add(16 * t) as *const __m512i));
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(v, dw), _mm512_set1_ps(*act_d.get_unchecked(b * TOKENS + t)), *acc);
                if with_bias {
                    *acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(*act_bias.get_unchecked(b * TOKENS + t)), *acc);
                }
            }
        }
    }
    acc
}

macro_rules! tile_pair {
    ($name:ident, $dp:literal) => {
        /// Two tile products into C0 and C1 (1 KiB apart) with tmm0..5 as in [`TileConfig`]:
        /// A1 sits `a_next` bytes after A0, B1 `b_next` bytes after B0.
        #[inline(always)]
        unsafe fn $name(a: *const u8, a_next: usize, a_stride: usize, b: *const u8, b_next: usize, c: *mut i32) {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tileloadd tmm2, [{a} + {sa}*1]",
                "tileloadd tmm4, [{b} + {s64}*1]",
                "tileloadd tmm3, [{a1} + {sa}*1]",
                "tileloadd tmm5, [{b1} + {s64}*1]",
                concat!($dp, " tmm0, tmm2, tmm4"),
                concat!($dp, " tmm1, tmm3, tmm5"),
                "tilestored [{c} + {s64}*1], tmm0",
                "tilestored [{c} + {s64}*1 + {coff}], tmm1",
                a = in(reg) a,
                a1 = in(reg) a.wrapping_add(a_next),
                sa = in(reg) a_stride,
                b = in(reg) b,
                b1 = in(reg) b.wrapping_add(b_next),
                c = in(reg) c,
                s64 = in(reg) 64usize,
                coff = const 4 * 16 * TOKENS,
                options(nostack),
            );
        }
    };
}
// Signed activations times unsigned weights (Q4_K, Q6_K, Q4_1) or signed weights.
tile_pair!(pair_su, "tdpbsud");
tile_pair!(pair_ss, "tdpbssd");
#[cfg(test)]
mod tests {
    /// Where the CPU and kernel offer AMX-INT8, kiln must find it (else prefill silently slows).
    #[test]
    #[cfg(target_os = "linux")]
    fn amx_is_found_where_the_cpu_lists_it() {
        let listed = std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|s| s.contains(" amx_int8") && s.contains(" avx512_vnni"));
        let wanted = listed
            && std::env::var("KILN_NO_AMX").is_err()
            && std::env::var("KILN_FORCE_SCALAR").is_err();
        if wanted {
            assert!(
                super::available(),
                "/proc/cpuinfo lists amx_int8 but the tiles could not be enabled"
            );
        }
    }
}
