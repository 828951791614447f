//! Deploying an OS image: stream it over HTTP, decompress, write it to the disk while hashing
//! the downloaded bytes, refuse a checksum mismatch, then add the cloud-init NoCloud seed.
//!
//! A download that breaks off (the appliance restarted, the network hiccuped) is resumed with a
//! `Range` request from the byte reached, so a deploy survives an appliance restart.
//!
//! The download runs on the async runtime; decompression and disk writes run on one blocking
//! thread fed through a bounded channel, so a slow disk slows the download instead of filling
//! memory, and a fast network never waits on a hash. Nothing is buffered whole: a 100 GiB image
//! needs a few MiB of memory.
//!
//! The checksum can only be known once the last byte has arrived, after the image is on the
//! disk. A mismatch therefore zeroes the disk's first and last MiB (partition tables and boot
//! sector) so that the machine cannot boot a damaged image, and the deploy fails with the
//! expected and actual digests.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::client::{Client, ClientError, DeployTask, ImageFormat, Progress};
use super::erase::{EraseError, Target};
use super::partition::{self, MIB, PartitionError, Placement};
use super::seed::{self, SeedError, SeedInput};

/// How often one deploy resumes a download that broke off (each resume itself retries with
/// backoff within the client's budget) before it fails.
const MAX_RESUMES: u32 = 10;

