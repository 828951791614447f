//! The client end of a lease: its MAC as the DHCP engine compares it. The record itself is
//! `model::lease`; the store keeps it (`store::leases`), through the service.

use crate::net::Mac;

pub use crate::model::lease::{Lease, LeaseState};

/// A lease's MAC, parsed back from its text.
pub(crate) trait ClientMac {
    /// The MAC, or None for a declined address (or a record that does not parse).
    fn mac(&self) -> Option<Mac>;
}

impl ClientMac for Lease {
    fn mac(&self) -> Option<Mac> {
        let text = self.mac.as_deref()?;
        let mut out = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut out {
            *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn mac_round_trip() {
        let l = Lease {
            ip: Ipv4Addr::new(192, 0, 2, 5),
            mac: Some("52:54:00:ab:cd:ef".into()),
            state: LeaseState::Active,
            expires_ms: 10,
            hostname: None,
            updated_ms: 1,
        };
        assert_eq!(l.mac(), Some(Mac([0x52, 0x54, 0, 0xab, 0xcd, 0xef])));
        assert!(l.is_active(9));
        assert!(!l.is_active(10));
        let bad = Lease {
            mac: Some("zz".into()),
            ..l
        };
        assert_eq!(bad.mac(), None);
    }
}
