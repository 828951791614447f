//! DHCP messages: checking and decoding requests (dhcproto underneath) and encoding replies.
//!
//! dhcproto decodes well-formed messages, but trusts some lengths: a `chaddr` longer than 16
//! (`hlen` > 16) panics when read, and a few options (80, 81, 94, 151-155) assert or subtract
//! their length in debug builds. So [`decode`] walks the raw bytes first and refuses anything
//! that is not a well-formed Ethernet BOOTREQUEST with a DHCP message type; only then does
//! dhcproto see it, and even then under `catch_unwind` as a last guard.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    self, DhcpOption, DhcpOptions, Flags, HType, Message, MessageType, Opcode, OptionCode,
    relay::RelayAgentInformation,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::net::Mac;

/// Smallest BOOTP message: the fixed header (236 bytes) and the magic cookie.
pub(crate) const MIN_LEN: usize = 240;
/// Largest message we accept: what fits one 1500-byte IPv4/UDP packet.
pub const MAX_LEN: usize = 1472;
/// Replies are padded to at least this size: BOOTP relays and some ROMs drop shorter ones.
pub const MIN_REPLY_LEN: usize = 300;

/// Why a request was refused. Each is counted as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than a BOOTP header")]
    Short,
    #[error("longer than one Ethernet packet")]
    Oversized,
    #[error("not a BOOTREQUEST (or, for the probe, not a BOOTREPLY)")]
    NotRequest,
    #[error("not an Ethernet client (htype/hlen)")]
    NotEthernet,
    #[error("no DHCP magic cookie")]
    NoMagic,
    #[error("an option runs past the end of the message")]
    TruncatedOption,
    #[error("option {0} has an invalid length")]
    BadOptionLength(u8),
    #[error("no DHCP message type (option 53)")]
    NoMessageType,
    #[error("the decoder refused it")]
    Undecodable,
}

/// A request, decoded and with the facts the server looks at pulled out.
#[derive(Debug, Clone)]
pub struct Request {
    pub message: Message,
    pub kind: MessageType,
    pub mac: Mac,
    pub(crate) requested_ip: Option<Ipv4Addr>,
    pub(crate) server_id: Option<Ipv4Addr>,
    /// Option 93, or the arch number in a `PXEClient:Arch:xxxxx` vendor class.
    pub arch: Option<u16>,
    pub vendor_class: Option<Vec<u8>>,
    /// Option 77 names iPXE, or option 175 (iPXE's feature set) is present.
    pub(crate) is_ipxe: bool,
    /// Option 97, echoed back only when sent.
    pub(crate) machine_id: Option<Vec<u8>>,
    /// Option 82, echoed back to the relay.
    pub(crate) relay_info: Option<RelayAgentInformation>,
    pub(crate) hostname: Option<String>,
}

impl Request {
    pub fn xid(&self) -> u32 {
        self.message.xid()
    }
    pub(crate) fn ciaddr(&self) -> Ipv4Addr {
        self.message.ciaddr()
    }
    pub(crate) fn giaddr(&self) -> Ipv4Addr {
        self.message.giaddr()
    }
    pub(crate) fn broadcast(&self) -> bool {
        self.message.flags().broadcast()
    }
}

/// Fixed lengths (or minimums) of options that the decoder reads without checking, or asserts on.
fn option_length_ok(code: u8, len: usize) -> bool {
    match code {
        // u8 values
        19 | 20 | 23 | 27 | 29 | 30 | 31 | 34 | 36 | 37 | 39 | 46 | 52 | 53 | 116 | 156 | 157 => {
            len == 1
        }
        // u16 values
        13 | 22 | 26 | 57 => len == 2,
        // 93 may list several architectures; we read the first.
        93 => len >= 2 && len.is_multiple_of(2),
        // u32/i32 values and addresses
        1
        | 2
        | 16
        | 24
        | 28
        | 32
        | 35
        | 38
        | 50
        | 51
        | 54
        | 58
        | 59
        | 91
        | 106
        | 118
        | 150
        | 152..=155 => len == 4,
        80 => len == 0,
        81 => len >= 3,
        94 => len == 3,
        151 => len >= 1,
        _ => true,
    }
}