/// Buffer between the decompressor and the disk: writes reach the disk in large blocks.
const WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Downloaded chunks waiting for the writer thread (each a few KiB to a few hundred KiB).
const CHANNEL_CHUNKS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the deploy task is not usable: {0}")]
    BadTask(String),
    #[error("cannot download the image: {0}")]
    Download(#[from] ClientError),
    #[error("the image download broke off after {bytes} bytes: {reason}")]
    Stream { bytes: u64, reason: String },
    #[error(
        "image checksum mismatch: expected sha256 {expected}, got {actual} over {bytes} downloaded bytes; the disk's partition table was wiped{also}"
    )]
    Checksum {
        expected: String,
        actual: String,
        bytes: u64,
        /// What else went wrong while writing, if anything (usually a decompression error the
        /// damage caused).
        also: String,
    },
    #[error("the image is {actual} bytes, the appliance said {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("cannot decompress the {format} image: {reason}")]
    Decompress { format: String, reason: String },
    #[error("the decompressed image is larger than the {disk_bytes} byte disk")]
    TooLarge { disk_bytes: u64 },
    #[error("writing the image to {disk} failed at byte {offset}: {source}")]
    DiskWrite {
        disk: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Disk(#[from] EraseError),
    #[error("cannot add the cloud-init seed partition: {0}")]
    Partition(#[from] PartitionError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("writing the cloud-init seed failed: {0}")]
    SeedWrite(#[source] io::Error),
    #[error("the image writer stopped unexpectedly: {0}")]
    Internal(String),
}

/// What a successful deploy did, for the completion report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Deployed {
    pub disk: String,
    pub(crate) image_bytes: u64,
    pub(crate) written_bytes: u64,
    pub sha256: String,
    pub seed_partition: u32,
    pub(crate) seed_offset: u64,
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks and normalizes an expected SHA-256: 64 hex digits, any case.
pub fn normalize_sha256(text: &str) -> Result<String, DeployError> {
    let t = text.trim().to_ascii_lowercase();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t)
    } else {
        Err(DeployError::BadTask(format!(
            "image_sha256 {text:?} is not 64 hex digits"
        )))
    }
}

/// Writes the image described by `task` to `disk` and adds the seed. Progress goes to
/// `progress` (latest value wins; the caller posts it).
pub async fn deploy(
    client: &Client,
    task: &DeployTask,
    disk: &Path,
    progress: &watch::Sender<Progress>,
) -> Result<Deployed, DeployError> {
    let expected = normalize_sha256(&task.image_sha256)?;
    let target = Target::open(disk)?;
    let disk_name = target.path().to_string();
    let disk_bytes = target.size();
    let sector = target.sector();
    tracing::info!(disk = %disk_name, disk_bytes, url = %task.image_url, "deploying");

    let resp = client.download(&task.image_url).await?;
    let total = task.image_size.or(resp.content_length());
    let mut stream = resp.bytes_stream().boxed();

    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let written = Arc::new(AtomicU64::new(0));
    let format = task.image_format;
    let writer = {
        let written = written.clone();
        let file = target;
        tokio::task::spawn_blocking(move || write_image(rx, format, file, written))
    };

    let mut hasher = Sha256::new();
    let mut downloaded = 0u64;
    let mut writer_alive = true;
    let mut last_step = u64::MAX;
    let mut stream_error = None;
    let mut resumes = 0u32;
    loop {
        let chunk = match stream.next().await {
            None => break,
            Some(Ok(c)) => c,
            Some(Err(e)) if resumes < MAX_RESUMES => {
                // The appliance restarted or the network hiccuped: ask for the rest and splice
                // it on. The decompressor and the hash see one continuous stream.
                resumes += 1;
                tracing::warn!(bytes = downloaded, error = %e, resumes, "image download broke off; resuming");
                match client.download_from(&task.image_url, downloaded).await {
                    Ok(resp) => {
                        stream = resp.bytes_stream().boxed();
                        continue;
                    }
                    Err(again) => {
                        stream_error = Some(format!("{e}; resuming failed: {again}"));
                        break;
                    }
                }
            }
            Some(Err(e)) => {
                stream_error = Some(format!("{e} (after {resumes} resumed downloads)"));
                break;
            }
        };
        hasher.update(&chunk);
        downloaded += chunk.len() as u64;
        // After a writer failure keep downloading and hashing: a damaged download makes the
        // decompressor fail first, and the checksum is the truer reason to report.
        if writer_alive && tx.send(chunk).await.is_err() {
            writer_alive = false;
        }
        // One report per percent (or per 64 MiB when the size is unknown).
        let step = match total {
            Some(t) if t > 0 => downloaded.saturating_mul(100) / t,
            _ => downloaded / (64 * MIB),
        };
        if step != last_step {
            last_step = step;
            progress.send_replace(Progress {
                message: format!("writing image to {disk_name}"),
                percent: total
                    .filter(|t| *t > 0)
                    .map(|t| (downloaded as f64 * 100.0 / t as f64).min(100.0)),
                bytes: Some(downloaded),
            });
        }
    }
    drop(tx);
    let write_result = writer
        .await
        .map_err(|e| DeployError::Internal(e.to_string()))?;
    if let Some(reason) = stream_error {
        return Err(DeployError::Stream {
            bytes: downloaded,
            reason,
        });
    }
    let actual = hex(&hasher.finalize());
    if actual != expected {
        let also = match &write_result {
            Err(e) => format!(" (writing had also failed: {e})"),
            Ok(_) => String::new(),
        };
        wipe_head_and_tail(disk);
        return Err(DeployError::Checksum {
            expected,
            actual,
            bytes: downloaded,
            also,
        });
    }
    if let Some(size) = task.image_size
        && size != downloaded
    {
        wipe_head_and_tail(disk);
        return Err(DeployError::Size {
            expected: size,
            actual: downloaded,
        });
    }
    let written_bytes = write_result?;
    tracing::info!(disk = %disk_name, downloaded, written_bytes, "image written and verified");

    progress.send_replace(Progress {
        message: "writing the cloud-init seed".into(),
        percent: Some(100.0),
        bytes: Some(downloaded),
    });
    // Blocking disk I/O: off the async workers.
    let placement = {
        let (disk, task) = (disk.to_path_buf(), task.clone());
        tokio::task::spawn_blocking(move || write_seed(&disk, disk_bytes, sector, &task))
            .await
            .map_err(|e| DeployError::Internal(e.to_string()))??
    };
    Ok(Deployed {
        disk: disk_name,
        image_bytes: downloaded,
        written_bytes,
        sha256: actual,
        seed_partition: placement.number,
        seed_offset: placement.offset_bytes,
    })
}

/// Zeroes the first and last MiB of a disk after a failed deploy, best effort: the failure
/// being reported matters more than a failure to clean up, which is logged.
fn wipe_head_and_tail(disk: &Path) {
    let result = Target::open(disk).and_then(|mut t| {
        let size = t.size();
        t.zero_range(0, MIB, &mut |_| {})?;
        t.zero_range(size.saturating_sub(MIB), size, &mut |_| {})?;
        t.sync()
    });
    if let Err(e) = result {
        tracing::error!(error = %e, "cannot wipe the disk after a failed deploy");
    }
}

/// Adds the seed partition at the disk's end and writes the CIDATA filesystem into it.
fn write_seed(
    disk: &Path,
    disk_bytes: u64,
    sector: u64,
    task: &DeployTask,
) -> Result<Placement, DeployError> {
    let input = SeedInput {
        instance_id: if task.instance_id.is_empty() {
            format!("i-{}", task.hostname)
        } else {
            task.instance_id.clone()
        },
        hostname: task.hostname.clone(),
        ssh_keys: task.ssh_keys.clone(),
        user_data: task.user_data.clone(),
        report_url: task.report_url.clone().unwrap_or_default(),
        report_token: task.report_token.clone().unwrap_or_default(),
        network_config: task.network_config.clone().unwrap_or_default(),
    };
    let sector_u16 = u16::try_from(sector).unwrap_or(512);
    let fat = seed::build_fat(&input, sector_u16)?;
    let mut t = Target::open(disk)?;
    let guid = partition_guid(task);
    let placement = partition::add_seed_partition(
        t.file(),
        disk_bytes,
        sector,
        seed::SEED_BYTES,
        seed::MBR_TYPE_FAT16_LBA,
        guid,
    )?;
    let f = t.file();
    f.seek(SeekFrom::Start(placement.offset_bytes))
        .map_err(DeployError::SeedWrite)?;
    f.write_all(&fat).map_err(DeployError::SeedWrite)?;
    t.sync()?;
    tracing::info!(
        partition = placement.number,
        offset = placement.offset_bytes,
        "cloud-init seed written"
    );
    Ok(placement)
}

/// A unique partition GUID for the seed's GPT entry, in the version 4 / RFC 4122 variant layout.
///
/// Derived by hashing what identifies this deploy (instance id, hostname, image digest) and the
/// current time, not read from the kernel's random pool: early in the ramdisk's life, on a
/// machine (or VM) with few entropy sources, getrandom(2) can block for minutes until the pool
/// is initialized, and a partition GUID needs uniqueness, not secrecy.
fn partition_guid(task: &DeployTask) -> [u8; 16] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let digest = Sha256::new()
        .chain_update(task.instance_id.as_bytes())
        .chain_update([0])
        .chain_update(task.hostname.as_bytes())
        .chain_update([0])
        .chain_update(task.image_sha256.as_bytes())
        .chain_update(now.to_le_bytes())
        .finalize();
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&digest[..16]);
    guid[7] = (guid[7] & 0x0f) | 0x40;
    guid[8] = (guid[8] & 0x3f) | 0x80;
    guid
}

