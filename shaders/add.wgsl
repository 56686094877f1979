// Residual add: out[i] = a[i] + b[i]. Mirrors ggml_add on same-shape tensors.
//
// Bindings: 0 a: f32 [n]   1 b: f32 [n]   2 out: f32 [n]   3 p: Params (uniform)
// Workgroup: 256 threads, one element each; grid folded into (groups_x, y).

struct Params {
    n: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i < p.n) {
        out[i] = a[i] + b[i];
    }
}
