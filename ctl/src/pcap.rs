//! The pcap stream format of `capture`: the classic libpcap file format
//! (magic 0xa1b2c3d4, microsecond timestamps, little-endian, link type
//! Ethernet), which tcpdump, tshark and Wireshark read from a file or a pipe;
//! and reading the first frame of such a file back ([`first_frame`], for
//! `yardctl trace --pcap`), in either byte order and with micro- or
//! nanosecond timestamps, as tcpdump writes it too.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Length of each record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// The snapshot length written in the header: frames are never cut.
pub const SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The 24-byte file header that starts every stream.
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0.
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// The record header for a frame of `len` bytes captured at `when`.
pub fn record_header(when: SystemTime, len: usize) -> [u8; RECORD_HEADER_LEN] {
    let since = when.duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let mut h = [0u8; RECORD_HEADER_LEN];
    // The classic format stores seconds in 32 bits; it wraps in 2106.
    h[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
    h[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    h
}

/// Why [`first_frame`] found no frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapReadError {
    /// Not the classic pcap format.
    #[error("not a pcap file (a pcapng file? write it with `tcpdump -w` or convert it: `tshark -F pcap -r IN -w OUT`)")]
    NotPcap,
    /// A link type other than Ethernet.
    #[error(
        "its link type is {0}, not Ethernet (1): capture on an Ethernet interface or a yardd port"
    )]
    NotEthernet(u32),
    /// The file ends before its first frame does.
    #[error("it holds no complete frame")]
    NoFrame,
}

/// The first frame of a classic pcap file with Ethernet frames.
pub fn first_frame(file: &[u8]) -> Result<Vec<u8>, PcapReadError> {
    let magic = file.get(0..4).ok_or(PcapReadError::NotPcap)?;
    let read: fn([u8; 4]) -> u32 = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => u32::from_le_bytes,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => u32::from_be_bytes,
        _ => return Err(PcapReadError::NotPcap),
    };
    let word =
        |at: usize| -> Option<u32> { file.get(at..at + 4).map(|b| read([b[0], b[1], b[2], b[3]])) };
    let link = word(20).ok_or(PcapReadError::NotPcap)?;
    if link != LINKTYPE_ETHERNET {
        return Err(PcapReadError::NotEthernet(link));
    }
    let captured = word(FILE_HEADER_LEN + 8).ok_or(PcapReadError::NoFrame)? as usize;
    let start = FILE_HEADER_LEN + RECORD_HEADER_LEN;
    file.get(start..start + captured)
        .map(<[u8]>::to_vec)
        .ok_or(PcapReadError::NoFrame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn headers_have_the_libpcap_layout() {
        let h = file_header();
        assert_eq!(&h[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(h[20..24].try_into().unwrap()), 1);
        let r = record_header(UNIX_EPOCH + Duration::from_micros(5_000_123), 60);
        assert_eq!(u32::from_le_bytes(r[0..4].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(r[4..8].try_into().unwrap()), 123);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), 60);
        assert_eq!(u32::from_le_bytes(r[12..16].try_into().unwrap()), 60);
    }

    #[test]
    fn the_first_frame_comes_back_as_written() {
        let mut file = file_header().to_vec();
        file.extend_from_slice(&record_header(UNIX_EPOCH, 3));
        file.extend_from_slice(&[1, 2, 3]);
        file.extend_from_slice(&record_header(UNIX_EPOCH, 1));
        file.push(9);
        assert_eq!(first_frame(&file).unwrap(), [1, 2, 3]);
        assert_eq!(first_frame(&file[..30]), Err(PcapReadError::NoFrame));
        assert_eq!(
            first_frame(b"\x0a\x0d\x0d\x0a...."),
            Err(PcapReadError::NotPcap)
        );
    }
}
