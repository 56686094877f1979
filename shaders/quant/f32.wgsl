// F32 rows: 4 bytes per element. Mirrors a plain f32 copy.
fn decode_chunk(row_byte: u32, c: u32) {
    let base = (row_byte >> 2u) + c * 32u;
    for (var i = 0u; i < 32u; i++) {
        wq[i] = bitcast<f32>(w[base + i]);
    }
}

// Mat-vec unit g: elements 16 g + [0, 16).
fn unit_x(g: u32) -> vec4<u32> {
    return unit_x_contiguous(g);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let b = (row_byte >> 2u) + g * 16u;
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let j = b + 4u * i;
        s += dot(bitcast<vec4<f32>>(vec4<u32>(w[j], w[j + 1u], w[j + 2u], w[j + 3u])), xs[i]);
    }
    return s;
}
