//! Reading a fuzz input as a sequence of small decisions and frames, so
//! that the targets which take several frames can be driven by one byte
//! string. Running out of bytes is the end of the input, never an error.

/// A cursor over a fuzz input.
pub(crate) struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// The next byte, if any.
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// The next big-endian `u16`, if two bytes are left.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let hi = self.byte()?;
        let lo = self.byte()?;
        Some(u16::from_be_bytes([hi, lo]))
    }

    /// The next `n` bytes, or all that is left when fewer.
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// Exactly the next `N` bytes, if that many are left.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let head = self.rest.get(..N)?;
        self.rest = &self.rest[N..];
        head.try_into().ok()
    }

    /// A frame: a 16-bit length, then that many bytes (fewer at the end).
    pub(crate) fn frame(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        Some(self.take(usize::from(len)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Writes a frame as [`Input::frame`] reads it (seeds).
pub(crate) fn put_frame(out: &mut Vec<u8>, frame: &[u8]) {
    let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&frame[..usize::from(len)]);
}
