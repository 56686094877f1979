// F16 rows: 2 bytes per element, rows of an even element count are 4-byte aligned.
// Mirrors ggml_fp16_to_fp32_row.
fn decode_chunk(row_byte: u32, c: u32) {
    let base = (row_byte >> 2u) + c * 16u;
    for (var i = 0u; i < 16u; i++) {
        let v = unpack2x16float(w[base + i]);
        wq[2u * i] = v.x;
        wq[2u * i + 1u] = v.y;
    }
}
