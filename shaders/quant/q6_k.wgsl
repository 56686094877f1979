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
