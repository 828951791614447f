//! The IPMI chassis commands ipmi-rs 0.6 lacks, as pure encode/decode
//! functions (bytes in, values out), so they are tested without a BMC.
//!
//! References are to the IPMI v2.0 specification: Get Chassis Status (28.2),
//! Chassis Control (28.3), Set/Get System Boot Options (28.12/28.13, boot
//! option parameter 5 in table 28-14) and Close Session (22.19).

/// Network function of chassis requests.
pub(crate) const NETFN_CHASSIS: u8 = 0x00;
/// Network function of application requests (Close Session).
pub(crate) const NETFN_APP: u8 = 0x06;
/// Get Chassis Status.
pub(crate) const CMD_GET_CHASSIS_STATUS: u8 = 0x01;
/// Chassis Control.
pub(crate) const CMD_CHASSIS_CONTROL: u8 = 0x02;
/// Set System Boot Options.
pub(crate) const CMD_SET_BOOT_OPTIONS: u8 = 0x08;
/// Get System Boot Options.
pub(crate) const CMD_GET_BOOT_OPTIONS: u8 = 0x09;
/// Set Session Privilege Level.
pub(crate) const CMD_SET_SESSION_PRIVILEGE: u8 = 0x3B;
/// Close Session.
pub(crate) const CMD_CLOSE_SESSION: u8 = 0x3C;
/// Get Channel Authentication Capabilities (22.13), the session-less first
/// request of every session, whose answer says which LAN versions the BMC has.
pub(crate) const CMD_GET_CHANNEL_AUTH_CAPS: u8 = 0x38;
/// Privilege level ADMINISTRATOR, for Set Session Privilege Level.
pub(crate) const PRIVILEGE_ADMIN: u8 = 0x04;

/// Boot option parameter 5: boot flags.
const BOOT_FLAGS_PARAM: u8 = 5;
/// Boot flags data 1, bit 7: the flags are valid.
const FLAG_VALID: u8 = 0x80;
/// Boot flags data 1, bit 6: persistent (all future boots), clear = next boot only.
const FLAG_PERSISTENT: u8 = 0x40;
/// Boot flags data 1, bit 5: EFI boot, clear = PC compatible (legacy).
const FLAG_EFI: u8 = 0x20;
/// Boot device selector "force PXE" in data 2 bits 5:2.
const DEVICE_PXE: u8 = 0x1;

/// The control byte of a Chassis Control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChassisControl {
    PowerDown = 0,
    PowerUp = 1,
    SoftShutdown = 5,
}

impl ChassisControl {
    pub(crate) fn request(self) -> Vec<u8> {
        vec![self as u8]
    }

    /// What the command does, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ChassisControl::PowerDown => "chassis power down",
            ChassisControl::PowerUp => "chassis power up",
            ChassisControl::SoftShutdown => "chassis soft shutdown",
        }
    }
}

/// A response that is shorter than the command defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShortResponse {
    pub command: &'static str,
    pub got: usize,
    pub need: usize,
}

impl std::fmt::Display for ShortResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answer has {} data bytes, at least {} expected",
            self.command, self.got, self.need
        )
    }
}

/// The part of Get Chassis Status rackbox uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChassisStatus {
    /// Current power state byte, bit 0: system power is on.
    pub power_on: bool,
}

/// Decodes the data bytes (after the completion code) of Get Chassis Status.
pub(crate) fn parse_chassis_status(data: &[u8]) -> Result<ChassisStatus, ShortResponse> {
    // The spec has 3 mandatory bytes; only the first matters here, and some
    // simulators send fewer, so only the first is required.
    let Some(current) = data.first() else {
        return Err(ShortResponse {
            command: "Get Chassis Status",
            got: data.len(),
            need: 1,
        });
    };
    Ok(ChassisStatus {
        power_on: current & 0x01 != 0,
    })
}