/// Walks the options area: every option must fit, known fixed-size options must have their size,
/// and a message type must be present. Returns the raw option 175 presence (dhcproto keeps it
/// as Unknown, and we only need to know it is there).
///
/// The decoder may join the parts of an option sent more than once (RFC 3396) or read each
/// alone, so a size is checked on each part and on the parts' total: two option 94s of 3 bytes
/// are one of 6, and an empty option 81 after a full one is one of 0, both of which the decoder
/// asserts against (found by fuzzing).
fn check_options(options: &[u8]) -> Result<bool, Malformed> {
    let mut i = 0;
    let mut saw_type = false;
    let mut saw_175 = false;
    let mut total = [0usize; 256];
    while i < options.len() {
        let code = options[i];
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = *options.get(i + 1).ok_or(Malformed::TruncatedOption)? as usize;
        let end = i + 2 + len;
        if end > options.len() {
            return Err(Malformed::TruncatedOption);
        }
        total[usize::from(code)] += len;
        if !option_length_ok(code, len) || !option_length_ok(code, total[usize::from(code)]) {
            return Err(Malformed::BadOptionLength(code));
        }
        saw_type |= code == 53;
        saw_175 |= code == 175;
        i = end;
    }
    if !saw_type {
        return Err(Malformed::NoMessageType);
    }
    Ok(saw_175)
}

/// Checks the raw bytes of a BOOTP message with BOOTP opcode `op` (1 request, 2 reply), then
/// decodes it; whether it carries option 175 too. Never panics.
fn checked(bytes: &[u8], op: u8) -> Result<(Message, bool), Malformed> {
    if bytes.len() < MIN_LEN {
        return Err(Malformed::Short);
    }
    if bytes.len() > MAX_LEN {
        return Err(Malformed::Oversized);
    }
    if bytes[0] != op {
        return Err(Malformed::NotRequest);
    }
    if bytes[1] != 1 || bytes[2] != 6 {
        return Err(Malformed::NotEthernet);
    }
    if bytes[236..240] != v4::MAGIC {
        return Err(Malformed::NoMagic);
    }
    let has_175 = check_options(&bytes[240..])?;
    let message = std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes)))
        .map_err(|_| Malformed::Undecodable)?
        .map_err(|_| Malformed::Undecodable)?;
    Ok((message, has_175))
}

/// An offer from some DHCP server, as the foreign-DHCP probe reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub xid: u32,
    /// The client hardware address it is for.
    pub mac: Mac,
    /// The address offered (`yiaddr`).
    pub offered: Ipv4Addr,
    /// Option 54; None from a server that leaves it out (BOOTP-era ones).
    pub server_id: Option<Ipv4Addr>,
}

/// Checks and decodes a DHCPOFFER (a BOOTREPLY with message type 2). Never panics; anything else
/// (a request, an ACK, a malformed reply) is refused.
pub fn decode_offer(bytes: &[u8]) -> Result<Offer, Malformed> {
    let (message, _) = checked(bytes, 2)?;
    if message.opts().msg_type() != Some(MessageType::Offer) {
        return Err(Malformed::NoMessageType);
    }
    Ok(Offer {
        xid: message.xid(),
        mac: Mac::from_slice(&bytes[28..34]).ok_or(Malformed::NotEthernet)?,
        offered: message.yiaddr(),
        server_id: match message.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        },
    })
}

/// A DHCPDISCOVER from `mac` with transaction id `xid`, asking for a broadcast answer (the
/// prober has no address yet), as a plain client sends it.
pub fn encode_discover(mac: Mac, xid: u32) -> Option<Vec<u8>> {
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_htype(HType::Eth)
        .set_xid(xid)
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(&mac.0);
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut id = vec![1];
    id.extend_from_slice(&mac.0);
    msg.opts_mut().insert(DhcpOption::ClientIdentifier(id));
    msg.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::ServerIdentifier,
    ]));
    let mut buf = Vec::with_capacity(MIN_REPLY_LEN);
    msg.encode(&mut Encoder::new(&mut buf)).ok()?;
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    Some(buf)
}

