//! Test rigs for the power tests: a real IPMI BMC simulator (ipmi_sim from
//! OpenIPMI) driving a real QEMU machine, and sushy-tools' Redfish emulator.
//! Everything listens on 127.0.0.1 on free ports; each rig lives in its own
//! temporary directory and is killed when dropped.
//!
//! A missing tool fails the test with the command that installs it: these
//! tests never skip silently.

#![allow(dead_code)] // Each test binary uses a part of this module.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The BMC user of the rigs.
pub const USER: &str = "admin";
/// The BMC password of the rigs: searched for in every error and log.
pub const PASSWORD: &str = "rb-S3cret-pw9";

/// Path of `tool`, or a panic that says how to install it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    if tool.contains('/') {
        let path = PathBuf::from(tool);
        assert!(
            path.is_file(),
            "{tool} is missing: run `bash scripts/deps.d/power.sh` as root ({package})"
        );
        return path;
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&paths).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
    {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{tool} is missing: run `bash scripts/deps.d/power.sh` as root (Debian package {package})"
    );
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port on 127.0.0.1");
    socket.local_addr().expect("local address").port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP port on 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

/// Polls `check` up to `tries` times, `every` apart; true as soon as it holds.
pub fn wait_until(tries: u32, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check() {
            return true;
        }
        std::thread::sleep(every);
    }
    check()
}

/// Async version of [`wait_until`] for checks that call rackbox.
pub async fn wait_until_async<F, Fut>(tries: u32, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    check().await
}

pub fn map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// What the simulated BMC does with chassis control and boot options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimMode {
    /// Power through ipmi_sim's startcmd: power on starts a real QEMU machine
    /// attached to the BMC over its external-BMC chardev (ipmi-bmc-extern +
    /// isa-ipmi-kcs), power off stops it. ipmi_sim has no boot options here.
    Qemu,
    /// Chassis control by an external program (ipmi_sim's `chassis_control`),
    /// which is the only way ipmi_sim supports boot options: it keeps the
    /// boot device (and a power flag) in files.
    BootFlagsKept,
    /// Like [`SimMode::BootFlagsKept`] but the BMC forgets the boot device it
    /// accepted: a BMC that drops the one-time override.
    BootFlagsDropped,
    /// Like [`SimMode::BootFlagsKept`] but a power change takes the chassis
    /// program [`SLOW_CHASSIS`], longer than the driver's packet timeout (2 s
    /// at the default deadline): ipmi_sim answers a chassis control only when
    /// the program is done, as a slow real BMC does.
    SlowChassis,
    /// The BMC of a QEMU machine the test starts itself (attached to
    /// [`IpmiSim::serial`]): no power control, and a LAN configuration (ipmi_sim's
    /// `lan_config_program`) that reports the address it listens on, 127.0.0.1, with
    /// [`GUEST_BMC_MAC`], as a real BMC reports its own address in-band.
    Guest,
}

/// How long a power change takes the [`SimMode::SlowChassis`] BMC.
pub const SLOW_CHASSIS: Duration = Duration::from_secs(5);

/// The MAC the [`SimMode::Guest`] BMC reports for its LAN port.
pub const GUEST_BMC_MAC: &str = "52:54:00:be:ec:01";

/// A running ipmi_sim on 127.0.0.1.
pub struct IpmiSim {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
    /// The TCP port a QEMU machine attaches to (ipmi-bmc-extern's chardev).
    pub serial: u16,
}

impl IpmiSim {
    /// A BMC that offers every IPMI 1.5 authentication type (MD5 first).
    pub fn start(mode: SimMode) -> IpmiSim {
        Self::start_with_auths(mode, "none md2 md5 straight")
    }

