//! DHCP request decoding (`dhcp::message::decode`), as the raw socket hands it any UDP payload
//! to port 67/4011: never panics; a decoded request can be answered, and the reply is a
//! well-formed BOOTREPLY for the same client.
#![no_main]

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, MessageType};
use dhcproto::{Decodable, Decoder};
use libfuzzer_sys::fuzz_target;
use rackbox::dhcp::message::{self, ReplyFields};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = message::decode(data) else {
        return;
    };
    let _ = message::arch_from_vendor_class(request.vendor_class.as_deref().unwrap_or_default());
    let fields = ReplyFields {
        kind: MessageType::Ack,
        yiaddr: Ipv4Addr::new(192, 0, 2, 10),
        siaddr: Ipv4Addr::new(192, 0, 2, 1),
        file: Some("undionly.kpxe".into()),
        options: vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 1))],
    };
    // A reply too large for one packet is dropped (None); any other must decode as ours.
    if let Some(reply) = message::encode_reply(&request, fields) {
        assert!(reply.len() >= message::MIN_REPLY_LEN && reply.len() <= message::MAX_LEN);
        let back =
            dhcproto::v4::Message::decode(&mut Decoder::new(&reply)).expect("our reply decodes");
        assert_eq!(back.xid(), request.xid());
        assert_eq!(&back.chaddr()[..6], &request.mac.0[..]);
        assert_eq!(back.opts().msg_type(), Some(MessageType::Ack));
    }
});
