//! The mission end to end, on the virtual rack the README's run command starts: `scripts/lab.sh
//! up 2 --enlist 1` in a network namespace of the test's own (LAB_NS), with its state in the
//! target directory and the API forwarded to a free port on 127.0.0.1. Everything after `up` goes
//! through rackbox's API only, and every power change goes through the machines' IPMI BMCs
//! (ipmi_sim, whose chassis program starts and stops each QEMU).
//!
//! - node3 is unknown to rackbox: switched on through its BMC, it PXE-boots the enlistment
//!   environment and appears as New with its inventory, and with IPMI power settings the agent
//!   discovered in-band (the BMC's address and a 'maas' user it created), which rackbox then uses.
//! - node1 (SeaBIOS + iPXE) and node2 (OVMF, native UEFI PXE) go New -> Commissioning -> Ready
//!   (the inventory matches the VM) -> Allocated -> Deploying -> Deployed (the test OS booted
//!   from the disk printed the injected hostname and SSH key) -> Disk erasing (quick) -> Ready
//!   (the disk file's first and last MiB are zero, and the machine is off).
//! - While node1 deploys, rackbox is killed with SIGKILL and restarted (`scripts/lab.sh
//!   restart`): the agent retries through the outage and the deploy still ends Deployed.
//!
//! The machines run one at a time (`LAB_START=0`: the lab starts nothing by itself): TCG guests
//! on a 2-core machine starve each other. Every wait is bounded; a machine that lands in a
//! failed status fails the test at once with its message, its serial console and rackbox's log.
//! The phases' durations are printed (the figures of BENCHMARKS.md come from
//! scripts/bench-lifecycle.sh, not from here). Needs root and scripts/deps.d/{netboot,agent,
//! testos}.sh; a missing tool fails the test.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// `scripts/lab.sh up` builds the static binary, the ephemeral environment and the test OS when
/// they are not cached: minutes on two cores the first time.
const UP_LIMIT: Duration = Duration::from_secs(45 * 60);
/// One life-cycle step of one TCG machine (a boot, a download, a write, a reboot).
const STEP_LIMIT: Duration = Duration::from_secs(8 * 60);
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eTestKeyForTheLabRack e2e@rackbox";
/// The lab's machines have 1 GiB of memory, one CPU and a 4 GiB disk (scripts/lab.sh).
const DISK_BYTES: u64 = 4 << 30;
const MIB: usize = 1 << 20;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A serial log without escape sequences and carriage returns, for messages.
fn printable(log: &str) -> String {
    log.replace('\r', "")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect()
}

/// The rack `scripts/lab.sh up` made; `down` and the state directory go when it drops.
struct LabRack {
    state: PathBuf,
    ns: String,
    port: u16,
    token: String,
    started: Instant,
}

