//! `rackbox agent`: the command-line face of the agent, and its life as PID 1 of the ramdisk.
//!
//! In the ramdisk `/init` execs `rackbox agent`, so the agent is PID 1: it must never exit (the
//! kernel would panic), and it is the one that powers the machine off or reboots it. Anywhere
//! else (a developer's shell, a test) the agent never touches the power unless asked to with
//! `--power-control`: it prints what the appliance asked for and exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::cmdline::{self, BootParams};
use super::inventory;
use super::run::{self, AgentConfig, Outcome};

/// `rackbox agent [...]`: run on a machine being commissioned, deployed or erased.
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AgentCommand>,
    /// The machine's system_id [else rackbox.system_id= on the kernel command line].
    #[arg(long)]
    pub(crate) system_id: Option<String>,
    /// Enlist first: send the inventory to the appliance and get a token [else rackbox.enlist=1].
    #[arg(long)]
    pub(crate) enlist: bool,
    /// Use this disk or file instead of the inventory's disks (repeatable).
    #[arg(long = "device")]
    pub(crate) devices: Vec<PathBuf>,
    /// Print the inventory between markers and stop (power off as PID 1)
    /// [else rackbox.inventory_only=1].
    #[arg(long)]
    pub(crate) inventory_only: bool,
    /// Where to read the kernel command line.
    #[arg(long, default_value = "/proc/cmdline")]
    pub cmdline: PathBuf,
    /// Where /proc, /sys and /dev are.
    #[arg(long, default_value = "/")]
    pub(crate) root: PathBuf,
    /// Power off or reboot when the appliance says so even when not PID 1.
    #[arg(long)]
    pub(crate) power_control: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AgentCommand {
    /// Print this machine's inventory JSON to stdout.
    Inventory,
}

fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Sends stdout and stderr to `/dev/<console>` (rackbox.console=ttyS0), so the agent's log
/// shows on a serial console even when the kernel's console is elsewhere.
fn redirect_to_console(console: &str) {
    use std::os::fd::AsRawFd;
    if console.contains('/') {
        return;
    }
    let Ok(tty) = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/{console}"))
    else {
        return;
    };
    // SAFETY: dup2 onto the standard descriptors with a valid open fd; the File stays open
    // until the end of this function and the duplicates live on independently.
    unsafe {
        libc::dup2(tty.as_raw_fd(), 1);
        libc::dup2(tty.as_raw_fd(), 2);
    }
}

/// Runs `rackbox agent`. `url` and `token` are the CLI's global --url/--token.
pub fn main(
    runtime: &tokio::runtime::Runtime,
    url: Option<String>,
    token: Option<String>,
    args: AgentArgs,
) -> ExitCode {
    let params: BootParams = std::fs::read_to_string(&args.cmdline)
        .map(|t| cmdline::parse(&t))
        .unwrap_or_default();
    if let Some(console) = &params.console {
        redirect_to_console(console);
    }
    crate::telemetry::init("info", "stderr");

    if let Some(AgentCommand::Inventory) = args.command {
        let mut inv = inventory::collect(&args.root, params.boot_mac.as_deref());
        super::bmc::fill(&args.root, &mut inv.bmc, false);
        return match serde_json::to_string_pretty(&inv) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let may_power = is_pid1() || args.power_control;
    if args.inventory_only || params.inventory_only {
        // Read-only: printing creates no BMC user.
        let mut inv = inventory::collect(&args.root, params.boot_mac.as_deref());
        super::bmc::fill(&args.root, &mut inv.bmc, false);
        print!("{}", run::inventory_report(&inv));
        return finish(Outcome::PowerOff, may_power);
    }

    let mut cfg = AgentConfig::new(
        url.or(params.url).unwrap_or_default(),
        token.or(params.token),
    );
    cfg.system_id = args.system_id.or(params.system_id);
    cfg.enlist = args.enlist || params.enlist;
    cfg.boot_mac = params.boot_mac;
    cfg.devices = args.devices;
    cfg.root = args.root;
    loop {
        // run_boot keeps what the boot learnt (an enlistment's token) for the next attempt.
        match runtime.block_on(run::run_boot(&mut cfg)) {
            Ok(outcome) => return finish(outcome, may_power),
            Err(e) => {
                tracing::error!(error = %e, "agent stopped");
                eprintln!("error: {e}");
                if !is_pid1() {
                    return ExitCode::FAILURE;
                }
                // PID 1 must not exit; the appliance's timeout will power-cycle the machine
                // if it stays unreachable. Try again a little later.
                std::thread::sleep(Duration::from_secs(30));
            }
        }
    }
}

/// Acts on the appliance's last word, or says what it would have done.
fn finish(outcome: Outcome, may_power: bool) -> ExitCode {
    if !may_power {
        println!(
            "agent finished: the appliance asked to {} (not PID 1; pass --power-control to act)",
            match outcome {
                Outcome::PowerOff => "power off",
                Outcome::Reboot => "reboot",
            }
        );
        return ExitCode::SUCCESS;
    }
    loop {
        let e = run::power(outcome);
        eprintln!("error: cannot {outcome:?}: {e}");
        if !is_pid1() {
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_secs(60));
    }
}
