//! Just enough MBR and GPT to add one partition after an image was written to a disk.
//!
//! An OS image is usually smaller than the disk it lands on. For GPT that means the backup
//! header and entries sit at the end of the *image*, not of the disk; a crate that insists on
//! valid headers at the disk's end refuses such a disk, and one that does not may write the
//! backup in the wrong place. So this module does the little that is needed itself, with every
//! decision in pure functions over byte buffers: read the table, choose where the seed partition
//! goes (the last whole MiB of the disk, so that cloud-init's growpart can still grow the root
//! partition up to it), add its entry, and for GPT move the backup header and entries to the
//! disk's end with fresh CRCs.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// One mebibyte: partitions are aligned to it, as every modern partitioner does.
pub const MIB: u64 = 1024 * 1024;

/// GPT type GUID "Microsoft basic data" (EBD0A0A2-B9E5-4433-87C0-68B6B72699C7) in its on-disk
/// mixed-endian byte order: what Linux tools create for a FAT partition.
const GPT_BASIC_DATA: [u8; 16] = [
    0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44, 0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99, 0xc7,
];
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const MBR_PROTECTIVE: u8 = 0xee;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "the image has no partition table (no MBR signature): nowhere to add the cloud-init seed partition"
    )]
    NoTable,
    #[error("the GPT header is damaged: {0}")]
    BadGpt(String),
    #[error("no free partition slot for the cloud-init seed ({0})")]
    NoFreeSlot(&'static str),
    #[error(
        "no room for a {need} byte seed partition after the image's partitions: they end at byte {used_end}, the usable space at byte {usable_end}"
    )]
    NoRoom {
        need: u64,
        used_end: u64,
        usable_end: u64,
    },
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> PartitionError {
    move |source| PartitionError::Io { what, source }
}

/// The partition table kind found on a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Mbr,
    Gpt,
}

/// A partition's extent in sectors (inclusive), as read from the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub first_lba: u64,
    pub last_lba: u64,
}

/// Where the seed partition was put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub table: TableKind,
    /// 1-based partition number (sdX<number>).
    pub number: u32,
    pub offset_bytes: u64,
    pub size_bytes: u64,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The parsed MBR: its four primary entries as (type, first LBA, sector count).
pub fn parse_mbr(sector0: &[u8]) -> Option<[(u8, u32, u32); 4]> {
    if sector0.len() < 512 || sector0[510] != 0x55 || sector0[511] != 0xaa {
        return None;
    }
    let mut out = [(0u8, 0u32, 0u32); 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let e = 446 + 16 * i;
        *slot = (
            sector0[e + 4],
            le_u32(sector0, e + 8),
            le_u32(sector0, e + 12),
        );
    }
    Some(out)
}

/// The fields of a GPT header this module uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptHeader {
    pub(crate) header_size: u32,
    pub(crate) my_lba: u64,
    pub(crate) alternate_lba: u64,
    pub first_usable: u64,
    pub(crate) last_usable: u64,
    pub(crate) entries_lba: u64,
    pub entry_count: u32,
    pub entry_size: u32,
    pub(crate) entries_crc: u32,
    /// The header's bytes as read (header_size of them), kept so unknown fields survive.
    pub raw: Vec<u8>,
}

/// Parses and checks (signature, size, CRC) a GPT header sector.
/// The largest GPT entry size rackbox reads (UEFI allows any 128 x 2^n; tools write 128).
const MAX_GPT_ENTRY_SIZE: u32 = 4096;

