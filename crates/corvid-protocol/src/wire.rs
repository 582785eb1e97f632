//! Primitive wire types: integers, variable byte integers, strings and binary data.

use crate::error::DecodeError;
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// The largest value a variable byte integer holds (four bytes).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// Reads fields from one packet body, slicing `Bytes` without copying (or, [`Reader::detaching`], copying each
/// string and binary field into an allocation of its own).
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    detach: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes, pos: usize) -> Self {
        Self { buf, pos, end: buf.len(), detach: false }
    }

    /// A reader whose strings and binary fields are copies of exactly their size, holding nothing of `buf`.
    pub(crate) fn detaching(buf: &'a Bytes, pos: usize) -> Self {
        Self { detach: true, ..Self::new(buf, pos) }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Splits off a reader over the next `len` bytes.
    pub(crate) fn take(&mut self, len: usize) -> Result<Reader<'a>, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let sub = Reader { buf: self.buf, pos: self.pos, end: self.pos + len, detach: self.detach };
        self.pos += len;
        Ok(sub)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= self.end {
            return Err(DecodeError::Truncated);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let hi = self.u8()?;
        let lo = self.u8()?;
        Ok(u16::from_be_bytes([hi, lo]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.slice(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    // Not the minimum number of bytes [MQTT-1.5.5-1].
                    return Err(DecodeError::MalformedVariableInteger);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::MalformedVariableInteger)
    }

    fn slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let buf: &'a Bytes = self.buf;
        let s = &buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    /// The next `len` bytes, as a slice of the packet's buffer (a copy when detaching).
    pub(crate) fn bytes(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let range = self.pos..self.pos + len;
        let b = if self.detach { Bytes::copy_from_slice(&self.buf[range]) } else { self.buf.slice(range) };
        self.pos += len;
        Ok(b)
    }

    /// The offset of the next byte in the buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Binary data: a two-byte length, then the bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// A UTF-8 encoded string (MQTT 5.0 section 1.5.4): valid UTF-8, no U+0000 (surrogates are not valid UTF-8).
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        Ok(self.string_scanned()?.0)
    }

    /// A UTF-8 encoded string, and whether it holds a `+` or `#` (found in the same pass as U+0000).
    pub(crate) fn string_scanned(&mut self) -> Result<(ByteString, bool), DecodeError> {
        let raw = self.binary()?;
        let scan = scan(&raw);
        if scan.nul {
            return Err(DecodeError::NullCharacter);
        }
        let s = ByteString::try_from(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        Ok((s, scan.wildcard))
    }
}

/// What [`scan`] found in a string.
pub(crate) struct Scan {
    /// A zero byte (U+0000).
    pub(crate) nul: bool,
    /// A `+` or `#`.
    pub(crate) wildcard: bool,
}

/// Looks for zero bytes, `+` and `#` in one pass, eight bytes at a time.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `v` is zero.
    fn zero_byte(v: u64) -> u64 {
        v.wrapping_sub(ONES) & !v & HIGHS
    }
    let mut nul = 0u64;
    let mut wildcard = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        nul |= zero_byte(v);
        wildcard |= zero_byte(v ^ (ONES * u64::from(b'+'))) | zero_byte(v ^ (ONES * u64::from(b'#')));
    }
    let mut scan = Scan { nul: nul != 0, wildcard: wildcard != 0 };
    for &b in chunks.remainder() {
        scan.nul |= b == 0;
        scan.wildcard |= b == b'+' || b == b'#';
    }
    scan
}

pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_varint(buf: &mut BytesMut, mut value: u32) {
    loop {
        let mut b = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        buf.put_u8(b);
        if value == 0 {
            return;
        }
    }
}

pub(crate) fn put_binary(buf: &mut BytesMut, data: &[u8]) {
    // Lengths were checked against u16::MAX when the packet's length was computed.
    buf.put_u16(data.len() as u16);
    buf.put_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries_from_the_spec() {
        // MQTT 5.0 section 1.5.5, table of sizes.
        for (value, bytes) in [
            (0u32, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (MAX_VARINT, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            assert_eq!(&buf[..], &bytes[..], "{value}");
            assert_eq!(varint_len(value), bytes.len());
            let frozen = Bytes::from(bytes);
            assert_eq!(Reader::new(&frozen, 0).varint().unwrap(), value);
        }
        let five = Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        assert_eq!(Reader::new(&five, 0).varint(), Err(DecodeError::MalformedVariableInteger));
    }

    #[test]
    fn scan_finds_every_position() {
        for len in 0..40 {
            let clean = vec![b'a'; len];
            let s = scan(&clean);
            assert!(!s.nul && !s.wildcard, "{len}");
            for at in 0..len {
                for (byte, nul, wildcard) in [(0u8, true, false), (b'+', false, true), (b'#', false, true)] {
                    let mut v = clean.clone();
                    v[at] = byte;
                    let s = scan(&v);
                    assert_eq!((s.nul, s.wildcard), (nul, wildcard), "{len} {at} {byte}");
                }
            }
        }
        // Bytes near the searched ones, and high bytes, are not mistaken for them.
        let near: Vec<u8> = (1..=255u8).filter(|b| *b != b'+' && *b != b'#').collect();
        let s = scan(&near);
        assert!(!s.nul && !s.wildcard);
    }

    #[test]
    fn non_minimal_varints_are_malformed() {
        // Regression: [MQTT-1.5.5-1] requires the fewest bytes; 0x80 0x00 used to decode as 0.
        for bytes in [&[0x80, 0x00][..], &[0xFF, 0x80, 0x00], &[0x80, 0x80, 0x80, 0x00]] {
            let b = Bytes::copy_from_slice(bytes);
            assert_eq!(Reader::new(&b, 0).varint(), Err(DecodeError::MalformedVariableInteger), "{bytes:02X?}");
        }
    }

    #[test]
    fn strings() {
        let ok = Bytes::from_static(&[0x00, 0x05, 0x41, 0xF0, 0xAA, 0x9B, 0x94]);
        assert_eq!(&*Reader::new(&ok, 0).string().unwrap(), "A\u{2A6D4}");
        let nul = Bytes::from_static(&[0x00, 0x01, 0x00]);
        assert_eq!(Reader::new(&nul, 0).string(), Err(DecodeError::NullCharacter));
        let surrogate = Bytes::from_static(&[0x00, 0x03, 0xED, 0xA0, 0x80]);
        assert_eq!(Reader::new(&surrogate, 0).string(), Err(DecodeError::InvalidUtf8));
        let short = Bytes::from_static(&[0x00, 0x03, 0x41]);
        assert_eq!(Reader::new(&short, 0).string(), Err(DecodeError::Truncated));
    }
}
