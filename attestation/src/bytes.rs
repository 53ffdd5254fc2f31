//! A bounded little-endian cursor for the fixed binary layouts of SNP reports
//! and DCAP quotes. Every read checks the length first and returns
//! [`Error::Truncated`]; nothing here can panic on input.

use crate::error::{Error, Result, Structure};

/// Reads fields front to back from a byte slice it never reads past.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: Structure,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`, naming `structure` in its errors.
    pub(crate) fn new(buf: &'a [u8], structure: Structure) -> Self {
        Self {
            buf,
            pos: 0,
            structure,
        }
    }

    /// Offset of the next byte to be read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// The next `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(len).ok_or(Error::Truncated {
            structure: self.structure,
            needed: usize::MAX,
            found: self.buf.len(),
        })?;
        let slice = self.buf.get(self.pos..end).ok_or(Error::Truncated {
            structure: self.structure,
            needed: end,
            found: self.buf.len(),
        })?;
        self.pos = end;
        Ok(slice)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Skips `len` reserved bytes, which must all be zero.
    pub(crate) fn reserved(&mut self, len: usize) -> Result<()> {
        let start = self.pos;
        let bytes = self.take(len)?;
        match bytes.iter().position(|b| *b != 0) {
            None => Ok(()),
            Some(i) => Err(Error::ReservedNotZero {
                structure: self.structure,
                offset: start + i,
            }),
        }
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(self) -> Result<()> {
        match self.buf.len() - self.pos.min(self.buf.len()) {
            0 => Ok(()),
            extra => Err(Error::TrailingData {
                structure: self.structure,
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_reports_truncation() {
        let mut c = Cursor::new(&[1, 0, 2, 0, 0, 0, 9], "t");
        assert_eq!(c.u16().unwrap(), 1);
        assert_eq!(c.u32().unwrap(), 2);
        assert_eq!(
            c.u16(),
            Err(Error::Truncated {
                structure: "t",
                needed: 8,
                found: 7
            })
        );
        assert_eq!(c.u8().unwrap(), 9);
        c.finish().unwrap();
    }

    #[test]
    fn reserved_must_be_zero_and_trailing_is_an_error() {
        let mut c = Cursor::new(&[0, 0, 5, 1], "t");
        assert_eq!(
            c.reserved(3),
            Err(Error::ReservedNotZero {
                structure: "t",
                offset: 2
            })
        );
        let c = Cursor::new(&[0, 1], "t");
        assert_eq!(
            c.finish(),
            Err(Error::TrailingData {
                structure: "t",
                extra: 2
            })
        );
    }
}
