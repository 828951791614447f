//! The ephemeral ramdisk boots and its agent sees the machine: scripts/build-ephemeral.sh builds
//! vmlinuz and initrd.img (Debian's kernel, busybox-static, the static rackbox), QEMU boots them
//! under TCG with no network at all, and with `rackbox.inventory_only=1` the agent prints its
//! inventory between markers on the serial console and powers the VM off. The inventory must
//! match the VM QEMU was told to be.
//!
//! A second test boots the same ramdisk with a network: QEMU's user-mode NIC with `restrict=on`
//! (the guest reaches nothing but one forwarded address, which leads to the fake appliance on the
//! host's 127.0.0.1), so /init's driver loading and DHCP, and the agent's HTTP, deploy and
//! power-off are exercised end to end on a virtio disk.
//!
//! Both VMs have a KCS IPMI interface (isa-ipmi-kcs) attached to an ipmi_sim BMC whose LAN
//! configuration names its own address: the first test checks that the inventory reports the
//! BMC's LAN channel and address read in-band through /dev/ipmi0, the second commissions with
//! `create_bmc_user` and logs in to the BMC over the LAN with the user the agent created.
//!
//! The first run builds the static binary and downloads two Debian packages (several minutes on
//! two cores); later runs reuse them. Needs qemu-system-x86_64 (scripts/deps.d/agent.sh).

mod agent_support;
mod power_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rackbox::agent::inventory::{Firmware, Inventory};
use rackbox::agent::run::{INVENTORY_BEGIN, INVENTORY_END};

use agent_support::{
    MIB, appliance, calls_of, check_deployed, compress, deploy_task, lock, make_image, mcopy, serve,
};
use power_support::{GUEST_BMC_MAC, IpmiSim, SimMode};
use serde_json::json;

/// QEMU's arguments that give the VM a KCS IPMI interface to `sim` (an external BMC).
fn bmc_args(sim: &IpmiSim) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=ipmi0,host=127.0.0.1,port={},reconnect=10",
            sim.serial
        ),
        "-device".into(),
        "ipmi-bmc-extern,id=bmc0,chardev=ipmi0".into(),
        "-device".into(),
        "isa-ipmi-kcs,bmc=bmc0".into(),
    ]
}

/// Where the ramdisk is built: shared by test runs so that the cache works.
fn ephemeral_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ephemeral")
}

/// Runs a command to its end, killing it after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = tx.clone();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        let _ = t_out.send(b);
    });
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        let _ = tx.send(b);
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut text = String::new();
    for _ in 0..2 {
        if let Ok(b) = rx.recv_timeout(Duration::from_secs(10)) {
            text.push_str(&String::from_utf8_lossy(&b));
        }
    }
    (status.is_some_and(|s| s.success()), text)
}

/// Builds the ramdisk once per test run: the tests of this file run in parallel and must not
/// build into the same directory at once.
fn build_ramdisk() -> (PathBuf, PathBuf) {
    static BUILT: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_ramdisk_now).clone()
}

fn build_ramdisk_now() -> (PathBuf, PathBuf) {
    let dir = ephemeral_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-ephemeral.sh");
    // The static release build takes minutes on two cores the first time.
    let (ok, log) = run_bounded(
        Command::new("bash").arg(&script).arg(&dir),
        Duration::from_secs(45 * 60),
    );
    assert!(ok, "scripts/build-ephemeral.sh failed:\n{log}");
    (dir.join("vmlinuz"), dir.join("initrd.img"))
}

/// The text between the inventory markers of a console log.
fn inventory_from_console(console: &str) -> Option<Inventory> {
    let text = console.replace('\r', "");
    let start = text.find(INVENTORY_BEGIN)? + INVENTORY_BEGIN.len();
    let end = start + text[start..].find(INVENTORY_END)?;
    serde_json::from_str(text[start..end].trim()).ok()
}

