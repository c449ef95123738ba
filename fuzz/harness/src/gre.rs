//! The `gre` target: `yard_tunnel`'s decapsulation on arbitrary bytes.
//!
//! Input: one byte that picks the carrier (bit 0 set: raw GRE over IPv4,
//! as the raw socket for protocol 47 delivers it; clear: a GRE-in-UDP
//! payload), then the packet. Besides "no panic": what decapsulation
//! accepts lies inside the input, and encapsulating its inner frame again
//! with the options it reported decapsulates to the same frame, options
//! and (over IPv4) endpoints.

use yard_tunnel::{decap_gre, decap_ipv4, encap_gre, encap_ipv4, Ipv4Outer};

use crate::input::Input;

/// Headroom for the outer headers when encapsulating again.
const HEADROOM: usize = yard_tunnel::MAX_IPV4_ENCAP_HEADROOM;

/// Runs one input (see the module documentation for its layout).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let Some(carrier) = input.byte() else {
        return;
    };
    let packet = input.take(usize::MAX);
    if carrier & 1 == 1 {
        let Ok(found) = decap_ipv4(packet) else {
            return;
        };
        let _ = found.tunnel_key();
        let range = found.inner_range();
        assert!(
            range.end <= packet.len(),
            "inner frame {range:?} outside the packet"
        );
        let inner = &packet[range];
        let mut buf = vec![0u8; HEADROOM + inner.len()];
        buf[HEADROOM..].copy_from_slice(inner);
        let outer = Ipv4Outer::new(found.src, found.dst);
        let Ok(start) = encap_ipv4(&mut buf, HEADROOM, inner.len(), outer, found.gre.options)
        else {
            // Too long for one IPv4 packet once the options grew: allowed.
            return;
        };
        let again = decap_ipv4(&buf[start..]).expect("an encapsulated frame decapsulates");
        assert_eq!((again.src, again.dst), (found.src, found.dst));
        assert_eq!(again.gre.options, found.gre.options);
        assert_eq!(&buf[start..][again.inner_range()], inner);
    } else {
        let Ok(found) = decap_gre(packet) else {
            return;
        };
        let range = found.inner_range();
        assert!(
            range.end <= packet.len(),
            "inner frame {range:?} outside the packet"
        );
        let inner = found.inner(packet);
        let mut buf = vec![0u8; HEADROOM + inner.len()];
        buf[HEADROOM..].copy_from_slice(inner);
        let start = encap_gre(&mut buf, HEADROOM, inner.len(), found.options)
            .expect("the headroom holds any GRE header");
        let again = decap_gre(&buf[start..]).expect("an encapsulated frame decapsulates");
        assert_eq!(again.options, found.options);
        assert_eq!(again.inner(&buf[start..]), inner);
    }
}
