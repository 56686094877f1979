// block_q4_K (144 bytes, 4.5 bpw, 256 elements): d: f16 @0, dmin: f16 @2, scales[12] @4,
// qs[128] @16. Sub-block sb (32 elements) = 2*cc + h: its quants are the low (h = 0) or high
// (h = 1) nibbles of qs[32*cc .. 32*cc + 32]; y = d * scale[sb] * q - dmin * min[sb], with the
// 6-bit (scale, min) pairs unpacked as get_scale_min_k4. Mirrors dequantize_row_q4_K.
// One chunk = one 32-element sub-block; blocks are 4-byte aligned.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + (c / 8u) * 144u;
    let sb = c % 8u;
    let d = ld_f16(b);
    let dmin = ld_f16(b + 2u);
    var sc: u32;
    var mn: u32;
    if (sb < 4u) {
        sc = ld_u8(b + 4u + sb) & 63u;
        mn = ld_u8(b + 8u + sb) & 63u;
    } else {
        let q_hi = ld_u8(b + 8u + sb);   // q[j + 4]
        sc = (q_hi & 0xFu) | ((ld_u8(b + sb) >> 6u) << 4u);        // q[j - 4]
        mn = (q_hi >> 4u) | ((ld_u8(b + 4u + sb) >> 6u) << 4u);    // q[j]
    }
    let ds = d * f32(sc);
    let dm = dmin * f32(mn);
    let shift = (sb & 1u) * 4u;
    let qbase = (b + 16u + 32u * (sb / 2u)) >> 2u;
    for (var k = 0u; k < 8u; k++) {
        let q = w[qbase + k] >> shift;
        for (var i = 0u; i < 4u; i++) {
            wq[4u * k + i] = ds * f32((q >> (8u * i)) & 0xFu) - dm;
        }
    }
}
