//! Shared by the targets: cuts one fuzz input into the several inputs a parser takes.
#![allow(dead_code)]

/// Reads fields off the front of a fuzz input; past its end every read gives zeros/empty.
pub struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A slice of up to `max` bytes, its length taken from the next byte.
    pub fn slice(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()).min(max).min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    /// The inputs parts separated by `sep` (up to `n` parts; the last takes the rest).
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Splits `data` at the first `n - 1` occurrences of the byte string `sep`.
pub fn split<'a>(data: &'a [u8], sep: &[u8], n: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + sep.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}
