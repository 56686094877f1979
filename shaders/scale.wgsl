// Scale in place: x[i] *= s. Mirrors ggml_scale (Gemma's Q *= 1/sqrt(head_dim)).
//
// Bindings: 0 x: f32 [n] read_write   1 p: Params (uniform)
// Workgroup: 256 threads, one element each; grid folded into (groups_x, y).

struct Params {
    n: u32,
    groups_x: u32,
    s: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i < p.n) {
        x[i] *= p.s;
    }
}
