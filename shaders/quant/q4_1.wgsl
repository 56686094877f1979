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
