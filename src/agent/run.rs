//! The task loop: ask the appliance what to do, do it, report, and ask again, until the
//! appliance says power off or reboot.
//!
//! Every task ends in exactly one `/complete` or `/fail`; a failure anywhere (bad checksum, disk
//! error, unknown task) becomes a `/fail` with the reason, never a silent stop. Only when the
//! appliance itself cannot be reached through the whole retry budget does [`run`] return an
//! error, and the caller (PID 1 in the ramdisk) starts over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::model::{EraseMode, TestResult, TestRun, TestStatus};

use super::client::{Client, ClientError, DeployTask, EnlistKey, Progress, RetryPolicy, Task};
use super::erase;
use super::inventory::{self, Inventory};
use super::rescue::{self, Rescue};

/// Printed around the inventory JSON in `rackbox.inventory_only=1` mode, so that a reader of a
/// serial console (a test, an operator) can cut it out of the kernel's messages.
pub const INVENTORY_BEGIN: &str = "----- BEGIN RACKBOX INVENTORY -----";
pub const INVENTORY_END: &str = "----- END RACKBOX INVENTORY -----";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no token: boot with rackbox.token=... or rackbox.enlist=1")]
    NoToken,
    #[error("no appliance URL: boot with rackbox.url=... or pass --url")]
    NoUrl,
}

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The appliance's base URL.
    pub url: String,
    /// Per-boot token; None together with `enlist` to enlist first.
    pub token: Option<String>,
    pub(crate) system_id: Option<String>,
    pub enlist: bool,
    /// This boot's enlistment key, sent with every `/enlist` (see [`Client::enlist`]); made
    /// when the agent first enlists. Not before: making it reads the kernel's random generator,
    /// which on a machine without a hardware generator (qemu64, some old servers) blocks until
    /// the kernel has gathered entropy, and a boot that does not enlist must not wait for that.
    pub(crate) enlist_key: Option<EnlistKey>,
    /// The inventory this boot enlists with, once taken: an attempt after an error sends the
    /// same document (the BMC user's password in it must stay the one the BMC has).
    pub(crate) enlist_inventory: Option<Inventory>,
    /// BOOTIF from the command line, to mark the boot interface.
    pub(crate) boot_mac: Option<String>,
    /// Disks (or files standing in for them) to use instead of the inventory's: erase erases
    /// all of them, deploy writes the first (or the one named by the task). For tests and
    /// for an operator who wants to keep the agent off some disks.
    pub devices: Vec<PathBuf>,
    /// Where /proc, /sys and /dev are (`/` on a machine).
    pub root: PathBuf,
    pub policy: RetryPolicy,
    /// The longest a `wait` task parks the agent before it asks again.
    pub max_wait: Duration,
    /// Memory the memory test exercises, at most.
    pub memory_test_mib: u64,
    /// The port rescue mode's SSH server listens on.
    pub(crate) ssh_port: u16,
}

impl AgentConfig {
    pub fn new(url: impl Into<String>, token: Option<String>) -> AgentConfig {
        AgentConfig {
            url: url.into(),
            token,
            system_id: None,
            enlist: false,
            enlist_key: None,
            enlist_inventory: None,
            boot_mac: None,
            devices: Vec::new(),
            root: PathBuf::from("/"),
            policy: RetryPolicy::default(),
            max_wait: Duration::from_secs(300),
            memory_test_mib: 256,
            ssh_port: 22,
        }
    }
}

/// What the appliance asked the machine to do when the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    PowerOff,
    Reboot,
}

