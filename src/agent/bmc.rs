//! The machine's BMC seen from inside: in-band IPMI through the kernel's `/dev/ipmi0`
//! (ipmi_si + ipmi_devintf), as MAAS's commissioning does it.
//!
//! - Discovery reads the BMC's identity (Get Device ID), finds its LAN channels (Get Channel Info,
//!   medium 802.3) and reads each one's address configuration (Get LAN Configuration
//!   Parameters: IP address source, address, netmask, MAC, default gateway, VLAN).
//! - [`ensure_user`] gives rackbox a BMC user of its own, as MAAS does with "maas": the slot that
//!   already has that name, else the first empty one; name, a fresh random password, admin
//!   privilege with IPMI messaging on the LAN channel, enabled.
//!
//! Requests and answers are encoded and decoded by pure functions (tested below, and the whole
//! flow against a fake BMC); the device is a thin [`Ipmi`] implementation over two ioctls with a
//! poll timeout, so a silent BMC costs seconds, never a hang. The password is never logged, and
//! no error carries a request's data.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::inventory::{Bmc, BmcCredentials, BmcLan, IpmiDeviceInfo};

/// The user rackbox creates on a machine's BMC (MAAS's name, so an operator moving from MAAS
/// finds the same account).
pub(crate) const BMC_USER: &str = "maas";
/// Length of the generated password: 16 characters fit both the 16-byte (IPMI 1.5) and the
/// 20-byte (IPMI 2.0) password forms.
pub(crate) const PASSWORD_LEN: usize = 16;
/// How long one request may wait for its answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const NETFN_APP: u8 = 0x06;
pub(crate) const NETFN_TRANSPORT: u8 = 0x0c;
pub(crate) const CMD_GET_DEVICE_ID: u8 = 0x01;
pub(crate) const CMD_GET_CHANNEL_INFO: u8 = 0x42;
pub(crate) const CMD_SET_USER_ACCESS: u8 = 0x43;
pub(crate) const CMD_GET_USER_ACCESS: u8 = 0x44;
pub(crate) const CMD_SET_USER_NAME: u8 = 0x45;
pub(crate) const CMD_GET_USER_NAME: u8 = 0x46;
pub(crate) const CMD_SET_USER_PASSWORD: u8 = 0x47;
pub(crate) const CMD_GET_LAN_CONFIG: u8 = 0x02;

/// LAN configuration parameters (IPMI 2.0, table 23-4).
pub(crate) const LAN_IP_ADDRESS: u8 = 3;
pub(crate) const LAN_IP_SOURCE: u8 = 4;
pub(crate) const LAN_MAC: u8 = 5;
pub(crate) const LAN_NETMASK: u8 = 6;
pub(crate) const LAN_GATEWAY: u8 = 12;
pub(crate) const LAN_VLAN: u8 = 20;

/// Channel medium type of a LAN channel (802.3).
pub(crate) const MEDIUM_LAN: u8 = 4;
/// Privilege level "administrator".
pub(crate) const PRIV_ADMIN: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    #[error("cannot open the IPMI device {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("IPMI request netfn {netfn:#04x} cmd {cmd:#04x} failed: {source}")]
    Io {
        netfn: u8,
        cmd: u8,
        source: std::io::Error,
    },
    #[error("the BMC did not answer netfn {netfn:#04x} cmd {cmd:#04x} within {timeout:?}")]
    Timeout {
        netfn: u8,
        cmd: u8,
        timeout: Duration,
    },
    #[error("the BMC refused netfn {netfn:#04x} cmd {cmd:#04x}: completion code {code:#04x}")]
    Refused { netfn: u8, cmd: u8, code: u8 },
    #[error("the BMC's answer to netfn {netfn:#04x} cmd {cmd:#04x} is too short ({len} bytes)")]
    Short { netfn: u8, cmd: u8, len: usize },
    #[error("the BMC has no LAN channel")]
    NoLanChannel,
    #[error("the BMC has no free user slot (of {0}) and none named \"{BMC_USER}\"")]
    NoUserSlot(u8),
    #[error("a BMC user name is at most 16 bytes and a password at most 20")]
    TooLong,
}

