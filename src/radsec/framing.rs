//! RADIUS over a byte stream (RFC 6613 §2.4, RFC 6614 §2.1): packets follow
//! one another with no delimiter; each is as long as its Length field says.
//! A Length outside 20..=4096 cannot be skipped safely (nothing tells where the
//! next packet starts), so the connection is closed (RFC 6613 §2.6.4). Pure:
//! the connection reads the header, asks here, then reads the rest.

use crate::proto::MAX_PACKET_LEN;

/// Code, Identifier and Length: what is read before the packet's length is known.
pub const HEADER_LEN: usize = 4;

/// The smallest packet: the header and the 16-byte authenticator.
pub const MIN_PACKET_LEN: usize = 20;

/// A Length field that cannot frame a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadLength(pub u16);

/// The whole packet's length from its first [`HEADER_LEN`] bytes.
pub fn packet_len(header: &[u8; HEADER_LEN]) -> Result<usize, BadLength> {
    let len = u16::from_be_bytes([header[2], header[3]]);
    let n = usize::from(len);
    if (MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&n) {
        Ok(n)
    } else {
        Err(BadLength(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_field_bounds() {
        let h = |len: u16| {
            let [a, b] = len.to_be_bytes();
            [1, 7, a, b]
        };
        assert_eq!(packet_len(&h(20)), Ok(20));
        assert_eq!(packet_len(&h(4096)), Ok(4096));
        assert_eq!(packet_len(&h(19)), Err(BadLength(19)));
        assert_eq!(packet_len(&h(0)), Err(BadLength(0)));
        assert_eq!(packet_len(&h(4097)), Err(BadLength(4097)));
        assert_eq!(packet_len(&h(u16::MAX)), Err(BadLength(u16::MAX)));
    }
}
