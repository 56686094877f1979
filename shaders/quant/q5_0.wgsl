// block_q5_0 (22 bytes, 5.5 bpw): d: f16 @0, qh: u32 LE @2, qs[16] @6.
// Element j (j < 16): low nibble of qs[j] | bit j of qh << 4; element j+16: high nibble |
// bit j+16 of qh << 4; y = d * (q - 16). Mirrors dequantize_row_q5_0. One chunk = one block.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + c * 22u;
    let d = ld_f16(b);
    let qh = ld_u32(b + 2u);
    for (var k = 0u; k < 4u; k++) {
        let q = ld_u32(b + 6u + 4u * k);
        for (var i = 0u; i < 4u; i++) {
            let j = 4u * k + i;
            let v = (q >> (8u * i)) & 0xFFu;
            let lo = (v & 0xFu) | (((qh >> j) & 1u) << 4u);
            let hi = (v >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u);
            wq[j] = d * (f32(lo) - 16.0);
            wq[j + 16u] = d * (f32(hi) - 16.0);
        }
    }
}

// Mat-vec unit g: as Q4_0's (qs bytes 8 h .. 8 h + 8 of block g / 2); the fifth bit of element j
// is bit j of qh (j < 16) and of element j + 16 bit j + 16.
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_nibble_halves(g);
}

// Elements j .. j + 4 from nibbles at bits 0, 8, 16, 24 of `q >> shift` and bits j .. j + 3 of qh.
fn q5_4(q: u32, shift: u32, qh: u32, j: u32) -> vec4<f32> {
    let s = q >> shift;
    let lo = vec4<u32>(s, s >> 8u, s >> 16u, s >> 24u) & vec4<u32>(0xFu);
    let hi = ((vec4<u32>(qh) >> vec4<u32>(j, j + 1u, j + 2u, j + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    return u2f4(lo | hi);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let b = row_byte + (g / 2u) * 22u;
    let h = 8u * (g % 2u);
    let qh = ld_u32(b + 2u);
    let q0 = ld_u32(b + 6u + h);
    let q1 = ld_u32(b + 10u + h);
    let s = dot(q5_4(q0, 0u, qh, h), xs[0]) + dot(q5_4(q1, 0u, qh, h + 4u), xs[1])
        + dot(q5_4(q0, 4u, qh, h + 16u), xs[2]) + dot(q5_4(q1, 4u, qh, h + 20u), xs[3]);
    return ld_f16(b) * (s - 16.0 * hsum4(xs[0] + xs[1] + xs[2] + xs[3]));
}