/// One request/response exchange with the BMC. Answers are the data after the completion
/// code; a non-zero completion code is [`BmcError::Refused`].
pub(crate) trait Ipmi {
    fn call(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, BmcError>;
}

// --- requests (pure) -----------------------------------------------------------------------

/// Get LAN Configuration Parameters of `param` on `channel` (set and block selector 0).
pub(crate) fn get_lan_config(channel: u8, param: u8) -> [u8; 4] {
    [channel & 0x0f, param, 0, 0]
}

/// Set User Name: the name NUL-padded to 16 bytes.
pub(crate) fn set_user_name(user_id: u8, name: &str) -> Result<Vec<u8>, BmcError> {
    if name.len() > 16 {
        return Err(BmcError::TooLong);
    }
    let mut data = vec![user_id & 0x3f];
    let mut field = [0u8; 16];
    field[..name.len()].copy_from_slice(name.as_bytes());
    data.extend_from_slice(&field);
    Ok(data)
}

/// What Set User Password does (the operations rackbox uses; 0 disables, 3 tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PasswordOp {
    Enable = 1,
    Set = 2,
}

/// Set User Password. `wide` stores a 20-byte (IPMI 2.0) password, else a 16-byte one; the
/// password is NUL-padded. Enable carries no password.
pub(crate) fn set_user_password(
    user_id: u8,
    op: PasswordOp,
    password: &str,
    wide: bool,
) -> Result<Vec<u8>, BmcError> {
    let size = if wide { 20 } else { 16 };
    if password.len() > size {
        return Err(BmcError::TooLong);
    }
    let mut data = vec![(user_id & 0x3f) | if wide { 0x80 } else { 0 }, op as u8];
    if op == PasswordOp::Set {
        let mut field = vec![0u8; size];
        field[..password.len()].copy_from_slice(password.as_bytes());
        data.extend_from_slice(&field);
    }
    Ok(data)
}

/// Set User Access on `channel`: change the bits, IPMI messaging on, link authentication and
/// callback-only off, privilege limit `privilege`.
pub(crate) fn set_user_access(channel: u8, user_id: u8, privilege: u8) -> [u8; 4] {
    // 0x80: change the bits that follow; 0x10: IPMI messaging enabled. The last byte is the
    // session limit: 0 keeps the BMC's.
    [
        0x80 | 0x10 | (channel & 0x0f),
        user_id & 0x3f,
        privilege & 0x0f,
        0,
    ]
}

// --- answers (pure) ------------------------------------------------------------------------

fn need(netfn: u8, cmd: u8, data: &[u8], len: usize) -> Result<(), BmcError> {
    if data.len() < len {
        return Err(BmcError::Short {
            netfn,
            cmd,
            len: data.len(),
        });
    }
    Ok(())
}

/// Get Device ID: firmware revision (major, BCD minor), IPMI version (BCD, low nibble major),
/// manufacturer (IANA, 3 bytes LE) and product id (2 bytes LE).
pub fn parse_device_id(data: &[u8]) -> Result<IpmiDeviceInfo, BmcError> {
    need(NETFN_APP, CMD_GET_DEVICE_ID, data, 11)?;
    Ok(IpmiDeviceInfo {
        device_id: data[0],
        firmware_revision: format!("{}.{:02x}", data[2] & 0x7f, data[3]),
        ipmi_version: format!("{}.{}", data[4] & 0x0f, data[4] >> 4),
        manufacturer_id: u32::from_le_bytes([data[6], data[7], data[8], 0]),
        product_id: u16::from_le_bytes([data[9], data[10]]),
    })
}

/// Get Channel Info: the channel's medium type.
pub fn parse_channel_medium(data: &[u8]) -> Result<u8, BmcError> {
    need(NETFN_APP, CMD_GET_CHANNEL_INFO, data, 2)?;
    Ok(data[1] & 0x7f)
}

/// An IPv4 parameter (address, netmask, gateway): revision byte, then 4 bytes.
pub fn parse_lan_ipv4(data: &[u8]) -> Result<Ipv4Addr, BmcError> {
    need(NETFN_TRANSPORT, CMD_GET_LAN_CONFIG, data, 5)?;
    Ok(Ipv4Addr::new(data[1], data[2], data[3], data[4]))
}

