//! The hardware erase commands behind `secure` erasing, tried in MAAS's order (maas_wipe.py):
//! NVMe Format NVM with Secure Erase Settings (cryptographic erase where the controller has it,
//! else user data erase), ATA SECURITY ERASE UNIT (a temporary user password is set first, as
//! `hdparm --security-set-pass` then `--security-erase` do), and the caller falls back to
//! BLKSECDISCARD and then to zeroing every byte, saying at each step why the better one was not
//! possible.
//!
//! Command blocks and IDENTIFY data are encoded and decoded by pure functions (tested with
//! fixtures); the ioctls (`NVME_IOCTL_ADMIN_CMD`, `SG_IO` with ATA PASS-THROUGH(16)) are thin.

use std::os::fd::AsRawFd;

// NVMe: <linux/nvme_ioctl.h>.
/// `_IO('N', 0x40)`: the namespace id of a namespace block device.
const NVME_IOCTL_ID: libc::c_ulong = 0x4e40;
/// `_IOWR('N', 0x41, struct nvme_passthru_cmd)` (72 bytes).
const NVME_IOCTL_ADMIN_CMD: libc::c_ulong = 0xc048_4e41;
const NVME_ADMIN_IDENTIFY: u8 = 0x06;
const NVME_ADMIN_FORMAT_NVM: u8 = 0x80;

// SCSI generic: <scsi/sg.h>.
const SG_IO: libc::c_ulong = 0x2285;
const SG_DXFER_NONE: i32 = -1;
const SG_DXFER_TO_DEV: i32 = -2;
const SG_DXFER_FROM_DEV: i32 = -3;

// ATA commands (ACS-3).
const ATA_IDENTIFY_DEVICE: u8 = 0xec;
const ATA_SECURITY_SET_PASSWORD: u8 = 0xf1;
const ATA_SECURITY_ERASE_PREPARE: u8 = 0xf3;
const ATA_SECURITY_ERASE_UNIT: u8 = 0xf4;
const ATA_SECURITY_DISABLE_PASSWORD: u8 = 0xf6;

/// The temporary user password set for the erase (MAAS uses "maas" too); the erase clears it.
const ATA_PASSWORD: &[u8] = b"rackbox";

/// `struct nvme_passthru_cmd` (= `nvme_admin_cmd`).
#[repr(C)]
#[derive(Default)]
struct NvmePassthru {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

/// `struct sg_io_hdr`.
#[repr(C)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *mut u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

/// What a hardware erase did, for the erase report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Erased {
    /// `nvme-format-crypto`, `nvme-format-user-data`, `ata-security-erase`,
    /// `ata-security-erase-enhanced`.
    pub(crate) method: String,
    pub(crate) note: String,
}

// ---------------------------------------------------------------- NVMe, pure

/// What Identify Controller says about formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NvmeController {
    /// OACS bit 1: Format NVM is supported.
    pub format: bool,
    /// FNA bit 1: a secure erase erases every namespace of the controller.
    pub(crate) erase_all_namespaces: bool,
    /// FNA bit 2: cryptographic erase is supported.
    pub(crate) crypto_erase: bool,
}

/// Parses the 4096-byte Identify Controller data structure (OACS at 256, FNA at 524).
pub(crate) fn parse_nvme_controller(id: &[u8]) -> Option<NvmeController> {
    let oacs = u16::from_le_bytes([*id.get(256)?, *id.get(257)?]);
    let fna = *id.get(524)?;
    Some(NvmeController {
        format: oacs & 0b10 != 0,
        erase_all_namespaces: fna & 0b10 != 0,
        crypto_erase: fna & 0b100 != 0,
    })
}

/// Command dword 10 of a Format NVM that keeps the namespace's current format (LBA format,
/// metadata and protection settings from Identify Namespace's FLBAS at 26 and DPS at 29) and
/// asks for Secure Erase Settings `ses` (1 user data erase, 2 cryptographic erase).
pub(crate) fn nvme_format_cdw10(id_ns: &[u8], ses: u32) -> Option<u32> {
    let flbas = u32::from(*id_ns.get(26)?);
    let dps = u32::from(*id_ns.get(29)?);
    let lbaf = flbas & 0xf;
    let lbafu = (flbas >> 5) & 0x3;
    let mset = (flbas >> 4) & 1;
    let pi = dps & 0x7;
    let pil = (dps >> 3) & 1;
    Some(lbaf | mset << 4 | pi << 5 | pil << 8 | (ses & 0x7) << 9 | lbafu << 12)
}

