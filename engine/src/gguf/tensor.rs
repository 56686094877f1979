//! Tensor infos: name, dims, type and offset, each validated; then the data-section layout
//! (aligned, inside the file, no two tensors overlapping).
#![forbid(unsafe_code)]

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::GgufError;
use kiln_kernels::GgmlType;
use super::limits::*;

/// One tensor's header entry. `dims` are in ggml order: `dims[0]` (ne0) is the row length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

/// Element count and byte size of a `ty` tensor with `dims`, or the reason it is invalid.
/// Shared by the reader and the writer.
pub(crate) fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64), GgufError> {
    let too_many = || GgufError::TooManyElements { name: name.to_string(), dims: dims.to_vec() };
    let mut n_elements: u64 = 1;
    for &d in dims {
        n_elements = n_elements.checked_mul(d).ok_or_else(too_many)?;
    }
    if n_elements > i64::MAX as u64 {
        return Err(too_many());
    }
    let block_size = ty.block_size() as u64;
    let type_size = ty.type_size() as u64;
    let ne0 = dims.first().copied().unwrap_or(1);
    if block_size == 0 || ne0 % block_size != 0 {
        return Err(GgufError::BadRowLength { name: name.to_string(), ne0, ty: ty.name(), block_size });
    }
    let n_bytes = (n_elements / block_size).checked_mul(type_size).ok_or_else(too_many)?;
    if n_bytes > i64::MAX as u64 {
        return Err(too_many());
    }
    Ok((n_elements, n_bytes))
}

type Infos = (Vec<TensorInfo>, HashMap<String, usize>);

pub(crate) fn parse_infos(c: &mut Cursor<'_>, n_tensors: u64, alignment: u64) -> Result<Infos, GgufError> {
    let mut tensors = Vec::with_capacity(bounded_capacity::<TensorInfo>(n_tensors, c.remaining()));
    let mut index = HashMap::with_capacity(bounded_capacity::<(String, usize)>(n_tensors, c.remaining()));
    for i in 0..n_tensors {
        let t = parse_info(c, i, alignment)?;
        if index.contains_key(&t.name) {
            return Err(GgufError::DuplicateTensor { name: t.name, offset: c.offset() });
        }
        index.insert(t.name.clone(), tensors.len());
        tensors.push(t);
    }
    Ok((tensors, index))
}

fn parse_info(c: &mut Cursor<'_>, index: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name_at = c.offset();
    let ctx = || format!("tensor #{index}");
    let len = c.u64("tensor name length", &ctx)?;
    let bad_name = |reason: String| GgufError::BadTensorName { index, offset: name_at, reason };
    if len == 0 {
        return Err(bad_name("empty name".into()));
    }
    if len > MAX_TENSOR_NAME_LEN {
        return Err(bad_name(format!("name length {len} exceeds {MAX_TENSOR_NAME_LEN} bytes")));
    }
    let name = String::from_utf8_lossy(c.take(len, "tensor name", &ctx)?).into_owned();
    let ctx = || format!("tensor {name:?}");

    let dims_at = c.offset();
    let n_dims = c.u32("dimension count", &ctx)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount { name, n_dims, offset: dims_at });
    }
    let mut dims = Vec::with_capacity(MAX_DIMS as usize);
    for i in 0..n_dims as usize {
        let at = c.offset();
        let d = c.u64("dimension", &ctx)?;
        if d == 0 || d > i64::MAX as u64 {
            return Err(GgufError::BadDim { name, index: i, value: d, offset: at });
        }
        dims.push(d);
    }

    let type_at = c.offset();
    let type_id = c.u32("tensor type", &ctx)?;
    let ty = GgmlType::from_id(type_id).map_err(|e| GgufError::UnknownTensorType {
        name: name.clone(),
        type_id,
        offset: type_at,
        reason: e.to_string(),
    })?;
    let (n_elements, n_bytes) = tensor_size(&name, &dims, ty)?;
    let offset = c.u64("tensor offset", &ctx)?;
    if offset % alignment != 0 {
        return Err(GgufError::MisalignedTensor { name, offset, alignment });
    }
    Ok(TensorInfo { name, dims, ty, offset, n_elements, n_bytes })
}

/// Checks every tensor lies inside the data section and none overlap; returns the absolute
/// byte offset where the data section starts (`header_end` rounded up to `alignment`).
pub(crate) fn check_layout(tensors: &[TensorInfo], header_end: u64, alignment: u64, file_len: u64) -> Result<u64, GgufError> {
    let data_offset = align_up(header_end, alignment)
        .ok_or(GgufError::DataOutOfBounds { data_offset: header_end, file_len })?;
    if data_offset > file_len {
        if tensors.is_empty() {
            // A tensor-less file may end right after its metadata, unpadded.
            return Ok(file_len);
        }
        return Err(GgufError::DataOutOfBounds { data_offset, file_len });
    }
    let data_len = file_len.saturating_sub(data_offset);
    for t in tensors {
        let end = t.offset.checked_add(t.n_bytes);
        if !matches!(end, Some(e) if e <= data_len) {
            return Err(GgufError::TensorOutOfBounds { name: t.name.clone(), offset: t.offset, n_bytes: t.n_bytes, data_len });
        }
    }
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_unstable_by_key(|t| t.offset);
    for pair in order.windows(2) {
        if let [a, b] = pair {
            // Ends were checked above, so this add cannot overflow.
            if a.offset.saturating_add(a.n_bytes) > b.offset {
                return Err(GgufError::OverlappingTensors { first: a.name.clone(), second: b.name.clone() });
            }
        }
    }
    Ok(data_offset)
}

/// `x` rounded up to a multiple of `align` (a power of two), None on overflow.
pub(crate) fn align_up(x: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    Some(x.checked_add(mask)? & !mask)
}