/// The MAC parameter: revision byte, then 6 bytes, as lower-case colon-separated hex.
pub fn parse_lan_mac(data: &[u8]) -> Result<String, BmcError> {
    need(NETFN_TRANSPORT, CMD_GET_LAN_CONFIG, data, 7)?;
    Ok(data[1..7]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The IP address source parameter in words.
pub fn parse_lan_ip_source(data: &[u8]) -> Result<&'static str, BmcError> {
    need(NETFN_TRANSPORT, CMD_GET_LAN_CONFIG, data, 2)?;
    Ok(match data[1] & 0x0f {
        0 => "unspecified",
        1 => "static",
        2 => "dhcp",
        3 => "bios",
        _ => "other",
    })
}

/// The 802.1q VLAN parameter: the VLAN id when enabled.
pub fn parse_lan_vlan(data: &[u8]) -> Result<Option<u16>, BmcError> {
    need(NETFN_TRANSPORT, CMD_GET_LAN_CONFIG, data, 3)?;
    let id = u16::from_le_bytes([data[1], data[2] & 0x0f]);
    Ok((data[2] & 0x80 != 0).then_some(id))
}

/// Get User Access: the number of user slots the BMC has.
pub fn parse_max_users(data: &[u8]) -> Result<u8, BmcError> {
    need(NETFN_APP, CMD_GET_USER_ACCESS, data, 4)?;
    Ok(data[0] & 0x3f)
}

/// Get User Name: the name up to its first NUL.
pub fn parse_user_name(data: &[u8]) -> Result<String, BmcError> {
    need(NETFN_APP, CMD_GET_USER_NAME, data, 16)?;
    let name = &data[..16];
    let end = name.iter().position(|b| *b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&name[..end]).trim().to_string())
}

/// How long a password waits for the kernel's random generator to be seeded. Early in a
/// ramdisk on a machine without a hardware generator (a VM without RDRAND or virtio-rng) it may
/// not be for minutes; a blocking read would stall commissioning.
pub(crate) const ENTROPY_WAIT: Duration = Duration::from_secs(30);

/// Letters and digits from `bytes` (rejection sampling: no bias), up to `len` of them.
pub fn password_from_bytes(bytes: &[u8], len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let limit = 256 - 256 % ALPHABET.len(); // 248: a multiple of 62
    bytes
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .take(len)
        .collect()
}