// ---------------------------------------------------------------- ATA, pure

/// The security word (128) and erase times of ATA IDENTIFY DEVICE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AtaSecurity {
    pub(crate) supported: bool,
    pub(crate) enabled: bool,
    pub(crate) locked: bool,
    pub(crate) frozen: bool,
    pub(crate) enhanced_erase: bool,
    /// Minutes the drive says a (normal, enhanced) erase takes; 0 when it does not say.
    pub(crate) erase_minutes: u32,
    pub(crate) enhanced_erase_minutes: u32,
}

fn word(id: &[u8], n: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*id.get(2 * n)?, *id.get(2 * n + 1)?]))
}

/// Erase-time words (89, 90): bits 7:0 (14:0 with the extended format of bit 15) in units of two
/// minutes; 0 means not reported.
fn erase_time(w: u16) -> u32 {
    let units = if w & 0x8000 != 0 {
        w & 0x7fff
    } else {
        w & 0xff
    };
    u32::from(units) * 2
}

/// Parses the 512-byte IDENTIFY DEVICE data (little-endian words).
pub(crate) fn parse_ata_identify(id: &[u8]) -> Option<AtaSecurity> {
    let w82 = word(id, 82)?;
    let w128 = word(id, 128)?;
    // 0x0000 and 0xffff mean the word is not provided.
    let valid82 = w82 != 0 && w82 != 0xffff;
    Some(AtaSecurity {
        supported: valid82 && w82 & 0b10 != 0 && w128 & 1 != 0,
        enabled: w128 & 0b10 != 0,
        locked: w128 & 0b100 != 0,
        frozen: w128 & 0b1000 != 0,
        enhanced_erase: w128 & 0b10_0000 != 0,
        erase_minutes: erase_time(word(id, 89)?),
        enhanced_erase_minutes: erase_time(word(id, 90)?),
    })
}

/// ATA PASS-THROUGH(16) transfer directions and protocols used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtaProtocol {
    NonData,
    PioIn,
    PioOut,
}

/// ATA PASS-THROUGH(16) (SAT-3) for a 28-bit command with one 512-byte block of data (or none).
pub(crate) fn ata_pass_through_16(command: u8, protocol: AtaProtocol) -> [u8; 16] {
    let (proto, flags) = match protocol {
        // Non-data: no transfer fields.
        AtaProtocol::NonData => (3u8, 0u8),
        // T_DIR=1 (from device), BYT_BLOK=1 (blocks), T_LENGTH=2 (the sector count field).
        AtaProtocol::PioIn => (4, 0b0000_1110),
        // T_DIR=0 (to device), BYT_BLOK=1, T_LENGTH=2.
        AtaProtocol::PioOut => (5, 0b0000_0110),
    };
    let count = if protocol == AtaProtocol::NonData {
        0
    } else {
        1
    };
    [
        0x85,
        proto << 1,
        flags,
        0,
        0, // features
        0,
        count, // sector count
        0,
        0, // LBA low
        0,
        0, // LBA mid
        0,
        0,    // LBA high
        0x40, // device: LBA
        command,
        0, // control
    ]
}

/// The 512-byte data block of SECURITY SET PASSWORD / ERASE UNIT / DISABLE PASSWORD: word 0
/// (bit 0 master/user = 0 user, bit 1 enhanced erase; bit 8 security level high = 0), then the
/// 32-byte password.
pub(crate) fn ata_security_block(password: &[u8], enhanced: bool) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0] = if enhanced { 0b10 } else { 0 };
    let n = password.len().min(32);
    b[2..2 + n].copy_from_slice(&password[..n]);
    b
}

// ---------------------------------------------------------------- the ioctls

