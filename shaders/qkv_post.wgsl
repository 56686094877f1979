// What happens to the Q, K, V projections between their products and the attention, in one pass:
// optional bias add (llama with attn_q/k/v biases), optional per-head RMSNorm (Gemma's
// attn_q_norm / attn_k_norm), RoPE on Q and K (mode 0 NORM: pairs (2i, 2i+1); mode 2 NEOX:
// pairs (i, i + n_rot/2); dimensions from n_rot on unrotated), then Q to `q_out` and K, V into
// the caches at row pos[t]. Mirrors ggml_add (bias), ggml_rms_norm + ggml_mul (q/k norm),
// ggml_rope_ext without YaRN, and llama.cpp's ggml_cpy of K and V into the cache.
//
// Bindings: 0 qkv: f32 [n_tokens, qkv_stride] (Q at column 0, K at n_head·hd, V after K)
//           1 q_out: f32 [n_tokens, n_head, hd]   2 kc, 3 vc: f32 [capacity, n_head_kv, hd]
//           4 pos: i32 [n_tokens]   5 q_norm, 6 k_norm: f32 [hd]   7 bias: f32 [qkv width]
//           8 p: Params (uniform)
// Workgroup: 128 threads for one (head, token), thread i owns one pair of dimensions (i < hd/2,
// hd <= 256); grid (n_head + 2 n_head_kv, n_tokens): Q heads, then K heads, then V heads.

struct Params {
    n_tokens: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_rot: u32,
    mode: u32,
    freq_base: f32,
    freq_scale: f32,
    qkv_stride: u32,
    eps: f32,
    flags: u32,     // 1: Q norm, 2: K norm, 4: biases
    capacity: u32,  // rows of the caches
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<i32>;
@group(0) @binding(5) var<storage, read> q_norm: array<f32>;
@group(0) @binding(6) var<storage, read> k_norm: array<f32>;
@group(0) @binding(7) var<storage, read> bias: array<f32>;
@group(0) @binding(8) var<uniform> p: Params;

var<workgroup> red: array<f32, 128>;

fn sum128(v: f32, li: u32) -> f32 {
    red[li] = v;
    workgroupBarrier();
    for (var s = 64u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let t = red[0];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    let hd = p.head_dim;
    let kvw = p.n_head_kv * hd;
    let qw = p.n_head * hd;
    // 0: Q, 1: K, 2: V; head index within its kind; column of the head in a qkv row.
    var kind = 0u;
    var hh = h;
    if (h >= p.n_head + p.n_head_kv) {
        kind = 2u;
        hh = h - p.n_head - p.n_head_kv;
    } else if (h >= p.n_head) {
        kind = 1u;
        hh = h - p.n_head;
    }
    let col = select(select(qw + kvw + hh * hd, qw + hh * hd, kind == 1u), hh * hd, kind == 0u);
    let position = pos[t];
    let row = u32(max(position, 0));

    // This thread's pair of dimensions and whether it rotates.
    let half_rot = p.n_rot / 2u;
    let owns_pair = li < hd / 2u;
    var d0 = 2u * li;
    var d1 = 2u * li + 1u;
    var rotated = 2u * li < p.n_rot;
    if (p.mode == 2u) {
        if (li < half_rot) {
            d0 = li;
            d1 = li + half_rot;
            rotated = true;
        } else {
            d0 = p.n_rot + 2u * (li - half_rot);
            d1 = d0 + 1u;
            rotated = false;
        }
    }
    var x0 = 0.0;
    var x1 = 0.0;
    if (owns_pair) {
        let src = t * p.qkv_stride + col;
        x0 = qkv[src + d0];
        x1 = qkv[src + d1];
        if ((p.flags & 4u) != 0u) {
            x0 += bias[col + d0];
            x1 += bias[col + d1];
        }
    }
    let norm_q = kind == 0u && (p.flags & 1u) != 0u;
    let norm_k = kind == 1u && (p.flags & 2u) != 0u;
    if (norm_q || norm_k) {
        // Uniform per workgroup: every thread of a head takes this branch or none does.
        let inv = inverseSqrt(sum128(x0 * x0 + x1 * x1, li) / f32(hd) + p.eps);
        if (owns_pair) {
            if (norm_q) {
                x0 = x0 * inv * q_norm[d0];
                x1 = x1 * inv * q_norm[d1];
            } else {
                x0 = x0 * inv * k_norm[d0];
                x1 = x1 * inv * k_norm[d1];
            }
        }
    }
    if (!owns_pair) {
        return;
    }
    if (kind != 2u && rotated) {
        // Pair li is rotation index li in both modes.
        let theta = f32(position) * p.freq_scale * pow(p.freq_base, -2.0 * f32(li) / f32(p.n_rot));
        let c = cos(theta);
        let s = sin(theta);
        let r0 = x0 * c - x1 * s;
        let r1 = x0 * s + x1 * c;
        x0 = r0;
        x1 = r1;
    }
    if (kind == 0u) {
        let dst = (t * p.n_head + hh) * hd;
        q_out[dst + d0] = x0;
        q_out[dst + d1] = x1;
    } else if (row < p.capacity) {
        let dst = row * kvw + hh * hd;
        if (kind == 1u) {
            kc[dst + d0] = x0;
            kc[dst + d1] = x1;
        } else {
            vc[dst + d0] = x0;
            vc[dst + d1] = x1;
        }
    }
}