pub fn parse_gpt_header(sector: &[u8]) -> Result<GptHeader, PartitionError> {
    if sector.len() < 92 || &sector[..8] != GPT_SIGNATURE {
        return Err(PartitionError::BadGpt("no \"EFI PART\" signature".into()));
    }
    let header_size = le_u32(sector, 12);
    let size = usize::try_from(header_size).unwrap_or(usize::MAX);
    if !(92..=sector.len()).contains(&size) {
        return Err(PartitionError::BadGpt(format!("header size {header_size}")));
    }
    let mut raw = sector[..size].to_vec();
    let stored = le_u32(&raw, 16);
    raw[16..20].fill(0);
    if crc32fast::hash(&raw) != stored {
        return Err(PartitionError::BadGpt("header CRC mismatch".into()));
    }
    let h = GptHeader {
        header_size,
        my_lba: le_u64(&raw, 24),
        alternate_lba: le_u64(&raw, 32),
        first_usable: le_u64(&raw, 40),
        last_usable: le_u64(&raw, 48),
        entries_lba: le_u64(&raw, 72),
        entry_count: le_u32(&raw, 80),
        entry_size: le_u32(&raw, 84),
        entries_crc: le_u32(&raw, 88),
        raw,
    };
    // UEFI: an entry is 128 x 2^n bytes. Bounded here, so that the entry array the agent
    // reads is at most 16384 x 4 KiB (a corrupt header once asked for gigabytes; found by
    // fuzzing).
    if h.entry_size < 128
        || h.entry_size > MAX_GPT_ENTRY_SIZE
        || !h.entry_size.is_power_of_two()
        || h.entry_count == 0
        || h.entry_count > 16384
    {
        return Err(PartitionError::BadGpt(format!(
            "{} entries of {} bytes",
            h.entry_count, h.entry_size
        )));
    }
    Ok(h)
}

impl GptHeader {
    fn entries_bytes(&self) -> usize {
        // Bounded by parse_gpt_header: at most 16384 entries of a sane size.
        (self.entry_count as usize) * (self.entry_size as usize)
    }

