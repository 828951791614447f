//! A throw-away network lab for the DHCP tests: network namespaces named `rbx-dhcp-<random>-*`,
//! Linux bridges as switches, veth pairs as cables, addresses from 192.0.2.0/24 only. Nothing is
//! created in (or attached to) the host's own namespace. Dropping the [`Lab`] kills every process
//! left in its namespaces and deletes them, also when a test fails.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails the test (never skips it) when a tool is missing, naming the package to install.
pub fn require_tools(tools: &[(&str, &str)]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the DHCP namespace tests must run as root (they create network namespaces)"
    );
    for (tool, package) in tools {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/sbin", "/usr/bin"])
            .any(|dir| Path::new(dir).join(tool).is_file());
        assert!(
            found,
            "missing tool `{tool}`: install the Debian package `{package}` (scripts/deps.d/dhcp.sh does)"
        );
    }
}

/// Runs a command and returns its output; panics with the command line on spawn failure.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ip() -> Command {
    Command::new("ip")
}

/// The lab: its namespaces, the processes it started, and a temp dir for their files.
pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// veth ports made per switch, for unique names.
    ports: usize,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::named("dhcp")
    }

    /// A lab whose namespaces are named `rbx-<kind>-<random>-*` (what `ip netns` shows).
    pub fn named(kind: &str) -> Lab {
        let tag: u32 = rand::random();
        Lab {
            prefix: format!("rbx-{kind}-{:06x}", tag & 0xff_ffff),
            namespaces: Vec::new(),
            children: Vec::new(),
            ports: 0,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new namespace with loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        ok(ip().args(["netns", "add", &name]));
        self.namespaces.push(name.clone());
        ok(ip().args(["-n", &name, "link", "set", "lo", "up"]));
        name
    }

    /// A namespace holding a bridge `br0`: a switch.
    pub fn switch(&mut self, short: &str) -> String {
        let ns = self.netns(short);
        ok(ip().args(["-n", &ns, "link", "add", "br0", "type", "bridge"]));
        // No STP and no forwarding delay: a port forwards as soon as it is up.
        ok(ip().args([
            "-n",
            &ns,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "forward_delay",
            "0",
            "stp_state",
            "0",
        ]));
        ok(ip().args(["-n", &ns, "link", "set", "br0", "up"]));
        // A plain layer-2 switch: when br_netfilter is loaded on the host, the bridge would
        // otherwise validate IPv4 headers and drop the broken frames the tests send on purpose.
        // The setting is per namespace; the host's own is untouched.
        for knob in ["bridge-nf-call-iptables", "bridge-nf-call-arptables"] {
            let _ = self
                .cmd(&ns, "sysctl")
                .args(["-q", "-w", &format!("net.bridge.{knob}=0")])
                .stderr(Stdio::null())
                .status();
        }
        ns
    }

    /// Cables `ifname` in `host` to switch `switch`, with `mac` if given, and brings it up.
    pub fn plug(&mut self, switch: &str, host: &str, ifname: &str, mac: Option<&str>) {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        ok(ip().args([
            "-n", switch, "link", "add", &port, "type", "veth", "peer", "name", ifname, "netns",
            host,
        ]));
        ok(ip().args(["-n", switch, "link", "set", &port, "master", "br0"]));
        ok(ip().args(["-n", switch, "link", "set", &port, "up"]));
        if let Some(mac) = mac {
            ok(ip().args(["-n", host, "link", "set", ifname, "address", mac]));
        }
        ok(ip().args(["-n", host, "link", "set", ifname, "up"]));
    }

    pub fn addr(&self, ns: &str, ifname: &str, cidr: &str) {
        ok(ip().args(["-n", ns, "addr", "add", cidr, "dev", ifname]));
    }

    /// A command run inside `ns`.
    pub fn cmd(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Starts a long-running process in `ns`, output to files; returns its index.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str], log: &str) -> usize {
        let mut cmd = self.cmd(ns, program);
        cmd.args(args);
        self.spawn_cmd(cmd, log)
    }

    /// A site DHCP server (dnsmasq, DHCP only) on `ns`'s eth0 handing out `first`..`last` in
    /// 192.0.2.0/24, logging each exchange to `dnsmasq.log`; returns its index and lease file.
    pub fn dnsmasq(&mut self, ns: &str, first: &str, last: &str) -> (usize, PathBuf) {
        let leases = self.path("dnsmasq.leases");
        let index = self.spawn(
            ns,
            "dnsmasq",
            &[
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=eth0",
                "--bind-interfaces",
                &format!("--dhcp-range={first},{last},255.255.255.0,10m"),
                &format!("--dhcp-leasefile={}", leases.display()),
                "--log-dhcp",
            ],
            "dnsmasq.log",
        );
        self.wait_for(Duration::from_secs(10), "dnsmasq to start", || {
            self.read("dnsmasq.log").contains("DHCP, IP range")
        });
        (index, leases)
    }

    /// Starts a prepared command (from [`Lab::cmd`]), output to `log`; returns its index.
    pub fn spawn_cmd(&mut self, mut cmd: Command, log: &str) -> usize {
        let out = File::create(self.path(log)).expect("log file");
        let err = out.try_clone().expect("log file");
        let program = format!("{cmd:?}");
        let child = cmd
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn pid(&self, index: usize) -> i32 {
        self.children[index].id() as i32
    }

    /// Sends `signal` to a process the lab started (by its pid).
    pub fn signal(&self, index: usize, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid(index)), signal);
    }

    /// Waits (bounded) for a started process to exit; returns whether it exited successfully.
    pub fn wait(&mut self, index: usize, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.children[index].try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn read(&self, log: &str) -> String {
        std::fs::read_to_string(self.path(log)).unwrap_or_default()
    }

    /// Waits until `cond` holds, polling every 100 ms for at most `limit`.
    pub fn wait_for(&self, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {limit:?} waiting for {what}");
    }

    /// Runs `f` on a thread that has entered namespace `ns`: sockets it opens live there.
    pub fn in_netns<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Daemons that detached (dhclient) are still in our namespaces: end them by pid.
        for ns in &self.namespaces {
            if let Ok(out) = ip().args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        for ns in self.namespaces.iter().rev() {
            let _ = ip().args(["netns", "del", ns]).status();
        }
    }
}

