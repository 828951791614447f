//! Ethernet + IPv4 + UDP frames, parsed and built with smoltcp's `wire` module. Pure: no sockets.

use std::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

use super::Mac;

/// Why a frame was not a UDP-in-IPv4-in-Ethernet datagram we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated or malformed Ethernet frame")]
    Ethernet,
    #[error("not an IPv4 packet")]
    NotIpv4,
    #[error("malformed IPv4 header (bad length, version, checksum or a fragment)")]
    Ipv4,
    #[error("not UDP")]
    NotUdp,
    #[error("malformed UDP header (bad length)")]
    Udp,
}

/// A UDP datagram and the addresses around it: what [`parse`] finds in a frame received, and
/// what [`build`] puts in a frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Receive-side checksum checks: the IPv4 header checksum, but not the UDP one.
///
/// A packet socket sees a locally relayed or virtualized datagram before the NIC (or nobody, on
/// veth) fills in its UDP checksum (checksum offload leaves it partial), so verifying it would drop
/// good requests from relays on the same host; ISC dhcpd hit exactly this with virtio. A damaged
/// DHCP message still has to pass the DHCP decoder.
fn rx_caps() -> ChecksumCapabilities {
    let mut caps = ChecksumCapabilities::default();
    caps.udp = smoltcp::phy::Checksum::None;
    caps
}

/// Parses one Ethernet frame carrying UDP over IPv4. Never panics.
pub fn parse(frame: &[u8]) -> Result<Datagram<'_>, FrameError> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| FrameError::Ethernet)?;
    let eth_repr = EthernetRepr::parse(&eth).map_err(|_| FrameError::Ethernet)?;
    if eth_repr.ethertype != EthernetProtocol::Ipv4 {
        return Err(FrameError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| FrameError::Ipv4)?;
    let caps = rx_caps();
    let ip_repr = Ipv4Repr::parse(&ip, &caps).map_err(|_| FrameError::Ipv4)?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(FrameError::Ipv4);
    }
    if ip_repr.next_header != IpProtocol::Udp {
        return Err(FrameError::NotUdp);
    }
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| FrameError::Udp)?;
    let src = IpAddress::Ipv4(ip_repr.src_addr);
    let dst = IpAddress::Ipv4(ip_repr.dst_addr);
    let udp_repr = UdpRepr::parse(&udp, &src, &dst, &caps).map_err(|_| FrameError::Udp)?;
    Ok(Datagram {
        src_mac: Mac(eth_repr.src_addr.0),
        dst_mac: Mac(eth_repr.dst_addr.0),
        src_ip: ip_repr.src_addr,
        dst_ip: ip_repr.dst_addr,
        src_port: udp_repr.src_port,
        dst_port: udp_repr.dst_port,
        payload: udp.payload(),
    })
}

/// A UDP datagram to put on the wire: the same fields a received one has.
pub type Outbound<'a> = Datagram<'a>;

/// Largest UDP payload that fits one 1500-byte IPv4 packet with no options.
pub const MAX_PAYLOAD: usize = 1500 - 20 - 8;

/// Builds an Ethernet frame with IPv4 and UDP checksums filled in, or None when the payload does
/// not fit one 1500-byte packet (a DHCP reply never needs more; the caller drops it).
pub fn build(out: &Outbound<'_>) -> Option<Vec<u8>> {
    if out.payload.len() > MAX_PAYLOAD {
        return None;
    }
    let caps = ChecksumCapabilities::default();
    let udp_repr = UdpRepr {
        src_port: out.src_port,
        dst_port: out.dst_port,
    };
    let udp_len = udp_repr.header_len() + out.payload.len();
    let ip_repr = Ipv4Repr {
        src_addr: out.src_ip,
        dst_addr: out.dst_ip,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let eth_repr = EthernetRepr {
        src_addr: EthernetAddress(out.src_mac.0),
        dst_addr: EthernetAddress(out.dst_mac.0),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0u8; eth_repr.buffer_len() + ip_repr.buffer_len() + udp_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    eth_repr.emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip_repr.emit(&mut ip, &caps);
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    udp_repr.emit(
        &mut udp,
        &IpAddress::Ipv4(out.src_ip),
        &IpAddress::Ipv4(out.dst_ip),
        out.payload.len(),
        |p| p.copy_from_slice(out.payload),
        &caps,
    );
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> Vec<u8> {
        build(&Outbound {
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: Mac::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
            payload,
        })
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let frame = sample(b"hello");
        let d = parse(&frame).unwrap();
        assert_eq!(d.payload, b"hello");
        assert_eq!(d.src_mac, Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(d.dst_mac, Mac::BROADCAST);
        assert_eq!((d.src_port, d.dst_port), (68, 67));
        assert_eq!(d.dst_ip, Ipv4Addr::BROADCAST);
    }

    #[test]
    fn ethernet_padding_is_ignored() {
        let mut frame = sample(b"x");
        frame.extend_from_slice(&[0u8; 30]);
        assert_eq!(parse(&frame).unwrap().payload, b"x");
    }

    #[test]
    fn refuses_bad_lengths_and_checksums() {
        let frame = sample(b"hello world");
        assert_eq!(parse(&frame[..20]), Err(FrameError::Ipv4));
        assert_eq!(parse(&frame[..10]), Err(FrameError::Ethernet));
        let mut bad = frame.clone();
        bad[14 + 10] ^= 0xff; // IPv4 header checksum
        assert_eq!(parse(&bad), Err(FrameError::Ipv4));
        let mut long = frame.clone();
        long[14 + 20 + 4] = 0xff; // UDP length past the packet
        assert_eq!(parse(&long), Err(FrameError::Udp));
        let mut frag = frame.clone();
        frag[14 + 6] |= 0x20; // more fragments
        let mut p = Ipv4Packet::new_unchecked(&mut frag[14..]);
        p.fill_checksum();
        assert_eq!(parse(&frag), Err(FrameError::Ipv4));
        assert!(
            build(&Outbound {
                payload: &[0u8; 2000],
                ..parse(&frame).unwrap()
            })
            .is_none()
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(pos in 0usize..60, val in any::<u8>(), cut in 0usize..80) {
            let mut frame = sample(&[7u8; 40]);
            if pos < frame.len() { frame[pos] = val; }
            frame.truncate(frame.len().saturating_sub(cut));
            let _ = parse(&frame);
        }
    }
}