    /// A BMC whose IPMI 1.5 sessions use only the given authentication types
    /// (IPMI 2.0 RMCP+ sessions are not affected).
    pub fn start_with_auths(mode: SimMode, auths: &str) -> IpmiSim {
        let ipmi_sim = require_tool("ipmi_sim", "openipmi");
        require_tool("ipmitool", "ipmitool");
        if mode == SimMode::Qemu {
            require_tool("qemu-system-x86_64", "qemu-system-x86");
        }
        let dir = tempfile::Builder::new()
            .prefix("rackbox-ipmisim-")
            .tempdir()
            .expect("temporary directory");
        let d = dir.path();
        std::fs::create_dir_all(d.join("state")).expect("state dir");
        let port = free_udp_port();
        let serial = free_tcp_port();
        let power = match mode {
            SimMode::Qemu => format!(
                "  startcmd \"qemu-system-x86_64 -accel tcg -m 64 -nographic -nodefaults \
                 -name rackbox-power-test -pidfile {pid} \
                 -chardev socket,id=ipmi0,host=127.0.0.1,port={serial},reconnect=10 \
                 -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 \
                 -device isa-ipmi-kcs,bmc=bmc0\"\n  startnow false\n  poweroff_wait 5\n  kill_wait 3\n",
                pid = d.join("qemu.pid").display()
            ),
            SimMode::BootFlagsKept | SimMode::BootFlagsDropped | SimMode::SlowChassis => {
                let script = d.join("chassis-control.sh");
                let drop = mode == SimMode::BootFlagsDropped;
                let delay = if mode == SimMode::SlowChassis {
                    SLOW_CHASSIS
                } else {
                    Duration::ZERO
                };
                std::fs::write(&script, chassis_script(d, drop, delay)).expect("write script");
                make_executable(&script);
                format!("  chassis_control \"{}\"\n", script.display())
            }
            SimMode::Guest => String::new(),
        };
        let lan_program = if mode == SimMode::Guest {
            let script = d.join("lan-control.sh");
            std::fs::write(&script, lan_control_script()).expect("write script");
            make_executable(&script);
            format!("\x20   lan_config_program \"{} lan0\"\n", script.display())
        } else {
            String::new()
        };
        let lan_conf = format!(
            "name \"rackbox-test\"\n\
             set_working_mc 0x20\n\
             \x20 startlan 1\n\
             \x20   addr 127.0.0.1 {port}\n\
             \x20   priv_limit admin\n\
             \x20   allowed_auths_callback none md2 md5 straight\n\
             \x20   allowed_auths_user none md2 md5 straight\n\
             \x20   allowed_auths_operator none md2 md5 straight\n\
             \x20   allowed_auths_admin {auths}\n\
             \x20   guid a123456789abcdefa123456789abcdef\n\
             {lan_program}\
             \x20 endlan\n\
             \x20 serial 15 127.0.0.1 {serial} codec VM\n\
             {power}\
             \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 {auths}\n"
        );
        std::fs::write(d.join("lan.conf"), lan_conf).expect("write lan.conf");
        std::fs::write(
            d.join("emu.cmds"),
            "mc_setbmc 0x20\n\
             mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             sel_enable 0x20 1000 0x0a\n\
             mc_enable 0x20\n",
        )
        .expect("write emu.cmds");
        let log = std::fs::File::create(d.join("ipmi_sim.log")).expect("log file");
        let child = Command::new(ipmi_sim)
            .arg("-c")
            .arg(d.join("lan.conf"))
            .arg("-f")
            .arg(d.join("emu.cmds"))
            .arg("-s")
            .arg(d.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start ipmi_sim");
        let sim = IpmiSim {
            child,
            dir,
            port,
            serial,
        };
        let up = wait_until(40, Duration::from_millis(250), || {
            sim.ipmitool(&["chassis", "power", "status"]).is_ok()
        });
        assert!(
            up,
            "ipmi_sim did not answer on 127.0.0.1:{port}: {}",
            sim.log()
        );
        sim
    }

    /// The machine's power parameters for rackbox.
    pub fn params(&self) -> Map<String, Value> {
        map(json!({
            "power_address": "127.0.0.1",
            "power_port": self.port,
            "power_user": USER,
            "power_pass": PASSWORD,
        }))
    }

    /// Runs ipmitool (lanplus, cipher suite 3) against this BMC.
    pub fn ipmitool(&self, args: &[&str]) -> Result<String, String> {
        self.ipmitool_as(USER, PASSWORD, args)
    }

    /// Runs ipmitool (lanplus, cipher suite 3) against this BMC as `user`.
    pub fn ipmitool_as(&self, user: &str, password: &str, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", user, "-P", password, "-C", "3", "-N", "1", "-R", "2"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run ipmitool: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "ipmitool {args:?}: {}{}",
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The pid of this rig's QEMU process, if it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.path().join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        // An exited QEMU may linger as a zombie (empty cmdline) or its pid
        // may be reused: only a process started with this rig's pidfile counts.
        let ours = String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy());
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        (ours && !zombie).then_some(pid)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ipmi_sim.log")).unwrap_or_default()
    }

