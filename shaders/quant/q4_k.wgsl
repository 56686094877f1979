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

// Mat-vec unit g: sub-block pair cc = u / 4 (u = g % 16) of block g / 16, bytes j0 = 8 (u % 4) ..
// j0 + 8 of that pair's 32 qs bytes: elements 64 cc + j0 + [0, 8) (low nibbles, scale 2 cc) and
// 64 cc + 32 + j0 + [0, 8) (high nibbles, scale 2 cc + 1). 16 units cover a block, so 16 lanes
// read one block's 128 qs bytes contiguously.
fn unit_x(g: u32) -> vec4<u32> {
    let u = g % 16u;
    let e = (g / 16u) * 256u + 64u * (u / 4u) + 8u * (u % 4u);
    return vec4<u32>(e, e + 4u, e + 32u, e + 36u);
}

// get_scale_min_k4 for sub-block sb from the 12 scale bytes held in s (3 words), without a
// branch (lanes of one block take sub-blocks on both sides of 4).
fn q4k_scale_min(s: vec3<u32>, sb: u32) -> vec2<f32> {
    let sh = 8u * (sb & 3u);
    let a = (s.x >> sh) & 0xFFu;
    let b = (s.y >> sh) & 0xFFu;
    let c = (s.z >> sh) & 0xFFu;
    let lo = vec2<u32>(a & 63u, b & 63u);
    let hi = vec2<u32>((c & 0xFu) | ((a >> 6u) << 4u), (c >> 4u) | ((b >> 6u) << 4u));
    return bitcast<vec2<f32>>(select(lo, hi, sb >= 4u) | vec2<u32>(0x4B000000u)) - vec2<f32>(8388608.0);
}

fn unit_dot(row_byte: u32, g: u32, xs: array<vec4<f32>, 4>) -> f32 {
    let u = g % 16u;
    let bw = (row_byte + (g / 16u) * 144u) >> 2u;
    let dm = unpack2x16float(w[bw]);
    let s = vec3<u32>(w[bw + 1u], w[bw + 2u], w[bw + 3u]);
    let cc = u / 4u;
    let qi = bw + 4u + 8u * cc + 2u * (u % 4u);
    let q0 = w[qi];
    let q1 = w[qi + 1u];
    let a = q4k_scale_min(s, 2u * cc);
    let b = q4k_scale_min(s, 2u * cc + 1u);
    let lo = dot(nibbles4(q0, 0u), xs[0]) + dot(nibbles4(q1, 0u), xs[1]);
    let hi = dot(nibbles4(q0, 4u), xs[2]) + dot(nibbles4(q1, 4u), xs[3]);
    let sum_lo = hsum4(xs[0] + xs[1]);
    let sum_hi = hsum4(xs[2] + xs[3]);
    return dm.x * (a.x * lo + b.x * hi) - dm.y * (a.y * sum_lo + b.y * sum_hi);
}