/// The request data of Set System Boot Options, parameter 5: boot from PXE on
/// the next boot only (valid, not persistent), EFI when asked.
pub(crate) fn set_pxe_once_request(efi: bool) -> Vec<u8> {
    let data1 = FLAG_VALID | if efi { FLAG_EFI } else { 0 };
    // Byte 0: parameter selector with bit 7 clear ("parameter valid/unlocked").
    // Data 3..5 (console redirection, BIOS overrides, instance) stay default.
    vec![BOOT_FLAGS_PARAM, data1, DEVICE_PXE << 2, 0x00, 0x00, 0x00]
}

/// The request data of Get System Boot Options for parameter 5.
pub(crate) fn get_boot_flags_request() -> Vec<u8> {
    vec![BOOT_FLAGS_PARAM, 0x00, 0x00]
}

/// Boot flags as the BMC reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BootFlags {
    pub valid: bool,
    pub persistent: bool,
    pub efi: bool,
    /// Boot device selector, data 2 bits 5:2.
    pub device: u8,
}

impl BootFlags {
    pub(crate) fn is_pxe(&self) -> bool {
        self.device == DEVICE_PXE
    }

    /// The boot device selector in ipmitool's words.
    pub(crate) fn device_name(&self) -> &'static str {
        match self.device {
            0x0 => "no override",
            0x1 => "force PXE",
            0x2 => "force boot from default hard drive",
            0x3 => "force boot from default hard drive, safe mode",
            0x4 => "force boot from default diagnostic partition",
            0x5 => "force boot from default CD/DVD",
            0x6 => "force boot into BIOS setup",
            0x7 => "force boot from remotely connected floppy/primary removable media",
            0x8 => "force boot from primary remote media",
            0x9 => "force boot from remotely connected CD/DVD",
            0xB => "force boot from remotely connected hard drive",
            0xF => "force boot from floppy/primary removable media",
            _ => "a reserved boot device",
        }
    }
}

impl std::fmt::Display for BootFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, flags {}, {}, {}",
            self.device_name(),
            if self.valid { "valid" } else { "not valid" },
            if self.persistent {
                "persistent"
            } else {
                "next boot only"
            },
            if self.efi { "EFI" } else { "legacy BIOS" }
        )
    }
}

/// Decodes the data bytes (after the completion code) of Get System Boot
/// Options for parameter 5: version, selector, then the 5 boot flag bytes.
pub(crate) fn parse_boot_flags(data: &[u8]) -> Result<BootFlags, ShortResponse> {
    if data.len() < 4 {
        return Err(ShortResponse {
            command: "Get System Boot Options (boot flags)",
            got: data.len(),
            need: 4,
        });
    }
    let data1 = data[2];
    let data2 = data[3];
    Ok(BootFlags {
        valid: data1 & FLAG_VALID != 0,
        persistent: data1 & FLAG_PERSISTENT != 0,
        efi: data1 & FLAG_EFI != 0,
        device: (data2 >> 2) & 0x0F,
    })
}

/// Close Session request data: the BMC's session id, least significant byte first.
pub(crate) fn close_session_request(session_id: u32) -> Vec<u8> {
    session_id.to_le_bytes().to_vec()
}

