// RMSNorm with weight: y[r, i] = x[r, i] / sqrt(mean_i(x[r, :]^2) + eps) * w[i], plus res[r, i]
// when p.residual = 1 (Gemma's post-norms followed by the residual add, fused).
// Mirrors ggml_rms_norm followed by ggml_mul with the norm weight (and ggml_add). The weight has length n and
// is shared by every row, so the per-head variant (Gemma's attn_q_norm / attn_k_norm) is the
// same kernel run with n = head_dim over n_tokens * n_heads rows.
//
// Bindings: 0 x: f32 [n_rows, n]   1 w: f32 [n]   2 y: f32 [n_rows, n]   3 res: f32 [n_rows, n]
//           4 p: Params (uniform)
// Workgroup: 256 threads per row (a decode step's norm is one row: its latency is the cost),
// sum of squares reduced in workgroup memory.
// Grid: n_rows workgroups folded into (groups_x, y).

struct Params {
    n: u32,
    n_rows: u32,
    eps: f32,
    groups_x: u32,
    residual: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> res: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.x + wg.y * p.groups_x;
    if (row >= p.n_rows) {
        return;
    }
    let base = row * p.n;
    var ss = 0.0;
    for (var i = li; i < p.n; i += 256u) {
        let v = x[base + i];
        ss = fma(v, v, ss);
    }
    red[li] = ss;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(red[0] / f32(p.n) + p.eps);
    for (var i = li; i < p.n; i += 256u) {
        var v = x[base + i] * inv * w[i];
        if (p.residual != 0u) {
            v += res[base + i];
        }
        y[base + i] = v;
    }
}
