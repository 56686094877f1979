// block_q4_1 (20 bytes, 5.0 bpw): d: f16 @0, m: f16 @2, qs[16] @4.
// Byte j holds element j (low nibble) and element j+16 (high nibble); y = d * q + m.
// Mirrors dequantize_row_q4_1. One chunk = one block.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + c * 20u;
    let d = ld_f16(b);
    let m = ld_f16(b + 2u);
    for (var k = 0u; k < 4u; k++) {
        let q = ld_u32(b + 4u + 4u * k);
        for (var i = 0u; i < 4u; i++) {
            let v = (q >> (8u * i)) & 0xFFu;
            wq[4u * k + i] = d * f32(v & 0xFu) + m;
            wq[4u * k + i + 16u] = d * f32(v >> 4u) + m;
        }
    }
}

// Mat-vec unit g: as Q4_0's (qs bytes 8 h .. 8 h + 8 of block g / 2), y = d * q + m.
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_nibble_halves(g);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let bw = (row_byte + (g / 2u) * 20u) >> 2u;
    let dm = unpack2x16float(w[bw]);
    let q0 = w[bw + 1u + 2u * (g % 2u)];
    let q1 = w[bw + 2u + 2u * (g % 2u)];
    let s = dot(nibbles4(q0, 0u), xs[0]) + dot(nibbles4(q1, 0u), xs[1]) + dot(nibbles4(q0, 4u), xs[2]) + dot(nibbles4(q1, 4u), xs[3]);
    return dm.x * s + dm.y * hsum4(xs[0] + xs[1] + xs[2] + xs[3]);
}
