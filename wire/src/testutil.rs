//! Test support shared by the modules' unit tests (compiled only for tests).

use crate::gso::SegmentSink;

/// A sink with a frame-sized buffer that keeps a copy of every piece
/// (segment or fragment) handed to it, in order.
pub(crate) struct Collect {
    pub(crate) buffer: Vec<u8>,
    pub(crate) got: Vec<Vec<u8>>,
}

impl Collect {
    /// A sink whose buffer holds the largest frame a datapath buffer does.
    pub(crate) fn new() -> Collect {
        Collect {
            buffer: vec![0; 65_600],
            got: Vec::new(),
        }
    }
}

impl SegmentSink for Collect {
    fn buffer(&mut self) -> &mut [u8] {
        &mut self.buffer
    }
    fn emit(&mut self, len: usize) {
        self.got.push(self.buffer[..len].to_vec());
    }
}