fn last_os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn nvme_admin(
    file: &std::fs::File,
    cmd: &mut NvmePassthru,
    data: Option<&mut [u8]>,
) -> Result<(), String> {
    if let Some(d) = data {
        cmd.addr = d.as_mut_ptr() as u64;
        cmd.data_len = u32::try_from(d.len()).map_err(|e| e.to_string())?;
    }
    // SAFETY: the fd is open; cmd is a live nvme_passthru_cmd, and addr/data_len (when set)
    // describe a live buffer that outlives the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ADMIN_CMD, cmd as *mut _) };
    match rc {
        0 => Ok(()),
        // A positive value is the NVMe status field.
        n if n > 0 => Err(format!("the controller answered status {n:#x}")),
        _ => Err(last_os_error("NVME_IOCTL_ADMIN_CMD")),
    }
}

/// NVMe Format NVM with a secure erase, when the controller says it can.
pub(crate) fn nvme_format(file: &std::fs::File) -> Result<Erased, String> {
    // SAFETY: NVME_IOCTL_ID takes no argument and returns the namespace id or -1.
    let nsid = unsafe { libc::ioctl(file.as_raw_fd(), NVME_IOCTL_ID) };
    let nsid = u32::try_from(nsid)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| "not an NVMe namespace".to_string())?;
    let mut ctrl = vec![0u8; 4096];
    let mut cmd = NvmePassthru {
        opcode: NVME_ADMIN_IDENTIFY,
        cdw10: 1,
        ..Default::default()
    };
    nvme_admin(file, &mut cmd, Some(&mut ctrl)).map_err(|e| format!("Identify: {e}"))?;
    let c = parse_nvme_controller(&ctrl).ok_or("short Identify Controller data")?;
    if !c.format {
        return Err("the controller does not support Format NVM".into());
    }
    let mut ns = vec![0u8; 4096];
    let mut cmd = NvmePassthru {
        opcode: NVME_ADMIN_IDENTIFY,
        nsid,
        cdw10: 0,
        ..Default::default()
    };
    nvme_admin(file, &mut cmd, Some(&mut ns)).map_err(|e| format!("Identify Namespace: {e}"))?;
    let ses = if c.crypto_erase { 2 } else { 1 };
    let cdw10 = nvme_format_cdw10(&ns, ses).ok_or("short Identify Namespace data")?;
    let mut cmd = NvmePassthru {
        opcode: NVME_ADMIN_FORMAT_NVM,
        nsid,
        cdw10,
        // A format of a large drive can take long; the kernel's admin timeout is a minute.
        timeout_ms: 4 * 3600 * 1000,
        ..Default::default()
    };
    nvme_admin(file, &mut cmd, None).map_err(|e| format!("Format NVM: {e}"))?;
    let what = if c.crypto_erase {
        "cryptographic erase"
    } else {
        "user data erase"
    };
    let scope = if c.erase_all_namespaces {
        " (this controller erases all of its namespaces)"
    } else {
        ""
    };
    Ok(Erased {
        method: if c.crypto_erase {
            "nvme-format-crypto"
        } else {
            "nvme-format-user-data"
        }
        .into(),
        note: format!("NVMe Format NVM with {what} of namespace {nsid}{scope}"),
    })
}

/// One ATA command through SG_IO; `data` is read into or written from.
fn ata(
    file: &std::fs::File,
    command: u8,
    protocol: AtaProtocol,
    data: Option<&mut [u8; 512]>,
    timeout_ms: u32,
) -> Result<(), String> {
    let mut cdb = ata_pass_through_16(command, protocol);
    let mut sense = [0u8; 32];
    let (dir, ptr, len) = match (protocol, data) {
        (AtaProtocol::PioIn, Some(d)) => (SG_DXFER_FROM_DEV, d.as_mut_ptr(), 512),
        (AtaProtocol::PioOut, Some(d)) => (SG_DXFER_TO_DEV, d.as_mut_ptr(), 512),
        _ => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
    };
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction: dir,
        cmd_len: 16,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len: len,
        dxferp: ptr.cast(),
        cmdp: cdb.as_mut_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: the fd is open; hdr is a live sg_io_hdr whose cmdp, sbp and dxferp point at live
    // buffers of the lengths it states, all outliving the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO, &mut hdr as *mut SgIoHdr) };
    if rc != 0 {
        return Err(last_os_error("SG_IO"));
    }
    if hdr.status != 0 || hdr.host_status != 0 || hdr.driver_status != 0 {
        return Err(format!(
            "ATA command {command:#04x} failed (SCSI status {:#x}, host {:#x}, driver {:#x}, sense key {:#x})",
            hdr.status,
            hdr.host_status,
            hdr.driver_status,
            sense_key(&sense[..usize::from(hdr.sb_len_wr).min(sense.len())])
        ));
    }
    Ok(())
}