/// The meaning of an IPMI completion code (generic codes of table 5-2, and
/// the command-specific ones of the commands used here).
pub(crate) fn completion_code_meaning(netfn: u8, cmd: u8, code: u8) -> &'static str {
    match (netfn, cmd, code) {
        (NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS | CMD_GET_BOOT_OPTIONS, 0x80) => {
            "boot option parameter not supported"
        }
        (NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS, 0x81) => {
            "boot options are locked (set in progress by another party)"
        }
        (NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS, 0x82) => "boot option parameter is read-only",
        (NETFN_APP, CMD_CLOSE_SESSION, 0x87) => "session id not found",
        (NETFN_APP, CMD_SET_SESSION_PRIVILEGE, 0x80) => {
            "privilege level not available for this user"
        }
        (NETFN_APP, CMD_SET_SESSION_PRIVILEGE, 0x81) => {
            "privilege level exceeds the user's or the channel's limit"
        }
        (_, _, 0xC0) => "node busy",
        (_, _, 0xC1) => "command not supported by this BMC",
        (_, _, 0xC2) => "command invalid for this LUN",
        (_, _, 0xC3) => "timeout while processing the command",
        (_, _, 0xC4) => "out of space",
        (_, _, 0xC5) => "reservation cancelled or invalid",
        (_, _, 0xC6) => "request data truncated",
        (_, _, 0xC7) => "request data length invalid",
        (_, _, 0xC8) => "request data field length limit exceeded",
        (_, _, 0xC9) => "parameter out of range",
        (_, _, 0xCA) => "cannot return the number of requested data bytes",
        (_, _, 0xCB) => "requested sensor, data or record not present",
        (_, _, 0xCC) => "invalid data field in request (the BMC does not support this)",
        (_, _, 0xCD) => "command illegal for this sensor or record type",
        (_, _, 0xCE) => "response could not be provided",
        (_, _, 0xCF) => "duplicate request",
        (_, _, 0xD0) => "SDR repository in update mode",
        (_, _, 0xD1) => "device in firmware update mode",
        (_, _, 0xD2) => "BMC initialization in progress",
        (_, _, 0xD3) => "destination unavailable",
        (_, _, 0xD4) => "insufficient privilege level for this command",
        (_, _, 0xD5) => "command not supported in the present state",
        (_, _, 0xD6) => "command sub-function disabled or unavailable",
        (_, _, 0xFF) => "unspecified error",
        (_, _, 0x01..=0x7E) => "OEM-specific error",
        (_, _, 0x80..=0xBE) => "command-specific error",
        _ => "reserved completion code",
    }
}

