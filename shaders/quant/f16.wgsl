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

// Mat-vec unit g: elements 16 g + [0, 16), 8 words.
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_contiguous(g);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let b = (row_byte >> 2u) + g * 8u;
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(vec4<f32>(unpack2x16float(w[b + 2u * i]), unpack2x16float(w[b + 2u * i + 1u])), xs[i]);
    }
    return s;
}
