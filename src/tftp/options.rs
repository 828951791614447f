//! Option negotiation: which of a client's options (RFC 2347) the server accepts,
//! and with which values.
//!
//! Pure: the request's options, the file size and the server's limits in; the values
//! the transfer will use and the OACK to send out. Unknown options and options with
//! values outside their RFC range are left out of the OACK, which RFC 2347 allows and
//! which keeps a sloppy firmware booting instead of failing it.

use std::time::Duration;

use super::packet::TftpOption;

/// Block size every client gets without the blksize option (RFC 1350).
pub(crate) const DEFAULT_BLOCK_SIZE: u16 = 512;
/// Smallest block size RFC 2348 allows.
pub const MIN_BLOCK_SIZE: u16 = 8;
/// Largest block size RFC 2348 allows (fits a 64 KiB IP datagram).
pub(crate) const MAX_BLOCK_SIZE: u16 = 65464;

/// What the server is willing to go up to, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiationLimits {
    /// Largest block size the server answers with (1468 fits a 1500-byte MTU).
    pub max_block_size: u16,
    /// Largest window the server answers with (RFC 7440).
    pub max_window_size: u16,
    /// Largest retransmission timeout, in seconds, the server honours (RFC 2349):
    /// a client asking more gets no timeout option back.
    pub max_timeout_secs: u8,
}

/// What a transfer uses once options are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Payload bytes in every DATA block but the last.
    pub block_size: u16,
    /// DATA blocks sent before waiting for an ACK.
    pub window_size: u16,
    /// Retransmission timeout the client asked for (RFC 2349), if it did.
    pub timeout: Option<Duration>,
    /// Options to acknowledge: empty means no OACK, data starts at once.
    pub acknowledged: Vec<TftpOption>,
}

