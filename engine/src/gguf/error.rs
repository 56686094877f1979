//! Errors of the GGUF reader and writer. Every parse error names what was wrong and where:
//! a byte offset into the file, and the metadata key or tensor name being read.
use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("write failed: {0}")]
    Write(#[source] std::io::Error),

    // ---- header ----
    #[error("not a GGUF file: magic {found:?} at byte 0 (expected \"GGUF\")")]
    BadMagic { found: String },
    #[error("GGUF version {version:#010x} looks byte-swapped (big-endian GGUF is not supported)")]
    BigEndian { version: u32 },
    #[error("unsupported GGUF version {version} (supported: 2 and 3)")]
    UnsupportedVersion { version: u32 },
    #[error("unexpected end of file at byte {offset} reading {what} in {context}: need {need} bytes, {remaining} left")]
    Truncated { offset: u64, what: &'static str, context: String, need: u64, remaining: u64 },
    #[error("{what} {count} at byte {offset} cannot fit in the {remaining} bytes left in the file")]
    CountTooLarge { what: &'static str, count: u64, offset: u64, remaining: u64 },

    // ---- metadata ----
    #[error("string length {len} at byte {offset} in {context} exceeds the limit of {max} bytes")]
    StringTooLong { len: u64, offset: u64, context: String, max: u64 },
    #[error("array length {len} at byte {offset} for key {key:?} exceeds the limit of {max} elements")]
    ArrayTooLong { len: u64, offset: u64, key: String, max: u64 },
    #[error("empty metadata key at byte {offset}")]
    EmptyKey { offset: u64 },
    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey { key: String, offset: u64 },
    #[error("unknown metadata value type {type_id} at byte {offset} for key {key:?}")]
    BadValueType { type_id: u32, offset: u64, key: String },
    #[error("arrays nested deeper than {max} levels at byte {offset} for key {key:?}")]
    NestingTooDeep { offset: u64, key: String, max: usize },
    #[error("invalid bool byte {value} at byte {offset} for key {key:?} (must be 0 or 1)")]
    BadBool { value: u8, offset: u64, key: String },
    #[error("invalid general.alignment {value}: {reason}")]
    BadAlignment { value: String, reason: &'static str },

    // ---- tensor infos ----
    #[error("tensor #{index} at byte {offset}: {reason}")]
    BadTensorName { index: u64, offset: u64, reason: String },
    #[error("duplicate tensor name {name:?} at byte {offset}")]
    DuplicateTensor { name: String, offset: u64 },
    #[error("tensor {name:?}: {n_dims} dimensions at byte {offset} (must be 1 to 4)")]
    BadDimCount { name: String, n_dims: u32, offset: u64 },
    #[error("tensor {name:?}: dimension {index} is {value} at byte {offset} (must be 1 to 2^63-1)")]
    BadDim { name: String, index: usize, value: u64, offset: u64 },
    #[error("tensor {name:?}: element count of dims {dims:?} overflows")]
    TooManyElements { name: String, dims: Vec<u64> },
    #[error("tensor {name:?}: unknown or unsupported tensor type id {type_id} at byte {offset}: {reason}")]
    UnknownTensorType { name: String, type_id: u32, offset: u64, reason: String },
    #[error("tensor {name:?}: row length {ne0} is not a multiple of {ty}'s block size {block_size}")]
    BadRowLength { name: String, ne0: u64, ty: &'static str, block_size: u64 },
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { name: String, offset: u64, alignment: u64 },
    #[error("tensor {name:?}: {n_bytes} bytes at data offset {offset} run past the end of the data section ({data_len} bytes)")]
    TensorOutOfBounds { name: String, offset: u64, n_bytes: u64, data_len: u64 },
    #[error("tensors {first:?} and {second:?} overlap in the data section")]
    OverlappingTensors { first: String, second: String },
    #[error("data section would start at byte {data_offset} but the file has {file_len} bytes")]
    DataOutOfBounds { data_offset: u64, file_len: u64 },

    // ---- typed accessors ----
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },
    #[error("metadata key {key:?} value {value} does not fit in {expected}")]
    OutOfRange { key: String, expected: &'static str, value: String },

    // ---- writer ----
    #[error("cannot write GGUF: {0}")]
    InvalidWrite(String),
}
