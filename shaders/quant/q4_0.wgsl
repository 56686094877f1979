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
