//! TFTP wire format (RFC 1350, with the option extension of RFC 2347): bytes in,
//! typed packets out, and back.
//!
//! Everything here is pure so it can be tested without sockets. Parsing never panics:
//! the bytes come from anyone on the boot network, so every malformed input is an
//! error value the server can count and answer.

use std::fmt;

/// Opcodes of RFC 1350 and RFC 2347 (OACK), as sent in the first two bytes.
mod opcode {
    pub(crate) const READ_REQUEST: u16 = 1;
    pub(crate) const WRITE_REQUEST: u16 = 2;
    pub(crate) const DATA: u16 = 3;
    pub(crate) const ACK: u16 = 4;
    pub(crate) const ERROR: u16 = 5;
    pub(crate) const OPTION_ACK: u16 = 6;
}

/// Length of the opcode + block number header of DATA and ACK packets.
pub(crate) const DATA_HEADER_LEN: usize = 4;

/// A TFTP error code (RFC 1350 section 5, RFC 2347 for code 8).
///
/// A newtype rather than an enum because clients may send codes outside the
/// registry, and the server must still parse (and log) their ERROR packets.
/// The codes a read-only server never sends (3 disk full, 6 file already exists,
/// 7 no such user) have no constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// Not defined, see the message. Also used for "server busy" and timeouts.
    pub const NOT_DEFINED: Self = Self(0);
    /// File not found.
    pub const FILE_NOT_FOUND: Self = Self(1);
    /// Access violation: what a refused path or a write request gets.
    pub const ACCESS_VIOLATION: Self = Self(2);
    /// Illegal TFTP operation: a malformed or unexpected packet.
    pub const ILLEGAL_OPERATION: Self = Self(4);
    /// Unknown transfer ID: a packet from a port that is not the transfer's peer.
    pub const UNKNOWN_TRANSFER_ID: Self = Self(5);
    /// Option negotiation refused (RFC 2347). Firmware sends it after a tsize probe.
    pub const OPTION_REFUSED: Self = Self(8);
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Transfer mode named in a request (RFC 1350 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes as they are on disk: what every firmware asks for.
    Octet,
    /// Text with CR LF line ends.
    NetAscii,
    /// Obsolete mail delivery mode.
    Mail,
}

impl Mode {
    fn parse(raw: &[u8]) -> Option<Self> {
        if raw.eq_ignore_ascii_case(b"octet") {
            Some(Self::Octet)
        } else if raw.eq_ignore_ascii_case(b"netascii") {
            Some(Self::NetAscii)
        } else if raw.eq_ignore_ascii_case(b"mail") {
            Some(Self::Mail)
        } else {
            None
        }
    }

    /// The name as sent on the wire.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Octet => "octet",
            Self::NetAscii => "netascii",
            Self::Mail => "mail",
        }
    }
}

/// One option of a request or an OACK (RFC 2347): a name and a value.
///
/// Names are compared case-insensitively, so they are stored lower-cased. Values are
/// kept as text because every option defined so far is a decimal number or a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpOption {
    /// Option name, lower-cased.
    pub name: String,
    /// Option value as sent.
    pub value: String,
}

impl TftpOption {
    /// Builds an option; the name is lower-cased so lookups are case-insensitive.
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Self {
            name: name.to_ascii_lowercase(),
            value: value.into(),
        }
    }
}

/// A read or write request: the file, the mode and the options the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// File name exactly as sent (bytes: it need not be UTF-8, and path checks
    /// must see what the client sent, not a lossy rendering of it).
    pub filename: Vec<u8>,
    /// Transfer mode.
    pub mode: Mode,
    /// Options in the order the client sent them.
    pub options: Vec<TftpOption>,
}

impl Request {
    /// The file name for logs: lossy UTF-8, never used to open anything.
    pub fn filename_lossy(&self) -> String {
        String::from_utf8_lossy(&self.filename).into_owned()
    }
}