/// Whether the datagram is the answer to Get Channel Authentication
/// Capabilities, and then whether it offers IPMI 2.0 (RMCP+) sessions: `None`
/// for any other datagram. The answer is session-less IPMI 1.5 (RMCP header,
/// 1.5 session header, IPMI message; 13.6 and 22.13), so it is read here
/// before ipmi-rs sees it; "offers 2.0" is read exactly as ipmi-rs reads it
/// (the extended-capabilities bit, then "IPMI v2.0 connections supported").
pub(crate) fn auth_caps_offer_ipmi2(datagram: &[u8]) -> Option<bool> {
    /// RMCP version 1.0, class IPMI (13.1.3).
    const RMCP_VERSION: u8 = 0x06;
    const RMCP_CLASS_IPMI: u8 = 0x07;
    /// Session header auth type "none": no 16-byte auth code follows.
    const AUTH_NONE: u8 = 0x00;
    /// RMCP+ (IPMI 2.0) session header: not the 1.5 format.
    const AUTH_RMCP_PLUS: u8 = 0x06;
    /// The App network function's response code.
    const NETFN_APP_RESPONSE: u8 = NETFN_APP | 1;
    if datagram.len() < 5 || datagram[0] != RMCP_VERSION || datagram[3] & 0x1F != RMCP_CLASS_IPMI {
        return None;
    }
    let auth_type = datagram[4];
    if auth_type == AUTH_RMCP_PLUS {
        return None;
    }
    // Auth type, sequence (4), session id (4), [auth code (16)], length (1).
    let header = 4 + 1 + 4 + 4 + if auth_type == AUTH_NONE { 0 } else { 16 } + 1;
    let message = datagram.get(header..)?;
    // rqAddr, netFn/rqLUN, checksum, rsAddr, rqSeq/rsLUN, cmd, completion code.
    if message.len() < 7
        || message[1] >> 2 != NETFN_APP_RESPONSE
        || message[5] != CMD_GET_CHANNEL_AUTH_CAPS
    {
        return None;
    }
    let data = &message[7..];
    let extended = data.get(1).is_some_and(|b| b & 0x80 != 0);
    Some(extended && data.get(3).is_some_and(|b| b & 0x02 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_status_power_bit() {
        assert!(parse_chassis_status(&[0x01, 0x00, 0x00]).unwrap().power_on);
        assert!(!parse_chassis_status(&[0x60, 0x10, 0x00]).unwrap().power_on);
        assert!(parse_chassis_status(&[]).is_err());
    }

    #[test]
    fn pxe_once_request_bytes() {
        // Same bytes as `ipmitool chassis bootdev pxe` (+ options=efiboot).
        assert_eq!(set_pxe_once_request(false), [0x05, 0x80, 0x04, 0, 0, 0]);
        assert_eq!(set_pxe_once_request(true), [0x05, 0xA0, 0x04, 0, 0, 0]);
        assert_eq!(get_boot_flags_request(), [0x05, 0x00, 0x00]);
    }

    #[test]
    fn boot_flags_read_back() {
        // What a BMC that kept everything says.
        let f = parse_boot_flags(&[0x01, 0x05, 0xA0, 0x04, 0, 0, 0]).unwrap();
        assert!(f.valid && f.efi && !f.persistent && f.is_pxe());
        // What ipmi_sim says: device only, no flag bits.
        let f = parse_boot_flags(&[0x01, 0x05, 0x00, 0x04, 0, 0, 0]).unwrap();
        assert!(!f.valid && !f.efi && f.is_pxe());
        assert_eq!(
            f.to_string(),
            "force PXE, flags not valid, next boot only, legacy BIOS"
        );
        // A BMC that dropped the override.
        let f = parse_boot_flags(&[0x01, 0x05, 0x00, 0x00, 0, 0, 0]).unwrap();
        assert!(!f.is_pxe());
        assert_eq!(f.device_name(), "no override");
        assert!(parse_boot_flags(&[0x01, 0x05]).is_err());
    }

    #[test]
    fn completion_codes_in_words() {
        assert_eq!(
            completion_code_meaning(NETFN_CHASSIS, CMD_CHASSIS_CONTROL, 0xD4),
            "insufficient privilege level for this command"
        );
        assert_eq!(
            completion_code_meaning(NETFN_CHASSIS, CMD_SET_BOOT_OPTIONS, 0x80),
            "boot option parameter not supported"
        );
        assert_eq!(close_session_request(0x11223344), [0x44, 0x33, 0x22, 0x11]);
    }

    /// A session-less Get Channel Authentication Capabilities answer with
    /// these data bytes.
    fn caps_answer(data: &[u8]) -> Vec<u8> {
        let mut d = vec![0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
        d.push((7 + data.len() + 1) as u8);
        d.extend([
            0x81,
            (NETFN_APP | 1) << 2,
            0x00,
            0x20,
            0x00,
            CMD_GET_CHANNEL_AUTH_CAPS,
            0x00,
        ]);
        d.extend(data);
        d.push(0x00);
        d
    }

    #[test]
    fn auth_caps_answers_are_read_for_ipmi2() {
        // ipmi_sim's answer: extended capabilities, 2.0 and 1.5.
        let both = caps_answer(&[0x01, 0x97, 0x04, 0x03, 0, 0, 0, 0]);
        assert_eq!(auth_caps_offer_ipmi2(&both), Some(true));
        // Extended capabilities, 1.5 only, straight password only: a downgrade.
        let v15 = caps_answer(&[0x01, 0x90, 0x04, 0x01, 0, 0, 0, 0]);
        assert_eq!(auth_caps_offer_ipmi2(&v15), Some(false));
        // No extended capabilities at all: a 1.5-only BMC.
        let old = caps_answer(&[0x01, 0x14, 0x04, 0, 0, 0, 0]);
        assert_eq!(auth_caps_offer_ipmi2(&old), Some(false));
        // Anything else is not for this check: an RMCP+ packet, another
        // command, a pong, truncated bytes.
        let mut rmcp_plus = both.clone();
        rmcp_plus[4] = 0x06;
        assert_eq!(auth_caps_offer_ipmi2(&rmcp_plus), None);
        let mut other = both.clone();
        other[14 + 5] = CMD_GET_CHASSIS_STATUS;
        assert_eq!(auth_caps_offer_ipmi2(&other), None);
        assert_eq!(auth_caps_offer_ipmi2(&[0x06, 0x00, 0xFF, 0x06, 0x00]), None);
        for n in 0..both.len() {
            let _ = auth_caps_offer_ipmi2(&both[..n]);
        }
    }
}
