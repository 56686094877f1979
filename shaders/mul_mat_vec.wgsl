// Fused dequantize + mat-vec (one token): y[out_offset + r] = epilogue(sum_k W[r, k] * x'[k]),
// x' = x, or with p.norm = 1 the RMS-normed x' = x / sqrt(mean(x^2) + eps) * nw (the norm that
// precedes the product, fused). Epilogues (p.mode): 0 store, 1 add to y (a residual add fused),
// 2 / 3 gated FFN: W holds gate rows [0, half) then up rows [half, 2 half), and output row r is
// SiLU (2) or GELU-tanh (3) of gate row r times up row r.
// Prepended by quant/common.wgsl, one quant/<type>.wgsl (unit_x, unit_dot) and one reduction
// (reduce_subgroup.wgsl or reduce_shared.wgsl, which also declares the entry point's `Ids`).
// Mirrors kiln_kernels::matmul with one activation row (ggml_mul_mat, src1 ne[1] = 1), preceded
// by ggml_rms_norm + ggml_mul and followed by ggml_add or ggml_swiglu/geglu_split.
//
// Bindings: 0 w: GGUF rows as array<u32> (rows [0, n_rows) of one split of the tensor)
//           1 x: f32 [k] as vec4   2 y: f32 [>= out_offset + n_rows]   3 nw: f32 [k] as vec4
//           4 p: Params (uniform)
// Workgroup: 128 threads = 4 row groups of 32 lanes; a row group owns 2 rows (adjacent ones, or
// for the gated FFN gate row r and up row r). Lane l takes the 16-element units l, l + 32, ...
// of the row, two per pass (for K-quants 16 lanes read one super-block's quants contiguously),
// loads their activations once as 4 vec4 and uses them for both rows; the 32 lanes' f32 sums are then
// reduced (subgroupAdd where the adapter has subgroups of at most 32 lanes, else a
// workgroup-memory tree).
// Grid: ceil(rows out / 8) (ceil(half / 4) for the gated FFN) workgroups, folded into
// (groups_x, y) to respect the 65535 limit.

struct Params {
    k: u32,
    n_rows: u32,
    row_bytes: u32,
    out_offset: u32,
    groups_x: u32,
    mode: u32,
    half: u32,
    norm: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

var<workgroup> norm_red: array<f32, 128>;

// 1 / rms(x) over the whole activation row, from all 128 invocations.
fn inv_rms(li: u32) -> f32 {
    var ss = 0.0;
    for (var i = li; i < p.k / 4u; i += 128u) {
        let v = x[i];
        ss += dot(v, v);
    }
    norm_red[li] = ss;
    workgroupBarrier();
    for (var s = 64u; s > 0u; s = s >> 1u) {
        if (li < s) {
            norm_red[li] += norm_red[li + s];
        }
        workgroupBarrier();
    }
    return inverseSqrt(norm_red[0] / f32(p.k) + p.eps);
}

// Unit g's activations, times the norm weight when p.norm = 1 (the 1 / rms(x) factor is applied
// to the row sums instead, once per row).
fn load_x(g: u32) -> array<vec4<f32>, 4> {
    let o = unit_x(g) >> vec4<u32>(2u);
    let xs = array<vec4<f32>, 4>(x[o.x], x[o.y], x[o.z], x[o.w]);
    if (p.norm == 0u) {
        return xs;
    }
    return array<vec4<f32>, 4>(xs[0] * nw[o.x], xs[1] * nw[o.y], xs[2] * nw[o.z], xs[3] * nw[o.w]);
}

fn act(g: f32) -> f32 {
    if (p.mode == 2u) {
        return g / (1.0 + exp(-g));
    }
    // tanh saturates long before |z| = 10; clamping keeps exp-based tanh from overflowing.
    let z = clamp(SQRT_2_OVER_PI * g * (1.0 + 0.044715 * g * g), -10.0, 10.0);
    return 0.5 * g * (1.0 + tanh(z));
}

@compute @workgroup_size(128)
fn main(ids: Ids) {
    let li = ids.li;
    let lane = li % 32u;
    let rg = (ids.wg.x + ids.wg.y * p.groups_x) * 4u + li / 32u;
    let glu = p.mode >= 2u;
    var inv = 1.0;
    if (p.norm != 0u) {
        inv = inv_rms(li);
    }
    var r0 = rg * 2u;
    var r1 = r0 + 1u;
    var ok0 = r0 < p.n_rows;
    var ok1 = r1 < p.n_rows;
    if (glu) {
        r0 = rg;
        r1 = rg + p.half;
        ok0 = rg < p.half;
        ok1 = ok0;
    }
    var acc0 = 0.0;
    var acc1 = 0.0;
    let n_units = p.k / 16u;
    if (ok0) {
        let rb0 = r0 * p.row_bytes;
        let rb1 = r1 * p.row_bytes;
        // Two units per lane per pass (g and g + 32), all loads issued before the arithmetic
        // that needs them; a second unit past the row's end repeats the last one and is dropped.
        for (var g = lane; g < n_units; g += 64u) {
            let has2 = g + 32u < n_units;
            let g2 = select(n_units - 1u, g + 32u, has2);
            let xa = load_x(g);
            let xb = load_x(g2);
            acc0 += unit_dot(rb0, g, xa) + select(0.0, unit_dot(rb0, g2, xb), has2);
            if (ok1) {
                acc1 += unit_dot(rb1, g, xa) + select(0.0, unit_dot(rb1, g2, xb), has2);
            }
        }
    }
    let s0 = row_sum(acc0, ids) * inv;
    let s1 = row_sum(acc1, ids) * inv;
    if (lane != 0u || !ok0) {
        return;
    }
    if (glu) {
        y[p.out_offset + r0] = act(s0) * s1;
        return;
    }
    let i0 = p.out_offset + r0;
    y[i0] = select(s0, y[i0] + s0, p.mode == 1u);
    if (ok1) {
        y[i0 + 1u] = select(s1, y[i0 + 1u] + s1, p.mode == 1u);
    }
}
