//! Header and metadata parsing: bytes in, `(key, Value)` pairs out, every length checked
//! against both a fixed limit and the bytes actually left before anything is allocated.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::GgufError;
use super::limits::*;
use super::tensor::{self, TensorInfo};
use super::value::{Array, StrArray, Value, ValueType};

const MAGIC: &[u8; 4] = b"GGUF";

/// Everything `GgufFile` needs, parsed and validated.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub data_offset: u64,
}

pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor::new(buf);
    let header = || "header".to_string();
    let magic: [u8; 4] = c.array("magic", &header)?;
    if &magic != MAGIC {
        let found = magic.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect();
        return Err(GgufError::BadMagic { found });
    }
    let version = c.u32("version", &header)?;
    check_version(version)?;
    let n_tensors_at = c.offset();
    let n_tensors = c.u64("tensor count", &header)?;
    let n_kv_at = c.offset();
    let n_kv = c.u64("metadata count", &header)?;

    // Every entry occupies at least a minimum number of bytes, so a count that cannot fit in
    // what is left is rejected before it sizes any allocation (Talos 1915/1916, ds4 #545).
    let remaining = c.remaining();
    let kv_min = n_kv.checked_mul(MIN_KV_BYTES);
    if !matches!(kv_min, Some(b) if b <= remaining) {
        return Err(GgufError::CountTooLarge { what: "metadata count", count: n_kv, offset: n_kv_at, remaining });
    }
    let tensor_min = n_tensors.checked_mul(MIN_TENSOR_INFO_BYTES);
    let total_min = kv_min.zip(tensor_min).and_then(|(a, b)| a.checked_add(b));
    if !matches!(total_min, Some(b) if b <= remaining) {
        return Err(GgufError::CountTooLarge { what: "tensor count", count: n_tensors, offset: n_tensors_at, remaining });
    }

    let (metadata, key_index) = parse_metadata(&mut c, n_kv)?;
    let alignment = alignment(&metadata, &key_index)?;
    let (tensors, tensor_index) = tensor::parse_infos(&mut c, n_tensors, alignment)?;
    let data_offset = tensor::check_layout(&tensors, c.offset(), alignment, buf.len() as u64)?;
    Ok(Parsed { version, alignment, metadata, key_index, tensors, tensor_index, data_offset })
}

fn check_version(version: u32) -> Result<(), GgufError> {
    match version {
        2 | 3 => Ok(()),
        // A little-endian reader sees a big-endian small number in the high half.
        v if v & 0xFFFF == 0 && v != 0 => Err(GgufError::BigEndian { version: v }),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

fn parse_metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<Metadata, GgufError> {
    let mut metadata = Vec::with_capacity(bounded_capacity::<(String, Value)>(n_kv, c.remaining()));
    let mut index = HashMap::with_capacity(bounded_capacity::<(String, usize)>(n_kv, c.remaining()));
    for i in 0..n_kv {
        let key_at = c.offset();
        let key = read_string(c, &|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { offset: key_at });
        }
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key, offset: key_at });
        }
        let ctx = || format!("metadata key {key:?}");
        let type_at = c.offset();
        let type_id = c.u32("value type", &ctx)?;
        let ty = ValueType::from_id(type_id)
            .ok_or_else(|| GgufError::BadValueType { type_id, offset: type_at, key: key.clone() })?;
        let value = read_value(c, ty, &key, 0)?;
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    Ok((metadata, index))
}

/// `general.alignment`: a u32, a non-zero power of two, at most 1 MiB; 32 when absent.
fn alignment(metadata: &[(String, Value)], index: &HashMap<String, usize>) -> Result<u64, GgufError> {
    let Some(value) = index.get("general.alignment").and_then(|&i| metadata.get(i)).map(|(_, v)| v) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let bad = |reason| GgufError::BadAlignment { value: value.to_string(), reason };
    let Value::U32(a) = *value else {
        return Err(GgufError::BadAlignment { value: format!("{value} ({})", value.type_name()), reason: "must be a u32" });
    };
    let a = u64::from(a);
    if a == 0 || !a.is_power_of_two() {
        return Err(bad("must be a non-zero power of two"));
    }
    if a > MAX_ALIGNMENT {
        return Err(bad("must be at most 1 MiB"));
    }
    Ok(a)
}

/// A GGUF string: u64 length then bytes. Invalid UTF-8 is replaced, not rejected.
pub(crate) fn read_string(c: &mut Cursor<'_>, ctx: &dyn Fn() -> String) -> Result<String, GgufError> {
    let bytes = read_str_bytes(c, ctx)?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn read_str_bytes<'a>(c: &mut Cursor<'a>, ctx: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
    let at = c.offset();
    let len = c.u64("string length", ctx)?;
    if len > MAX_STRING_LEN {
        return Err(GgufError::StringTooLong { len, offset: at, context: ctx(), max: MAX_STRING_LEN });
    }
    c.take(len, "string bytes", ctx)
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str, depth: usize) -> Result<Value, GgufError> {
    let ctx = || format!("metadata key {key:?}");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8("value", &ctx)?),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::U32 => Value::U32(c.u32("value", &ctx)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::U64 => Value::U64(c.u64("value", &ctx)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array("value", &ctx)?)),
        ValueType::Bool => {
            let at = c.offset();
            Value::Bool(to_bool(c.u8("value", &ctx)?, at, key)?)
        }
        ValueType::String => Value::String(read_string(c, &ctx)?),
        ValueType::Array => Value::Array(read_array(c, key, depth)?),
    })
}

