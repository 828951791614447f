//! TFTP option negotiation (`tftp::options::negotiate`) over the options of a parsed read
//! request, with server limits from the input: never panics, never answers more than the
//! limits or than the client asked, and the OACK it would send parses back.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rackbox::tftp::options::{MIN_BLOCK_SIZE, NegotiationLimits, negotiate};
use rackbox::tftp::packet::Packet;

fuzz_target!(|data: &[u8]| {
    let mut input = common::Cursor(data);
    let limits = NegotiationLimits {
        max_block_size: input.u16().max(MIN_BLOCK_SIZE),
        max_window_size: input.u16().max(1),
        max_timeout_secs: input.u8(),
    };
    let size = u64::from(input.u16()) << (input.u8() % 40);
    let Ok(Packet::ReadRequest(req)) = Packet::parse(input.rest()) else {
        return;
    };
    let n = negotiate(&req.options, size, limits);
    assert!(n.block_size >= MIN_BLOCK_SIZE);
    assert!(n.block_size <= limits.max_block_size.max(512));
    assert!(n.window_size >= 1 && n.window_size <= limits.max_window_size.max(1));
    if let Some(t) = n.timeout {
        assert!(t.as_secs() >= 1 && t.as_secs() <= u64::from(limits.max_timeout_secs));
    }
    for ack in &n.acknowledged {
        assert!(
            req.options.iter().any(|o| o.name == ack.name),
            "acked {} unasked",
            ack.name
        );
    }
    if !n.acknowledged.is_empty() {
        let oack = Packet::OptionAck {
            options: n.acknowledged.clone(),
        }
        .to_bytes();
        let back = Packet::parse(&oack).expect("our OACK parses");
        assert_eq!(
            back,
            Packet::OptionAck {
                options: n.acknowledged
            }
        );
    }
});
