//! The framing of QEMU's `-netdev stream`: each Ethernet frame preceded by
//! its length as a 4-byte big-endian integer.
//!
//! Contract: [`StreamReassembly`] owns one buffer, allocated when the port is
//! made, that bytes are read into ([`StreamReassembly::spare`],
//! [`StreamReassembly::filled`]) in pieces of any size — part of a length,
//! several frames at once — and that hands out whole frames in order
//! ([`StreamReassembly::next_frame`]). A zero length is a frame of no bytes
//! (the bridge drops it as malformed) and keeps the stream in step. A length
//! above [`MAX_QEMU_FRAME`] means the stream is out of step or the peer is
//! not QEMU: [`TooLong`], after which the connection must be dropped (the
//! buffer is then [`StreamReassembly::clear`]ed for the next one). Nothing
//! here allocates after [`StreamReassembly::new`].

use super::MAX_QEMU_FRAME;

/// Bytes of the length before each frame.
pub const LEN_PREFIX: usize = 4;

/// The buffer holds this many largest frames at once, so one read can bring
/// in a whole batch of small ones.
const CAPACITY: usize = 4 * (LEN_PREFIX + MAX_QEMU_FRAME);

/// A length larger than QEMU ever sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer announced a {0}-byte frame; QEMU sends at most {MAX_QEMU_FRAME}")]
pub struct TooLong(pub u32);

/// Bytes read from a stream, cut into frames.
pub struct StreamReassembly {
    buf: Box<[u8]>,
    /// The first byte not yet handed out.
    start: usize,
    /// The end of the bytes read.
    end: usize,
}

impl Default for StreamReassembly {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamReassembly {
    /// An empty buffer (the one allocation).
    pub fn new() -> Self {
        StreamReassembly {
            buf: vec![0; CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Forgets every byte (a new connection starts afresh).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes read but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next whole frame, `None` when more bytes are needed first.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, TooLong> {
        let have = &self.buf[self.start..self.end];
        let Some(prefix) = have.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix);
        if len as usize > MAX_QEMU_FRAME {
            return Err(TooLong(len));
        }
        let whole = LEN_PREFIX + len as usize;
        if have.len() < whole {
            return Ok(None);
        }
        let frame = self.start + LEN_PREFIX..self.start + whole;
        self.start += whole;
        if self.start == self.end {
            self.clear();
        }
        Ok(Some(&self.buf[frame]))
    }

    /// Where to read more bytes into: never empty. Call it only when
    /// [`next_frame`](Self::next_frame) returned `Ok(None)`, so what is
    /// buffered is less than one frame; it is moved to the front when the
    /// room after it could not take the rest of the largest frame.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < LEN_PREFIX + MAX_QEMU_FRAME && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`spare`](Self::spare).
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `frames` each with its length before it.
    fn stream_of(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// Feeds `bytes` in pieces of `piece` bytes, collecting every frame.
    fn feed(r: &mut StreamReassembly, bytes: &[u8], piece: usize) -> Result<Vec<Vec<u8>>, TooLong> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let spare = r.spare();
                let n = spare.len().min(rest.len());
                spare[..n].copy_from_slice(&rest[..n]);
                r.filled(n);
                rest = &rest[n..];
                while let Some(frame) = r.next_frame()? {
                    out.push(frame.to_vec());
                }
            }
        }
        Ok(out)
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
    }

    #[test]
    fn frames_cut_anywhere_come_out_whole_and_in_order() {
        let frames: Vec<Vec<u8>> = vec![frame(60, 1), frame(1514, 2), frame(9000, 3), frame(64, 4)];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let bytes = stream_of(&refs);
        // One byte at a time splits every length prefix; 3 and 1000 split
        // prefixes and frames at varying places.
        for piece in [1, 3, 1000, bytes.len()] {
            let mut r = StreamReassembly::new();
            assert_eq!(
                feed(&mut r, &bytes, piece).unwrap(),
                frames,
                "pieces of {piece}"
            );
            assert_eq!(r.buffered(), 0);
        }
    }

    #[test]
    fn one_read_with_several_frames_yields_each() {
        let mut r = StreamReassembly::new();
        let bytes = stream_of(&[&[1; 60], &[2; 61], &[3; 62]]);
        r.spare()[..bytes.len()].copy_from_slice(&bytes);
        r.filled(bytes.len());
        assert_eq!(r.next_frame().unwrap().unwrap(), &[1; 60]);
        assert_eq!(r.next_frame().unwrap().unwrap(), &[2; 61]);
        assert_eq!(r.next_frame().unwrap().unwrap(), &[3; 62]);
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let mut r = StreamReassembly::new();
        let bytes = stream_of(&[&[9; 100]]);
        r.spare()[..50].copy_from_slice(&bytes[..50]);
        r.filled(50);
        assert_eq!(r.next_frame().unwrap(), None);
        assert_eq!(r.buffered(), 50);
        r.spare()[..bytes.len() - 50].copy_from_slice(&bytes[50..]);
        r.filled(bytes.len() - 50);
        assert_eq!(r.next_frame().unwrap().unwrap(), &[9; 100]);
    }

    #[test]
    fn a_zero_length_frame_is_empty_and_the_stream_stays_in_step() {
        let mut r = StreamReassembly::new();
        let bytes = stream_of(&[&[], &[5; 42]]);
        let got = feed(&mut r, &bytes, 2).unwrap();
        assert_eq!(got, vec![vec![], vec![5; 42]]);
    }

    #[test]
    fn a_length_above_qemus_limit_is_refused_and_the_largest_allowed_passes() {
        let largest = frame(MAX_QEMU_FRAME, 8);
        let mut r = StreamReassembly::new();
        assert_eq!(
            feed(&mut r, &stream_of(&[&largest]), 4096).unwrap(),
            vec![largest.clone()]
        );
        let mut r = StreamReassembly::new();
        let mut bytes = stream_of(&[&[1; 60]]);
        bytes.extend_from_slice(&(MAX_QEMU_FRAME as u32 + 1).to_be_bytes());
        bytes.extend_from_slice(&[0; 100]);
        let err = feed(&mut r, &bytes, 7).unwrap_err();
        assert_eq!(err, TooLong(MAX_QEMU_FRAME as u32 + 1));
        // Cleared, the buffer serves the next connection from scratch.
        r.clear();
        assert_eq!(
            feed(&mut r, &stream_of(&[&[2; 10]]), 5).unwrap(),
            vec![vec![2; 10]]
        );
    }

    #[test]
    fn many_large_frames_reuse_the_one_buffer() {
        // More bytes than the buffer holds: the partial frame moves to the
        // front each time the room behind it runs short.
        let frames: Vec<Vec<u8>> = (0..20)
            .map(|i| frame(MAX_QEMU_FRAME - i * 1000, i as u8))
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let bytes = stream_of(&refs);
        assert!(bytes.len() > CAPACITY);
        let mut r = StreamReassembly::new();
        assert_eq!(feed(&mut r, &bytes, 50_000).unwrap(), frames);
    }
}