/// Settles the options of a read request for a file of `file_size` bytes.
///
/// The first occurrence of an option wins; the server's answer never exceeds what the
/// client asked for (RFC 2348 and 7440 let the server answer a smaller value).
pub fn negotiate(
    requested: &[TftpOption],
    file_size: u64,
    limits: NegotiationLimits,
) -> Negotiated {
    let mut negotiated = Negotiated {
        block_size: DEFAULT_BLOCK_SIZE,
        window_size: 1,
        timeout: None,
        acknowledged: Vec::new(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for option in requested {
        let name = option.name.as_str();
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let value = option.value.trim();
        match name {
            "blksize" => {
                let Ok(asked) = value.parse::<u16>() else {
                    continue;
                };
                if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&asked) {
                    continue;
                }
                let answer = asked.min(limits.max_block_size).max(MIN_BLOCK_SIZE);
                negotiated.block_size = answer;
                negotiated
                    .acknowledged
                    .push(TftpOption::new(name, answer.to_string()));
            }
            "tsize" => {
                // In a read request the client sends 0 and the server answers the size;
                // any number is accepted, the answer is the size either way.
                // An empty file gets no tsize: curl refuses "tsize 0" in an OACK as
                // invalid, and a client learns nothing from it that the single empty
                // DATA block does not tell it.
                if value.parse::<u64>().is_err() || file_size == 0 {
                    continue;
                }
                negotiated
                    .acknowledged
                    .push(TftpOption::new(name, file_size.to_string()));
            }
            "timeout" => {
                let Ok(seconds) = value.parse::<u8>() else {
                    continue;
                };
                if seconds == 0 || seconds > limits.max_timeout_secs {
                    continue;
                }
                // RFC 2349: the server must answer the same value or leave the option out.
                negotiated.timeout = Some(Duration::from_secs(u64::from(seconds)));
                negotiated
                    .acknowledged
                    .push(TftpOption::new(name, seconds.to_string()));
            }
            "windowsize" => {
                let Ok(asked) = value.parse::<u16>() else {
                    continue;
                };
                if asked == 0 {
                    continue;
                }
                let answer = asked.min(limits.max_window_size).max(1);
                negotiated.window_size = answer;
                negotiated
                    .acknowledged
                    .push(TftpOption::new(name, answer.to_string()));
            }
            _ => {}
        }
    }
    negotiated
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: NegotiationLimits = NegotiationLimits {
        max_block_size: 1468,
        max_window_size: 64,
        max_timeout_secs: 255,
    };

    fn options(pairs: &[(&str, &str)]) -> Vec<TftpOption> {
        pairs.iter().map(|(n, v)| TftpOption::new(n, *v)).collect()
    }

    #[test]
    fn no_options_means_no_oack_and_rfc_1350_defaults() {
        let negotiated = negotiate(&[], 1000, LIMITS);
        assert_eq!(negotiated.block_size, 512);
        assert_eq!(negotiated.window_size, 1);
        assert_eq!(negotiated.timeout, None);
        assert!(negotiated.acknowledged.is_empty());
    }

    #[test]
    fn tsize_answers_the_file_size() {
        let negotiated = negotiate(&options(&[("tsize", "0")]), 123_456_789, LIMITS);
        assert_eq!(negotiated.acknowledged, options(&[("tsize", "123456789")]));
    }

    #[test]
    fn empty_files_get_no_tsize() {
        let negotiated = negotiate(&options(&[("tsize", "0"), ("blksize", "1024")]), 0, LIMITS);
        assert_eq!(negotiated.acknowledged, options(&[("blksize", "1024")]));
    }

    #[test]
    fn blksize_is_clamped_to_the_server_maximum_and_never_raised() {
        let clamp = negotiate(&options(&[("blksize", "65464")]), 0, LIMITS);
        assert_eq!(clamp.block_size, 1468);
        assert_eq!(clamp.acknowledged, options(&[("blksize", "1468")]));
        let smaller = negotiate(&options(&[("blksize", "1024")]), 0, LIMITS);
        assert_eq!(smaller.block_size, 1024);
        let minimum = negotiate(&options(&[("blksize", "8")]), 0, LIMITS);
        assert_eq!(minimum.block_size, 8);
    }

    #[test]
    fn out_of_range_or_garbage_values_are_left_out() {
        for (name, value) in [
            ("blksize", "7"),
            ("blksize", "65465"),
            ("blksize", "-1"),
            ("blksize", "big"),
            ("blksize", ""),
            ("timeout", "0"),
            ("timeout", "256"),
            ("timeout", "1.5"),
            ("windowsize", "0"),
            ("windowsize", "65536"),
            ("tsize", "x"),
        ] {
            let negotiated = negotiate(&options(&[(name, value)]), 10, LIMITS);
            assert!(
                negotiated.acknowledged.is_empty(),
                "{name}={value} was acknowledged"
            );
            assert_eq!(negotiated.block_size, 512);
            assert_eq!(negotiated.window_size, 1);
            assert_eq!(negotiated.timeout, None);
        }
    }

    #[test]
    fn timeout_is_echoed_within_1_to_255() {
        for seconds in [1u8, 5, 255] {
            let negotiated = negotiate(&options(&[("timeout", &seconds.to_string())]), 0, LIMITS);
            assert_eq!(
                negotiated.timeout,
                Some(Duration::from_secs(seconds.into()))
            );
            assert_eq!(
                negotiated.acknowledged,
                options(&[("timeout", &seconds.to_string())])
            );
        }
    }

    #[test]
    fn a_timeout_above_the_server_maximum_is_not_honoured() {
        let limits = NegotiationLimits {
            max_timeout_secs: 5,
            ..LIMITS
        };
        let honoured = negotiate(&options(&[("timeout", "5")]), 0, limits);
        assert_eq!(honoured.timeout, Some(Duration::from_secs(5)));
        for seconds in ["6", "255"] {
            let negotiated = negotiate(
                &options(&[("timeout", seconds), ("blksize", "1024")]),
                0,
                limits,
            );
            assert_eq!(negotiated.timeout, None, "timeout={seconds}");
            assert_eq!(negotiated.acknowledged, options(&[("blksize", "1024")]));
        }
    }

    #[test]
    fn windowsize_is_clamped_to_the_server_maximum() {
        let negotiated = negotiate(&options(&[("windowsize", "65535")]), 0, LIMITS);
        assert_eq!(negotiated.window_size, 64);
        assert_eq!(negotiated.acknowledged, options(&[("windowsize", "64")]));
        let small = negotiate(&options(&[("windowsize", "8")]), 0, LIMITS);
        assert_eq!(small.window_size, 8);
    }

    #[test]
    fn unknown_options_are_ignored_and_first_occurrence_wins() {
        let negotiated = negotiate(
            &options(&[
                ("multicast", ""),
                ("blksize", "1024"),
                ("rollover", "0"),
                ("blksize", "512"),
                ("tsize", "0"),
            ]),
            42,
            LIMITS,
        );
        assert_eq!(negotiated.block_size, 1024);
        assert_eq!(
            negotiated.acknowledged,
            options(&[("blksize", "1024"), ("tsize", "42")])
        );
    }

    proptest! {
        #[test]
        fn answers_never_exceed_request_or_limits(blksize in any::<u16>(), window in any::<u16>(),
                                                  max_block in 8u16..=65464, max_window in 1u16..=u16::MAX) {
            let limits = NegotiationLimits { max_block_size: max_block, max_window_size: max_window, max_timeout_secs: 5 };
            let negotiated = negotiate(&options(&[("blksize", &blksize.to_string()),
                ("windowsize", &window.to_string())]), 0, limits);
            prop_assert!(negotiated.block_size >= MIN_BLOCK_SIZE);
            prop_assert!(negotiated.block_size <= max_block.max(DEFAULT_BLOCK_SIZE));
            if (8..=65464).contains(&blksize) {
                prop_assert!(negotiated.block_size <= blksize);
            } else {
                prop_assert_eq!(negotiated.block_size, DEFAULT_BLOCK_SIZE);
            }
            prop_assert!(negotiated.window_size >= 1 && negotiated.window_size <= max_window.max(1));
        }
    }
}