/// How one task ended.
enum Failure {
    /// Reported to the appliance with `/fail`.
    Task(String),
    /// Hardware tests failed: `/fail` with the reason and every test's result.
    Tests { reason: String, results: Value },
    /// The appliance cannot be reached: nothing to report to.
    Client(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// The inventory JSON between its markers, as inventory-only mode prints it.
pub(crate) fn inventory_report(inv: &Inventory) -> String {
    let json = serde_json::to_string(inv).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    format!("{INVENTORY_BEGIN}\n{json}\n{INVENTORY_END}\n")
}

/// Collects the inventory on a blocking thread (sysfs reads can stall on a sick disk).
async fn collect_inventory(cfg: &AgentConfig) -> Inventory {
    let root = cfg.root.clone();
    let mac = cfg.boot_mac.clone();
    tokio::task::spawn_blocking(move || inventory::collect(&root, mac.as_deref()))
        .await
        .unwrap_or_default()
}

/// How often the agent asks for its next task while the owner works in rescue mode.
const RESCUE_POLL: Duration = Duration::from_secs(10);

/// The inventory with the BMC read in-band (commissioning and enlistment), and with
/// `create_bmc_user` a BMC user for the appliance, whose credentials travel in the inventory.
async fn collect_full_inventory(cfg: &AgentConfig, create_bmc_user: bool) -> Inventory {
    let mut inv = collect_inventory(cfg).await;
    let root = cfg.root.clone();
    let mut bmc = inv.bmc.clone();
    match tokio::task::spawn_blocking(move || {
        super::bmc::fill(&root, &mut bmc, create_bmc_user);
        bmc
    })
    .await
    {
        Ok(bmc) => inv.bmc = bmc,
        Err(e) => tracing::warn!(error = %e, "BMC discovery stopped"),
    }
    // A Redfish host interface: ask the service behind it, with the user just created.
    if let Some(hi) = inv.bmc.redfish_host_interface.clone() {
        let found = super::redfish_host::discover(
            &cfg.root,
            &hi,
            inv.bmc.credentials.as_ref(),
            &inv.system.uuid,
        )
        .await;
        inv.bmc.redfish = Some(found);
    }
    inv
}

/// Runs the task loop until the appliance says power off or reboot.
pub async fn run(cfg: AgentConfig) -> Result<Outcome, AgentError> {
    let mut cfg = cfg;
    run_boot(&mut cfg).await
}

/// [`run`], keeping in `cfg` what this boot has learnt, for the next attempt after an error:
/// once enlisted, the machine's id and token, so that the agent started again (PID 1 does)
/// goes on as that machine instead of enlisting again.
///
/// Enlistment is refused for a machine the appliance knows (409): then this agent has nothing
/// to do on this boot and the machine powers off; its next network boot is decided by its
/// status.
pub(crate) async fn run_boot(cfg: &mut AgentConfig) -> Result<Outcome, AgentError> {
    if cfg.url.is_empty() {
        return Err(AgentError::NoUrl);
    }
    tracing::info!(url = %cfg.url, system_id = ?cfg.system_id, enlist = cfg.enlist, "agent starting");
    let mut client = Client::new(&cfg.url, cfg.token.clone(), cfg.policy)?;
    if cfg.token.is_none() {
        if !cfg.enlist {
            return Err(AgentError::NoToken);
        }
        // An unknown machine has no power settings yet: give the appliance a BMC user, as
        // MAAS's enlistment does. Taken once per boot: every attempt sends the same document.
        let inv = match &cfg.enlist_inventory {
            Some(inv) => inv.clone(),
            None => {
                let inv = collect_full_inventory(cfg, true).await;
                cfg.enlist_inventory = Some(inv.clone());
                inv
            }
        };
        let key = cfg.enlist_key.get_or_insert_with(EnlistKey::random).clone();
        let enlisted = match client.enlist(&inv, &key).await {
            Ok(e) => e,
            Err(ClientError::Refused {
                status: 409, body, ..
            }) => {
                tracing::error!(
                    answer = %body,
                    "the appliance will not enlist this machine (it knows it already); \
                     powering off"
                );
                return Ok(Outcome::PowerOff);
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(system_id = %enlisted.system_id, "enlisted");
        cfg.system_id = Some(enlisted.system_id);
        cfg.token = Some(enlisted.token.clone());
        // The BMC user's password goes nowhere else.
        cfg.enlist_inventory = None;
        client.set_token(enlisted.token);
    }
    let cfg: &AgentConfig = cfg;
    // Rescue mode's SSH server, once started: it lives as long as the loop.
    let mut rescue: Option<Rescue> = None;
    loop {
        let raw = client.task().await?;
        let task: Task = match serde_json::from_value(raw.clone()) {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("cannot do task {raw}: {e}");
                tracing::error!(%reason);
                client.fail(&reason, None).await?;
                tokio::time::sleep(cfg.max_wait.min(Duration::from_secs(10))).await;
                continue;
            }
        };
        tracing::info!(?task, "task");
        let result = match task {
            Task::Poweroff => return Ok(Outcome::PowerOff),
            Task::Reboot => return Ok(Outcome::Reboot),
            Task::Wait { seconds } => {
                tokio::time::sleep(Duration::from_secs(seconds).min(cfg.max_wait)).await;
                continue;
            }
            Task::Commission { create_bmc_user } => commission(&client, cfg, create_bmc_user).await,
            Task::Test { tests } => hardware_tests(&client, cfg, &tests).await,
            Task::Deploy(d) => deploy(&client, cfg, &d).await,
            Task::Erase { mode } => erase_disks(&client, cfg, mode).await,
            Task::Rescue { ssh_keys } => {
                let running = rescue.as_mut().is_some_and(|r| r.is_running());
                if running && let Some(r) = rescue.as_mut() {
                    // Already in rescue mode (and reported): keep the owner's keys current and
                    // ask again later.
                    if let Err(e) = r.update_keys(&ssh_keys) {
                        tracing::warn!(error = %e, "rescue mode: keys not updated");
                    }
                    tokio::time::sleep(RESCUE_POLL.min(cfg.max_wait)).await;
                    continue;
                }
                rescue = None;
                match rescue::start(&cfg.root, &ssh_keys, cfg.ssh_port).await {
                    Ok(r) => {
                        let message = format!(
                            "rescue mode: SSH as root on port {} with the owner's {} key(s); host key {}",
                            r.port, r.keys, r.fingerprint
                        );
                        let results = json!({
                            "ssh_port": r.port,
                            "ssh_keys": r.keys,
                            "host_key_fingerprint": r.fingerprint,
                        });
                        rescue = Some(r);
                        Ok((message, Some(results)))
                    }
                    Err(e) => Err(Failure::Task(format!("cannot enter rescue mode: {e}"))),
                }
            }
        };
        match result {
            Ok((message, results)) => {
                tracing::info!(%message, "task complete");
                client.complete(&message, results).await?;
            }
            Err(Failure::Task(reason)) => {
                tracing::error!(%reason, "task failed");
                client.fail(&reason, None).await?;
            }
            Err(Failure::Tests { reason, results }) => {
                tracing::error!(%reason, "tests failed");
                client.fail(&reason, Some(results)).await?;
            }
            Err(Failure::Client(e)) => return Err(e.into()),
        }
    }
}

type TaskResult = Result<(String, Option<Value>), Failure>;

/// Starts the task that posts progress: the latest value wins, so a slow appliance never
/// slows the work, and each post has the client's retries.
fn spawn_reporter(client: &Client) -> (watch::Sender<Progress>, JoinHandle<()>) {
    let (tx, mut rx) = watch::channel(Progress::default());
    rx.mark_unchanged();
    let client = client.clone();
    let handle = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let p = rx.borrow_and_update().clone();
            if let Err(e) = client.progress(&p).await {
                tracing::warn!(error = %e, "progress not delivered");
            }
        }
    });
    (tx, handle)
}

