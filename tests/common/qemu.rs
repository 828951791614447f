//! The one QEMU command line of the tests that boot machines (tests/agent_ephemeral.rs,
//! tests/netboot_firmware.rs, tests/testos.rs): a builder that appends QEMU's arguments in the
//! order its methods are called, so each test says what its machine has and nothing else.
//! scripts/lib/qemu.sh is the lab's counterpart (bash cannot share this).

use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::path::Path;
use std::process::{Command, Stdio};

/// The emulator every test runs.
pub const PROGRAM: &str = "qemu-system-x86_64";
/// OVMF's code and the template of its variable store (Debian's ovmf, 4 MiB flash).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// QEMU's arguments, in the order they were added.
#[derive(Debug, Clone)]
pub struct Qemu {
    args: Vec<OsString>,
}

impl Qemu {
    /// A machine under TCG (`-accel tcg`): the tests never rely on KVM, which can be present
    /// and not work (nested virtualization).
    pub fn tcg() -> Qemu {
        Qemu {
            args: vec!["-accel".into(), "tcg".into()],
        }
    }

    /// One argument as it is.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Qemu {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// An option and its value (`-m 512`).
    pub fn opt(self, name: &str, value: impl AsRef<OsStr>) -> Qemu {
        self.arg(name).arg(value)
    }

    /// `-cpu max`: RDRAND, so the guest kernel's random generator is seeded at once as on a
    /// real server (qemu64 has no hardware generator).
    pub fn cpu_max(self) -> Qemu {
        self.opt("-cpu", "max")
    }

    /// `-nographic`: no display; the serial console and the monitor on standard output.
    pub fn nographic(self) -> Qemu {
        self.arg("-nographic")
    }

    /// `-nodefaults`: no default devices (the test adds its own NIC and serial port).
    pub fn nodefaults(self) -> Qemu {
        self.arg("-nodefaults")
    }

    /// `-no-reboot`: the guest's reboot (or a kernel panic with panic=-1) ends QEMU.
    pub fn no_reboot(self) -> Qemu {
        self.arg("-no-reboot")
    }

    /// `-monitor none`.
    pub fn no_monitor(self) -> Qemu {
        self.opt("-monitor", "none")
    }

    /// `-smp N`.
    pub fn smp(self, cpus: u32) -> Qemu {
        self.opt("-smp", cpus.to_string())
    }

    /// `-m MIB`.
    pub fn memory(self, mib: u64) -> Qemu {
        self.opt("-m", mib.to_string())
    }

    /// `-kernel PATH -initrd PATH -append CMDLINE`: a direct kernel boot.
    pub fn kernel(self, kernel: &Path, initrd: &Path, cmdline: &str) -> Qemu {
        self.opt("-kernel", kernel)
            .opt("-initrd", initrd)
            .opt("-append", cmdline)
    }

    /// `-nic SPEC` (see [`appliance_nic`]).
    pub fn nic(self, spec: &str) -> Qemu {
        self.opt("-nic", spec)
    }

    /// `-nic none`: a machine without a network interface.
    pub fn no_nic(self) -> Qemu {
        self.nic("none")
    }

    /// `-netdev SPEC`.
    pub fn netdev(self, spec: &str) -> Qemu {
        self.opt("-netdev", spec)
    }

    /// `-device SPEC`.
    pub fn device(self, spec: &str) -> Qemu {
        self.opt("-device", spec)
    }

    /// `-drive SPEC`.
    pub fn drive(self, spec: &str) -> Qemu {
        self.opt("-drive", spec)
    }

    /// `-drive file=PATH,if=none,id=ID,format=raw`: a raw disk image for a `-device` to use.
    pub fn raw_drive(self, path: &Path, id: &str) -> Qemu {
        self.drive(&format!(
            "file={},if=none,id={id},format=raw",
            path.display()
        ))
    }

    /// OVMF as the firmware: its code read-only and `vars`, the machine's own copy of the
    /// variable store, as two pflash drives.
    pub fn ovmf(self, vars: &Path) -> Qemu {
        self.drive(&format!(
            "if=pflash,format=raw,readonly=on,file={OVMF_CODE}"
        ))
        .drive(&format!("if=pflash,format=raw,file={}", vars.display()))
    }

    /// A KCS IPMI interface to an external BMC (ipmi_sim) whose VM serial port is
    /// 127.0.0.1:`port`, as a real server has.
    pub fn ipmi_bmc(self, port: u16) -> Qemu {
        self.opt(
            "-chardev",
            format!("socket,id=ipmi0,host=127.0.0.1,port={port},reconnect=10"),
        )
        .device("ipmi-bmc-extern,id=bmc0,chardev=ipmi0")
        .device("isa-ipmi-kcs,bmc=bmc0")
    }

    /// The arguments, in order.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The arguments as strings, for a runner that takes `&str` (they are built from UTF-8).
    pub fn string_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_str().expect("QEMU arguments are UTF-8").to_owned())
            .collect()
    }

    /// `qemu-system-x86_64` with the arguments and standard input from /dev/null (QEMU under
    /// -nographic would otherwise read the test's terminal).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(PROGRAM);
        cmd.args(&self.args).stdin(Stdio::null());
        cmd
    }
}

/// A virtio NIC with `mac` on a user-mode network with `restrict=on` (no route anywhere) whose
/// one guestfwd leads 10.0.2.100:80 to the fake appliance on the host's 127.0.0.1:`port`. A
/// `cmd:` forward runs one socat per guest connection (a chardev forward would carry only one,
/// and the agent downloads while it reports progress).
pub fn appliance_nic(mac: &str, port: impl Display) -> String {
    format!(
        "user,restrict=on,model=virtio-net-pci,mac={mac},\
         guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:{port}"
    )
}