/// Reads the downloaded chunks the async side sends, as a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Why writing stopped on the disk side (kept apart from decompressor errors, which wrap
/// writer errors in their own types).
enum DiskFailure {
    TooLarge,
    Io { offset: u64, error: io::Error },
}

/// Writes to the disk, refusing to go past its end (a file standing in for a disk would grow).
struct DiskWriter {
    file: Target,
    pos: u64,
    written: Arc<AtomicU64>,
    failure: Option<DiskFailure>,
}

impl Write for DiskWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos.saturating_add(buf.len() as u64);
        if end > self.file.size() {
            self.failure = Some(DiskFailure::TooLarge);
            return Err(io::Error::other("the image is larger than the disk"));
        }
        match self.file.file().write_all(buf) {
            Ok(()) => {
                self.pos = end;
                self.written.store(end, Ordering::Relaxed);
                Ok(buf.len())
            }
            Err(error) => {
                let e = io::Error::new(error.kind(), error.to_string());
                self.failure = Some(DiskFailure::Io {
                    offset: self.pos,
                    error,
                });
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.file().flush()
    }
}

/// The blocking half: decompress what arrives on `rx` and write it from the disk's start.
/// Returns the number of bytes written.
fn write_image(
    rx: mpsc::Receiver<Bytes>,
    format: ImageFormat,
    mut file: Target,
    written: Arc<AtomicU64>,
) -> Result<u64, DeployError> {
    let disk = file.path().to_string();
    let disk_bytes = file.size();
    file.file()
        .seek(SeekFrom::Start(0))
        .map_err(|source| DeployError::DiskWrite {
            disk: disk.clone(),
            offset: 0,
            source,
        })?;
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let mut out = io::BufWriter::with_capacity(
        WRITE_BUFFER,
        DiskWriter {
            file,
            pos: 0,
            written,
            failure: None,
        },
    );
    let result = decompress(format, reader, &mut out).and_then(|()| out.flush());
    let (writer, _) = out.into_parts();
    let disk_error = |failure: DiskFailure| match failure {
        DiskFailure::TooLarge => DeployError::TooLarge { disk_bytes },
        DiskFailure::Io { offset, error } => DeployError::DiskWrite {
            disk: disk.clone(),
            offset,
            source: error,
        },
    };
    let DiskWriter {
        mut file,
        pos,
        failure,
        ..
    } = writer;
    if let Some(f) = failure {
        return Err(disk_error(f));
    }
    if let Err(e) = result {
        return Err(DeployError::Decompress {
            format: format_name(format).into(),
            reason: e.to_string(),
        });
    }
    file.sync()?;
    Ok(pos)
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Raw => "raw",
        ImageFormat::RawGz => "raw.gz",
        ImageFormat::RawXz => "raw.xz",
        ImageFormat::RawZst => "raw.zst",
    }
}

