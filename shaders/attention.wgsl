// Attention over a KV cache for a batch of query tokens, softmax inside (online, tile by tile):
// out[t, h, :] = sum_j softmax_j(scale * q[t, h, :] . k[j, h / g, :]) * v[j, h / g, :]
// with g = n_head / n_head_kv (GQA). Query t sits at position pos[t] and sees keys j with
// j <= pos[t] (causal) and, when window > 0, pos[t] - j < window (sliding window); the cache
// holds `capacity` rows.
// Mirrors ggml_soft_max_ext(kq, mask, scale) followed by the kqv product.
//
// Bindings: 0 q: f32 [n_tokens, n_head, head_dim]   1 k, 2 v: f32 [kv_capacity, n_head_kv, head_dim]
//           3 out: f32 [n_tokens, n_head, head_dim]   4 pos: i32 [n_tokens]   5 p: Params (uniform)
// Workgroup: 64 threads per (head, token) = grid (n_head, n_tokens). Keys are taken in tiles of
// 64 (one key per thread); each thread owns output dims li, li + 64, ... (head_dim <= 256).

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_tokens: u32,
    capacity: u32,
    _pad0: u32,
    window: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<i32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> q_s: array<f32, 256>;
var<workgroup> p_s: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn reduce_max(li: u32) -> f32 {
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(li: u32) -> f32 {
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] += red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    let hd = p.head_dim;
    let kvh = h / (p.n_head / p.n_head_kv);
    let kv_stride = p.n_head_kv * hd;
    let qpos = u32(max(pos[t], 0));
    let n_keys = min(p.capacity, qpos + 1u);
    var start = 0u;
    if (p.window > 0u && qpos + 1u > p.window) {
        start = qpos + 1u - p.window;
    }
    let qb = (t * p.n_head + h) * hd;
    for (var d = li; d < hd; d += 64u) {
        q_s[d] = q[qb + d];
    }
    workgroupBarrier();

    var m = -1.0e30;
    var l = 0.0;
    var acc: array<f32, 4>;
    for (var tile = start; tile < n_keys; tile += 64u) {
        let j = tile + li;
        var s = -1.0e30;
        if (j < n_keys) {
            let kb = j * kv_stride + kvh * hd;
            var dot = 0.0;
            for (var d = 0u; d < hd; d++) {
                dot = fma(q_s[d], k[kb + d], dot);
            }
            s = dot * p.scale;
        }
        red[li] = s;
        let m_new = max(m, reduce_max(li));
        var e = 0.0;
        if (j < n_keys) {
            e = exp(s - m_new);
        }
        p_s[li] = e;
        red[li] = e;
        let tile_sum = reduce_sum(li);
        let corr = exp(m - m_new);
        l = l * corr + tile_sum;
        let n_here = min(64u, n_keys - tile);
        for (var r = 0u; r < 4u; r++) {
            let d = li + 64u * r;
            if (d < hd) {
                var a = acc[r] * corr;
                for (var jj = 0u; jj < n_here; jj++) {
                    a = fma(p_s[jj], v[(tile + jj) * kv_stride + kvh * hd + d], a);
                }
                acc[r] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var r = 0u; r < 4u; r++) {
        let d = li + 64u * r;
        if (d < hd) {
            out[qb + d] = acc[r] * inv;
        }
    }
}
