//! TFTP datagrams (`tftp::packet::Packet::parse`) as the listener and each transfer's socket
//! receive them: never panics; a parsed packet encodes and parses back to itself; a request's
//! file name maps to a relative path with no `..` and no root (`tftp::path::relative_path`).
#![no_main]

use std::path::Component;

use libfuzzer_sys::fuzz_target;
use rackbox::tftp::packet::{Packet, PacketError};
use rackbox::tftp::path::relative_path;

fuzz_target!(|data: &[u8]| {
    let _ = PacketError::is_request_opcode(data);
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    let bytes = packet.to_bytes();
    let again = Packet::parse(&bytes).expect("an encoded packet parses");
    assert_eq!(again, packet);
    if let Packet::ReadRequest(req) | Packet::WriteRequest(req) = &packet {
        let _ = req.filename_lossy();
        if let Ok(path) = relative_path(&req.filename) {
            assert!(
                path.components().all(|c| matches!(c, Component::Normal(_))),
                "{path:?} is not a plain relative path"
            );
        }
    }
});