/// Checks and decodes one request. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Request, Malformed> {
    let (message, has_175) = checked(bytes, 1)?;
    let opts = message.opts();
    let kind = opts.msg_type().ok_or(Malformed::NoMessageType)?;
    let mac = Mac::from_slice(&bytes[28..34]).ok_or(Malformed::NotEthernet)?;
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v.clone()),
        _ => None,
    };
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => vendor_class.as_deref().and_then(arch_from_vendor_class),
    };
    let user_class_ipxe = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    Ok(Request {
        kind,
        mac,
        requested_ip: match opts.get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        },
        server_id: match opts.get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        },
        arch,
        vendor_class,
        is_ipxe: user_class_ipxe || has_175,
        machine_id: match opts.get(OptionCode::ClientMachineIdentifier) {
            Some(DhcpOption::ClientMachineIdentifier(v)) => Some(v.clone()),
            _ => None,
        },
        relay_info: match opts.get(OptionCode::RelayAgentInformation) {
            Some(DhcpOption::RelayAgentInformation(r)) => Some(r.clone()),
            _ => None,
        },
        hostname: match opts.get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) if h.len() <= 63 => Some(h.clone()),
            _ => None,
        },
        message,
    })
}

/// The arch number of a `PXEClient:Arch:00007:UNDI:003016` vendor class (or `HTTPClient:...`).
pub fn arch_from_vendor_class(class: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(class).ok()?;
    let rest = text
        .strip_prefix("PXEClient:Arch:")
        .or_else(|| text.strip_prefix("HTTPClient:Arch:"))?;
    rest.get(..5)?.parse().ok()
}

/// A reply under construction: the header fields the server decides, and its options.
#[derive(Debug, Clone)]
pub struct ReplyFields {
    pub kind: MessageType,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    /// BOOTP file field; left empty when longer than 127 bytes (option 67 carries it then).
    pub file: Option<String>,
    pub options: Vec<DhcpOption>,
}