/// Drops the progress sender and waits for the last report to be delivered, so that every
/// progress post reaches the appliance before the task's complete or fail.
async fn finish_reporter(tx: watch::Sender<Progress>, handle: JoinHandle<()>) {
    drop(tx);
    let _ = handle.await;
}

async fn commission(client: &Client, cfg: &AgentConfig, create_bmc_user: bool) -> TaskResult {
    let inv = collect_full_inventory(cfg, create_bmc_user).await;
    client.inventory(&inv).await?;
    let mut bmc = match &inv.bmc.lan {
        Some(lan) => format!(", BMC at {}", lan.ip_address),
        None => String::new(),
    };
    match inv.bmc.redfish.as_ref() {
        Some(rf) if !rf.address.is_empty() => {
            bmc.push_str(&format!(", Redfish BMC at {}", rf.address));
        }
        Some(rf) => bmc.push_str(&format!(
            ", Redfish host interface: {}",
            rf.error.as_deref().unwrap_or("no address")
        )),
        None => {}
    }
    let message = format!(
        "commissioned: {} CPUs, {} MiB, {} disk(s), {} interface(s), {} firmware{bmc}",
        inv.cpu_count,
        inv.memory_mib,
        inv.disks.len(),
        inv.interfaces.len(),
        if inv.firmware == inventory::Firmware::Uefi {
            "UEFI"
        } else {
            "BIOS"
        },
    );
    Ok((message, None))
}

