//! Real firmware boots from rackbox: QEMU machines on a tap device in a network namespace the
//! test creates (192.0.2.0/24, a bridge, rackbox at 192.0.2.1 with managed DHCP, TFTP and HTTP),
//! deleted when the test ends, also when it fails.
//!
//! - SeaBIOS with the iPXE option ROM of QEMU's virtio-net: DHCP -> rackbox's iPXE script over
//!   HTTP -> the kernel and initramfs rackbox serves.
//! - OVMF with the NIC's option ROM removed: the firmware's own UEFI PXE -> snponly.efi over
//!   rackbox's TFTP -> iPXE -> the script -> kernel and initramfs.
//! - A Deployed machine gets the local-disk script instead (SeaBIOS: sanboot the first disk;
//!   OVMF: iPXE exits and the firmware takes its next boot entry).
//!
//! The kernel and initramfs are the test ramdisk (scripts/build-test-ramdisk.sh), which prints
//! RACKBOX-TEST-RAMDISK-BOOTED and its kernel command line on the serial port and powers off.
//! Needs root, QEMU, OVMF, Debian's ipxe and the ramdisk's tools (scripts/deps.d/netboot.sh):
//! a missing one fails the test. QEMU runs under TCG here: every wait is bounded by minutes.

mod common;
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::qemu::{self, OVMF_CODE, OVMF_VARS, Qemu};
use netns::{Lab, Rackbox, ok};
use rackbox::model::Status;
use serde_json::{Value, json};

/// One machine boots at a time: TCG machines are heavy for a 2-core box, and alone they boot in
/// a predictable time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long one firmware boot may take, from QEMU's start to the ramdisk's line, under TCG.
const BOOT_LIMIT: Duration = Duration::from_secs(420);

const MARKER: &str = "RACKBOX-TEST-RAMDISK-BOOTED";

/// Fails (never skips) when something the test needs is missing, naming what installs it.
fn require() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the firmware tests must run as root (they create network namespaces and tap devices)"
    );
    for (path, package) in [
        ("/usr/bin/qemu-system-x86_64", "qemu-system-x86"),
        (OVMF_CODE, "ovmf"),
        (OVMF_VARS, "ovmf"),
        ("/usr/lib/ipxe/undionly.kpxe", "ipxe"),
        ("/usr/lib/ipxe/snponly.efi", "ipxe"),
        ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
        ("/usr/bin/cpio", "cpio"),
        ("/usr/bin/curl", "curl"),
        ("/sbin/ip", "iproute2"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install the Debian package {package} (run `bash scripts/deps.d/netboot.sh` as root after apt-get update)"
        );
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test kernel and initramfs, built once and kept in the target directory.
fn ramdisk() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-ramdisk");
    let out = Command::new("bash")
        .arg(repo().join("scripts/build-test-ramdisk.sh"))
        .arg(&dir)
        .output()
        .expect("run scripts/build-test-ramdisk.sh");
    assert!(
        out.status.success(),
        "scripts/build-test-ramdisk.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("vmlinuz"), dir.join("initrd.img"))
}

/// Which firmware a machine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Firmware {
    /// SeaBIOS, netbooting with the iPXE option ROM QEMU ships for virtio-net.
    Bios,
    /// OVMF, netbooting with its own UEFI PXE (the NIC's option ROM removed).
    Uefi,
}

/// A rack in one namespace: bridge `br0` at 192.0.2.1/24, rackbox serving DHCP on it, TFTP on
/// 192.0.2.1:69 and HTTP on port 5240, and the machines' tap devices on the bridge.
struct Rack {
    lab: Lab,
    ns: String,
    rackbox: Rackbox,
    token: String,
    taps: usize,
}