/// The sense key of fixed (0x70/0x71) or descriptor (0x72/0x73) sense data; 0 when absent.
pub(crate) fn sense_key(sense: &[u8]) -> u8 {
    match sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => sense.get(2).map_or(0, |b| b & 0xf),
        Some(0x72 | 0x73) => sense.get(1).map_or(0, |b| b & 0xf),
        _ => 0,
    }
}

/// ATA SECURITY ERASE UNIT (enhanced when the drive has it), as hdparm does it: set a user
/// password, ERASE PREPARE, ERASE UNIT with the password (which also clears it).
pub(crate) fn ata_security_erase(file: &std::fs::File) -> Result<Erased, String> {
    let mut id = [0u8; 512];
    ata(
        file,
        ATA_IDENTIFY_DEVICE,
        AtaProtocol::PioIn,
        Some(&mut id),
        30_000,
    )
    .map_err(|e| format!("IDENTIFY DEVICE: {e}"))?;
    let sec = parse_ata_identify(&id).ok_or("short IDENTIFY data")?;
    if !sec.supported {
        return Err("the drive does not support the ATA security feature set".into());
    }
    if sec.frozen {
        return Err(
            "the drive's security is frozen (the firmware froze it at boot; a suspend and resume or a hot-plug unfreezes it)"
                .into(),
        );
    }
    if sec.enabled || sec.locked {
        return Err("the drive already has a security password set".into());
    }
    let mut block = ata_security_block(ATA_PASSWORD, false);
    ata(
        file,
        ATA_SECURITY_SET_PASSWORD,
        AtaProtocol::PioOut,
        Some(&mut block),
        30_000,
    )
    .map_err(|e| format!("SECURITY SET PASSWORD: {e}"))?;
    let enhanced = sec.enhanced_erase;
    let minutes = if enhanced {
        sec.enhanced_erase_minutes
    } else {
        sec.erase_minutes
    };
    // Twice the drive's own estimate, at least an hour (the estimate is often absent).
    let timeout_ms = (minutes.saturating_mul(2).max(60)).saturating_mul(60_000);
    let erase = ata(
        file,
        ATA_SECURITY_ERASE_PREPARE,
        AtaProtocol::NonData,
        None,
        30_000,
    )
    .and_then(|()| {
        let mut block = ata_security_block(ATA_PASSWORD, enhanced);
        ata(
            file,
            ATA_SECURITY_ERASE_UNIT,
            AtaProtocol::PioOut,
            Some(&mut block),
            timeout_ms,
        )
    });
    if let Err(e) = erase {
        // Leave no password behind on a drive that did not erase.
        let mut block = ata_security_block(ATA_PASSWORD, false);
        let undone = ata(
            file,
            ATA_SECURITY_DISABLE_PASSWORD,
            AtaProtocol::PioOut,
            Some(&mut block),
            30_000,
        );
        return Err(format!(
            "SECURITY ERASE UNIT: {e}{}",
            match undone {
                Ok(()) => String::new(),
                Err(u) => format!(
                    "; the temporary password {:?} could not be removed: {u}",
                    String::from_utf8_lossy(ATA_PASSWORD)
                ),
            }
        ));
    }
    Ok(Erased {
        method: if enhanced {
            "ata-security-erase-enhanced"
        } else {
            "ata-security-erase"
        }
        .into(),
        note: format!(
            "ATA SECURITY ERASE UNIT{}",
            if enhanced { " (enhanced)" } else { "" }
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_structs_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<NvmePassthru>(), 72);
        assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
        // _IOWR('N', 0x41, 72 bytes).
        assert_eq!(
            NVME_IOCTL_ADMIN_CMD,
            (3 << 30) | (72 << 16) | (u64::from(b'N') << 8) | 0x41
        );
    }

    fn controller(oacs: u16, fna: u8) -> Vec<u8> {
        let mut id = vec![0u8; 4096];
        id[256..258].copy_from_slice(&oacs.to_le_bytes());
        id[524] = fna;
        id
    }

    #[test]
    fn nvme_identify_says_what_format_can_do() {
        assert_eq!(
            parse_nvme_controller(&controller(0x0017, 0x04)),
            Some(NvmeController {
                format: true,
                erase_all_namespaces: false,
                crypto_erase: true
            })
        );
        let c = parse_nvme_controller(&controller(0x0005, 0x03)).expect("parse");
        assert!(!c.format && c.erase_all_namespaces && !c.crypto_erase);
        assert_eq!(parse_nvme_controller(&[0u8; 300]), None);
    }

    #[test]
    fn nvme_format_keeps_the_namespace_format() {
        let mut ns = vec![0u8; 4096];
        // LBA format 1 with separate metadata (MSET), protection type 1 in the first bytes.
        ns[26] = 0x11;
        ns[29] = 0x09;
        assert_eq!(
            nvme_format_cdw10(&ns, 1),
            Some(1 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 9)
        );
        ns[26] = 0x00;
        ns[29] = 0x00;
        assert_eq!(nvme_format_cdw10(&ns, 2), Some(2 << 9));
        // LBA format 17: upper bits in FLBAS 6:5.
        ns[26] = 0x21;
        assert_eq!(nvme_format_cdw10(&ns, 1), Some(1 | 1 << 9 | 1 << 12));
    }

    fn identify(w82: u16, w128: u16, w89: u16, w90: u16) -> [u8; 512] {
        let mut id = [0u8; 512];
        for (n, w) in [(82, w82), (128, w128), (89, w89), (90, w90)] {
            id[2 * n..2 * n + 2].copy_from_slice(&w.to_le_bytes());
        }
        id
    }

    #[test]
    fn ata_identify_security_word() {
        // Supported, not enabled, not frozen, enhanced erase; 4 and 6 minutes.
        let s = parse_ata_identify(&identify(0x746b, 0x0021, 2, 3)).expect("parse");
        assert!(s.supported && !s.enabled && !s.frozen && !s.locked && s.enhanced_erase);
        assert_eq!((s.erase_minutes, s.enhanced_erase_minutes), (4, 6));
        // Frozen, as most BIOSes leave drives.
        assert!(
            parse_ata_identify(&identify(0x746b, 0x0009, 0, 0))
                .expect("parse")
                .frozen
        );
        // No security feature set (word 82 bit 1 clear), or word 82 not provided.
        assert!(
            !parse_ata_identify(&identify(0x7469, 0x0001, 0, 0))
                .expect("parse")
                .supported
        );
        assert!(
            !parse_ata_identify(&identify(0xffff, 0x0001, 0, 0))
                .expect("parse")
                .supported
        );
        // Extended time format.
        assert_eq!(
            parse_ata_identify(&identify(0x746b, 1, 0x8100, 0))
                .expect("parse")
                .erase_minutes,
            512
        );
        assert_eq!(parse_ata_identify(&[0u8; 100]), None);
    }

    #[test]
    fn ata_pass_through_blocks() {
        assert_eq!(
            ata_pass_through_16(ATA_IDENTIFY_DEVICE, AtaProtocol::PioIn),
            [
                0x85, 0x08, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0xec, 0
            ]
        );
        assert_eq!(
            ata_pass_through_16(ATA_SECURITY_ERASE_UNIT, AtaProtocol::PioOut),
            [
                0x85, 0x0a, 0x06, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x40, 0xf4, 0
            ]
        );
        assert_eq!(
            ata_pass_through_16(ATA_SECURITY_ERASE_PREPARE, AtaProtocol::NonData),
            [0x85, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xf3, 0]
        );
        let b = ata_security_block(b"rackbox", true);
        assert_eq!(
            &b[..9],
            &[0x02, 0, b'r', b'a', b'c', b'k', b'b', b'o', b'x']
        );
        assert!(b[9..].iter().all(|x| *x == 0));
        assert_eq!(ata_security_block(b"x", false)[0], 0);
    }

    #[test]
    fn sense_keys_of_both_formats() {
        assert_eq!(sense_key(&[0x70, 0, 0x05, 0]), 5);
        assert_eq!(sense_key(&[0x72, 0x0b, 0, 0]), 0x0b);
        assert_eq!(sense_key(&[]), 0);
    }
}
