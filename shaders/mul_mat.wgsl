// Fused dequantize + mat-mat for prefill: Y[t, out_offset + r] (+)= sum_k W[r, k] * X[t, k]
// for t in [0, n_tokens). Prepended by quant/common.wgsl and one quant/<type>.wgsl (decode_chunk).
// Mirrors kiln_kernels::matmul (ggml_mul_mat with src1 ne[1] = n_tokens).
//
// Bindings: 0 w: GGUF rows as array<u32>   1 x: f32 [n_tokens, k]
//           2 y: f32 [n_tokens, y_stride]   3 p: Params (uniform)
// Workgroup: 256 threads own a tile of 64 weight rows x 64 tokens; thread (tr, tc) = (li / 16,
// li % 16) accumulates rows 4 tr .. 4 tr + 4 x tokens 4 tc .. 4 tc + 4 in f32 registers. The K
// dimension goes 32 elements at a time: 64 threads each dequantize one row's 32-element chunk
// into workgroup memory, all 256 load 8 activations each, and every thread then reads 4 weights
// and 4 activations (two vec4) per element for 16 FMAs. Both tiles are stored k-major
// ([32][64]) so those reads are consecutive. 16 KiB of workgroup memory (WebGPU's minimum).
// With p.accumulate = 1 the result is added to y (a residual add fused into the product).
// Grid: (ceil(n_rows / 64) folded into (groups_x, y), ceil(n_tokens / 64)).

struct Params {
    k: u32,
    n_rows: u32,
    row_bytes: u32,
    out_offset: u32,
    groups_x: u32,
    n_tokens: u32,
    y_stride: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const TILE: u32 = 64u;

var<workgroup> w_s: array<vec4<f32>, 512>;  // [32 k][64 rows] as [32][16] vec4
var<workgroup> x_s: array<vec4<f32>, 512>;  // [32 k][64 tokens] as [32][16] vec4

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = (wg.x + wg.y * p.groups_x) * TILE;
    let tok0 = wg.z * TILE;
    let tr = li / 16u;
    let tc = li % 16u;
    var acc: array<vec4<f32>, 4>;  // acc[i][j]: row 4 tr + i, token 4 tc + j
    let n_chunks = p.k / 32u;
    // Activation loads: token xt of the tile, 8 elements from 8 xq of the chunk.
    let xt = li / 4u;
    let xq = li % 4u;
    for (var c = 0u; c < n_chunks; c++) {
        if (li < TILE) {
            let r = row0 + li;
            if (r < p.n_rows) {
                decode_chunk(r * p.row_bytes, c);
            } else {
                for (var i = 0u; i < 32u; i++) {
                    wq[i] = 0.0;
                }
            }
            // Column li of the k-major tile: element i of vec4 (i * 16 + li / 4), lane li % 4.
            for (var i = 0u; i < 32u; i++) {
                w_s[i * 16u + li / 4u][li % 4u] = wq[i];
            }
        }
        var xa = vec4<f32>(0.0);
        var xb = vec4<f32>(0.0);
        if (tok0 + xt < p.n_tokens) {
            let xi = ((tok0 + xt) * p.k + c * 32u + 8u * xq) / 4u;
            xa = x[xi];
            xb = x[xi + 1u];
        }
        for (var i = 0u; i < 4u; i++) {
            x_s[(8u * xq + i) * 16u + xt / 4u][xt % 4u] = xa[i];
            x_s[(8u * xq + 4u + i) * 16u + xt / 4u][xt % 4u] = xb[i];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 32u; kk++) {
            let a = w_s[kk * 16u + tr];
            let b = x_s[kk * 16u + tc];
            acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
            acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
            acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
            acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + 4u * tr + i;
        if (r >= p.n_rows) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let t = tok0 + 4u * tc + j;
            if (t < p.n_tokens) {
                let o = t * p.y_stride + p.out_offset + r;
                y[o] = select(acc[i][j], y[o] + acc[i][j], p.accumulate != 0u);
            }
        }
    }
}
