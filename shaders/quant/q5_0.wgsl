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
