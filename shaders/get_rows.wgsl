// Embedding lookup with dequantization: out[t, :] = scale * W[ids[t], :].
// Prepended by quant/common.wgsl and one quant/<type>.wgsl. Mirrors ggml_get_rows followed by
// an optional ggml_scale (Gemma multiplies the embedding by sqrt(n_embd)).
//
// Bindings: 0 w: GGUF rows [row_start, row_start + n_rows) of the tensor as array<u32>
//           1 ids: u32 [n_tokens]   2 out: f32 [n_tokens, k]   3 p: Params (uniform)
// Workgroup: 64 threads, one 32-element chunk each; grid (ceil(k / 32 / 64), n_tokens).
// A split tensor runs one dispatch per split; each writes only the tokens whose row it holds.

struct Params {
    k: u32,
    row_start: u32,
    n_rows: u32,
    row_bytes: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let t = wg.y;
    let c = wg.x * 64u + li;
    let id = ids[t];
    if (c >= p.k / 32u || id < p.row_start || id - p.row_start >= p.n_rows) {
        return;
    }
    decode_chunk((id - p.row_start) * p.row_bytes, c);
    let ob = t * p.k + c * 32u;
    for (var i = 0u; i < 32u; i++) {
        out[ob + i] = wq[i] * p.scale;
    }
}
