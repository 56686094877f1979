// F32 rows: 4 bytes per element. Mirrors a plain f32 copy.
fn decode_chunk(row_byte: u32, c: u32) {
    let base = (row_byte >> 2u) + c * 32u;
    for (var i = 0u; i < 32u; i++) {
        wq[i] = bitcast<f32>(w[base + i]);
    }
}