/// The disks a task works on: the configured devices, else the inventory's (taken only then).
async fn disks(cfg: &AgentConfig) -> Vec<PathBuf> {
    if !cfg.devices.is_empty() {
        return cfg.devices.clone();
    }
    collect_inventory(cfg)
        .await
        .disks
        .iter()
        .map(|d| cfg.root.join("dev").join(&d.name))
        .collect()
}

/// The deploy target: the disk the task names, else the largest.
pub(crate) fn choose_target(
    cfg: &AgentConfig,
    inv: &Inventory,
    name: Option<&str>,
) -> Result<PathBuf, String> {
    if let Some(n) = name
        && (n.is_empty() || n.contains('/') || n == "." || n == "..")
    {
        return Err(format!("target_disk {n:?} is not a kernel disk name"));
    }
    if !cfg.devices.is_empty() {
        return match name {
            Some(n) => cfg
                .devices
                .iter()
                .find(|p| p.file_name().is_some_and(|f| f == n))
                .cloned()
                .ok_or_else(|| format!("target disk {n} is not among the agent's devices")),
            None => Ok(cfg.devices[0].clone()),
        };
    }
    match name {
        Some(n) => inv
            .disks
            .iter()
            .find(|d| d.name == n)
            .map(|d| cfg.root.join("dev").join(&d.name))
            .ok_or_else(|| {
                let names: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
                format!("target disk {n} not found (disks: {})", names.join(", "))
            }),
        None => inv
            .disks
            .iter()
            .max_by_key(|d| d.size_bytes)
            .map(|d| cfg.root.join("dev").join(&d.name))
            .ok_or_else(|| "no disk to deploy to".to_string()),
    }
}

async fn deploy(client: &Client, cfg: &AgentConfig, task: &DeployTask) -> TaskResult {
    let inv = if cfg.devices.is_empty() {
        collect_inventory(cfg).await
    } else {
        Inventory::default()
    };
    let disk = choose_target(cfg, &inv, task.target_disk.as_deref()).map_err(Failure::Task)?;
    let (tx, reporter) = spawn_reporter(client);
    let result = super::deploy::deploy(client, task, &disk, &tx).await;
    finish_reporter(tx, reporter).await;
    match result {
        Ok(d) => Ok((
            format!(
                "deployed {} bytes to {} (sha256 {}); cloud-init seed in partition {}",
                d.written_bytes, d.disk, d.sha256, d.seed_partition
            ),
            serde_json::to_value(&d).ok(),
        )),
        Err(super::deploy::DeployError::Download(e @ ClientError::GaveUp { .. })) => {
            // The image server is out of reach, but the agent API may not be: report it.
            Err(Failure::Task(format!("cannot download the image: {e}")))
        }
        Err(e) => Err(Failure::Task(e.to_string())),
    }
}

async fn erase_disks(client: &Client, cfg: &AgentConfig, mode: EraseMode) -> TaskResult {
    if mode == EraseMode::None {
        return Ok(("erase mode none: disks left as they are".into(), None));
    }
    let disks = disks(cfg).await;
    if disks.is_empty() {
        return Ok(("no disks to erase".into(), Some(json!({ "disks": [] }))));
    }
    let (tx, reporter) = spawn_reporter(client);
    let mut reports = Vec::new();
    let mut failure = None;
    for (i, disk) in disks.iter().enumerate() {
        let tx = tx.clone();
        let path = disk.clone();
        let n = disks.len();
        let result = tokio::task::spawn_blocking(move || {
            let disk = path;
            let mut last = u64::MAX;
            let shown = disk.display().to_string();
            erase::erase(&disk, mode, &mut |done, total| {
                let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
                if pct != last {
                    last = pct;
                    tx.send_replace(Progress {
                        message: format!("erasing {shown} ({} of {n})", i + 1),
                        percent: Some(pct as f64),
                        bytes: Some(done),
                    });
                }
            })
        })
        .await;
        match result {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => {
                failure = Some(e.to_string());
                break;
            }
            Err(e) => {
                failure = Some(format!("the erase of {} stopped: {e}", disk.display()));
                break;
            }
        }
    }
    finish_reporter(tx, reporter).await;
    if let Some(reason) = failure {
        return Err(Failure::Task(reason));
    }
    let fallbacks: Vec<&str> = reports
        .iter()
        .filter(|r| !r.note.is_empty() && mode == EraseMode::Secure && r.method == "full")
        .map(|r| r.path.as_str())
        .collect();
    let mut message = format!("erased {} disk(s) ({mode:?})", reports.len()).to_lowercase();
    if mode == EraseMode::Secure {
        let methods: Vec<String> = reports
            .iter()
            .map(|r| format!("{} by {}", r.path, r.method))
            .collect();
        message.push_str(&format!(": {}", methods.join(", ")));
    }
    if !fallbacks.is_empty() {
        message.push_str(&format!(
            "; secure erase not supported by {}: zeroed every byte instead",
            fallbacks.join(", ")
        ));
    }
    Ok((message, Some(json!({ "disks": reports }))))
}