/// The admin password every lab daemon gets.
pub const PASSWORD: &str = "lab-password-for-dhcp-tests";

/// A rackbox daemon in a namespace.
pub struct Rackbox {
    pub ns: String,
    pub index: usize,
    pub state_dir: PathBuf,
    pub config: PathBuf,
    pub log: String,
}

impl Rackbox {
    /// Writes a config (HTTP on the namespace's loopback, the given `[boot]` TOML) and starts
    /// `rackbox serve`, waiting until its DHCP server is bound.
    pub fn start(lab: &mut Lab, ns: &str, name: &str, boot_toml: &str) -> Rackbox {
        Rackbox::start_on(lab, ns, name, "127.0.0.1:5240", boot_toml)
    }

    /// Like [`Rackbox::start`], with HTTP on `listen` (e.g. `0.0.0.0:5240`, so that machines on
    /// the boot network reach `http://192.0.2.1:5240` too; /metrics stays on 127.0.0.1:5240).
    /// State that must exist before the first start (seeded records) goes in
    /// [`Rackbox::state_dir_of`].
    pub fn start_on(lab: &mut Lab, ns: &str, name: &str, listen: &str, boot_toml: &str) -> Rackbox {
        let state_dir = Rackbox::state_dir_of(lab, name);
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let pw = lab.path(&format!("{name}-password"));
        std::fs::write(&pw, PASSWORD).expect("password file");
        let config = lab.path(&format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "state_dir = {state_dir:?}\n[http]\nlisten = \"{listen}\"\npublic_url = \"http://192.0.2.1:5240\"\n[auth]\nadmin_password_file = {pw:?}\n[log]\ntarget = \"stderr\"\nlevel = \"info,rackbox=debug\"\n{boot_toml}"
            ),
        )
        .expect("config");
        let mut rb = Rackbox {
            ns: ns.to_string(),
            index: 0,
            state_dir,
            config,
            log: String::new(),
        };
        rb.restart(lab);
        rb
    }

    /// Starts (again) over the same state and config.
    pub fn restart(&mut self, lab: &mut Lab) {
        let n = lab.children.len();
        self.log = format!("rackbox-{}-{n}.log", self.ns);
        let config = self.config.to_string_lossy().into_owned();
        self.index = lab.spawn(
            &self.ns,
            env!("CARGO_BIN_EXE_rackbox"),
            &["serve", "--config", &config],
            &self.log.clone(),
        );
        let log = self.log.clone();
        let index = self.index;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = lab.read(&log);
            if text.contains("rackbox is serving") {
                break;
            }
            if let Ok(Some(status)) = lab.children[index].try_wait() {
                panic!("rackbox exited ({status}) at start:\n{text}");
            }
            assert!(Instant::now() < deadline, "rackbox did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The state directory [`Rackbox::start`] uses for `name`.
    pub fn state_dir_of(lab: &Lab, name: &str) -> PathBuf {
        lab.path(&format!("{name}-state"))
    }

    /// /metrics, fetched with curl inside the namespace after logging in.
    pub fn metrics(&self, lab: &Lab) -> String {
        let token = self.login(lab);
        ok(lab.cmd(&self.ns, "curl").args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "http://127.0.0.1:5240/metrics",
        ]))
    }

    /// Logs in as the admin (curl inside the namespace); returns a bearer token.
    pub fn login(&self, lab: &Lab) -> String {
        let login = ok(lab.cmd(&self.ns, "curl").args([
            "-sf",
            "-H",
            "content-type: application/json",
            "-d",
            &format!(r#"{{"username":"admin","password":"{PASSWORD}"}}"#),
            "http://127.0.0.1:5240/api/v1/auth/login",
        ]));
        let v: serde_json::Value = serde_json::from_str(&login).expect("login answer is JSON");
        v["token"].as_str().expect("a token").to_string()
    }

    /// One sample's value from /metrics.
    pub fn metric(&self, lab: &Lab, name: &str) -> u64 {
        let text = self.metrics(lab);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing:\n{text}"))
    }
}