/// A random password of [`PASSWORD_LEN`] letters and digits from the kernel's seeded generator
/// (getrandom without blocking, retried until `wait` has passed); None when it is not seeded by
/// then: no weak password is ever made.
pub(crate) fn random_password(wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let mut buf = [0u8; 64];
        // SAFETY: getrandom writes at most buf.len() bytes into buf.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
        if usize::try_from(n).is_ok_and(|n| n == buf.len()) {
            let pw = password_from_bytes(&buf, PASSWORD_LEN);
            if pw.len() == PASSWORD_LEN {
                return Some(pw);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// --- flows over any transport --------------------------------------------------------------

/// The channels (1 to 11) whose medium is 802.3 LAN. Channels that do not exist answer with
/// an error and are skipped.
pub(crate) fn lan_channels(ipmi: &mut impl Ipmi) -> Vec<u8> {
    (1u8..=11)
        .filter(|&ch| {
            ipmi.call(NETFN_APP, CMD_GET_CHANNEL_INFO, &[ch])
                .and_then(|d| parse_channel_medium(&d))
                .is_ok_and(|m| m == MEDIUM_LAN)
        })
        .collect()
}

/// The address configuration of LAN channel `channel`. The address is required; the other
/// parameters are left empty when the BMC does not support them.
pub(crate) fn read_lan(ipmi: &mut impl Ipmi, channel: u8) -> Result<BmcLan, BmcError> {
    let mut get = |param: u8| {
        ipmi.call(
            NETFN_TRANSPORT,
            CMD_GET_LAN_CONFIG,
            &get_lan_config(channel, param),
        )
    };
    let ip = parse_lan_ipv4(&get(LAN_IP_ADDRESS)?)?;
    let text = |r: Result<Ipv4Addr, BmcError>| r.map(|a| a.to_string()).unwrap_or_default();
    Ok(BmcLan {
        channel,
        ip_address: ip.to_string(),
        ip_source: get(LAN_IP_SOURCE)
            .and_then(|d| parse_lan_ip_source(&d))
            .unwrap_or("unknown")
            .to_string(),
        netmask: text(get(LAN_NETMASK).and_then(|d| parse_lan_ipv4(&d))),
        gateway: text(get(LAN_GATEWAY).and_then(|d| parse_lan_ipv4(&d))),
        mac: get(LAN_MAC)
            .and_then(|d| parse_lan_mac(&d))
            .unwrap_or_default(),
        vlan: get(LAN_VLAN)
            .and_then(|d| parse_lan_vlan(&d))
            .ok()
            .flatten(),
    })
}

/// What discovery found: the BMC's identity and its LAN channel (the first one with an
/// address, else the first one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub(crate) device: Option<IpmiDeviceInfo>,
    pub(crate) lan: Option<BmcLan>,
}

/// Reads the BMC's identity and LAN configuration; what cannot be read is left out (and
/// logged), never an error.
pub(crate) fn discover(ipmi: &mut impl Ipmi) -> Discovered {
    let device = match ipmi
        .call(NETFN_APP, CMD_GET_DEVICE_ID, &[])
        .and_then(|d| parse_device_id(&d))
    {
        Ok(d) => Some(d),
        // A BMC that does not answer at all is not asked 17 more questions.
        Err(e @ BmcError::Timeout { .. }) => {
            tracing::warn!(error = %e, "BMC: silent");
            return Discovered::default();
        }
        Err(e) => {
            tracing::warn!(error = %e, "BMC: no device id");
            None
        }
    };
    let mut lans = Vec::new();
    for ch in lan_channels(ipmi) {
        match read_lan(ipmi, ch) {
            Ok(l) => lans.push(l),
            Err(e) => tracing::warn!(channel = ch, error = %e, "BMC: LAN configuration unreadable"),
        }
    }
    let chosen = lans
        .iter()
        .position(|l| has_address(&l.ip_address))
        .unwrap_or(0);
    let lan = (!lans.is_empty()).then(|| lans.swap_remove(chosen));
    Discovered { device, lan }
}

/// A BMC address rackbox could use: an IPv4 address that is not 0.0.0.0 or broadcast.
pub(crate) fn has_address(ip: &str) -> bool {
    ip.parse::<Ipv4Addr>()
        .is_ok_and(|a| !a.is_unspecified() && !a.is_broadcast())
}

/// The user slot for rackbox: the one already named `name`, else the first empty one (slot 1
/// is the anonymous user and is never taken).
pub(crate) fn choose_user_slot(
    ipmi: &mut impl Ipmi,
    channel: u8,
    name: &str,
) -> Result<u8, BmcError> {
    let data = ipmi.call(NETFN_APP, CMD_GET_USER_ACCESS, &[channel & 0x0f, 1])?;
    let max = parse_max_users(&data)?;
    let mut empty = None;
    for id in 2..=max {
        // A slot whose name cannot be read is neither ours nor known to be free.
        let Ok(current) = ipmi
            .call(NETFN_APP, CMD_GET_USER_NAME, &[id])
            .and_then(|d| parse_user_name(&d))
        else {
            continue;
        };
        if current == name {
            return Ok(id);
        }
        if current.is_empty() && empty.is_none() {
            empty = Some(id);
        }
    }
    empty.ok_or(BmcError::NoUserSlot(max))
}

/// Creates (or takes over) the BMC user `name` with `password`: admin on LAN `channel`, IPMI
/// messaging on, enabled. Returns the slot. The password is never logged.
pub(crate) fn ensure_user(
    ipmi: &mut impl Ipmi,
    channel: u8,
    name: &str,
    password: &str,
) -> Result<u8, BmcError> {
    let id = choose_user_slot(ipmi, channel, name)?;
    ipmi.call(NETFN_APP, CMD_SET_USER_NAME, &set_user_name(id, name)?)?;
    // The 20-byte form (IPMI 2.0) first; BMCs that only know IPMI 1.5 take 16 bytes.
    let wide = set_user_password(id, PasswordOp::Set, password, true)?;
    if let Err(e) = ipmi.call(NETFN_APP, CMD_SET_USER_PASSWORD, &wide) {
        tracing::info!(error = %e, "BMC: 20-byte password refused; trying the 16-byte form");
        let narrow = set_user_password(id, PasswordOp::Set, password, false)?;
        ipmi.call(NETFN_APP, CMD_SET_USER_PASSWORD, &narrow)?;
    }
    ipmi.call(
        NETFN_APP,
        CMD_SET_USER_ACCESS,
        &set_user_access(channel, id, PRIV_ADMIN),
    )?;
    ipmi.call(
        NETFN_APP,
        CMD_SET_USER_PASSWORD,
        &set_user_password(id, PasswordOp::Enable, "", false)?,
    )?;
    tracing::info!(user = name, slot = id, channel, "BMC user ready");
    Ok(id)
}

/// Fills the in-band part of `bmc` (identity, LAN channel, and with `create_user` the
/// credentials of a BMC user for the appliance) when the machine has `<root>/dev/ipmi0`.
/// Failures are logged and leave those fields empty. Blocking: call it on a blocking thread.
pub fn fill(root: &Path, bmc: &mut Bmc, create_user: bool) {
    if !bmc.ipmi_device {
        return;
    }
    match discover_device(&root.join("dev/ipmi0"), create_user) {
        Ok((found, credentials)) => {
            bmc.ipmi = found.device;
            bmc.lan = found.lan;
            bmc.credentials = credentials;
        }
        Err(e) => tracing::warn!(error = %e, "BMC: in-band IPMI unavailable"),
    }
}

/// Discovery through the device at `device` (`/dev/ipmi0`), and with `create_user` a BMC user
/// for rackbox on the LAN channel found. Blocking: call it on a blocking thread.
pub(crate) fn discover_device(
    device: &Path,
    create_user: bool,
) -> Result<(Discovered, Option<BmcCredentials>), BmcError> {
    let mut dev = DevIpmi::open(device, REQUEST_TIMEOUT)?;
    let found = discover(&mut dev);
    tracing::info!(
        address = found.lan.as_ref().map(|l| l.ip_address.as_str()),
        channel = found.lan.as_ref().map(|l| l.channel),
        "BMC discovered in-band"
    );
    if !create_user {
        return Ok((found, None));
    }
    let Some(channel) = found.lan.as_ref().map(|l| l.channel) else {
        tracing::warn!("BMC: no LAN channel, so no user created");
        return Ok((found, None));
    };
    let Some(password) = random_password(ENTROPY_WAIT) else {
        tracing::warn!(
            wait = ?ENTROPY_WAIT,
            "BMC: the kernel's random generator is not seeded, so no BMC user is created"
        );
        return Ok((found, None));
    };
    match ensure_user(&mut dev, channel, BMC_USER, &password) {
        Ok(_) => Ok((
            found,
            Some(BmcCredentials {
                username: BMC_USER.to_string(),
                password,
            }),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "BMC: user not created");
            Ok((found, None))
        }
    }
}

// --- the kernel device ---------------------------------------------------------------------

/// `struct ipmi_system_interface_addr` (linux/ipmi.h).
#[repr(C)]
struct SystemInterfaceAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    lun: libc::c_uchar,
}

/// `struct ipmi_msg`.
#[repr(C)]
struct RawMsg {
    netfn: libc::c_uchar,
    cmd: libc::c_uchar,
    data_len: libc::c_ushort,
    data: *mut libc::c_uchar,
}

/// `struct ipmi_req`.
#[repr(C)]
struct RawReq {
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: RawMsg,
}

/// `struct ipmi_recv`.
#[repr(C)]
struct RawRecv {
    recv_type: libc::c_int,
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: RawMsg,
}

const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0c;
const IPMI_BMC_CHANNEL: libc::c_short = 0x0f;
const IPMI_RESPONSE_RECV_TYPE: libc::c_int = 1;

/// `_IOC(dir, 'i', nr, size)` as linux/ioctl.h computes it.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((b'i' as u64) << 8) | nr
}
/// IPMICTL_SEND_COMMAND = _IOR('i', 13, struct ipmi_req).
const IPMICTL_SEND_COMMAND: u64 = ioc(2, 13, std::mem::size_of::<RawReq>());
/// IPMICTL_RECEIVE_MSG_TRUNC = _IOWR('i', 11, struct ipmi_recv).
const IPMICTL_RECEIVE_MSG_TRUNC: u64 = ioc(3, 11, std::mem::size_of::<RawRecv>());

