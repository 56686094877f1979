// Fused dequantize + mat-vec: y[out_offset + r] (+)= sum_k W[r, k] * x[k]  (one token).
// Prepended by quant/common.wgsl, one quant/<type>.wgsl (unit_x, unit_dot) and one reduction
// (reduce_subgroup.wgsl or reduce_shared.wgsl, which also declares the entry point's `Ids`).
// Mirrors kiln_kernels::matmul with one activation row (ggml_mul_mat, src1 ne[1] = 1).
//
// Bindings: 0 w: GGUF rows as array<u32> (rows [0, n_rows) of one split of the tensor)
//           1 x: f32 [k] as vec4   2 y: f32 [>= out_offset + n_rows]   3 p: Params (uniform)
// Workgroup: 128 threads = 4 row groups of 32 lanes; a row group owns ROWS = 2 adjacent rows.
// Lane l takes the 16-element units l, l + 32, ... of the row (for K-quants 16 lanes read one
// super-block's quants contiguously), loads their activations once as 4 vec4 and uses them for
// both rows; the 32 lanes' f32 sums are then reduced (subgroupAdd where the adapter has
// subgroups of at most 32 lanes, else a workgroup-memory tree).
// With p.accumulate = 1 the result is added to y (a residual add fused into the product).
// Grid: ceil(n_rows / 8) workgroups, folded into (groups_x, y) to respect the 65535 limit.

struct Params {
    k: u32,
    n_rows: u32,
    row_bytes: u32,
    out_offset: u32,
    groups_x: u32,
    accumulate: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const ROWS: u32 = 2u;

@compute @workgroup_size(128)
fn main(ids: Ids) {
    let li = ids.li;
    let lane = li % 32u;
    let row0 = ((ids.wg.x + ids.wg.y * p.groups_x) * 4u + li / 32u) * ROWS;
    var acc0 = 0.0;
    var acc1 = 0.0;
    let n_units = p.k / 16u;
    if (row0 < p.n_rows) {
        let rb0 = row0 * p.row_bytes;
        let two = row0 + 1u < p.n_rows;
        for (var g = lane; g < n_units; g += 32u) {
            let o = unit_x(g) >> vec4<u32>(2u);
            let xs = array<vec4<f32>, 4>(x[o.x], x[o.y], x[o.z], x[o.w]);
            acc0 += unit_dot(rb0, g, xs);
            if (two) {
                acc1 += unit_dot(rb0 + p.row_bytes, g, xs);
            }
        }
    }
    let s0 = row_sum(acc0, ids);
    let s1 = row_sum(acc1, ids);
    if (lane == 0u) {
        for (var r = 0u; r < ROWS; r++) {
            let row = row0 + r;
            if (row < p.n_rows) {
                let i = p.out_offset + row;
                let v = select(s0, s1, r == 1u);
                y[i] = select(v, y[i] + v, p.accumulate != 0u);
            }
        }
    }
}