fn to_bool(b: u8, offset: u64, key: &str) -> Result<bool, GgufError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::BadBool { value, offset, key: key.to_string() }),
    }
}

/// Decodes `n` fixed-size little-endian elements.
fn fixed<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|ch| {
            let mut a = [0u8; N];
            a.copy_from_slice(ch);
            f(a)
        })
        .collect()
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array, GgufError> {
    let ctx = || format!("metadata key {key:?}");
    let at = c.offset();
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep { offset: at, key: key.to_string(), max: MAX_ARRAY_DEPTH });
    }
    let type_id = c.u32("array element type", &ctx)?;
    let ty = ValueType::from_id(type_id)
        .ok_or_else(|| GgufError::BadValueType { type_id, offset: at, key: key.to_string() })?;
    let len_at = c.offset();
    let n = c.u64("array length", &ctx)?;
    if n > MAX_ARRAY_LEN {
        return Err(GgufError::ArrayTooLong { len: n, offset: len_at, key: key.to_string(), max: MAX_ARRAY_LEN });
    }
    // Smallest encoding of one element: its fixed size, a string's length prefix, or a nested
    // array's type + length. n <= 2^26 and size <= 12, so the product cannot overflow.
    let min_elem = ty.fixed_size().unwrap_or(if ty == ValueType::String { 8 } else { 12 });
    let need = n.saturating_mul(min_elem);
    if need > c.remaining() {
        let remaining = c.remaining();
        return Err(GgufError::Truncated { offset: c.offset(), what: "array elements", context: ctx(), need, remaining });
    }
    if let Some(size) = ty.fixed_size() {
        let bytes = c.take(n.saturating_mul(size), "array elements", &ctx)?;
        return Ok(match ty {
            ValueType::U8 => Array::U8(bytes.to_vec()),
            ValueType::I8 => Array::I8(fixed(bytes, i8::from_le_bytes)),
            ValueType::U16 => Array::U16(fixed(bytes, u16::from_le_bytes)),
            ValueType::I16 => Array::I16(fixed(bytes, i16::from_le_bytes)),
            ValueType::U32 => Array::U32(fixed(bytes, u32::from_le_bytes)),
            ValueType::I32 => Array::I32(fixed(bytes, i32::from_le_bytes)),
            ValueType::F32 => Array::F32(fixed(bytes, f32::from_le_bytes)),
            ValueType::U64 => Array::U64(fixed(bytes, u64::from_le_bytes)),
            ValueType::I64 => Array::I64(fixed(bytes, i64::from_le_bytes)),
            ValueType::F64 => Array::F64(fixed(bytes, f64::from_le_bytes)),
            _ => {
                let mut out = Vec::with_capacity(bytes.len());
                for (i, &b) in bytes.iter().enumerate() {
                    out.push(to_bool(b, at.saturating_add(12).saturating_add(i as u64), key)?);
                }
                Array::Bool(out)
            }
        });
    }
    if ty == ValueType::String {
        return read_str_array(c, n, &ctx).map(Array::String);
    }
    let mut out = Vec::with_capacity(bounded_capacity::<Array>(n, c.remaining()));
    for _ in 0..n {
        out.push(read_array(c, key, depth.saturating_add(1))?);
    }
    Ok(Array::Array(out))
}

/// `n` strings packed into one buffer. UTF-8 is validated once over the whole buffer (much
/// faster than per string); only if that fails, or a string ends mid-character, is each string
/// re-decoded on its own with replacement characters.
fn read_str_array(c: &mut Cursor<'_>, n: u64, ctx: &dyn Fn() -> String) -> Result<StrArray, GgufError> {
    // First pass: validate every length and sum them, so the buffer is allocated once, exactly
    // (never more than the bytes really present in the file).
    let start = c.clone();
    let mut total: usize = 0;
    for _ in 0..n {
        total = total.saturating_add(read_str_bytes(c, ctx)?.len());
    }
    *c = start;
    let mut buf = Vec::with_capacity(total);
    let mut ends = Vec::with_capacity(bounded_capacity::<usize>(n, c.remaining()));
    for _ in 0..n {
        buf.extend_from_slice(read_str_bytes(c, ctx)?);
        ends.push(buf.len());
    }
    let buf = match String::from_utf8(buf) {
        Ok(s) if ends.iter().all(|&e| s.is_char_boundary(e)) => return Ok(StrArray::from_parts(s, ends)),
        Ok(s) => s.into_bytes(),
        Err(e) => e.into_bytes(),
    };
    let mut out = StrArray::with_capacity(ends.len(), buf.len());
    let mut start = 0;
    for &end in &ends {
        out.push(&String::from_utf8_lossy(buf.get(start..end).unwrap_or_default()));
        start = end;
    }
    Ok(out)
}