/// Encodes a reply to `request`: header fields copied as RFC 2131 table 3 says, our options, then
/// the options echoed from the request (97 only if sent, 82 always last). Padded to 300 bytes.
pub fn encode_reply(request: &Request, fields: ReplyFields) -> Option<Vec<u8>> {
    let req = &request.message;
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(req.xid())
        .set_flags(if req.flags().broadcast() {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        })
        .set_ciaddr(if fields.kind == MessageType::Nak {
            Ipv4Addr::UNSPECIFIED
        } else {
            req.ciaddr()
        })
        .set_yiaddr(fields.yiaddr)
        .set_siaddr(fields.siaddr)
        .set_giaddr(req.giaddr())
        .set_chaddr(&request.mac.0);
    if let Some(file) = &fields.file
        && file.len() <= 127
    {
        msg.set_fname(file.as_bytes());
    }
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(fields.kind));
    for opt in fields.options {
        opts.insert(opt);
    }
    if let Some(id) = &request.machine_id {
        opts.insert(DhcpOption::ClientMachineIdentifier(id.clone()));
    }
    if let Some(relay) = &request.relay_info {
        opts.insert(DhcpOption::RelayAgentInformation(relay.clone()));
    }
    msg.set_opts(opts);
    let mut buf = Vec::with_capacity(MIN_REPLY_LEN);
    msg.encode(&mut Encoder::new(&mut buf)).ok()?;
    if buf.len() < MIN_REPLY_LEN {
        buf.resize(MIN_REPLY_LEN, 0);
    }
    (buf.len() <= MAX_LEN).then_some(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client request as udhcpc would send it.
    pub fn request(kind: MessageType, mac: [u8; 6], extra: Vec<DhcpOption>) -> Vec<u8> {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootRequest)
            .set_xid(0x1234_5678)
            .set_chaddr(&mac);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in extra {
            msg.opts_mut().insert(o);
        }
        let mut buf = Vec::new();
        msg.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    /// A request's fixed part and message type, then `options` as raw bytes, then the end.
    fn with_raw_options(options: &[u8]) -> Vec<u8> {
        let mut b = request(MessageType::Discover, [2, 0, 0, 0, 0, 1], vec![])[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1]);
        b.extend_from_slice(options);
        b.push(255);
        b
    }

    #[test]
    fn a_fixed_size_option_sent_in_parts_is_checked_on_its_total() {
        // Found by fuzzing: the decoder joins the two option 94s into one of 6 bytes and
        // asserts that it has 3.
        let twice = with_raw_options(&[94, 3, 1, 3, 0, 94, 3, 1, 3, 0]);
        assert!(matches!(
            decode(&twice),
            Err(Malformed::BadOptionLength(94))
        ));
        // Once is fine, and so is a variable-length option in parts (RFC 3396).
        assert!(decode(&with_raw_options(&[94, 3, 1, 3, 0])).is_ok());
        let user_class = with_raw_options(&[77, 2, b'i', b'P', 77, 2, b'X', b'E']);
        assert!(decode(&user_class).unwrap().is_ipxe);
    }

    #[test]
    fn decodes_a_pxe_discover() {
        let bytes = request(
            MessageType::Discover,
            [2, 0, 0, 0, 0, 9],
            vec![
                DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
                DhcpOption::ClientMachineIdentifier(vec![0; 17]),
            ],
        );
        let r = decode(&bytes).unwrap();
        assert_eq!(r.kind, MessageType::Discover);
        assert_eq!(r.arch, Some(7));
        assert_eq!(r.mac.to_string(), "02:00:00:00:00:09");
        assert!(r.machine_id.is_some());
        assert!(!r.is_ipxe);
    }

    #[test]
    fn refuses_malformed() {
        let good = request(MessageType::Discover, [2, 0, 0, 0, 0, 1], vec![]);
        assert_eq!(decode(&good[..100]).unwrap_err(), Malformed::Short);
        assert_eq!(decode(&vec![0u8; 2000]).unwrap_err(), Malformed::Oversized);
        let mut b = good.clone();
        b[2] = 200; // hlen past chaddr: dhcproto would panic on chaddr()
        assert_eq!(decode(&b).unwrap_err(), Malformed::NotEthernet);
        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(decode(&b).unwrap_err(), Malformed::NoMagic);
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, 94, 1, 0, 255]); // option 94 must be 3 bytes
        assert_eq!(decode(&b).unwrap_err(), Malformed::BadOptionLength(94));
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[53, 1, 1, 12, 50, b'x']);
        assert_eq!(decode(&b).unwrap_err(), Malformed::TruncatedOption);
        let mut b = good[..240].to_vec();
        b.extend_from_slice(&[12, 1, b'x', 255]);
        assert_eq!(decode(&b).unwrap_err(), Malformed::NoMessageType);
    }

    #[test]
    fn ipxe_by_user_class_or_175() {
        let r = decode(&request(
            MessageType::Discover,
            [2, 0, 0, 0, 0, 1],
            vec![DhcpOption::UserClass(b"iPXE".to_vec())],
        ))
        .unwrap();
        assert!(r.is_ipxe);
        let mut b = request(MessageType::Discover, [2, 0, 0, 0, 0, 1], vec![]);
        let end = b.len() - 1;
        b.splice(end..end, [175u8, 3, 1, 1, 1]);
        assert!(decode(&b).unwrap().is_ipxe);
    }

    #[test]
    fn vendor_class_arch() {
        assert_eq!(
            arch_from_vendor_class(b"PXEClient:Arch:00000:UNDI:002001"),
            Some(0)
        );
        assert_eq!(
            arch_from_vendor_class(b"HTTPClient:Arch:00016:UNDI:003001"),
            Some(16)
        );
        assert_eq!(arch_from_vendor_class(b"PXEClient"), None);
        assert_eq!(arch_from_vendor_class(b"MSFT 5.0"), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn random_options_never_panic(opts in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = request(MessageType::Discover, [2, 0, 0, 0, 0, 1], vec![])[..240].to_vec();
            b.extend_from_slice(&[53, 1, 1]);
            b.extend_from_slice(&opts);
            let _ = decode(&b);
        }

        #[test]
        fn mutated_requests_never_panic(pos in 0usize..300, val in any::<u8>()) {
            let mut b = request(
                MessageType::Request,
                [2, 0, 0, 0, 0, 1],
                vec![
                    DhcpOption::RequestedIpAddress(Ipv4Addr::new(192, 0, 2, 10)),
                    DhcpOption::ClientSystemArchitecture(v4::Architecture(7)),
                    DhcpOption::Hostname("node".into()),
                ],
            );
            if pos < b.len() { b[pos] = val; }
            let _ = decode(&b);
        }
    }
}