/// One QEMU at a time: two TCG guests on a 2-core CI machine starve each other until the guest
/// kernel reports RCU stalls and the bounded waits run out.
static ONE_VM_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[test]
fn the_ramdisk_boots_and_reports_the_vm_it_runs_in() {
    let (kernel, initrd) = build_ramdisk();
    let _vm = ONE_VM_AT_A_TIME.blocking_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("disk.raw");
    let disk_size = 3 * 1024 * MIB + 5 * MIB;
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(disk_size))
        .expect("disk");

    let sim = IpmiSim::start(SimMode::Guest);
    let (cpus, mem_mib) = (2u32, 768u64);
    let (exited, console) = run_bounded(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-nographic", "-nic", "none", "-no-reboot"])
            .args(["-smp", &cpus.to_string(), "-m", &mem_mib.to_string()])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args([
                "-append",
                "console=ttyS0 panic=-1 rackbox.url=http://127.0.0.1:1 rackbox.inventory_only=1",
            ])
            .arg("-drive")
            .arg(format!("file={},if=none,id=d0,format=raw", disk.display()))
            .args(["-device", "virtio-blk-pci,drive=d0,serial=rbx-disk-1"])
            .args(bmc_args(&sim))
            .stdin(Stdio::null()),
        // TCG on a busy two-core machine: booting takes seconds to a minute or two.
        Duration::from_secs(10 * 60),
    );
    let tail: String = {
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    let inv = inventory_from_console(&console)
        .unwrap_or_else(|| panic!("no inventory on the console; its end:\n{tail}"));
    assert!(
        exited,
        "the agent powered the VM off after printing; console end:\n{tail}"
    );

    assert_eq!(inv.cpu_count, cpus);
    assert_eq!(inv.cpu.threads, cpus);
    assert_eq!(inv.memory_mib, mem_mib, "memory from the memory blocks");
    assert_eq!(inv.firmware, Firmware::Bios);
    assert_eq!(inv.architecture, "amd64/generic");
    assert_eq!(inv.system.vendor, "QEMU");
    let vda = inv
        .disks
        .iter()
        .find(|d| d.name == "vda")
        .unwrap_or_else(|| panic!("no vda in {:?}", inv.disks));
    assert_eq!(vda.size_bytes, disk_size);
    assert_eq!(vda.serial, "rbx-disk-1");
    assert_eq!(vda.block_size, 512);
    assert_eq!(inv.disks.len(), 1, "only the -drive disk: {:?}", inv.disks);
    assert!(inv.interfaces.is_empty(), "-nic none: {:?}", inv.interfaces);
    // The virtio block device is on the PCI bus, bound to its driver.
    assert!(
        inv.pci
            .iter()
            .any(|p| p.vendor == "1af4" && p.driver == "virtio-pci"),
        "{:?}",
        inv.pci
    );
    // The BMC, in-band: its identity and its LAN channel with the address it reports.
    assert!(inv.bmc.ipmi_device, "/dev/ipmi0: {:?}", inv.bmc);
    let ipmi = inv.bmc.ipmi.as_ref().unwrap_or_else(|| {
        panic!(
            "no Get Device ID answer: {:?}; console end:\n{tail}",
            inv.bmc
        )
    });
    assert_eq!(ipmi.ipmi_version, "2.0");
    assert_eq!(
        ipmi.manufacturer_id, 0x1291,
        "ipmi_sim's emu.cmds says 0x1291"
    );
    let lan = inv
        .bmc
        .lan
        .as_ref()
        .unwrap_or_else(|| panic!("no BMC LAN channel: {:?}; console end:\n{tail}", inv.bmc));
    assert_eq!(lan.channel, 1);
    assert_eq!(lan.ip_address, "127.0.0.1");
    assert_eq!(lan.ip_source, "static");
    assert_eq!(lan.netmask, "255.0.0.0");
    assert_eq!(lan.mac, GUEST_BMC_MAC);
    assert_eq!(inv.bmc.credentials, None, "printing creates no BMC user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ramdisk_deploys_an_image_over_the_network() {
    let (kernel, initrd) = tokio::task::spawn_blocking(build_ramdisk)
        .await
        .expect("build");
    let _vm = ONE_VM_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let sim = IpmiSim::start(SimMode::Guest);
    let s = appliance(vec![
        json!({"task": "wait", "seconds": 1}),
        json!({"task": "commission", "create_bmc_user": true}),
        deploy_task("img.raw.gz", &gz, "raw.gz", ""),
        json!({"task": "poweroff"}),
    ]);
    lock(&s).images.insert("img.raw.gz".into(), gz);
    let url = serve(s.clone(), 0).await;
    let port = url.rsplit(':').next().unwrap_or_default().to_string();
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 * MIB))
        .expect("disk");

    let disk_arg = format!("file={},if=none,id=d0,format=raw", disk.display());
    // restrict=on: no route anywhere; the one guestfwd leads to the fake appliance. A `cmd:`
    // forward runs one socat per guest connection (a chardev forward would carry only one,
    // and the agent downloads while it reports progress).
    let nic = format!(
        "user,restrict=on,model=virtio-net-pci,mac=52:54:00:12:34:56,\
         guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:{port}"
    );
    let bmc = bmc_args(&sim);
    let (exited, console) = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new("qemu-system-x86_64")
                // `max`: RDRAND, which seeds the guest kernel's random generator at once, as on
                // a real server (the BMC password needs it; qemu64 has no hardware generator).
                .args([
                    "-accel",
                    "tcg",
                    "-cpu",
                    "max",
                    "-nographic",
                    "-no-reboot",
                    "-smp",
                    "2",
                    "-m",
                    "768",
                ])
                .arg("-kernel")
                .arg(&kernel)
                .arg("-initrd")
                .arg(&initrd)
                .args([
                    "-append",
                    "console=ttyS0 panic=-1 rackbox.url=http://10.0.2.100 rackbox.token=tok-1 \
                     rackbox.system_id=abc123 BOOTIF=01-52-54-00-12-34-56",
                ])
                .args(["-nic", &nic])
                .args(["-drive", &disk_arg])
                .args(["-device", "virtio-blk-pci,drive=d0"])
                .args(&bmc)
                .stdin(Stdio::null()),
            Duration::from_secs(10 * 60),
        )
    })
    .await
    .expect("qemu");
    let tail: String = {
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(150)..].join("\n")
    };
    assert!(
        exited,
        "the agent powered the VM off; console end:\n{tail}\nBMC log:\n{}",
        sim.log()
    );

    // Commissioning: the BMC's address, and a user of its own that works over the LAN.
    assert_eq!(
        calls_of(&s, "fail"),
        Vec::<serde_json::Value>::new(),
        "no failure; console end:\n{tail}"
    );
    let inventories = calls_of(&s, "inventory");
    assert_eq!(inventories.len(), 1, "console end:\n{tail}");
    let bmc = &inventories[0]["bmc"];
    assert_eq!(bmc["lan"]["ip_address"], "127.0.0.1", "{bmc}");
    assert_eq!(bmc["credentials"]["username"], "maas", "{bmc}");
    let password = bmc["credentials"]["password"]
        .as_str()
        .unwrap_or_else(|| panic!("no BMC password in {bmc}"));
    assert_eq!(password.len(), 16);
    assert!(
        !console.contains(password),
        "the BMC password is on the console"
    );
    let status = sim
        .ipmitool_as("maas", password, &["chassis", "power", "status"])
        .unwrap_or_else(|e| panic!("the created BMC user cannot log in: {e}\n{}", sim.log()));
    assert!(status.contains("Chassis Power is"), "{status}");
    assert!(
        sim.ipmitool_as("maas", "not-the-password", &["chassis", "power", "status"])
            .is_err(),
        "a wrong password is refused"
    );
    let completes = calls_of(&s, "complete");
    assert_eq!(completes.len(), 2, "commission and deploy");
    assert!(
        completes[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("BMC at 127.0.0.1")),
        "{}",
        completes[0]
    );
    let done = completes[1].clone();
    assert_eq!(lock(&s).unauthorized, 0);
    let seed_offset = done["results"]["seed_offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seed offset in {done}; console end:\n{tail}"));
    assert_eq!(done["results"]["disk"], "/dev/vda");
    check_deployed(&disk, &image, "gpt", seed_offset);
    assert!(mcopy(&disk, seed_offset, "user-data").contains("ssh_authorized_keys"));
    assert!(!calls_of(&s, "progress").is_empty());
}
