// block_q6_K (210 bytes, 6.5625 bpw, 256 elements): ql[128] @0, qh[64] @128, scales[16] i8 @192,
// d: f16 @208. Element e = 128n + 32g + l: low 4 bits from ql[64n + 32(g & 1) + l] (low nibble
// when g < 2, else high), high 2 bits (qh[32n + l] >> 2g) & 3; q = (low | high << 4) - 32;
// y = d * scales[8n + 2g + l/16] * q. Mirrors dequantize_row_q6_K.
// One chunk = 32 elements (n, g) = (c/4 % 2, c % 4); blocks are only 2-byte aligned.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + (c / 8u) * 210u;
    let j = c % 8u;
    let n = j / 4u;
    let g = j % 4u;
    let d = ld_f16(b + 208u);
    let s0 = d * f32(sext8(ld_u8(b + 192u + 8u * n + 2u * g)));
    let s1 = d * f32(sext8(ld_u8(b + 192u + 8u * n + 2u * g + 1u)));
    let lshift = (g / 2u) * 4u;
    let hshift = 2u * g;
    for (var k = 0u; k < 8u; k++) {
        let ql = ld_u32(b + 64u * n + 32u * (g & 1u) + 4u * k) >> lshift;
        let qh = ld_u32(b + 128u + 32u * n + 4u * k) >> hshift;
        for (var i = 0u; i < 4u; i++) {
            let lo = (ql >> (8u * i)) & 0xFu;
            let hi = (qh >> (8u * i)) & 3u;
            let q = f32(i32(lo | (hi << 4u)) - 32);
            let l = 4u * k + i;
            wq[l] = select(s1, s0, l < 16u) * q;
        }
    }
}

// Mat-vec unit g: half n = u / 8 (u = g % 16) of block g / 16, l0 = 4 (u % 8): elements
// 128 n + l0 + {0, 32, 64, 96} + [0, 4), from ql bytes 64 n + l0 (+ 32) and qh bytes 32 n + l0.
fn unit_x(g: u32) -> vec4<u32> {
    let u = g % 16u;
    let e = (g / 16u) * 256u + 128u * (u / 8u) + 4u * (u % 8u);
    return vec4<u32>(e, e + 32u, e + 64u, e + 96u);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let u = g % 16u;
    let b = row_byte + (g / 16u) * 210u;
    let n = u / 8u;
    let l0 = 4u * (u % 8u);
    let qa = ld_u32(b + 64u * n + l0);
    let qb = ld_u32(b + 64u * n + 32u + l0);
    let qh = ld_u32(b + 128u + 32u * n + l0);
    let m4 = 0x0F0F0F0Fu;
    let m2 = 0x03030303u;
    let q1 = (qa & m4) | ((qh & m2) << 4u);
    let q2 = (qb & m4) | (((qh >> 2u) & m2) << 4u);
    let q3 = ((qa >> 4u) & m4) | (((qh >> 4u) & m2) << 4u);
    let q4 = ((qb >> 4u) & m4) | (((qh >> 6u) & m2) << 4u);
    let sb = b + 192u + 8u * n + l0 / 16u;
    // The four i8 scales, biased to unsigned and converted like the quants (see u2f4).
    let sc = u2f4(vec4<u32>(ld_u8(sb), ld_u8(sb + 2u), ld_u8(sb + 4u), ld_u8(sb + 6u)) ^ vec4<u32>(0x80u)) - vec4<f32>(128.0);
    let c = vec4<f32>(32.0);
    let dots = vec4<f32>(dot(bytes4(q1) - c, xs[0]), dot(bytes4(q2) - c, xs[1]), dot(bytes4(q3) - c, xs[2]), dot(bytes4(q4) - c, xs[3]));
    return ld_f16(b + 208u) * dot(sc, dots);
}