impl LabRack {
    fn up(machines: u32, enlist: u32) -> LabRack {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the lab test must run as root (network namespace, tap devices)"
        );
        let state = target_dir()
            .join("tmp")
            .join(format!("lab-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("lab state dir");
        let mut rack = LabRack {
            ns: format!("rbx-e2e-{}", std::process::id()),
            port: free_port(),
            token: String::new(),
            state,
            started: Instant::now(),
        };
        let out = rack.lab(
            &["up", &machines.to_string(), "--enlist", &enlist.to_string()],
            UP_LIMIT,
        );
        rack.token = std::fs::read_to_string(rack.state.join("admin-token"))
            .unwrap_or_else(|e| panic!("lab up wrote no admin-token ({e}):\n{out}"))
            .trim()
            .to_string();
        rack
    }

    /// Runs `scripts/lab.sh ARGS` for this rack, bounded; fails with its output when it fails.
    fn lab(&self, args: &[&str], limit: Duration) -> String {
        let log = self.state.join(format!("lab-{}.out", args[0]));
        let file = File::create(&log).expect("lab output file");
        let mut child = Command::new("bash")
            .arg(repo().join("scripts/lab.sh"))
            .args(args)
            .current_dir(repo())
            .env("LAB_STATE", &self.state)
            .env("LAB_NS", &self.ns)
            .env("LAB_API_PORT", self.port.to_string())
            .env("LAB_START", "0")
            .env("LAB_EPHEMERAL", target_dir().join("ephemeral"))
            .env("LAB_TESTOS", target_dir().join("test-os"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("run scripts/lab.sh");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for lab.sh") {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "scripts/lab.sh {args:?} failed or ran over {limit:?}:\n{out}"
        );
        out
    }

    /// Calls the API through the lab's forward on 127.0.0.1: (status, JSON body).
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Command::new("curl");
        c.args(["-s", "-m", "30", "-X", method, "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token));
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
        }
        c.arg(format!("http://127.0.0.1:{}{path}", self.port));
        let out = c.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", &text));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.api(method, path, body);
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }

    fn machine_dir(&self, name: &str) -> PathBuf {
        self.state.join("machines").join(name)
    }

    fn rackbox_log(&self) -> String {
        std::fs::read_to_string(self.state.join("rackbox.log")).unwrap_or_default()
    }

    /// What to show when a wait fails: the machine's serial console and rackbox's log.
    fn evidence(&self, name: &str) -> String {
        let serial =
            std::fs::read_to_string(self.machine_dir(name).join("serial.log")).unwrap_or_default();
        format!(
            "--- {name} serial console (tail) ---\n{}\n--- rackbox log (tail) ---\n{}",
            tail(&printable(&serial), 60),
            tail(&self.rackbox_log(), 40)
        )
    }

    /// Waits until the machine is in `want`; fails at once on a failed status, and at the limit.
    fn wait_status(&self, id: &str, name: &str, want: &str) -> Value {
        let deadline = Instant::now() + STEP_LIMIT;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let (s, m) = self.api("GET", &format!("/api/v1/machines/{id}"), None);
            if s == 200 {
                let status = m["status_name"].as_str().unwrap_or_default().to_string();
                if status == want {
                    return m;
                }
                assert!(
                    !status.starts_with("Failed") && status != "Broken",
                    "{name} is {status} ({}) while waiting for {want}\n{}",
                    m["status_message"],
                    self.evidence(name)
                );
                last = m;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!(
            "{name} did not reach {want} in {STEP_LIMIT:?}; last seen {} ({})\n{}",
            last["status_name"],
            last["status_message"],
            self.evidence(name)
        );
    }

    /// `scripts/lab.sh power NAME status`, as ipmitool reads it from the BMC.
    fn bmc_power(&self, name: &str) -> String {
        self.lab(&["power", name, "status"], Duration::from_secs(60))
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for LabRack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/lab.sh"))
            .arg("down")
            .env("LAB_STATE", &self.state)
            .env("LAB_NS", &self.ns)
            .env("LAB_API_PORT", self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Bytes [offset, offset + len) of a file.
fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read");
    buf
}

/// Phase timings of one machine, printed at the end.
#[derive(Default)]
struct Timings(Vec<(String, f64)>);

impl Timings {
    fn step<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let v = f();
        self.0.push((what.to_string(), t.elapsed().as_secs_f64()));
        v
    }
}

/// One machine through the whole life cycle. `kill_mid_deploy`: SIGKILL rackbox while the agent
/// writes the image, restart it, and expect the deploy to finish anyway.
fn life_cycle(rack: &LabRack, name: &str, mac: &str, firmware: &str, kill_mid_deploy: bool) {
    let mut t = Timings::default();
    let found = rack.ok("GET", &format!("/api/v1/machines?mac={mac}"), None);
    let m = &found["items"][0];
    let id = m["system_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the lab added no machine with MAC {mac}: {found}"))
        .to_string();
    assert_eq!(m["status_name"], "New", "{name}: {m}");
    assert_eq!(
        m["power"]["power_type"], "ipmi",
        "{name} is powered by its BMC: {m}"
    );

    // Commissioning: power on with a one-time PXE boot, inventory, power off.
    rack.ok(
        "POST",
        &format!("/api/v1/machines/{id}/actions/commission"),
        Some(json!({})),
    );
    let m = t.step("commission: power on -> Ready", || {
        rack.wait_status(&id, name, "Ready")
    });
    assert_eq!(m["cpu_count"], 1, "{name}: {m}");
    let mem = m["memory_mib"].as_u64().unwrap_or(0);
    assert!(
        (900..=1024).contains(&mem),
        "{name} has 1024 MiB; rackbox says {mem}: {m}"
    );
    assert_eq!(m["disks"].as_array().map(Vec::len), Some(1), "{name}: {m}");
    assert_eq!(m["disks"][0]["size_bytes"], DISK_BYTES, "{name}: {m}");
    let macs: Vec<&str> = m["interfaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["mac"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(macs, vec![mac], "{name}: {m}");
    assert_eq!(m["inventory"]["firmware"], firmware, "{name}: {m}");
    assert!(
        m["inventory"]["bmc"]["present"].as_bool() == Some(true),
        "{name} has a KCS IPMI interface (isa-ipmi-kcs): {}",
        m["inventory"]["bmc"]
    );
    wait_off(rack, name);

    // Allocate and deploy the default image (the test OS) with the admin's SSH key.
    let m = rack.ok(
        "POST",
        "/api/v1/machines/allocate",
        Some(json!({"system_id": id})),
    );
    assert_eq!(m["status_name"], "Allocated", "{name}: {m}");
    rack.ok(
        "POST",
        &format!("/api/v1/machines/{id}/actions/deploy"),
        Some(json!({"user_data": "#cloud-config\n"})),
    );
    if kill_mid_deploy {
        t.step("deploy: until the image is being written", || {
            wait_writing(rack, &id, name)
        });
        kill_and_restart(rack);
    }
    let m = t.step("deploy -> Deployed", || {
        rack.wait_status(&id, name, "Deployed")
    });
    assert_eq!(m["owner"], "admin", "{name}: {m}");
    // The OS prints "reported" once rackbox has answered its report: a moment after Deployed.
    let wanted = [
        format!("RACKBOX-TESTOS firmware={firmware}"),
        format!("RACKBOX-TESTOS hostname={name}"),
        format!("RACKBOX-TESTOS ssh-key={SSH_KEY}"),
        "RACKBOX-TESTOS reported".to_string(),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let serial = printable(
            &std::fs::read_to_string(rack.machine_dir(name).join("serial.log")).unwrap_or_default(),
        );
        let lines: Vec<&str> = serial.lines().map(str::trim).collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !lines.contains(&w.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s deployed OS did not print {missing:?}:\n{}",
            tail(&serial, 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        rack.bmc_power(name).contains("is on"),
        "{name} runs its deployed OS"
    );

    // Release with a quick erase: the disk's head and tail are zeroed, the machine is off.
    let disk = rack.machine_dir(name).join("disk.raw");
    assert!(
        read_at(&disk, 0, MIB).iter().any(|b| *b != 0),
        "{name}: the deployed disk starts with a partition table"
    );
    rack.ok(
        "POST",
        &format!("/api/v1/machines/{id}/actions/release"),
        Some(json!({"erase": "quick"})),
    );
    let m = t.step("release (quick erase) -> Ready", || {
        rack.wait_status(&id, name, "Ready")
    });
    assert!(
        m["owner"].is_null(),
        "{name} has no owner once released: {m}"
    );
    assert!(
        read_at(&disk, 0, MIB).iter().all(|b| *b == 0),
        "{name}: the first MiB of the disk is not zero after a quick erase"
    );
    assert!(
        read_at(&disk, DISK_BYTES - MIB as u64, MIB)
            .iter()
            .all(|b| *b == 0),
        "{name}: the last MiB of the disk (backup GPT) is not zero after a quick erase"
    );
    wait_off(rack, name);

    // Powered through IPMI the whole way: the BMC's chassis program saw every power change.
    let chassis =
        std::fs::read_to_string(rack.machine_dir(name).join("chassis.log")).unwrap_or_default();
    let ons = chassis
        .lines()
        .filter(|l| l.contains("set power 1") || l.contains("set reset 1"))
        .count();
    assert!(
        ons >= 3,
        "{name}: commission, deploy and release each power the machine on through its BMC:\n{chassis}"
    );
    println!("{name} ({firmware}) timings:");
    for (what, secs) in &t.0 {
        println!("  {what:<45} {secs:>7.1} s");
    }
}

/// Waits until the BMC says the machine is off (the ephemeral environment powers off at the end
/// of commissioning and erasing; rackbox then switches it off through the BMC too).
fn wait_off(rack: &LabRack, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if rack.bmc_power(name).contains("is off") {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "{name} is still on 2 minutes after its task ended\n{}",
        rack.evidence(name)
    );
}

/// Waits until the agent reports that it writes the image (a deploy progress message), or has
/// written it.
fn wait_writing(rack: &LabRack, id: &str, name: &str) {
    let deadline = Instant::now() + STEP_LIMIT;
    while Instant::now() < deadline {
        let (_, m) = rack.api("GET", &format!("/api/v1/machines/{id}"), None);
        let msg = m["status_message"].as_str().unwrap_or_default();
        // Writing (progress in percent), or written and rebooting to the disk: both mid-deploy.
        if m["status_name"] == "Deploying" && (msg.contains('%') || m["image_written"] == true) {
            return;
        }
        assert_ne!(m["status_name"], "Failed deployment", "{name}: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{name} never reported deploy progress\n{}",
        rack.evidence(name)
    );
}

/// SIGKILL to rackbox (no chance to finish anything), a few seconds of outage for the agent,
/// then `scripts/lab.sh restart`.
fn kill_and_restart(rack: &LabRack) {
    let pid: i32 = std::fs::read_to_string(rack.state.join("run/rackbox.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("the lab's rackbox pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL rackbox");
    std::thread::sleep(Duration::from_secs(5));
    let out = rack.lab(&["restart"], Duration::from_secs(120));
    println!(
        "rackbox killed with SIGKILL mid-deploy and restarted: {}",
        out.trim()
    );
}

/// An unknown machine switched on through its BMC PXE-boots, is enlisted as New with its
/// inventory, and switches itself off.
fn enlistment(rack: &LabRack, name: &str, mac: &str) {
    let (_, before) = rack.api("GET", &format!("/api/v1/machines?mac={mac}"), None);
    assert_eq!(
        before["items"].as_array().map(Vec::len),
        Some(0),
        "{name} is unknown before it boots: {before}"
    );
    rack.lab(&["power", name, "on"], Duration::from_secs(60));
    let started = Instant::now();
    let deadline = started + STEP_LIMIT;
    let m = loop {
        let (_, found) = rack.api("GET", &format!("/api/v1/machines?mac={mac}"), None);
        let m = &found["items"][0];
        if m["status_name"] == "New" && m["cpu_count"].as_u64().unwrap_or(0) > 0 {
            break m.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not enlisted within {STEP_LIMIT:?}: {found}\n{}",
            rack.evidence(name)
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    println!(
        "{name}: power on -> enlisted as New in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(m["cpu_count"], 1, "{name}: {m}");
    assert_eq!(m["disks"][0]["size_bytes"], DISK_BYTES, "{name}: {m}");
    assert_eq!(m["interfaces"][0]["mac"], mac, "{name}: {m}");
    // List items leave the inventory out; the machine's own page has it.
    let id = m["system_id"].as_str().expect("system_id").to_string();
    let shown = rack.ok("GET", &format!("/api/v1/machines/{id}"), None);
    assert_eq!(shown["inventory"]["firmware"], "bios", "{name}: {shown}");
    wait_off(rack, name);

    // BMC discovery: the agent read the BMC's address in-band (KCS), made it a 'maas' user, and
    // rackbox took IPMI power settings from that; rackbox reaches the BMC with them.
    let bmc_address = "192.0.2.203";
    let m = rack.ok("GET", &format!("/api/v1/machines/{id}"), None);
    assert_eq!(m["power"]["power_type"], "ipmi", "{name}: {}", m["power"]);
    assert_eq!(
        m["power"]["parameters"]["power_address"], bmc_address,
        "{name}: {}",
        m["power"]
    );
    assert_eq!(
        m["power"]["parameters"]["power_user"], "maas",
        "{}",
        m["power"]
    );
    let state = rack.ok("GET", &format!("/api/v1/machines/{id}/power"), None);
    assert_eq!(
        state["state"], "off",
        "rackbox asks the discovered BMC with the user the agent made: {state}"
    );
}

#[test]
fn machines_go_from_power_on_to_deployed_and_back_to_ready_on_the_virtual_rack() {
    let rack = LabRack::up(2, 1);
    println!("lab up in {:.1} s", rack.elapsed());
    rack.ok(
        "POST",
        "/api/v1/users/admin/sshkeys",
        Some(json!({"key": SSH_KEY})),
    );
    enlistment(&rack, "node3", "52:54:00:1a:00:03");
    life_cycle(&rack, "node1", "52:54:00:1a:00:01", "bios", true);
    life_cycle(&rack, "node2", "52:54:00:1a:00:02", "uefi", false);
    println!("the whole rack test took {:.1} s", rack.elapsed());
}