    /// Serializes the header with the given locations and a fresh CRC, padded to a sector.
    fn emit(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        last_usable: u64,
        entries_crc: u32,
        sector: usize,
    ) -> Vec<u8> {
        let mut b = self.raw.clone();
        b[24..32].copy_from_slice(&my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        b[48..56].copy_from_slice(&last_usable.to_le_bytes());
        b[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        b[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        b[16..20].fill(0);
        let crc = crc32fast::hash(&b);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b.resize(sector.max(b.len()), 0);
        b
    }
}

/// The used extents of a GPT entries array (entries whose type GUID is not all zero).
pub fn gpt_extents(entries: &[u8], entry_size: usize) -> Vec<Extent> {
    entries
        .chunks_exact(entry_size)
        .filter(|e| e[..16].iter().any(|b| *b != 0))
        .map(|e| Extent {
            first_lba: le_u64(e, 32),
            last_lba: le_u64(e, 40),
        })
        .collect()
}

/// Chooses the seed's extent: `size` bytes ending at the last MiB boundary at or before
/// `usable_end` (exclusive, bytes), after every existing extent and at or after `min_start`.
pub(crate) fn choose_extent(
    used: &[Extent],
    sector: u64,
    size: u64,
    min_start: u64,
    usable_end: u64,
) -> Result<Extent, PartitionError> {
    // The image's table is outside data: an extent whose end does not fit in u64 bytes ends
    // past any disk (saturating leaves no room after it, where wrapping would place the seed
    // over it, and overflow checks would panic).
    let used_end = used
        .iter()
        .map(|e| e.last_lba.saturating_add(1).saturating_mul(sector))
        .max()
        .unwrap_or(0)
        .max(min_start);
    let end = usable_end / MIB * MIB;
    let no_room = || PartitionError::NoRoom {
        need: size,
        used_end,
        usable_end,
    };
    let start = end.checked_sub(size).ok_or_else(no_room)?;
    if start < used_end || size == 0 {
        return Err(no_room());
    }
    Ok(Extent {
        first_lba: start / sector,
        last_lba: end / sector - 1,
    })
}

/// Adds an MBR primary partition of type `mbr_type` for the seed to `sector0`.
/// Returns the partition number and its extent.
pub fn add_mbr_partition(
    sector0: &mut [u8],
    disk_bytes: u64,
    size: u64,
    mbr_type: u8,
) -> Result<(u32, Extent), PartitionError> {
    let entries = parse_mbr(sector0).ok_or(PartitionError::NoTable)?;
    let slot = entries
        .iter()
        .position(|e| e.0 == 0)
        .ok_or(PartitionError::NoFreeSlot(
            "all four MBR primary entries are used",
        ))?;
    let used: Vec<Extent> = entries
        .iter()
        .filter(|e| e.0 != 0 && e.2 != 0)
        .map(|e| Extent {
            first_lba: u64::from(e.1),
            last_lba: u64::from(e.1) + u64::from(e.2) - 1,
        })
        .collect();
    // MBR addresses 2^32 sectors of 512 bytes: the seed must end below 2 TiB.
    let usable_end = disk_bytes.min((1u64 << 32) * 512);
    let extent = choose_extent(&used, 512, size, MIB, usable_end)?;
    let e = 446 + 16 * slot;
    let first = u32::try_from(extent.first_lba).map_err(|_| PartitionError::NoRoom {
        need: size,
        used_end: 0,
        usable_end,
    })?;
    let count = u32::try_from(extent.last_lba - extent.first_lba + 1).unwrap_or(u32::MAX);
    sector0[e] = 0; // not bootable
    // CHS fields at their "use LBA" maximum, as fdisk writes them past 8 GiB.
    sector0[e + 1..e + 4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    sector0[e + 4] = mbr_type;
    sector0[e + 5..e + 8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    sector0[e + 8..e + 12].copy_from_slice(&first.to_le_bytes());
    sector0[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
    let number = u32::try_from(slot + 1).unwrap_or(1);
    Ok((number, extent))
}

/// Reads `len` bytes at `offset`.
fn read_at(dev: &mut File, offset: u64, len: usize) -> Result<Vec<u8>, PartitionError> {
    let mut buf = vec![0u8; len];
    dev.seek(SeekFrom::Start(offset))
        .map_err(io("seek on the disk"))?;
    dev.read_exact(&mut buf)
        .map_err(io("read the partition table"))?;
    Ok(buf)
}

fn write_at(dev: &mut File, offset: u64, data: &[u8]) -> Result<(), PartitionError> {
    dev.seek(SeekFrom::Start(offset))
        .map_err(io("seek on the disk"))?;
    dev.write_all(data).map_err(io("write the partition table"))
}

/// Detects the table on `dev`.
pub(crate) fn detect(dev: &mut File, sector: u64) -> Result<TableKind, PartitionError> {
    let s0 = read_at(dev, 0, 512)?;
    let entries = parse_mbr(&s0).ok_or(PartitionError::NoTable)?;
    if entries.iter().any(|e| e.0 == MBR_PROTECTIVE) {
        let hdr = read_at(dev, sector, usize::try_from(sector).unwrap_or(512))?;
        parse_gpt_header(&hdr)?;
        Ok(TableKind::Gpt)
    } else {
        Ok(TableKind::Mbr)
    }
}

/// Adds a partition of `size` bytes at the end of the disk `dev` (`disk_bytes` long, logical
/// sectors of `sector` bytes) to its MBR or GPT. `mbr_type` is the MBR type byte to use.
/// For GPT the backup header and entries are moved to the disk's end.
pub(crate) fn add_seed_partition(
    dev: &mut File,
    disk_bytes: u64,
    sector: u64,
    size: u64,
    mbr_type: u8,
    partition_guid: [u8; 16],
) -> Result<Placement, PartitionError> {
    let sector_len = usize::try_from(sector).unwrap_or(512);
    match detect(dev, sector)? {
        TableKind::Mbr => {
            let mut s0 = read_at(dev, 0, 512)?;
            let (number, extent) = add_mbr_partition(&mut s0, disk_bytes, size, mbr_type)?;
            write_at(dev, 0, &s0)?;
            Ok(Placement {
                table: TableKind::Mbr,
                number,
                offset_bytes: extent.first_lba * 512,
                size_bytes: (extent.last_lba - extent.first_lba + 1) * 512,
            })
        }
        TableKind::Gpt => {
            let hdr = parse_gpt_header(&read_at(dev, sector, sector_len)?)?;
            let mut entries = read_at(dev, hdr.entries_lba * sector, hdr.entries_bytes())?;
            if crc32fast::hash(&entries) != hdr.entries_crc {
                return Err(PartitionError::BadGpt("entries CRC mismatch".into()));
            }
            let placement =
                add_gpt_entry(&hdr, &mut entries, disk_bytes, sector, size, partition_guid)?;
            let disk_sectors = disk_bytes / sector;
            let entries_sectors = (entries.len() as u64).div_ceil(sector);
            let backup_lba = disk_sectors - 1;
            let backup_entries_lba = backup_lba - entries_sectors;
            let last_usable = backup_entries_lba - 1;
            let crc = crc32fast::hash(&entries);
            // A stale backup header left in the middle of the disk would confuse tools that
            // scan for one: zero it (it lies beyond the old last usable LBA, in free space).
            if hdr.alternate_lba > 1 && hdr.alternate_lba < backup_entries_lba {
                write_at(dev, hdr.alternate_lba * sector, &vec![0u8; sector_len])?;
            }
            let primary = hdr.emit(1, backup_lba, hdr.entries_lba, last_usable, crc, sector_len);
            let backup = hdr.emit(
                backup_lba,
                1,
                backup_entries_lba,
                last_usable,
                crc,
                sector_len,
            );
            write_at(dev, hdr.entries_lba * sector, &entries)?;
            write_at(dev, sector, &primary)?;
            write_at(dev, backup_entries_lba * sector, &entries)?;
            write_at(dev, backup_lba * sector, &backup)?;
            // The protective MBR covers the whole disk (up to its 32-bit limit).
            let mut s0 = read_at(dev, 0, 512)?;
            if let Some(slot) =
                parse_mbr(&s0).and_then(|e| e.iter().position(|p| p.0 == MBR_PROTECTIVE))
            {
                let count = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
                let e = 446 + 16 * slot;
                s0[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
                write_at(dev, 0, &s0)?;
            }
            Ok(placement)
        }
    }
}

/// Adds the seed's entry to a GPT entries array for a disk of `disk_bytes`, leaving room at the
/// end for the backup entries and header.
pub fn add_gpt_entry(
    hdr: &GptHeader,
    entries: &mut [u8],
    disk_bytes: u64,
    sector: u64,
    size: u64,
    partition_guid: [u8; 16],
) -> Result<Placement, PartitionError> {
    let esize = hdr.entry_size as usize;
    let used = gpt_extents(entries, esize);
    let slot = entries
        .chunks_exact(esize)
        .position(|e| e[..16].iter().all(|b| *b == 0))
        .ok_or(PartitionError::NoFreeSlot("every GPT entry is used"))?;
    let entries_sectors = (entries.len() as u64).div_ceil(sector);
    let disk_sectors = disk_bytes / sector;
    // Backup header (1 sector) and backup entries at the end; the seed ends before them.
    let tail = 1 + entries_sectors;
    let usable_end = disk_sectors
        .checked_sub(tail)
        .map(|s| s * sector)
        .unwrap_or(0);
    let extent = choose_extent(
        &used,
        sector,
        size,
        hdr.first_usable.saturating_mul(sector),
        usable_end,
    )?;
    let e = &mut entries[slot * esize..(slot + 1) * esize];
    e.fill(0);
    e[..16].copy_from_slice(&GPT_BASIC_DATA);
    e[16..32].copy_from_slice(&partition_guid);
    e[32..40].copy_from_slice(&extent.first_lba.to_le_bytes());
    e[40..48].copy_from_slice(&extent.last_lba.to_le_bytes());
    for (i, u) in "cidata".encode_utf16().enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    Ok(Placement {
        table: TableKind::Gpt,
        number: u32::try_from(slot + 1).unwrap_or(u32::MAX),
        offset_bytes: extent.first_lba * sector,
        size_bytes: (extent.last_lba - extent.first_lba + 1) * sector,
    })
}

/// Partition extents of the table on `dev`, in bytes (start, length); empty when there is no
/// table. Erasing uses it to find the signatures at each partition's start and end.
pub(crate) fn extents_bytes(dev: &mut File, sector: u64) -> Vec<(u64, u64)> {
    let Ok(s0) = read_at(dev, 0, 512) else {
        return Vec::new();
    };
    let Some(mbr) = parse_mbr(&s0) else {
        return Vec::new();
    };
    if mbr.iter().any(|e| e.0 == MBR_PROTECTIVE) {
        let sector_len = usize::try_from(sector).unwrap_or(512);
        let Ok(hdr) = read_at(dev, sector, sector_len).and_then(|b| parse_gpt_header(&b)) else {
            return Vec::new();
        };
        let Ok(entries) = read_at(dev, hdr.entries_lba * sector, hdr.entries_bytes()) else {
            return Vec::new();
        };
        gpt_extents(&entries, hdr.entry_size as usize)
            .into_iter()
            .filter(|e| e.last_lba >= e.first_lba)
            .map(|e| {
                (
                    e.first_lba * sector,
                    (e.last_lba - e.first_lba + 1) * sector,
                )
            })
            .collect()
    } else {
        mbr.iter()
            .filter(|e| e.0 != 0 && e.2 != 0)
            .map(|e| (u64::from(e.1) * 512, u64::from(e.2) * 512))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr_with(parts: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[510] = 0x55;
        s[511] = 0xaa;
        for (i, (t, first, count)) in parts.iter().enumerate() {
            let e = 446 + 16 * i;
            s[e + 4] = *t;
            s[e + 8..e + 12].copy_from_slice(&first.to_le_bytes());
            s[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
        }
        s
    }

    #[test]
    fn mbr_seed_goes_in_the_last_mib_after_the_partitions() {
        let mut s = mbr_with(&[(0x83, 2048, 2048 * 100)]);
        let disk = 1024 * MIB + 12345; // not a whole MiB: the seed ends at the last boundary
        let (n, ext) = add_mbr_partition(&mut s, disk, 4 * MIB, 0x0c).expect("room");
        assert_eq!(n, 2);
        assert_eq!(ext.last_lba + 1, 1024 * 2048);
        assert_eq!(ext.first_lba, 1020 * 2048);
        let parsed = parse_mbr(&s).expect("still an MBR");
        assert_eq!(parsed[1], (0x0c, 1020 * 2048, 4 * 2048));
        assert_eq!(parsed[0], (0x83, 2048, 2048 * 100));
    }

    #[test]
    fn mbr_refuses_when_full_or_no_room() {
        let mut s = mbr_with(&[
            (0x83, 2048, 100),
            (0x83, 4096, 100),
            (0x83, 8192, 100),
            (0x82, 9000, 10),
        ]);
        assert!(matches!(
            add_mbr_partition(&mut s, 1024 * MIB, 4 * MIB, 0x0c),
            Err(PartitionError::NoFreeSlot(_))
        ));
        // The image fills the disk: no room.
        let mut s = mbr_with(&[(0x83, 2048, 2048 * 1020)]);
        assert!(matches!(
            add_mbr_partition(&mut s, 1024 * MIB, 4 * MIB, 0x0c),
            Err(PartitionError::NoRoom { .. })
        ));
        let mut none = vec![0u8; 512];
        assert!(matches!(
            add_mbr_partition(&mut none, 1024 * MIB, 4 * MIB, 0x0c),
            Err(PartitionError::NoTable)
        ));
    }

    #[test]
    fn gpt_header_crc_is_checked() {
        let hdr = make_gpt_header(2048 * 64 - 1);
        let parsed = parse_gpt_header(&hdr).expect("valid");
        assert_eq!(parsed.entry_count, 128);
        let mut bad = hdr.clone();
        bad[40] ^= 1;
        assert!(matches!(
            parse_gpt_header(&bad),
            Err(PartitionError::BadGpt(_))
        ));
        assert!(parse_gpt_header(&[0u8; 512]).is_err());
    }

    #[test]
    fn a_gpt_entry_size_past_4_kib_is_refused() {
        // Found by fuzzing: a header asking for 16384 entries of 16 MiB each made the agent
        // allocate their array.
        for (size, ok) in [
            (128u32, true),
            (4096, true),
            (8192, false),
            (136, false),
            (1 << 24, false),
        ] {
            let mut h = make_gpt_header(2048 * 64 - 1);
            h[84..88].copy_from_slice(&size.to_le_bytes());
            h[16..20].fill(0);
            let crc = crc32fast::hash(&h[..92]);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(parse_gpt_header(&h).is_ok(), ok, "entry size {size}");
        }
    }

    /// A primary GPT header for an image whose last LBA is `last`, with an empty entries array.
    fn make_gpt_header(last: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(GPT_SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&last.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(last - 33).to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&[0u8; 128 * 128]).to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    #[test]
    fn gpt_entry_leaves_room_for_the_backup() {
        let hdr = parse_gpt_header(&make_gpt_header(2048 * 64 - 1)).expect("valid");
        let mut entries = vec![0u8; 128 * 128];
        // One root partition, 1 MiB .. 63 MiB of a 64 MiB image.
        entries[..16].copy_from_slice(&[1u8; 16]);
        entries[32..40].copy_from_slice(&2048u64.to_le_bytes());
        entries[40..48].copy_from_slice(&(2048u64 * 63 - 1).to_le_bytes());
        let p = add_gpt_entry(&hdr, &mut entries, 256 * MIB, 512, 8 * MIB, [7; 16]).expect("room");
        assert_eq!(p.number, 2);
        // The disk's last MiB holds the backup (33 sectors): the seed ends at 255 MiB.
        assert_eq!(p.offset_bytes + p.size_bytes, 255 * MIB);
        assert_eq!(p.size_bytes, 8 * MIB);
        let ext = gpt_extents(&entries, 128);
        assert_eq!(ext.len(), 2);
        assert_eq!(ext[1].first_lba * 512, p.offset_bytes);
        assert_eq!(&entries[128..144], &GPT_BASIC_DATA);
        assert_eq!(&entries[128 + 16..128 + 32], &[7u8; 16]);
    }

    #[test]
    fn extents_ending_past_u64_leave_no_room_instead_of_overflowing() {
        // Found by fuzz/fuzz_targets/image_formats.rs: a GPT entry whose last LBA times the
        // sector size overflows u64 panicked (debug) or wrapped (release).
        let huge = [Extent {
            first_lba: 34,
            last_lba: u64::MAX / 512,
        }];
        assert!(matches!(
            choose_extent(&huge, 512, 2 * MIB, MIB, 100 * MIB),
            Err(PartitionError::NoRoom {
                used_end: u64::MAX,
                ..
            })
        ));
        let last = [Extent {
            first_lba: 34,
            last_lba: u64::MAX,
        }];
        assert!(choose_extent(&last, 4096, 2 * MIB, MIB, 100 * MIB).is_err());
        assert!(choose_extent(&[], 4096, 2 * MIB, u64::MAX, 100 * MIB).is_err());
    }

    #[test]
    fn choose_extent_aligns_to_mib() {
        let e = choose_extent(&[], 4096, 2 * MIB, MIB, 10 * MIB + 4096).expect("room");
        assert_eq!(e.first_lba * 4096, 8 * MIB);
        assert_eq!((e.last_lba + 1) * 4096, 10 * MIB);
    }
}