impl Rack {
    /// Starts the rack; `seed` writes machine records into the store before rackbox opens it.
    fn start(seed: Vec<rackbox::model::Machine>) -> Rack {
        let mut lab = Lab::named("nb");
        let ns = lab.switch("rack");
        lab.addr(&ns, "br0", "192.0.2.1/24");
        if !seed.is_empty() {
            let state = Rackbox::state_dir_of(&lab, "rb");
            std::fs::create_dir_all(&state).expect("state dir");
            common::seed(&state, seed);
        }
        let boot = "[[boot.interfaces]]\nname = \"br0\"\nmode = \"managed\"\n\
                    [[boot.interfaces.subnets]]\ncidr = \"192.0.2.0/24\"\n\
                    dynamic_ranges = [{ start = \"192.0.2.100\", end = \"192.0.2.199\" }]\n\
                    [tftp]\nlisten = \"192.0.2.1:69\"\n";
        let rackbox = Rackbox::start_on(&mut lab, &ns, "rb", "0.0.0.0:5240", boot);
        let token = rackbox.login(&lab);
        let rack = Rack {
            lab,
            ns,
            rackbox,
            token,
            taps: 0,
        };
        rack.import_boot_resources();
        rack
    }

    /// Calls the API with curl inside the namespace: (status, JSON body).
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = self.lab.cmd(&self.ns, "curl");
        c.args(["-s", "-X", method, "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token));
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
        }
        c.arg(format!("http://127.0.0.1:5240{path}"));
        let out = ok(&mut c);
        let (text, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", &out));
        let code = code.trim().parse().unwrap_or(0);
        (code, serde_json::from_str(text).unwrap_or(Value::Null))
    }

    /// The boot loaders through scripts/import-bootloaders.sh and the test ramdisk through the
    /// CLI, as an operator would.
    fn import_boot_resources(&self) {
        let bin = env!("CARGO_BIN_EXE_rackbox");
        let env = |c: &mut Command| {
            c.env("RACKBOX_URL", "http://127.0.0.1:5240")
                .env("RACKBOX_TOKEN", &self.token)
                .env("RACKBOX_BIN", bin);
        };
        let mut c = self.lab.cmd(&self.ns, "bash");
        c.arg(repo().join("scripts/import-bootloaders.sh"));
        env(&mut c);
        ok(&mut c);
        let (kernel, initrd) = ramdisk();
        for (name, kind, file) in [
            ("vmlinuz", "kernel", &kernel),
            ("initrd.img", "initrd", &initrd),
        ] {
            let mut c = self.lab.cmd(&self.ns, bin);
            c.args(["boot-resource", "import", "--kind", kind, "amd64", name])
                .arg(file);
            env(&mut c);
            ok(&mut c);
        }
    }

    /// Adds a machine by its MAC without commissioning it; answers its system_id.
    fn add_machine(&self, hostname: &str, mac: &str) -> String {
        let (s, m) = self.api(
            "POST",
            "/api/v1/machines",
            Some(json!({"hostname": hostname, "mac_addresses": [mac], "commission": false})),
        );
        assert_eq!(s, 201, "add {hostname}: {m}");
        m["system_id"].as_str().expect("a system_id").to_string()
    }

    fn machine(&self, id: &str) -> Value {
        let (s, m) = self.api("GET", &format!("/api/v1/machines/{id}"), None);
        assert_eq!(s, 200, "show {id}: {m}");
        m
    }

    /// Starts a QEMU machine on a new tap device of the bridge.
    fn boot(&mut self, firmware: Firmware, mac: &str, disk: bool) -> Vm {
        self.taps += 1;
        let tap = format!("tap{}", self.taps);
        let ns = self.ns.clone();
        ok(netns::ip().args(["-n", &ns, "tuntap", "add", &tap, "mode", "tap"]));
        ok(netns::ip().args(["-n", &ns, "link", "set", &tap, "master", "br0"]));
        ok(netns::ip().args(["-n", &ns, "link", "set", &tap, "up"]));
        let serial = self.lab.path(&format!("{tap}-serial.log"));
        let mut vm = Qemu::tcg()
            .memory(512)
            .nographic()
            .nodefaults()
            .no_reboot()
            .no_monitor()
            .opt("-serial", format!("file:{}", serial.display()))
            .netdev(&format!("tap,id=n0,ifname={tap},script=no,downscript=no"));
        match firmware {
            Firmware::Bios => {
                vm = vm.device(&format!("virtio-net-pci,netdev=n0,mac={mac},bootindex=1"));
            }
            Firmware::Uefi => {
                vm = vm.device(&format!(
                    "virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1"
                ));
                let vars = self.lab.path(&format!("{tap}-OVMF_VARS.fd"));
                std::fs::copy(OVMF_VARS, &vars).expect("copy OVMF_VARS");
                vm = vm.ovmf(&vars);
            }
        }
        if disk {
            let path = self.lab.path(&format!("{tap}-disk.raw"));
            let f = std::fs::File::create(&path).expect("disk file");
            f.set_len(1 << 30).expect("blank disk");
            vm = vm
                .raw_drive(&path, "disk0")
                .device("virtio-blk-pci,drive=disk0,bootindex=2");
        }
        let args = vm.string_args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let qemu_log = format!("{tap}-qemu.log");
        let index = self.lab.spawn(&ns, qemu::PROGRAM, &refs, &qemu_log);
        Vm {
            serial,
            index,
            qemu_log,
        }
    }

    /// Waits (bounded by [`BOOT_LIMIT`]) until the machine's serial log holds `text`; fails
    /// early when QEMU has exited without it.
    fn wait_serial(&mut self, vm: &Vm, text: &str) -> String {
        self.wait_serial_until(vm, &format!("{text:?}"), |log| log.contains(text))
    }

    /// Waits (bounded by [`BOOT_LIMIT`]) until `done` holds for the serial log; fails early when
    /// QEMU has exited first.
    fn wait_serial_until(&mut self, vm: &Vm, text: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + BOOT_LIMIT;
        loop {
            let exited = self.lab.wait(vm.index, Duration::ZERO).is_some();
            let log = std::fs::read_to_string(&vm.serial).unwrap_or_default();
            if done(&log) {
                return log;
            }
            let why = if exited {
                "QEMU exited before its serial console showed"
            } else if Instant::now() > deadline {
                "timed out: the serial console did not show"
            } else {
                std::thread::sleep(Duration::from_millis(500));
                continue;
            };
            panic!(
                "{why} {text} ({BOOT_LIMIT:?} allowed).\n--- serial log ---\n{}\n\
                 --- QEMU output ---\n{}\n--- rackbox log (tail) ---\n{}",
                printable(&log),
                self.lab.read(&vm.qemu_log),
                tail(&self.lab.read(&self.rackbox.log), 60)
            );
        }
    }

    fn metric(&self, name: &str) -> u64 {
        self.rackbox.metric(&self.lab, name)
    }
}

/// A QEMU machine the rack started.
struct Vm {
    /// Its serial console, as a file.
    serial: PathBuf,
    /// Its process in the lab.
    index: usize,
    /// QEMU's own output (errors), a lab file name.
    qemu_log: String,
}

/// The serial log without escape sequences and carriage returns, for messages.
fn printable(log: &str) -> String {
    log.replace('\r', "")
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The kernel command line the ramdisk printed.
fn cmdline(serial: &str) -> String {
    printable(serial)
        .lines()
        .find_map(|l| l.trim().strip_prefix("cmdline: ").map(str::to_string))
        .unwrap_or_else(|| {
            panic!(
                "the ramdisk printed no command line:\n{}",
                printable(serial)
            )
        })
}

/// A commissioning machine boots the ramdisk, and its command line carries its identity.
fn commissioning_boot(firmware: Firmware, mac: &str) {
    require();
    let mut rack = Rack::start(Vec::new());
    let id = rack.add_machine(&format!("{firmware:?}-node").to_lowercase(), mac);
    let (s, v) = rack.api(
        "POST",
        &format!("/api/v1/machines/{id}/actions/commission"),
        None,
    );
    assert_eq!(s, 200, "commission: {v}");
    assert_eq!(rack.machine(&id)["status"], "commissioning");

    let vm = rack.boot(firmware, mac, false);
    let log = rack.wait_serial(&vm, MARKER);
    // The ramdisk prints its command line right after the marker.
    let log = if cmdline_printed(&log) {
        log
    } else {
        rack.wait_serial(&vm, "cmdline: ")
    };
    let line = cmdline(&log);
    assert!(
        line.contains("rackbox.token=rbt_"),
        "no per-boot token on the command line: {line}"
    );
    assert!(
        line.contains(&format!("rackbox.system_id={id}")),
        "the command line names another machine than {id}: {line}"
    );
    assert!(
        line.contains("rackbox.url=http://192.0.2.1:5240"),
        "the command line does not point the agent at rackbox: {line}"
    );
    if firmware == Firmware::Uefi {
        assert!(
            line.contains("initrd=initrd.img"),
            "EFI kernels need initrd=<name>: {line}"
        );
        assert!(
            rack.metric("rackbox_tftp_transfers_total{outcome=\"completed\"}") >= 1,
            "UEFI PXE should have fetched its loader over rackbox's TFTP"
        );
    }
    // The boot was recorded on the machine.
    let (s, events) = rack.api("GET", &format!("/api/v1/machines/{id}/events"), None);
    assert_eq!(s, 200);
    assert!(
        events.to_string().contains("netboot"),
        "no netboot event for {id}: {events}"
    );
}

fn cmdline_printed(log: &str) -> bool {
    printable(log)
        .lines()
        .any(|l| l.trim().starts_with("cmdline: "))
}

#[test]
fn seabios_with_ipxe_boots_the_ephemeral_environment_from_rackbox() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    commissioning_boot(Firmware::Bios, "52:54:00:0b:00:01");
}

#[test]
fn ovmf_uefi_pxe_loads_ipxe_over_tftp_and_boots_the_ephemeral_environment() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    commissioning_boot(Firmware::Uefi, "52:54:00:0e:00:01");
}

