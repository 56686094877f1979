// block_q4_0 (18 bytes, 4.5 bpw): d: f16 @0, qs[16] @2.
// Byte j holds element j (low nibble) and element j+16 (high nibble); y = d * (q - 8).
// Mirrors dequantize_row_q4_0. One chunk = one block.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + c * 18u;
    let d = ld_f16(b);
    for (var k = 0u; k < 4u; k++) {
        let q = ld_u32(b + 2u + 4u * k);
        for (var i = 0u; i < 4u; i++) {
            let v = (q >> (8u * i)) & 0xFFu;
            wq[4u * k + i] = d * (f32(v & 0xFu) - 8.0);
            wq[4u * k + i + 16u] = d * (f32(v >> 4u) - 8.0);
        }
    }
}

// Mat-vec unit g: half h = g % 2 of block g / 2: qs bytes 8 h .. 8 h + 8, elements 8 h + [0, 8)
// (low nibbles) and 16 + 8 h + [0, 8) (high nibbles).
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_nibble_halves(g);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let b = row_byte + (g / 2u) * 18u;
    let q0 = ld_u32(b + 2u + 8u * (g % 2u));
    let q1 = ld_u32(b + 6u + 8u * (g % 2u));
    let s = dot(nibbles4(q0, 0u), xs[0]) + dot(nibbles4(q1, 0u), xs[1]) + dot(nibbles4(q0, 4u), xs[2]) + dot(nibbles4(q1, 4u), xs[3]);
    return ld_f16(b) * (s - 8.0 * hsum4(xs[0] + xs[1] + xs[2] + xs[3]));
}
