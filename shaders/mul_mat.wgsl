// Fused dequantize + mat-mat for prefill: Y[t, out_offset + r] = sum_k W[r, k] * X[t, k]
// for t in [0, n_tokens). Prepended by quant/common.wgsl and one quant/<type>.wgsl.
// Mirrors kiln_kernels::matmul (ggml_mul_mat with src1 ne[1] = n_tokens).
//
// Bindings: 0 w: GGUF rows as array<u32>   1 x: f32 [n_tokens, k]
//           2 y: f32 [n_tokens, y_stride]   3 p: Params (uniform)
// With p.accumulate = 1 the result is added to y (a residual add fused into the product).
// Workgroup: 64 threads = 4 rows x 16 lanes, and a tile of up to 8 tokens (grid z): each chunk of
// weights is dequantized once into registers and reused for all 8 tokens. f32 accumulation;
// the 16 lanes of a row reduce through workgroup memory.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const LANES: u32 = 16u;
const ROWS: u32 = 4u;
const TOKENS: u32 = 8u;

var<workgroup> partial: array<f32, 512>;  // [TOKENS][64]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = (wg.x + wg.y * p.groups_x) * ROWS + li / LANES;
    let lane = li % LANES;
    let t0 = wg.z * TOKENS;
    let nt = min(TOKENS, p.n_tokens - t0);
    var acc: array<f32, 8>;
    if (row < p.n_rows) {
        let rb = row * p.row_bytes;
        let n_chunks = p.k / 32u;
        for (var c = lane; c < n_chunks; c += LANES) {
            decode_chunk(rb, c);
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.k + c * 32u;
                var s = 0.0;
                for (var i = 0u; i < 32u; i++) {
                    s = fma(wq[i], x[xb + i], s);
                }
                acc[t] += s;
            }
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        partial[t * 64u + li] = acc[t];
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            for (var t = 0u; t < TOKENS; t++) {
                partial[t * 64u + li] += partial[t * 64u + li + s];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n_rows) {
        for (var t = 0u; t < nt; t++) {
            let i = (t0 + t) * p.y_stride + p.out_offset + row;
            y[i] = select(partial[t * 64u + li], y[i] + partial[t * 64u + li], p.accumulate != 0u);
        }
    }
}
