// Attention over a KV cache for a batch of query tokens, softmax inside (online, tile by tile):
// out[t, h, :] = sum_j softmax_j(scale * q[t, h, :] . k[j, h / g, :]) * v[j, h / g, :]
// with g = n_head / n_head_kv (GQA). Query t sits at position pos[t] and sees keys j with
// j <= pos[t] (causal) and, when window > 0, pos[t] - j < window (sliding window); the cache
// holds `capacity` rows. Mirrors ggml_soft_max_ext(kq, mask, scale) followed by the kqv product.
//
// Bindings: 0 q: f32 [n_tokens, n_head, head_dim]   1 k, 2 v: f32 [capacity, n_head_kv, head_dim]
//           (q and k as vec4)   3 out: f32 [n_tokens, n_head, head_dim]   4 pos: i32 [n_tokens]
//           5 p: Params (uniform)
// Workgroup: 256 threads per (head, token) = grid (n_head, n_tokens); head_dim a multiple of 16,
// at most 256. Keys go in tiles of 64: for the scores, 4 threads share a key, each reading a
// quarter of its row as contiguous vec4s; then thread d < head_dim owns output dimension d and
// reads the tile's V rows at d (consecutive threads, consecutive addresses).

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

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<i32>;
@group(0) @binding(5) var<uniform> p: Params;

const TILE: u32 = 64u;

var<workgroup> q_s: array<vec4<f32>, 64>;   // the query row, scaled
var<workgroup> part: array<f32, 256>;       // [key][quarter] partial dot products
var<workgroup> p_s: array<f32, 64>;         // the tile's softmax numerators
var<workgroup> red: array<f32, 64>;

// Max (op 0) or sum (op 1) of red[0..64) into red[0]; every thread returns it.
fn reduce64(li: u32, op: u32) -> f32 {
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (li < s) {
            red[li] = select(red[li] + red[li + s], max(red[li], red[li + s]), op == 0u);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let h = wg.x;
    let t = wg.y;
    let hd = p.head_dim;
    let hd4 = hd / 4u;
    let kvh = h / (p.n_head / p.n_head_kv);
    let kv_stride = p.n_head_kv * hd;
    let qpos = u32(max(pos[t], 0));
    let n_keys = min(p.capacity, qpos + 1u);
    var start = 0u;
    if (p.window > 0u && qpos + 1u > p.window) {
        start = qpos + 1u - p.window;
    }
    let qb = (t * p.n_head + h) * hd;
    if (li < hd4) {
        q_s[li] = q[qb / 4u + li] * p.scale;
    }
    workgroupBarrier();

    // Score work: key kj = li / 4 of the tile, quarter qt = li % 4 of its row.
    let kj = li / 4u;
    let qt = li % 4u;
    let per = hd4 / 4u;  // vec4s per quarter
    var m = -1.0e30;
    var l = 0.0;
    var acc = 0.0;       // output dimension li
    for (var tile = start; tile < n_keys; tile += TILE) {
        let j = tile + kj;
        var dot_part = 0.0;
        if (j < n_keys) {
            let kb = (j * kv_stride + kvh * hd) / 4u + qt * per;
            for (var i = 0u; i < per; i++) {
                dot_part += dot(q_s[qt * per + i], k[kb + i]);
            }
        }
        part[li] = dot_part;
        workgroupBarrier();
        var s = -1.0e30;
        if (li < TILE && tile + li < n_keys) {
            s = part[4u * li] + part[4u * li + 1u] + part[4u * li + 2u] + part[4u * li + 3u];
        }
        if (li < TILE) {
            red[li] = s;
        }
        let m_new = max(m, reduce64(li, 0u));
        var e = 0.0;
        if (li < TILE && tile + li < n_keys) {
            e = exp(s - m_new);
        }
        if (li < TILE) {
            p_s[li] = e;
            red[li] = e;
        }
        let tile_sum = reduce64(li, 1u);
        let corr = exp(m - m_new);
        l = l * corr + tile_sum;
        let n_here = min(TILE, n_keys - tile);
        if (li < hd) {
            var a = acc * corr;
            let vb = tile * kv_stride + kvh * hd + li;
            for (var jj = 0u; jj < n_here; jj++) {
                a = fma(p_s[jj], v[vb + jj * kv_stride], a);
            }
            acc = a;
        }
        m = m_new;
        workgroupBarrier();
    }
    if (li < hd) {
        out[qb + li] = acc * select(0.0, 1.0 / l, l > 0.0);
    }
}
