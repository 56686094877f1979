// Byte extraction over a GGUF tensor bound as `w: array<u32>` (declared by the kernel body).
// WGSL has no 8/16-bit storage types, and Q4_0 (18 B), Q4_1 (20 B), Q5_0 (22 B), Q8_0 (34 B) and
// Q6_K (210 B) blocks are not 4-byte aligned, so fields are pulled out of the words that hold them.
// Every f16 field sits at an even byte offset, so `ld_f16` never straddles a word.
//
// Contract with the per-type decode files: `decode_chunk(row_byte, c)` writes elements
// [32c, 32c + 32) of the row starting at byte `row_byte` into `wq`, as f32.

var<private> wq: array<f32, 32>;

fn ld_u8(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xFFu;
}

// Little-endian u32 at any byte offset: stitches the two words it spans.
fn ld_u32(b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) * 8u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}

// IEEE binary16 at an even byte offset, as f32.
fn ld_f16(b: u32) -> f32 {
    return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

// Sign-extends the low byte of `v`.
fn sext8(v: u32) -> i32 {
    return (bitcast<i32>(v << 24u)) >> 24u;
}
