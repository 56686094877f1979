// Fused dequantize + mat-vec: y[out_offset + r] = sum_k W[r, k] * x[k]  (one token).
// Prepended by quant/common.wgsl and one quant/<type>.wgsl that supplies decode_chunk.
// Mirrors kiln_kernels::matmul with one activation row (ggml_mul_mat, src1 ne[1] = 1).
//
// Bindings: 0 w: GGUF rows as array<u32> (rows [0, n_rows) of one split of the tensor)
//           1 x: f32 [k]   2 y: f32 [>= out_offset + n_rows]   3 p: Params (uniform)
// Workgroup: 64 threads = 4 rows x 16 lanes; a lane strides over the row's 32-element chunks,
// accumulates in f32, and the 16 lanes of a row reduce through workgroup memory.
// Grid: ceil(n_rows / 4) workgroups, folded into (groups_x, y) to respect the 65535 limit.

struct Params {
    k: u32,
    n_rows: u32,
    row_bytes: u32,
    out_offset: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const LANES: u32 = 16u;
const ROWS: u32 = 4u;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = (wg.x + wg.y * p.groups_x) * ROWS + li / LANES;
    let lane = li % LANES;
    var acc = 0.0;
    if (row < p.n_rows) {
        let rb = row * p.row_bytes;
        let n_chunks = p.k / 32u;
        for (var c = lane; c < n_chunks; c += LANES) {
            decode_chunk(rb, c);
            let xb = c * 32u;
            for (var i = 0u; i < 32u; i++) {
                acc = fma(wq[i], x[xb + i], acc);
            }
        }
    }
    partial[li] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            partial[li] += partial[li + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n_rows) {
        y[p.out_offset + row] = partial[li];
    }
}
