// Rotary position embedding, in place on x: f32 [n_tokens, n_heads, head_dim].
// theta_i = pos[t] * freq_scale * freq_base^(-2i / n_rot) for i in [0, n_rot / 2); dimensions at
// or beyond n_rot are left unchanged. mode 0 = NORM (llama: rotates (x[2i], x[2i+1])),
// mode 2 = NEOX (gemma, qwen: rotates (x[i], x[i + n_rot/2])), matching ggml's rope mode bits.
// (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos). Mirrors ggml_rope_ext without YaRN.
//
// Bindings: 0 x: f32 read_write   1 pos: i32 [n_tokens]   2 p: Params (uniform)
// Workgroup: 64 threads, one rotated pair each; grid folded into (groups_x, y).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    mode: u32,
    freq_base: f32,
    freq_scale: f32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> pos: array<i32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let half_rot = p.n_rot / 2u;
    let gid = (wg.x + wg.y * p.groups_x) * 64u + li;
    if (gid >= p.n_tokens * p.n_heads * half_rot) {
        return;
    }
    let i = gid % half_rot;
    let th = gid / half_rot;          // token * n_heads + head
    let t = th / p.n_heads;
    let base = th * p.head_dim;
    let theta = f32(pos[t]) * p.freq_scale * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot));
    let c = cos(theta);
    let s = sin(theta);
    var i0: u32;
    var i1: u32;
    if (p.mode == 2u) {
        i0 = base + i;
        i1 = base + i + half_rot;
    } else {
        i0 = base + 2u * i;
        i1 = base + 2u * i + 1u;
    }
    let x0 = x[i0];
    let x1 = x[i1];
    x[i0] = x0 * c - x1 * s;
    x[i1] = x0 * s + x1 * c;
}