/// The kernel's IPMI character device: requests to the BMC over the system interface.
pub(crate) struct DevIpmi {
    file: File,
    timeout: Duration,
    msgid: libc::c_long,
}

impl DevIpmi {
    pub(crate) fn open(path: &Path, timeout: Duration) -> Result<DevIpmi, BmcError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| BmcError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(DevIpmi {
            file,
            timeout,
            msgid: 0,
        })
    }

    fn send(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> std::io::Result<()> {
        let mut addr = SystemInterfaceAddr {
            addr_type: IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
            channel: IPMI_BMC_CHANNEL,
            lun: 0,
        };
        let mut body = data.to_vec();
        let mut req = RawReq {
            addr: (&raw mut addr).cast(),
            addr_len: std::mem::size_of::<SystemInterfaceAddr>() as libc::c_uint,
            msgid: self.msgid,
            msg: RawMsg {
                netfn,
                cmd,
                data_len: u16::try_from(body.len()).unwrap_or(u16::MAX),
                data: body.as_mut_ptr(),
            },
        };
        // SAFETY: `req` has the layout of struct ipmi_req; its pointers lead to `addr` and
        // `body`, which live until after the call, and data_len is body's length. The kernel
        // copies everything during the ioctl and keeps no pointer.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IPMICTL_SEND_COMMAND as libc::Ioctl,
                &raw mut req,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until `deadline` for a message; None on timeout.
    fn receive(
        &mut self,
        deadline: Instant,
    ) -> std::io::Result<Option<(libc::c_int, libc::c_long, Vec<u8>)>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(Some((0, -1, Vec::new())))
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let mut addr = SystemInterfaceAddr {
            addr_type: 0,
            channel: 0,
            lun: 0,
        };
        let mut buf = vec![0u8; 1024];
        let mut recv = RawRecv {
            recv_type: 0,
            addr: (&raw mut addr).cast(),
            addr_len: std::mem::size_of::<SystemInterfaceAddr>() as libc::c_uint,
            msgid: 0,
            msg: RawMsg {
                netfn: 0,
                cmd: 0,
                data_len: u16::try_from(buf.len()).unwrap_or(u16::MAX),
                data: buf.as_mut_ptr(),
            },
        };
        // SAFETY: `recv` has the layout of struct ipmi_recv; the kernel writes at most
        // addr_len bytes to `addr` and data_len bytes to `buf` (truncating longer messages),
        // both alive until after the call.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                IPMICTL_RECEIVE_MSG_TRUNC as libc::Ioctl,
                &raw mut recv,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            // EMSGSIZE: the message was truncated to the buffer; what arrived is still usable.
            if e.raw_os_error() != Some(libc::EMSGSIZE) {
                return Err(e);
            }
        }
        buf.truncate(usize::from(recv.msg.data_len).min(1024));
        Ok(Some((recv.recv_type, recv.msgid, buf)))
    }
}