    /// Where the chassis program (the [`SimMode::BootFlagsKept`] kinds) writes
    /// each power change it makes, one `set power 0|1` line each.
    pub fn chassis_log_path(&self) -> PathBuf {
        self.dir.path().join("chassis.log")
    }

    /// The power changes the chassis program made, in order: `["1", "0", ...]`.
    pub fn power_changes(&self) -> Vec<String> {
        std::fs::read_to_string(self.chassis_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("set power ").map(str::to_owned))
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.qemu_pid() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// ipmi_sim's lan_config_program for [`SimMode::Guest`]: called as
/// `PROGRAM lan0 get NAME...`, it prints `NAME:VALUE` lines; sets are accepted and forgotten.
fn lan_control_script() -> String {
    format!(
        "#!/bin/sh\n\
         shift\n\
         [ \"$1\" = get ] || exit 0\n\
         shift\n\
         for p in \"$@\"; do\n\
           case \"$p\" in\n\
           ip_addr) echo ip_addr:127.0.0.1 ;;\n\
           ip_addr_src) echo ip_addr_src:static ;;\n\
           mac_addr) echo mac_addr:{GUEST_BMC_MAC} ;;\n\
           subnet_mask) echo subnet_mask:255.0.0.0 ;;\n\
           *_mac_addr) echo \"$p:00:00:00:00:00:00\" ;;\n\
           *) echo \"$p:0.0.0.0\" ;;\n\
           esac\n\
         done\n"
    )
}

/// ipmi_sim's chassis_control program: `get power boot ...` prints
/// `name:value` lines, `set name value ...` stores them. Each power change is
/// logged to chassis.log, once it is made (after `delay`).
fn chassis_script(dir: &Path, drop_boot: bool, delay: Duration) -> String {
    let d = dir.display();
    let delay = format!("{:.1}", delay.as_secs_f64());
    let set_boot = if drop_boot {
        ":" // accepted, then forgotten
    } else {
        "echo \"$2\" > \"$D/boot\""
    };
    format!(
        "#!/bin/sh\n\
         D='{d}'\n\
         op=\"$1\"; shift\n\
         case \"$op\" in\n\
         get)\n\
           echo \"get $*\" >> \"$D/chassis.log\"\n\
           for p in \"$@\"; do\n\
             case \"$p\" in\n\
             power) echo \"power:$(cat \"$D/power\" 2>/dev/null || echo 0)\" ;;\n\
             boot) echo \"boot:$(cat \"$D/boot\" 2>/dev/null || echo none)\" ;;\n\
             *) echo \"unknown parameter $p\"; exit 1 ;;\n\
             esac\n\
           done ;;\n\
         set)\n\
           while [ $# -ge 2 ]; do\n\
             case \"$1\" in\n\
             power) sleep {delay}; echo \"$2\" > \"$D/power\"; echo \"set power $2\" >> \"$D/chassis.log\" ;;\n\
             boot) {set_boot} ;;\n\
             reset|shutdown) ;;\n\
             *) echo \"unknown parameter $1\"; exit 1 ;;\n\
             esac\n\
             shift 2\n\
           done ;;\n\
         *) echo \"unknown operation $op\"; exit 1 ;;\n\
         esac\n"
    )
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// What a [`FaultyRelay`] does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The BMC's answer to each chassis control: the first datagram from the
    /// BMC after the chassis program logged a new power change (ipmi_sim
    /// answers a chassis control only once its program has made the change).
    AnswerToEachPowerChange,
    /// The first chassis control request: the first datagram from the client
    /// after the BMC answered the power-state read that precedes it (the
    /// chassis program logs each `get power` it is asked before ipmi_sim
    /// answers a Get Chassis Status).
    FirstControlRequest,
    /// Everything the client sends after that read: a BMC that went away in
    /// the middle of an operation.
    AllAfterFirstRead,
    /// Rewrites the BMC's Get Channel Authentication Capabilities answers to
    /// "IPMI 1.5 only, straight password only": the downgrade a forged answer
    /// (or an old BMC) offers.
    ForgeIpmi15StraightOnly,
}

/// Rewrites a session-less Get Channel Authentication Capabilities answer
/// (RMCP header, IPMI 1.5 session header without auth code, IPMI message) to
/// offer IPMI 1.5 with straight-password authentication only; true if it was one.
fn forge_ipmi15_straight_only(d: &mut [u8]) -> bool {
    const MSG: usize = 14;
    let is_caps = d.len() > MSG + 7 + 4
        && d[0] == 0x06
        && d[3] == 0x07
        && d[4] == 0x00
        && d[MSG + 1] >> 2 == 0x07
        && d[MSG + 5] == 0x38
        && d[MSG + 6] == 0x00;
    if !is_caps {
        return false;
    }
    let data = MSG + 7;
    d[data + 1] = 0x80 | 0x10; // extended capabilities; straight password only
    d[data + 3] = 0x01; // IPMI 1.5 connections only
    // The message's second checksum covers rsAddr .. the last data byte.
    let last = d.len() - 1;
    let sum = d[MSG + 3..last].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    d[last] = sum.wrapping_neg();
    true
}

/// A UDP relay between the driver and a BMC that loses (or forges) datagrams
/// on purpose, as a lossy network, a BMC that drops an answer or an attacker
/// on the management network would.
pub struct FaultyRelay {
    /// The port the driver is pointed at.
    pub port: u16,
    /// How many datagrams it lost (or forged) so far.
    lost: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Whether a datagram from the client carried [`PASSWORD`] in clear.
    saw_password: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FaultyRelay {
    /// A relay to `sim`, doing what `loss` says.
    pub fn start(sim: &IpmiSim, loss: Fault) -> FaultyRelay {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        use std::sync::{Arc, Mutex};
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind the relay");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind the relay's BMC side");
        back.connect(("127.0.0.1", sim.port))
            .expect("connect to the BMC");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
        }
        let port = front.local_addr().expect("relay address").port();
        let client = Arc::new(Mutex::new(None));
        let lost = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let saw_password = Arc::new(AtomicBool::new(false));
        // Set once the BMC has answered a power-state read made after the start.
        let read_answered = Arc::new(AtomicBool::new(false));
        let log_path = sim.chassis_log_path();
        let count = move |prefix: &str| {
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with(prefix))
                .count()
        };
        let reads_before = count("get power");
        let mut threads = Vec::new();
        {
            let (front, back) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
            );
            let (client, lost, stop, read_answered, saw_password) = (
                client.clone(),
                lost.clone(),
                stop.clone(),
                read_answered.clone(),
                saw_password.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut dropped_request = false;
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else {
                        continue;
                    };
                    *client.lock().expect("lock") = Some(from);
                    if buf[..n]
                        .windows(PASSWORD.len())
                        .any(|w| w == PASSWORD.as_bytes())
                    {
                        saw_password.store(true, Ordering::SeqCst);
                    }
                    let after_read = read_answered.load(Ordering::SeqCst);
                    if (loss == Fault::FirstControlRequest && !dropped_request && after_read)
                        || (loss == Fault::AllAfterFirstRead && after_read)
                    {
                        dropped_request = true;
                        lost.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    let _ = back.send(&buf[..n]);
                }
            }));
        }
        {
            let (lost, stop) = (lost.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let mut answered_changes = 0;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = back.recv(&mut buf) else { continue };
                    if count("get power") > reads_before {
                        read_answered.store(true, Ordering::SeqCst);
                    }
                    if loss == Fault::AnswerToEachPowerChange {
                        let changes = count("set power ");
                        if changes > answered_changes {
                            answered_changes = changes;
                            lost.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    }
                    if loss == Fault::ForgeIpmi15StraightOnly
                        && forge_ipmi15_straight_only(&mut buf[..n])
                    {
                        lost.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Some(to) = *client.lock().expect("lock") {
                        let _ = front.send_to(&buf[..n], to);
                    }
                }
            }));
        }
        FaultyRelay {
            port,
            lost,
            saw_password,
            stop,
            threads,
        }
    }

    /// How many datagrams the relay lost.
    pub fn lost(&self) -> u32 {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the client sent [`PASSWORD`] in clear through the relay.
    pub fn saw_password(&self) -> bool {
        self.saw_password.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `sim`'s power parameters, pointed at the relay.
    pub fn params(&self, sim: &IpmiSim) -> Map<String, Value> {
        let mut params = sim.params();
        params.insert("power_port".into(), json!(self.port));
        params
    }
}

impl Drop for FaultyRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The sushy-tools venv made by scripts/deps.d/power.sh.
pub fn sushy_venv() -> PathBuf {
    let tools = std::env::var_os("RACKBOX_TOOLS").unwrap_or_else(|| "/opt/rackbox-tools".into());
    PathBuf::from(tools).join("venv-sushy")
}

/// A running sushy-emulator (fake driver), by default on 127.0.0.1 with HTTP basic auth.
pub struct Sushy {
    child: Child,
    dir: tempfile::TempDir,
    /// The address it listens on.
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// How to run the emulator beyond [`Sushy::start`]'s defaults.
#[derive(Clone, Debug, Default)]
pub struct SushyOptions {
    pub tls: bool,
    /// Basic auth with [`USER`] / [`PASSWORD`]; without it every request is answered.
    pub auth: bool,
    /// Address and port to listen on (default 127.0.0.1 and a free port).
    pub listen: Option<(String, u16)>,
    /// UUIDs of the fake driver's systems (default: sushy's one "fake" system).
    pub systems: Vec<String>,
    /// The manager's own NICs (id, IPv4 address): run through sushy_bmc.py, which adds the
    /// Managers/<id>/EthernetInterfaces resource sushy-tools lacks.
    pub manager_nics: Vec<(&'static str, &'static str)>,
}

impl Sushy {
    pub fn start(tls: bool) -> Sushy {
        Sushy::start_with(SushyOptions {
            tls,
            auth: true,
            ..Default::default()
        })
    }

    pub fn start_with(opts: SushyOptions) -> Sushy {
        let tls = opts.tls;
        let venv = sushy_venv();
        let emulator = require_tool(
            &venv.join("bin/sushy-emulator").to_string_lossy(),
            "the sushy-tools venv",
        );
        let python = require_tool(
            &venv.join("bin/python").to_string_lossy(),
            "the sushy-tools venv",
        );
        let dir = tempfile::Builder::new()
            .prefix("rackbox-sushy-")
            .tempdir()
            .expect("temporary directory");
        let d = dir.path();
        // sushy-emulator checks basic auth against an htpasswd file (bcrypt).
        let hash = Command::new(&python)
            .args([
                "-c",
                "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
                PASSWORD,
            ])
            .output()
            .expect("run the venv's python");
        assert!(hash.status.success(), "bcrypt hash failed: {hash:?}");
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_owned();
        std::fs::write(d.join("htpasswd"), format!("{USER}:{hash}\n")).expect("htpasswd");
        // The fake driver keeps its machines in a SQLite file, shared by every
        // emulator on the machine unless given a directory of its own.
        std::fs::create_dir_all(d.join("state")).expect("state dir");
        let mut conf = format!(
            "SUSHY_EMULATOR_STATE_DIR = '{}'\n",
            d.join("state").display()
        );
        if opts.auth {
            conf.push_str(&format!(
                "SUSHY_EMULATOR_AUTH_FILE = '{}'\n",
                d.join("htpasswd").display()
            ));
        }
        if !opts.systems.is_empty() {
            let systems: Vec<Value> = opts
                .systems
                .iter()
                .enumerate()
                .map(|(i, uuid)| {
                    json!({"uuid": uuid, "name": format!("node-{i}"), "power_state": "Off",
                           "nics": [{"mac": format!("52:54:00:5e:00:{i:02x}"), "ip": "192.0.2.99"}]})
                })
                .collect();
            // JSON lists and dicts of strings are Python literals too.
            conf.push_str(&format!(
                "SUSHY_EMULATOR_FAKE_SYSTEMS = {}\n",
                Value::Array(systems)
            ));
        }
        if !opts.manager_nics.is_empty() {
            let nics: Vec<Value> = opts
                .manager_nics
                .iter()
                .map(|(id, address)| json!({"Id": id, "Address": address}))
                .collect();
            conf.push_str(&format!(
                "SUSHY_EMULATOR_MANAGER_NICS = {}\n",
                Value::Array(nics)
            ));
        }
        std::fs::write(d.join("sushy.conf"), conf).expect("sushy.conf");
        let (host, port) = opts
            .listen
            .clone()
            .unwrap_or_else(|| ("127.0.0.1".to_string(), free_tcp_port()));
        let mut cmd = if opts.manager_nics.is_empty() {
            Command::new(emulator)
        } else {
            let mut c = Command::new(&python);
            c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/power_support/sushy_bmc.py"));
            c
        };
        cmd.arg("--config")
            .arg(d.join("sushy.conf"))
            .args(["--fake", "-i", &host, "-p"])
            .arg(port.to_string());
        if tls {
            let openssl = require_tool("openssl", "openssl");
            let status = Command::new(openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args([
                    "-subj",
                    &format!("/CN={host}"),
                    "-addext",
                    &format!("subjectAltName=IP:{host}"),
                ])
                .arg("-keyout")
                .arg(d.join("key.pem"))
                .arg("-out")
                .arg(d.join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run openssl");
            assert!(
                status.success(),
                "openssl could not make a self-signed certificate"
            );
            cmd.arg("--ssl-certificate")
                .arg(d.join("cert.pem"))
                .arg("--ssl-key")
                .arg(d.join("key.pem"));
        }
        let log = std::fs::File::create(d.join("sushy.log")).expect("log file");
        let child = cmd
            .env("TMPDIR", d)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start sushy-emulator");
        let sushy = Sushy {
            child,
            dir,
            host: host.clone(),
            port,
            tls,
        };
        let up = wait_until(120, Duration::from_millis(250), || {
            TcpStream::connect((host.as_str(), port)).is_ok()
        });
        assert!(
            up,
            "sushy-emulator did not listen on {host}:{port}: {}",
            sushy.log()
        );
        sushy
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}",
            if self.tls { "https" } else { "http" },
            self.host,
            self.port
        )
    }

    pub fn params(&self) -> Map<String, Value> {
        map(json!({
            "power_address": self.url(),
            "power_user": USER,
            "power_pass": PASSWORD,
        }))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sushy.log")).unwrap_or_default()
    }

    /// The emulator's self-signed certificate (PEM); TLS mode only.
    pub fn cert_path(&self) -> PathBuf {
        assert!(
            self.tls,
            "this emulator has no certificate: start it with tls"
        );
        self.dir.path().join("cert.pem")
    }

    /// The SHA-256 of the emulator's certificate (DER), in lowercase hex,
    /// computed here from the PEM file: what `certificate_sha256` pins.
    pub fn cert_sha256(&self) -> String {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let pem = std::fs::read_to_string(self.cert_path()).expect("read cert.pem");
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END CERTIFICATE-----"))
            .map(str::trim)
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("cert.pem holds base64");
        Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The certificate's fingerprint as `openssl x509 -noout -fingerprint
    /// -sha256` prints it, after the `Fingerprint=` (uppercase, colon pairs).
    pub fn cert_fingerprint_openssl(&self) -> String {
        let openssl = require_tool("openssl", "openssl");
        let out = Command::new(openssl)
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(self.cert_path())
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl x509 -fingerprint: {out:?}");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        line.split_once('=')
            .map(|(_, fingerprint)| fingerprint.to_owned())
            .unwrap_or_else(|| panic!("no fingerprint in {line:?}"))
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
