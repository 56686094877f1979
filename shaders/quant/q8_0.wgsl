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

// Mat-vec unit g: half h = g % 2 of block g / 2, elements 16 h + [0, 16).
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_contiguous(g);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let b = row_byte + (g / 2u) * 34u;
    let q = b + 2u + 16u * (g % 2u);
    let s = dot(sbytes4(ld_u32(q)), xs[0]) + dot(sbytes4(ld_u32(q + 4u)), xs[1]) + dot(sbytes4(ld_u32(q + 8u)), xs[2]) + dot(sbytes4(ld_u32(q + 12u)), xs[3]);
    return ld_f16(b) * s;
}