impl Ipmi for DevIpmi {
    fn call(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, BmcError> {
        self.msgid = self.msgid.wrapping_add(1);
        let io = |source| BmcError::Io { netfn, cmd, source };
        self.send(netfn, cmd, data).map_err(io)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some((kind, msgid, body)) = self.receive(deadline).map_err(io)? else {
                return Err(BmcError::Timeout {
                    netfn,
                    cmd,
                    timeout: self.timeout,
                });
            };
            // Answers to earlier requests that timed out, and events, are not ours.
            if kind != IPMI_RESPONSE_RECV_TYPE || msgid != self.msgid {
                continue;
            }
            let Some((&code, rest)) = body.split_first() else {
                return Err(BmcError::Short { netfn, cmd, len: 0 });
            };
            if code != 0 {
                return Err(BmcError::Refused { netfn, cmd, code });
            }
            return Ok(rest.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ioctl_numbers_match_linux() {
        // From linux/ipmi.h on x86_64: sizeof(struct ipmi_req) 40, sizeof(struct ipmi_recv) 48.
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }

    #[test]
    fn device_id_of_ipmi_sim() {
        // What OpenIPMI's ipmi_sim answers (after the completion code).
        let d = [
            0x00, 0x03, 0x09, 0x08, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f, 0, 0, 0, 0,
        ];
        let info = parse_device_id(&d).expect("device id");
        assert_eq!(info.firmware_revision, "9.08");
        assert_eq!(info.ipmi_version, "2.0");
        assert_eq!(info.manufacturer_id, 4753);
        assert_eq!(info.product_id, 0x0f02);
        assert!(matches!(
            parse_device_id(&d[..5]),
            Err(BmcError::Short { len: 5, .. })
        ));
        assert_eq!(
            parse_device_id(&[0, 0, 1, 0x51, 0x51, 0, 0, 0, 0, 0, 0])
                .map(|i| i.ipmi_version)
                .ok(),
            Some("1.5".into())
        );
    }

    #[test]
    fn lan_parameters() {
        assert_eq!(get_lan_config(1, LAN_IP_ADDRESS), [1, 3, 0, 0]);
        assert_eq!(
            parse_lan_ipv4(&[0x11, 192, 0, 2, 201]).ok(),
            Some(Ipv4Addr::new(192, 0, 2, 201))
        );
        assert!(parse_lan_ipv4(&[0x11, 192, 0]).is_err());
        assert_eq!(
            parse_lan_mac(&[0x11, 0x52, 0x54, 0, 0x1b, 0, 0xAB])
                .ok()
                .as_deref(),
            Some("52:54:00:1b:00:ab")
        );
        assert_eq!(parse_lan_ip_source(&[0x11, 1]).ok(), Some("static"));
        assert_eq!(parse_lan_ip_source(&[0x11, 2]).ok(), Some("dhcp"));
        assert_eq!(parse_lan_ip_source(&[0x11, 0]).ok(), Some("unspecified"));
        assert_eq!(parse_lan_vlan(&[0x11, 0x2a, 0x81]).ok(), Some(Some(0x12a)));
        assert_eq!(parse_lan_vlan(&[0x11, 0x2a, 0x01]).ok(), Some(None));
        assert_eq!(
            parse_channel_medium(&[0x01, 0x04, 0x01]).ok(),
            Some(MEDIUM_LAN)
        );
    }

    #[test]
    fn user_requests() {
        let name = set_user_name(3, "maas").expect("short name");
        assert_eq!(name.len(), 17);
        assert_eq!(&name[..5], &[3, b'm', b'a', b'a', b's']);
        assert!(name[5..].iter().all(|b| *b == 0));
        assert!(set_user_name(3, "a-name-of-17-byte").is_err());

        let wide = set_user_password(3, PasswordOp::Set, "pw", true).expect("pw");
        assert_eq!(wide.len(), 22);
        assert_eq!(&wide[..4], &[0x83, 2, b'p', b'w']);
        let narrow = set_user_password(3, PasswordOp::Set, "pw", false).expect("pw");
        assert_eq!((narrow.len(), narrow[0]), (18, 3));
        assert_eq!(
            set_user_password(3, PasswordOp::Enable, "", false).expect("enable"),
            vec![3, 1]
        );
        assert!(set_user_password(3, PasswordOp::Set, &"x".repeat(17), false).is_err());
        assert_eq!(set_user_access(1, 3, PRIV_ADMIN), [0x91, 3, 4, 0]);

        assert_eq!(
            parse_user_name(b"maas\0\0\0\0\0\0\0\0\0\0\0\0")
                .ok()
                .as_deref(),
            Some("maas")
        );
        assert_eq!(parse_user_name(&[0; 16]).ok().as_deref(), Some(""));
        assert_eq!(parse_max_users(&[0x3f, 0x02, 0x00, 0x14]).ok(), Some(63));
        let pw = random_password(Duration::ZERO).expect("the test machine's generator is seeded");
        assert_eq!(pw.len(), PASSWORD_LEN);
        assert!(pw.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(Some(pw), random_password(Duration::ZERO));
        // Bytes at or above 248 are skipped, the rest map onto the alphabet.
        assert_eq!(
            password_from_bytes(&[0, 61, 62, 248, 255, 25, 26], 16),
            "A9AZa"
        );
        assert_eq!(password_from_bytes(&[1; 40], 16).len(), 16);
    }

    #[test]
    fn addresses_worth_reporting() {
        assert!(has_address("192.0.2.201"));
        assert!(!has_address("0.0.0.0"));
        assert!(!has_address("255.255.255.255"));
        assert!(!has_address(""));
    }

    /// A BMC in memory: channels, LAN parameters, user slots; records every request.
    #[derive(Default)]
    struct FakeBmc {
        lan_channels: Vec<u8>,
        lan: HashMap<(u8, u8), Vec<u8>>,
        names: Vec<String>,
        refuse_wide_passwords: bool,
        calls: Vec<(u8, u8, Vec<u8>)>,
        password: Option<Vec<u8>>,
        access: Option<[u8; 4]>,
        enabled: Option<u8>,
    }

    impl Ipmi for FakeBmc {
        fn call(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, BmcError> {
            self.calls.push((netfn, cmd, data.to_vec()));
            let refuse = Err(BmcError::Refused {
                netfn,
                cmd,
                code: 0xcc,
            });
            match (netfn, cmd) {
                (NETFN_APP, CMD_GET_DEVICE_ID) => {
                    Ok(vec![0x20, 1, 2, 0x10, 0x02, 0, 0x57, 0x01, 0, 0x34, 0x12])
                }
                (NETFN_APP, CMD_GET_CHANNEL_INFO) => {
                    let ch = data[0];
                    match ch {
                        _ if self.lan_channels.contains(&ch) => Ok(vec![ch, MEDIUM_LAN, 1, 0x80]),
                        7 => Ok(vec![ch, 5, 2, 0]), // a serial channel
                        _ => refuse,
                    }
                }
                (NETFN_TRANSPORT, CMD_GET_LAN_CONFIG) => self
                    .lan
                    .get(&(data[0], data[1]))
                    .cloned()
                    .map_or(refuse, Ok),
                (NETFN_APP, CMD_GET_USER_ACCESS) => Ok(vec![
                    u8::try_from(self.names.len()).unwrap_or(0),
                    1,
                    0,
                    0x14,
                ]),
                (NETFN_APP, CMD_GET_USER_NAME) => {
                    let mut out = [0u8; 16];
                    let n = self.names[usize::from(data[0]) - 1].as_bytes();
                    out[..n.len()].copy_from_slice(n);
                    Ok(out.to_vec())
                }
                (NETFN_APP, CMD_SET_USER_NAME) => {
                    self.names[usize::from(data[0]) - 1] = parse_user_name(&data[1..])?;
                    Ok(vec![])
                }
                (NETFN_APP, CMD_SET_USER_PASSWORD) => match data[1] {
                    2 if data[0] & 0x80 != 0 && self.refuse_wide_passwords => refuse,
                    2 => {
                        self.password = Some(data[2..].to_vec());
                        Ok(vec![])
                    }
                    1 => {
                        self.enabled = Some(data[0] & 0x3f);
                        Ok(vec![])
                    }
                    _ => refuse,
                },
                (NETFN_APP, CMD_SET_USER_ACCESS) => {
                    self.access = data.try_into().ok();
                    Ok(vec![])
                }
                _ => refuse,
            }
        }
    }

    fn fake() -> FakeBmc {
        let mut lan = HashMap::new();
        // Channel 1: a LAN channel with no address; channel 2: the one in use.
        lan.insert((1, LAN_IP_ADDRESS), vec![0x11, 0, 0, 0, 0]);
        lan.insert((2, LAN_IP_ADDRESS), vec![0x11, 192, 0, 2, 201]);
        lan.insert((2, LAN_IP_SOURCE), vec![0x11, 2]);
        lan.insert((2, LAN_NETMASK), vec![0x11, 255, 255, 255, 0]);
        lan.insert((2, LAN_GATEWAY), vec![0x11, 192, 0, 2, 1]);
        lan.insert((2, LAN_MAC), vec![0x11, 0x52, 0x54, 0, 0x1b, 0, 1]);
        FakeBmc {
            lan_channels: vec![1, 2],
            lan,
            names: vec!["".into(), "admin".into(), "".into(), "".into()],
            ..Default::default()
        }
    }

    #[test]
    fn discovery_picks_the_lan_channel_with_an_address() {
        let mut bmc = fake();
        let found = discover(&mut bmc);
        let device = found.device.expect("device id");
        assert_eq!((device.manufacturer_id, device.product_id), (343, 0x1234));
        let lan = found.lan.expect("a LAN channel");
        assert_eq!(lan.channel, 2);
        assert_eq!(lan.ip_address, "192.0.2.201");
        assert_eq!(lan.ip_source, "dhcp");
        assert_eq!(lan.netmask, "255.255.255.0");
        assert_eq!(lan.gateway, "192.0.2.1");
        assert_eq!(lan.mac, "52:54:00:1b:00:01");
        assert_eq!(lan.vlan, None, "VLAN unsupported: none");

        let mut none = FakeBmc::default();
        assert_eq!(discover(&mut none).lan, None);
        let mut unaddressed = fake();
        unaddressed.lan_channels = vec![1];
        assert_eq!(
            discover(&mut unaddressed).lan.map(|l| l.ip_address),
            Some("0.0.0.0".to_string())
        );
    }

    #[test]
    fn a_user_is_created_in_the_first_empty_slot_and_enabled() {
        let mut bmc = fake();
        let id = ensure_user(&mut bmc, 2, BMC_USER, "s3cret-Pw").expect("user");
        assert_eq!(id, 3, "slot 1 is anonymous, 2 is taken");
        assert_eq!(bmc.names[2], "maas");
        let pw = bmc.password.clone().expect("password set");
        assert_eq!(pw.len(), 20);
        assert!(pw.starts_with(b"s3cret-Pw"));
        assert_eq!(bmc.access, Some([0x92, 3, PRIV_ADMIN, 0]));
        assert_eq!(bmc.enabled, Some(3));

        // Again: the same slot, not a second "maas".
        assert_eq!(
            ensure_user(&mut bmc, 2, BMC_USER, "other").expect("user"),
            3
        );
        assert_eq!(bmc.names.iter().filter(|n| *n == "maas").count(), 1);
    }

    #[test]
    fn an_ipmi_15_bmc_gets_a_16_byte_password() {
        let mut bmc = fake();
        bmc.refuse_wide_passwords = true;
        ensure_user(&mut bmc, 2, BMC_USER, "pw").expect("user");
        assert_eq!(bmc.password.map(|p| p.len()), Some(16));
    }

    #[test]
    fn a_full_bmc_is_an_error() {
        let mut bmc = fake();
        bmc.names = vec!["".into(), "admin".into(), "ops".into()];
        assert!(matches!(
            ensure_user(&mut bmc, 2, BMC_USER, "pw"),
            Err(BmcError::NoUserSlot(3))
        ));
    }
}
