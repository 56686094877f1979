// Gated products for the FFN: out[i] = act(gate[i]) * up[i], where act is
// mode 0: SiLU  x / (1 + exp(-x))                              (llama: ggml_swiglu_split)
// mode 1: GELU-tanh 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (gemma: ggml_geglu_split)
//
// Bindings: 0 gate: f32 [n]   1 up: f32 [n]   2 out: f32 [n]   3 p: Params (uniform)
// Workgroup: 256 threads, one element each; grid folded into (groups_x, y).

struct Params {
    n: u32,
    mode: u32,
    groups_x: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wg.x + wg.y * p.groups_x) * 256u + li;
    if (i >= p.n) {
        return;
    }
    let g = gate[i];
    var a: f32;
    if (p.mode == 0u) {
        a = g / (1.0 + exp(-g));
    } else {
        // tanh saturates long before |z| = 10; clamping keeps exp-based tanh from overflowing.
        let z = clamp(SQRT_2_OVER_PI * g * (1.0 + 0.044715 * g * g), -10.0, 10.0);
        a = 0.5 * g * (1.0 + tanh(z));
    }
    out[i] = a * up[i];
}