/// Runs every test asked for (a failure does not stop the others) and reports each test's
/// result (`{"tests": [...]}`, one per disk for disk tests); any failure fails the task with
/// the failures as its reason.
async fn hardware_tests(client: &Client, cfg: &AgentConfig, tests: &[String]) -> TaskResult {
    let now = crate::model::ids::now_ms;
    let (tx, reporter) = spawn_reporter(client);
    let mut results: Vec<TestResult> = Vec::new();
    let result = |name: &str, status, started_ms, summary: String| TestResult {
        name: name.to_string(),
        status,
        started_ms,
        finished_ms: now(),
        summary,
        disk: None,
        bytes: None,
        throughput_mib_s: None,
    };
    for name in tests {
        match name.as_str() {
            "memory" => {
                let mib = cfg.memory_test_mib;
                tx.send_replace(Progress {
                    message: format!("memory test over {mib} MiB"),
                    percent: None,
                    bytes: None,
                });
                let started = now();
                let outcome = tokio::task::spawn_blocking(move || memory_test(mib))
                    .await
                    .unwrap_or_else(|e| Err(format!("memory test stopped: {e}")));
                let mut r = match outcome {
                    Ok(_) => result(
                        name,
                        TestStatus::Passed,
                        started,
                        format!("wrote and read back two patterns over {mib} MiB"),
                    ),
                    Err(reason) => result(name, TestStatus::Failed, started, reason),
                };
                r.bytes = Some(mib * 1024 * 1024);
                results.push(r);
            }
            "disk-read" => {
                let disks = disks(cfg).await;
                if disks.is_empty() {
                    results.push(result(
                        name,
                        TestStatus::Skipped,
                        now(),
                        "no disks to read".into(),
                    ));
                }
                for disk in disks {
                    let tx = tx.clone();
                    let started = now();
                    let clock = std::time::Instant::now();
                    let path = disk.clone();
                    let outcome = tokio::task::spawn_blocking(move || read_disk(&path, &tx))
                        .await
                        .unwrap_or_else(|e| Err(format!("disk read test stopped: {e}")));
                    let secs = clock.elapsed().as_secs_f64();
                    let mut r = match &outcome {
                        Ok(bytes) => result(
                            name,
                            TestStatus::Passed,
                            started,
                            format!("read all {bytes} bytes"),
                        ),
                        Err(reason) => result(name, TestStatus::Failed, started, reason.clone()),
                    };
                    r.disk = disk.file_name().map(|f| f.to_string_lossy().into_owned());
                    if let Ok(bytes) = outcome {
                        r.bytes = Some(bytes);
                        r.throughput_mib_s = (secs > 0.0)
                            .then(|| (bytes as f64 / 1024.0 / 1024.0 / secs * 10.0).round() / 10.0);
                    }
                    results.push(r);
                }
            }
            other => results.push(result(
                other,
                TestStatus::Failed,
                now(),
                "unknown test (known: disk-read, memory)".into(),
            )),
        }
    }
    finish_reporter(tx, reporter).await;
    let passed = results
        .iter()
        .filter(|r| r.status == TestStatus::Passed)
        .count();
    let failure = TestRun::new("", 0, results.clone()).failure_reason();
    let report = json!({ "tests": results });
    match failure {
        Some(reason) => Err(Failure::Tests {
            reason,
            results: report,
        }),
        None => Ok((format!("{passed} test(s) passed"), Some(report))),
    }
}

