//! The one rule for Linux interface names, shared by `yardctl` (which checks
//! names before sending a request), `yardd`'s configuration checks and its OS
//! layer (which checks again before handing a name to the kernel).
//!
//! The rule is the kernel's (`dev_valid_name`: 1 to 15 bytes, not `.` or
//! `..`, no `/`, `:` or whitespace), narrowed to printable ASCII so a name
//! can be typed, shown in a table and matched in `ip link` output without
//! surprises. Each caller wraps [`IfNameError`] in a message of its own that
//! names the option or port the name came from.

/// Longest interface name Linux accepts (`IFNAMSIZ` less the NUL).
pub const MAX_IFNAME_LEN: usize = 15;

/// Why a string is not a usable interface name. The messages complete a
/// sentence such as "--iface 'a/b' is not an interface name: …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The name is longer than [`MAX_IFNAME_LEN`] bytes.
    #[error("Linux allows at most 15 bytes")]
    TooLong,
    /// `.` and `..` name directories under /sys/class/net.
    #[error("'.' and '..' are reserved")]
    Reserved,
    /// The name contains `/`, `:`, whitespace or a control character (NUL
    /// included): the kernel refuses the first three, the last cannot be
    /// shown.
    #[error("it may not contain '/', ':' or whitespace")]
    Separator(char),
    /// The name contains a character outside ASCII.
    #[error("it may only contain ASCII characters, not {0:?}")]
    NotAscii(char),
}

/// Checks that `name` is a usable interface name (see the module doc).
pub fn check_ifname(name: &str) -> Result<(), IfNameError> {
    if name.is_empty() {
        return Err(IfNameError::Empty);
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(IfNameError::TooLong);
    }
    if name == "." || name == ".." {
        return Err(IfNameError::Reserved);
    }
    for c in name.chars() {
        if !c.is_ascii() {
            return Err(IfNameError::NotAscii(c));
        }
        if !c.is_ascii_graphic() || c == '/' || c == ':' {
            return Err(IfNameError::Separator(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_names_pass_and_others_say_why() {
        for good in ["eth0", "veth-c1.10", "abcdefghijklmno", "tap_1@x", "..."] {
            assert_eq!(check_ifname(good), Ok(()), "{good}");
        }
        assert_eq!(check_ifname(""), Err(IfNameError::Empty));
        assert_eq!(check_ifname("abcdefghijklmnop"), Err(IfNameError::TooLong));
        assert_eq!(check_ifname("."), Err(IfNameError::Reserved));
        assert_eq!(check_ifname(".."), Err(IfNameError::Reserved));
        assert_eq!(check_ifname("a/b"), Err(IfNameError::Separator('/')));
        assert_eq!(check_ifname("a:1"), Err(IfNameError::Separator(':')));
        assert_eq!(check_ifname("a b"), Err(IfNameError::Separator(' ')));
        assert_eq!(check_ifname("a\tb"), Err(IfNameError::Separator('\t')));
        assert_eq!(check_ifname("a\0b"), Err(IfNameError::Separator('\0')));
        assert_eq!(check_ifname("eth\u{e9}"), Err(IfNameError::NotAscii('é')));
        // Length counts bytes: eight two-byte characters are 16.
        assert_eq!(
            check_ifname(&"é".repeat(8)),
            Err(IfNameError::TooLong),
            "length is checked in bytes"
        );
    }
}
