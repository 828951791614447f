//! Ethernet/IPv4/UDP frames from the AF_PACKET socket (`net::frame::parse`): never panics, and
//! a parsed datagram built again (`net::frame::build`) parses back to the same datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rackbox::net::frame::{self, Outbound};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = frame::parse(data) else {
        return;
    };
    let out = Outbound {
        src_mac: d.src_mac,
        dst_mac: d.dst_mac,
        src_ip: d.src_ip,
        dst_ip: d.dst_ip,
        src_port: d.src_port,
        dst_port: d.dst_port,
        payload: d.payload,
    };
    let Some(built) = frame::build(&out) else {
        assert!(d.payload.len() > frame::MAX_PAYLOAD);
        return;
    };
    let again = frame::parse(&built).expect("a frame we built parses");
    assert_eq!(again, d);
});