/// Writes two address-dependent patterns over `mib` MiB and reads them back.
pub(crate) fn memory_test(mib: u64) -> Result<Value, String> {
    let words = usize::try_from(mib * 1024 * 1024 / 8).map_err(|e| e.to_string())?;
    let mut buf: Vec<u64> = Vec::new();
    buf.try_reserve_exact(words)
        .map_err(|e| format!("cannot allocate {mib} MiB: {e}"))?;
    buf.resize(words, 0);
    for pattern in [0x5555_5555_5555_5555u64, 0xaaaa_aaaa_aaaa_aaaa] {
        for (i, w) in buf.iter_mut().enumerate() {
            *w = pattern ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        std::hint::black_box(&buf);
        if let Some(i) = buf
            .iter()
            .enumerate()
            .position(|(i, w)| *w != pattern ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        {
            return Err(format!("mismatch at byte {} of the test area", i * 8));
        }
    }
    Ok(json!({ "mib": mib, "ok": true }))
}

/// Reads every byte of a disk; returns how many. An I/O error names the disk and the offset.
fn read_disk(disk: &Path, tx: &watch::Sender<Progress>) -> Result<u64, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(disk).map_err(|e| format!("{}: {e}", disk.display()))?;
    let total = disk_size(disk);
    let mut buf = vec![0u8; 4 * 1024 * 1024];
    let mut done = 0u64;
    let mut last = u64::MAX;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: read error at byte {done}: {e}", disk.display()))?;
        if n == 0 {
            return Ok(done);
        }
        done += n as u64;
        if let Some(t) = total.filter(|t| *t > 0) {
            let pct = done.saturating_mul(100) / t;
            if pct != last {
                last = pct;
                tx.send_replace(Progress {
                    message: format!("reading {}", disk.display()),
                    percent: Some(pct as f64),
                    bytes: Some(done),
                });
            }
        }
    }
}

fn disk_size(path: &Path) -> Option<u64> {
    let mut f = std::fs::File::open(path).ok()?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).ok()
}

/// Flushes the filesystems and powers off or reboots the machine. Returns only on failure.
pub(crate) fn power(outcome: Outcome) -> std::io::Error {
    // SAFETY: sync() takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let cmd = match outcome {
        Outcome::PowerOff => libc::RB_POWER_OFF,
        Outcome::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot(2) with a valid command; it returns only on failure (EPERM without
    // CAP_SYS_BOOT), which is reported.
    unsafe { libc::reboot(cmd) };
    std::io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::inventory::DiskInfo;

    fn inv() -> Inventory {
        Inventory {
            disks: vec![
                DiskInfo {
                    name: "sda".into(),
                    size_bytes: 100,
                    ..Default::default()
                },
                DiskInfo {
                    name: "nvme0n1".into(),
                    size_bytes: 500,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn target_is_named_or_largest() {
        let cfg = AgentConfig::new("http://127.0.0.1:1", Some("t".into()));
        assert_eq!(
            choose_target(&cfg, &inv(), None),
            Ok(PathBuf::from("/dev/nvme0n1"))
        );
        assert_eq!(
            choose_target(&cfg, &inv(), Some("sda")),
            Ok(PathBuf::from("/dev/sda"))
        );
        assert!(
            choose_target(&cfg, &inv(), Some("sdz")).is_err_and(|e| e.contains("sda, nvme0n1"))
        );
        assert!(choose_target(&cfg, &inv(), Some("../etc")).is_err());
        assert!(choose_target(&cfg, &Inventory::default(), None).is_err());
    }

    #[test]
    fn devices_override_the_inventory() {
        let mut cfg = AgentConfig::new("http://127.0.0.1:1", Some("t".into()));
        cfg.devices = vec!["/tmp/a.img".into(), "/tmp/b.img".into()];
        assert_eq!(
            choose_target(&cfg, &inv(), None),
            Ok(PathBuf::from("/tmp/a.img"))
        );
        assert_eq!(
            choose_target(&cfg, &inv(), Some("b.img")),
            Ok(PathBuf::from("/tmp/b.img"))
        );
        assert!(choose_target(&cfg, &inv(), Some("sda")).is_err());
    }

    #[test]
    fn memory_test_passes_on_working_memory() {
        assert_eq!(memory_test(1).expect("memory")["ok"], true);
    }

    #[test]
    fn inventory_report_has_markers_and_json() {
        let text = inventory_report(&inv());
        let body = text
            .split(INVENTORY_BEGIN)
            .nth(1)
            .and_then(|s| s.split(INVENTORY_END).next())
            .expect("markers");
        let back: Inventory = serde_json::from_str(body.trim()).expect("json");
        assert_eq!(back.disks.len(), 2);
    }
}
