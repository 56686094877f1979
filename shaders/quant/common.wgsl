// Byte extraction over a GGUF tensor bound as `w: array<u32>` (declared by the kernel body).
// WGSL has no 8/16-bit storage types, and Q4_0 (18 B), Q4_1 (20 B), Q5_0 (22 B), Q8_0 (34 B) and
// Q6_K (210 B) blocks are not 4-byte aligned, so fields are pulled out of the words that hold them.
// Every f16 field sits at an even byte offset, so `ld_f16` never straddles a word.
//
// Contract with the per-type decode files: `decode_chunk(row_byte, c)` writes elements
// [32c, 32c + 32) of the row starting at byte `row_byte` into `wq`, as f32.

var<private> wq: array<f32, 32>;

fn ld_u8(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xFFu;
}

// Little-endian u32 at any byte offset: stitches the two words it spans.
fn ld_u32(b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) * 8u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}

// IEEE binary16 at an even byte offset, as f32.
fn ld_f16(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

// Sign-extends the low byte of `v`.
fn sext8(v: u32) -> i32 {
    return (bitcast<i32>(v << 24u)) >> 24u;
}

// Mat-vec contract (shaders/mul_mat_vec.wgsl): a row is cut into units of 16 elements, unit g
// covering 4 runs of 4 elements. `unit_x(g)` gives the four runs' element offsets in the row (each a
// multiple of 4, so the activations load as vec4), and `unit_dot(row_byte, g, xs)` returns
// sum_i W[row, i] * x[i] over the unit, xs holding the activations at those runs.

// unit_x for types whose unit g is the 16 consecutive elements 16 g .. 16 g + 16 (F32, F16, Q8_0).
fn unit_x_contiguous(g: u32) -> vec4<u32> {
    let e = g * 16u;
    return vec4<u32>(e, e + 4u, e + 8u, e + 12u);
}

// unit_x for the 32-element blocks whose byte j holds elements j and j + 16 (Q4_0, Q4_1, Q5_0):
// unit g is half h = g % 2 of block g / 2, elements 8 h + [0, 8) and 16 + 8 h + [0, 8).
fn unit_x_nibble_halves(g: u32) -> vec4<u32> {
    let e = (g / 2u) * 32u + 8u * (g % 2u);
    return vec4<u32>(e, e + 4u, e + 16u, e + 20u);
}

// Small unsigned integers (< 2^23) to f32 without an int-to-float conversion, which runs at a
// fraction of the FMA rate on GPUs: 0x4B000000 is 2^23 as f32, and OR-ing v into its mantissa
// gives exactly 2^23 + v.
fn u2f4(v: vec4<u32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(v | vec4<u32>(0x4B000000u)) - vec4<f32>(8388608.0);
}

// The 4 bytes of `q` as vec4<f32>, low byte first.
fn bytes4(q: u32) -> vec4<f32> {
    return u2f4(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xFFu));
}

// The 4 nibbles of `q >> shift` at bits 0, 8, 16 and 24, as vec4<f32>.
fn nibbles4(q: u32, shift: u32) -> vec4<f32> {
    let s = q >> shift;
    return u2f4(vec4<u32>(s, s >> 8u, s >> 16u, s >> 24u) & vec4<u32>(0xFu));
}

// The 4 bytes of `q` as signed values (i8), as vec4<f32>.
fn sbytes4(q: u32) -> vec4<f32> {
    let b = (vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xFFu)) ^ vec4<u32>(0x80u);
    return u2f4(b) - vec4<f32>(128.0);
}

fn hsum4(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}
