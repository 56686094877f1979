//! A bounds-checked little-endian reader over the file bytes. Every read checks the remaining
//! length first; nothing here can index out of range or allocate.
#![forbid(unsafe_code)]

use super::error::GgufError;

#[derive(Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    /// Current byte offset in the file.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    pub fn remaining(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    /// Takes `n` bytes; `what`/`context` only name the field in the error.
    pub fn take(&mut self, n: u64, what: &'static str, context: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let remaining = self.remaining();
        let truncated = || GgufError::Truncated { offset: self.offset(), what, context: context(), need: n, remaining };
        if n > remaining {
            return Err(truncated());
        }
        let n = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str, context: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what, context)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub fn u8(&mut self, what: &'static str, context: &dyn Fn() -> String) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what, context)?[0])
    }

    pub fn u32(&mut self, what: &'static str, context: &dyn Fn() -> String) -> Result<u32, GgufError> {
        self.array(what, context).map(u32::from_le_bytes)
    }

    pub fn u64(&mut self, what: &'static str, context: &dyn Fn() -> String) -> Result<u64, GgufError> {
        self.array(what, context).map(u64::from_le_bytes)
    }
}