/// The udhcpc hook: logs each event with the fields the tests check, and configures the address.
pub fn write_udhcpc_script(lab: &Lab) -> String {
    let path = lab.path("udhcpc.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\n\
         echo \"$1 ip=$ip mask=$mask siaddr=$siaddr boot_file=$boot_file serverid=$serverid lease=$lease router=$router dns=$dns domain=$domain\" >> \"$UDHCPC_OUT\"\n\
         case \"$1\" in\n\
         bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\" ;;\n\
         deconfig) ip addr flush dev \"$interface\" ;;\n\
         esac\n\
         exit 0\n",
    )
    .expect("script");
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    path.to_string_lossy().into_owned()
}

/// One udhcpc event line, parsed: (event, field -> value).
pub fn events(text: &str) -> Vec<(String, std::collections::HashMap<String, String>)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let event = words.next()?.to_string();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some((event, fields))
        })
        .collect()
}

/// The `ip=` of every `bound` event in a udhcpc log.
pub fn bound_ips(text: &str) -> Vec<String> {
    events(text)
        .into_iter()
        .filter(|(e, _)| e == "bound")
        .filter_map(|(_, f)| f.get("ip").cloned())
        .collect()
}

/// The dhclient hook: logs `$reason ip=...` to `dhclient.out` and configures the address.
/// (dhclient runs its script with an environment of its own, so the log path is written in.)
pub fn write_dhclient_script(lab: &Lab) -> String {
    let path = lab.path("dhclient.sh");
    let out = lab.path("dhclient.out");
    std::fs::write(
        &path,
        format!("#!/bin/sh\n\
         echo \"$reason ip=$new_ip_address mask=$new_subnet_mask\" >> {out:?}\n\
         case \"$reason\" in\n\
         BOUND|RENEW|REBIND|REBOOT) ip addr add \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" 2>/dev/null ;;\n\
         RELEASE|EXPIRE|STOP) ip addr flush dev \"$interface\" ;;\n\
         esac\n\
         exit 0\n"),
    )
    .expect("script");
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    path.to_string_lossy().into_owned()
}
