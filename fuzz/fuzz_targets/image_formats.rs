//! Image formats: what the agent decodes while it deploys and what it reads back from the disk
//! it wrote. The decompressors (`agent::deploy::decompress`: gzip, xz, zstd) with the output
//! bounded; the format sniffing of the image cache (`ImageFormat::matches_head`); and the
//! partition table the image brought, which the agent parses to add its cloud-init seed
//! (`agent::partition`: MBR, GPT header and entries, where the seed goes). Never panics, and
//! the seed never overlaps a partition the image has, nor the GPT's backup area.
//!
//! Input: a selector byte, then the bytes. For the GPT the harness fixes the header's CRC, so
//! that the fuzzer reaches what comes after the check.
#![no_main]

#[path = "common.rs"]
mod common;

use std::io::{self, Write};

use libfuzzer_sys::fuzz_target;
use rackbox::agent::client::ImageFormat as AgentFormat;
use rackbox::agent::deploy::decompress;
use rackbox::agent::partition::{self, TableKind};
use rackbox::images::records::ImageFormat;

const MIB: u64 = 1 << 20;
/// Output beyond this is refused: a decompression bomb is the decoder's business, not ours.
const MAX_OUT: usize = 8 << 20;

struct Bounded(usize);

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        if self.0 > MAX_OUT {
            return Err(io::Error::other("output bound"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn overlaps(a: &partition::Extent, b: &partition::Extent) -> bool {
    a.first_lba <= b.last_lba && b.first_lba <= a.last_lba
}

fuzz_target!(|data: &[u8]| {
    // `decompress` catches a panic inside lzma-rs (it adds header fields unchecked) and answers
    // an error, as the agent does: such a caught panic is not a crash. libFuzzer's hook would
    // abort at the panic itself, so it is replaced by one that only prints; a panic that is not
    // caught still aborts (libfuzzer-sys catches it and aborts).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("caught? {info}"))));
    let mut input = common::Cursor(data);
    let which = input.u8();
    match which % 6 {
        0 => {
            let _ = decompress(AgentFormat::RawGz, input.rest(), &mut Bounded(0));
        }
        1 => {
            let _ = decompress(AgentFormat::RawXz, input.rest(), &mut Bounded(0));
        }
        2 => {
            let _ = decompress(AgentFormat::RawZst, input.rest(), &mut Bounded(0));
        }
        3 => {
            let mut s0 = input.rest().to_vec();
            s0.resize(512, 0);
            let before = partition::parse_mbr(&s0);
            let disk = (u64::from(which) + 1) * 3 * MIB * 1024;
            if let Ok((_, seed)) = partition::add_mbr_partition(&mut s0, disk, 4 * MIB, 0x0c) {
                for (kind, first, count) in before.into_iter().flatten() {
                    if kind != 0 && count != 0 {
                        let used = partition::Extent {
                            first_lba: u64::from(first),
                            last_lba: u64::from(first) + u64::from(count) - 1,
                        };
                        assert!(!overlaps(&seed, &used), "seed {seed:?} over {used:?}");
                    }
                }
                assert!((seed.last_lba + 1) * 512 <= disk);
            }
        }
        _ => {
            let sector: u64 = if which & 0x80 == 0 { 512 } else { 4096 };
            let disk = u64::from(input.u16()).max(1) * 16 * MIB;
            let mut head = input.slice(255).to_vec();
            head.resize(512, 0);
            head[..8].copy_from_slice(b"EFI PART");
            let size =
                usize::try_from(u32::from_le_bytes([head[12], head[13], head[14], head[15]]))
                    .unwrap_or(usize::MAX);
            if (92..=head.len()).contains(&size) {
                head[16..20].fill(0);
                let crc = crc32(&head[..size]);
                head[16..20].copy_from_slice(&crc.to_le_bytes());
            }
            let Ok(hdr) = partition::parse_gpt_header(&head) else {
                return;
            };
            let esize = hdr.entry_size as usize;
            let mut entries = input.rest().to_vec();
            entries.resize((hdr.entry_count as usize).min(64) * esize, 0);
            let used = partition::gpt_extents(&entries, esize);
            if let Ok(p) =
                partition::add_gpt_entry(&hdr, &mut entries, disk, sector, 4 * MIB, [7; 16])
            {
                assert_eq!(p.table, TableKind::Gpt);
                let seed = partition::Extent {
                    first_lba: p.offset_bytes / sector,
                    last_lba: (p.offset_bytes + p.size_bytes) / sector - 1,
                };
                for u in &used {
                    assert!(!overlaps(&seed, u), "seed {seed:?} over {u:?}");
                }
                assert!(seed.first_lba >= hdr.first_usable);
                let tail = 1 + (entries.len() as u64).div_ceil(sector);
                assert!(p.offset_bytes + p.size_bytes <= disk - tail * sector);
            }
        }
    }
    let head = data.get(1..).unwrap_or_default();
    for f in [
        ImageFormat::Raw,
        ImageFormat::RawGz,
        ImageFormat::RawXz,
        ImageFormat::RawZst,
        ImageFormat::Tar,
    ] {
        let _ = f.matches_head(head);
    }
});

/// CRC-32 (IEEE), as the GPT uses; the harness's own, so that the fuzz crate needs no more deps.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