/// A parsed TFTP packet. DATA borrows its payload from the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// RRQ: a client wants to read a file.
    ReadRequest(Request),
    /// WRQ: a client wants to write a file (always refused here).
    WriteRequest(Request),
    /// DATA: one block of a file.
    Data {
        /// Block number, wrapping to 0 after 65535.
        block: u16,
        /// Block payload, at most the negotiated block size.
        payload: &'a [u8],
    },
    /// ACK: the peer has every block up to and including `block`.
    Ack {
        /// Block number acknowledged (0 acknowledges an OACK).
        block: u16,
    },
    /// ERROR: the peer ends the transfer.
    Error {
        /// Error code.
        code: ErrorCode,
        /// Human-readable message.
        message: String,
    },
    /// OACK: the options the server accepted (RFC 2347).
    OptionAck {
        /// Accepted options with the values the server will use.
        options: Vec<TftpOption>,
    },
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than the 2 bytes of an opcode, or a header cut short.
    #[error("packet truncated: {len} bytes")]
    Truncated {
        /// Datagram length.
        len: usize,
    },
    /// The opcode is none of RRQ, WRQ, DATA, ACK, ERROR, OACK.
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    /// A string field (file name, mode, option) is not NUL-terminated.
    #[error("{field} is not NUL-terminated")]
    Unterminated {
        /// Which field.
        field: &'static str,
    },
    /// The mode is not octet, netascii or mail.
    #[error("unknown transfer mode {0:?}")]
    UnknownMode(String),
    /// An option name without a value, an empty option name or a non-UTF-8 option.
    #[error("malformed option list: {0}")]
    BadOptions(&'static str),
    /// An ACK longer than 4 bytes: not something a real client sends.
    #[error("ACK with {0} trailing bytes")]
    TrailingBytes(usize),
}

impl PacketError {
    /// Whether the datagram at least claimed to be a request (RRQ/WRQ), which decides
    /// whether the listener answers it with an ERROR or drops it silently.
    pub fn is_request_opcode(bytes: &[u8]) -> bool {
        matches!(
            read_u16(bytes, 0),
            Some(opcode::READ_REQUEST | opcode::WRITE_REQUEST)
        )
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let pair = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Splits `bytes` at the first NUL: the string before it and the rest after it.
fn take_cstr<'a>(
    bytes: &'a [u8],
    field: &'static str,
) -> Result<(&'a [u8], &'a [u8]), PacketError> {
    let nul = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(PacketError::Unterminated { field })?;
    Ok((&bytes[..nul], &bytes[nul + 1..]))
}

/// Parses an option list: NUL-terminated name/value pairs to the end of the packet.
fn parse_options(mut rest: &[u8]) -> Result<Vec<TftpOption>, PacketError> {
    let mut options = Vec::new();
    while !rest.is_empty() {
        // Some old clients pad requests with NULs after the last field: tolerate a
        // tail made only of NULs rather than refusing a boot over it.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let (name, after_name) = take_cstr(rest, "option name")?;
        let (value, after_value) = take_cstr(after_name, "option value")?;
        if name.is_empty() {
            return Err(PacketError::BadOptions("empty option name"));
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| PacketError::BadOptions("option name is not UTF-8"))?;
        let value = std::str::from_utf8(value)
            .map_err(|_| PacketError::BadOptions("option value is not UTF-8"))?;
        options.push(TftpOption::new(name, value));
        rest = after_value;
    }
    Ok(options)
}

fn parse_request(body: &[u8]) -> Result<Request, PacketError> {
    let (filename, rest) = take_cstr(body, "file name")?;
    let (mode, rest) = take_cstr(rest, "mode")?;
    let mode = Mode::parse(mode)
        .ok_or_else(|| PacketError::UnknownMode(String::from_utf8_lossy(mode).into_owned()))?;
    Ok(Request {
        filename: filename.to_vec(),
        mode,
        options: parse_options(rest)?,
    })
}

impl<'a> Packet<'a> {
    /// Parses one datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PacketError> {
        let truncated = || PacketError::Truncated { len: bytes.len() };
        let opcode = read_u16(bytes, 0).ok_or_else(truncated)?;
        let body = &bytes[2..];
        match opcode {
            opcode::READ_REQUEST => Ok(Self::ReadRequest(parse_request(body)?)),
            opcode::WRITE_REQUEST => Ok(Self::WriteRequest(parse_request(body)?)),
            opcode::DATA => Ok(Self::Data {
                block: read_u16(bytes, 2).ok_or_else(truncated)?,
                payload: &bytes[DATA_HEADER_LEN..],
            }),
            opcode::ACK => {
                let block = read_u16(bytes, 2).ok_or_else(truncated)?;
                if bytes.len() > DATA_HEADER_LEN {
                    return Err(PacketError::TrailingBytes(bytes.len() - DATA_HEADER_LEN));
                }
                Ok(Self::Ack { block })
            }
            opcode::ERROR => {
                let code = ErrorCode(read_u16(bytes, 2).ok_or_else(truncated)?);
                // Lenient on purpose: firmware sends sloppy ERRORs (no NUL, junk after
                // it), and an ERROR must end the transfer whatever its message looks like.
                let message = &bytes[DATA_HEADER_LEN..];
                let message = message
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(message, |nul| &message[..nul]);
                Ok(Self::Error {
                    code,
                    message: String::from_utf8_lossy(message).into_owned(),
                })
            }
            opcode::OPTION_ACK => Ok(Self::OptionAck {
                options: parse_options(body)?,
            }),
            other => Err(PacketError::UnknownOpcode(other)),
        }
    }