#[test]
fn a_deployed_bios_machine_is_sent_to_its_local_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require();
    let mac = "52:54:00:0d:00:01";
    let mut deployed = common::machine("dep001", Status::Deployed, 1, 512);
    deployed.interfaces[0].mac = mac.into();
    deployed.owner = Some("admin".into());
    let mut rack = Rack::start(vec![deployed]);
    assert_eq!(rack.machine("dep001")["status"], "deployed");

    let vm = rack.boot(Firmware::Bios, mac, true);
    let log = rack.wait_serial(&vm, "booting from the local disk");
    assert!(
        !log.contains(MARKER),
        "a Deployed machine booted the ephemeral environment:\n{}",
        printable(&log)
    );
    // iPXE handed over: SeaBIOS goes on to the next boot entry, the (blank) disk.
    let log = rack.wait_serial(&vm, "Booting from Hard Disk");
    assert!(!log.contains(MARKER));
    assert_eq!(
        rack.machine("dep001")["status"],
        "deployed",
        "booting its disk leaves a Deployed machine as it is"
    );
}

/// UEFI: iPXE leaves (`exit`) and the firmware goes on to its next boot entry, without a loop
/// back into the network boot. With a blank disk there is no next OS entry, and OVMF shows its
/// setup screen (UiApp): what the test can see is that the firmware, not iPXE, is in charge.
#[test]
fn a_deployed_uefi_machine_leaves_ipxe_for_the_next_boot_entry() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require();
    let mac = "52:54:00:0d:00:02";
    let mut deployed = common::machine("dep002", Status::Deployed, 1, 512);
    deployed.interfaces[0].mac = mac.into();
    deployed.owner = Some("admin".into());
    let mut rack = Rack::start(vec![deployed]);

    let vm = rack.boot(Firmware::Uefi, mac, true);
    let leaving = "leaving iPXE so the firmware boots the next entry";
    rack.wait_serial(&vm, leaving);
    // The firmware's boot manager takes the next entry after iPXE returned.
    let log = rack.wait_serial_until(&vm, "the firmware to load its next boot entry", |log| {
        log.split_once(leaving)
            .is_some_and(|(_, after)| after.contains("BdsDxe: loading"))
    });
    assert_eq!(
        log.matches(leaving).count(),
        1,
        "the network boot looped:\n{}",
        printable(&log)
    );
    assert!(
        !log.contains("booting from the local disk"),
        "UEFI must not try the BIOS sanboot:\n{}",
        printable(&log)
    );
    assert!(!log.contains(MARKER));
    assert_eq!(rack.machine("dep002")["status"], "deployed");
}