/// Decompresses `input` into `out` according to `format`.
///
/// gzip and zstd may hold several members/frames back to back (pigz, pzstd, `cat a.gz b.gz`);
/// all are decoded. xz streams are decoded by lzma-rs, whose decoder takes the whole stream.
pub fn decompress(format: ImageFormat, input: impl Read, out: &mut impl Write) -> io::Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    match format {
        ImageFormat::Raw => io::copy(&mut input, out).map(drop),
        ImageFormat::RawGz => {
            io::copy(&mut flate2::bufread::MultiGzDecoder::new(input), out).map(drop)
        }
        // lzma-rs adds header fields without checking for overflow: with overflow checks on
        // (debug builds) a crafted stream panics inside it (found by fuzzing). The deploy fails
        // with a message instead of the agent dying.
        ImageFormat::RawXz => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            lzma_rs::xz_decompress(&mut input, out)
        }))
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the xz stream is corrupt (its decoder gave up on it)",
            )
        })?
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}"))),
        ImageFormat::RawZst => {
            let mut frames = 0u32;
            loop {
                if input.fill_buf()?.is_empty() {
                    return if frames == 0 {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "empty zstd stream",
                        ))
                    } else {
                        Ok(())
                    };
                }
                let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                io::copy(&mut dec, out)?;
                frames += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn raw_and_gzip_including_multi_member() {
        let data = sample();
        let mut out = Vec::new();
        decompress(ImageFormat::Raw, &data[..], &mut out).expect("raw");
        assert_eq!(out, data);
        let mut two = gz(&data[..1000]);
        two.extend(gz(&data[1000..]));
        let mut out = Vec::new();
        decompress(ImageFormat::RawGz, &two[..], &mut out).expect("gz");
        assert_eq!(out, data);
    }

    #[test]
    fn zstd_frames_back_to_back() {
        let data = sample();
        let mut z = ruzstd::encoding::compress_to_vec(
            &data[..5000],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        z.extend(ruzstd::encoding::compress_to_vec(
            &data[5000..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let mut out = Vec::new();
        decompress(ImageFormat::RawZst, &z[..], &mut out).expect("zstd");
        assert_eq!(out, data);
        let mut out = Vec::new();
        assert!(decompress(ImageFormat::RawZst, &b"not zstd at all"[..], &mut out).is_err());
    }

    #[test]
    fn xz_round_trip_and_damage() {
        let data = sample();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut xz).expect("xz");
        let mut out = Vec::new();
        decompress(ImageFormat::RawXz, &xz[..], &mut out).expect("xz");
        assert_eq!(out, data);
        let mut bad = xz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        // lzma-rs writes xz without an integrity check, so damage may decode to other bytes
        // rather than fail: either way the image is not taken for good (the sha256 of the
        // download is what guards a deploy).
        let mut out = Vec::new();
        let decoded = decompress(ImageFormat::RawXz, &bad[..], &mut out);
        assert!(decoded.is_err() || out != data);
    }

    #[test]
    fn an_xz_stream_that_overflows_the_decoder_is_an_error() {
        // Found by fuzzing: lzma-rs overflows an addition on this stream's header (a panic
        // with overflow checks on, as in tests).
        let stream = include_bytes!("testdata/xz-header-overflow.xz");
        let mut out = Vec::new();
        assert!(decompress(ImageFormat::RawXz, &stream[..], &mut out).is_err());
    }

    #[test]
    fn sha256_must_be_hex() {
        assert!(normalize_sha256(&"AB".repeat(32)).is_ok());
        assert!(normalize_sha256("abc").is_err());
        assert!(normalize_sha256(&"zz".repeat(32)).is_err());
    }
}