    /// Appends the wire form of this packet to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::ReadRequest(request) => encode_request(opcode::READ_REQUEST, request, out),
            Self::WriteRequest(request) => encode_request(opcode::WRITE_REQUEST, request, out),
            Self::Data { block, payload } => {
                out.extend_from_slice(&data_header(*block));
                out.extend_from_slice(payload);
            }
            Self::Ack { block } => {
                out.extend_from_slice(&opcode::ACK.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Self::Error { code, message } => {
                out.extend_from_slice(&opcode::ERROR.to_be_bytes());
                out.extend_from_slice(&code.0.to_be_bytes());
                // A NUL inside the message would end it early on the wire: drop them.
                out.extend(message.bytes().filter(|&b| b != 0));
                out.push(0);
            }
            Self::OptionAck { options } => {
                out.extend_from_slice(&opcode::OPTION_ACK.to_be_bytes());
                encode_options(options, out);
            }
        }
    }

    /// The wire form of this packet in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The 4-byte header of a DATA packet, so the sender can put the payload read from
/// disk right after it without an intermediate copy.
pub(crate) fn data_header(block: u16) -> [u8; DATA_HEADER_LEN] {
    let [op_hi, op_lo] = opcode::DATA.to_be_bytes();
    let [block_hi, block_lo] = block.to_be_bytes();
    [op_hi, op_lo, block_hi, block_lo]
}

fn encode_request(opcode: u16, request: &Request, out: &mut Vec<u8>) {
    out.extend_from_slice(&opcode.to_be_bytes());
    out.extend_from_slice(&request.filename);
    out.push(0);
    out.extend_from_slice(request.mode.as_str().as_bytes());
    out.push(0);
    encode_options(&request.options, out);
}

fn encode_options(options: &[TftpOption], out: &mut Vec<u8>) {
    for option in options {
        out.extend(option.name.bytes().filter(|&b| b != 0));
        out.push(0);
        out.extend(option.value.bytes().filter(|&b| b != 0));
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rrq(filename: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
        let mut bytes = vec![0, 1];
        bytes.extend_from_slice(filename.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(mode.as_bytes());
        bytes.push(0);
        for (name, value) in options {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn parses_read_request_with_options_case_insensitively() {
        let bytes = rrq(
            "undionly.kpxe",
            "OCTET",
            &[("TSize", "0"), ("blksize", "1468")],
        );
        let Ok(Packet::ReadRequest(request)) = Packet::parse(&bytes) else {
            panic!("not an RRQ: {:?}", Packet::parse(&bytes));
        };
        assert_eq!(request.filename, b"undionly.kpxe");
        assert_eq!(request.mode, Mode::Octet);
        assert_eq!(
            request.options,
            vec![
                TftpOption::new("tsize", "0"),
                TftpOption::new("blksize", "1468")
            ]
        );
    }

    #[test]
    fn parses_write_request() {
        let mut bytes = rrq("x", "netascii", &[]);
        bytes[1] = 2;
        assert!(matches!(
            Packet::parse(&bytes),
            Ok(Packet::WriteRequest(Request {
                mode: Mode::NetAscii,
                ..
            }))
        ));
    }

    #[test]
    fn tolerates_nul_padding_after_request() {
        let mut bytes = rrq("a", "octet", &[("tsize", "0")]);
        bytes.extend_from_slice(&[0, 0, 0]);
        let Ok(Packet::ReadRequest(request)) = Packet::parse(&bytes) else {
            panic!("padding refused");
        };
        assert_eq!(request.options.len(), 1);
    }

    #[test]
    fn refuses_malformed_requests() {
        let cases: Vec<(Vec<u8>, PacketError)> = vec![
            (vec![], PacketError::Truncated { len: 0 }),
            (vec![0], PacketError::Truncated { len: 1 }),
            (
                b"\x00\x01file".to_vec(),
                PacketError::Unterminated { field: "file name" },
            ),
            (
                b"\x00\x01file\x00octet".to_vec(),
                PacketError::Unterminated { field: "mode" },
            ),
            (
                rrq("f", "binary", &[]),
                PacketError::UnknownMode("binary".into()),
            ),
            (
                b"\x00\x01f\x00octet\x00blksize\x00".to_vec(),
                PacketError::Unterminated {
                    field: "option value",
                },
            ),
            (
                b"\x00\x01f\x00octet\x00blksize".to_vec(),
                PacketError::Unterminated {
                    field: "option name",
                },
            ),
            (
                b"\x00\x01f\x00octet\x00\x00512\x00".to_vec(),
                PacketError::BadOptions("empty option name"),
            ),
            (
                b"\x00\x01f\x00octet\x00\xff\x00512\x00".to_vec(),
                PacketError::BadOptions("option name is not UTF-8"),
            ),
            (vec![0, 9, 1, 2], PacketError::UnknownOpcode(9)),
            (vec![0, 4, 1], PacketError::Truncated { len: 3 }),
            (vec![0, 4, 0, 1, 0], PacketError::TrailingBytes(1)),
            (vec![0, 3, 0], PacketError::Truncated { len: 3 }),
            (vec![0, 5, 0], PacketError::Truncated { len: 3 }),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Packet::parse(&bytes), Err(expected), "input {bytes:?}");
        }
    }

    #[test]
    fn parses_data_ack_error_oack() {
        assert_eq!(
            Packet::parse(&[0, 3, 0xff, 0xff, 1, 2, 3]),
            Ok(Packet::Data {
                block: 65535,
                payload: &[1, 2, 3]
            })
        );
        assert_eq!(
            Packet::parse(&[0, 3, 0, 1]),
            Ok(Packet::Data {
                block: 1,
                payload: &[]
            })
        );
        assert_eq!(Packet::parse(&[0, 4, 0, 0]), Ok(Packet::Ack { block: 0 }));
        assert_eq!(
            Packet::parse(b"\x00\x05\x00\x08tsize probe\x00"),
            Ok(Packet::Error {
                code: ErrorCode::OPTION_REFUSED,
                message: "tsize probe".into()
            })
        );
        assert_eq!(
            Packet::parse(b"\x00\x06blksize\x001468\x00"),
            Ok(Packet::OptionAck {
                options: vec![TftpOption::new("blksize", "1468")]
            })
        );
    }

    #[test]
    fn error_without_nul_or_message_still_parses() {
        // Firmware that aborts a tsize probe is not always tidy about the message.
        assert_eq!(
            Packet::parse(&[0, 5, 0, 8]),
            Ok(Packet::Error {
                code: ErrorCode::OPTION_REFUSED,
                message: String::new()
            })
        );
        assert_eq!(
            Packet::parse(b"\x00\x05\x00\x00abc"),
            Ok(Packet::Error {
                code: ErrorCode::NOT_DEFINED,
                message: "abc".into()
            })
        );
    }

    #[test]
    fn encodes_error_and_data_as_rfc_1350_says() {
        assert_eq!(
            Packet::Error {
                code: ErrorCode::ACCESS_VIOLATION,
                message: "no\0pe".into()
            }
            .to_bytes(),
            b"\x00\x05\x00\x02nope\x00"
        );
        assert_eq!(
            Packet::Data {
                block: 258,
                payload: b"ab"
            }
            .to_bytes(),
            b"\x00\x03\x01\x02ab"
        );
        assert_eq!(data_header(0xabcd), [0, 3, 0xab, 0xcd]);
    }

    #[test]
    fn is_request_opcode_looks_only_at_the_opcode() {
        assert!(PacketError::is_request_opcode(&[0, 1]));
        assert!(PacketError::is_request_opcode(&[0, 2, 0xff]));
        assert!(!PacketError::is_request_opcode(&[0, 4, 0, 0]));
        assert!(!PacketError::is_request_opcode(&[0]));
        assert!(!PacketError::is_request_opcode(&[]));
    }

    fn option_strategy() -> impl Strategy<Value = TftpOption> {
        ("[a-zA-Z]{1,12}", "[ -~&&[^\\x00]]{0,12}").prop_map(|(n, v)| TftpOption::new(&n, v))
    }

    fn request_strategy() -> impl Strategy<Value = Request> {
        (
            proptest::collection::vec(1u8..=255, 0..64),
            prop_oneof![Just(Mode::Octet), Just(Mode::NetAscii), Just(Mode::Mail)],
            proptest::collection::vec(option_strategy(), 0..6),
        )
            .prop_map(|(filename, mode, options)| Request {
                filename,
                mode,
                options,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// Whatever arrives on port 69, the parser answers with a value, never a panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Packet::parse(&bytes);
        }

        /// Random bytes behind a valid opcode reach the deeper parsing paths.
        #[test]
        fn random_bodies_never_panic(op in 0u16..8, body in proptest::collection::vec(
            prop_oneof![Just(0u8), any::<u8>()], 0..200)) {
            let mut bytes = op.to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let _ = Packet::parse(&bytes);
        }

        #[test]
        fn requests_round_trip(request in request_strategy(), write in any::<bool>()) {
            let packet = if write { Packet::WriteRequest(request) } else { Packet::ReadRequest(request) };
            let bytes = packet.to_bytes();
            prop_assert_eq!(Packet::parse(&bytes), Ok(packet));
        }

        #[test]
        fn data_ack_oack_round_trip(block in any::<u16>(), payload in proptest::collection::vec(any::<u8>(), 0..1468),
                                    options in proptest::collection::vec(option_strategy(), 0..6)) {
            let data = Packet::Data { block, payload: &payload };
            let bytes = data.to_bytes();
            prop_assert_eq!(Packet::parse(&bytes), Ok(data));
            let ack = Packet::Ack { block };
            let bytes = ack.to_bytes();
            prop_assert_eq!(Packet::parse(&bytes), Ok(ack));
            let oack = Packet::OptionAck { options };
            let bytes = oack.to_bytes();
            prop_assert_eq!(Packet::parse(&bytes), Ok(oack));
        }
    }
}
