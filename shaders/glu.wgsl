// Gated products for the FFN: out[t, i] = act(gate[t, i]) * up[t, i] for i < n, where gate and
// up are column ranges of wider rows: gate[t, i] = g[t * stride + g_off + i],
// up[t, i] = u[t * stride + u_off + i] (g and u may be one buffer holding [gate | up] rows), and
// act is mode 0: SiLU  x / (1 + exp(-x))                          (llama: ggml_swiglu_split)
//        mode 1: GELU-tanh 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (gemma: ggml_geglu_split)
//
// Bindings: 0 g: f32   1 u: f32   2 out: f32 [n_tokens, n]   3 p: Params (uniform)
// Workgroup: 256 threads, one element each; grid folded into (groups_x, y).

struct Params {
    n: u32,
    mode: u32,
    groups_x: u32,
    n_tokens: u32,
    stride: u32,
    g_off: u32,
    u_off: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let e = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (e >= p.n * p.n_tokens) {
        return;
    }
    let t = e / p.n;
    let i = e % p.n;
    let x = g[t * p.stride + p.g_off + i];
    var a: f32;
    if (p.mode == 0u) {
        a = x / (1.0 + exp(-x));
    } else {
        // tanh saturates long before |z| = 10; clamping keeps exp-based tanh from overflowing.
        let z = clamp(SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x), -10.0, 10.0);
        a = 0.5 * x * (1.0 + tanh(z));
    }
    out[e] = a * u[t * p.stride + p.u_off + i];
}
