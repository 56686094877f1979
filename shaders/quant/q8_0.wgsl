// block_q8_0 (34 bytes, 8.5 bpw): d: f16 @0, qs[32] i8 @2; y = d * q.
// Mirrors dequantize_row_q8_0. One chunk = one block.
fn decode_chunk(row_byte: u32, c: u32) {
    let b = row_byte + c * 34u;
    let d = ld_f16(b);
    for (var k = 0u; k < 8u; k++) {
        let q = ld_u32(b + 2u + 4u * k);
        for (var i = 0u; i < 4u; i++) {
            wq[4u * k + i] = d * f32(sext8(q >> (8u * i)));
        }
    }
}
