//! The rackbox binary: the daemon (`serve`), the agent in the ephemeral ramdisk (`agent`) and the
//! command-line client of its API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use rackbox::cli::{self, CliError, Connection};
use rackbox::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "rackbox",
    version,
    about = "Metal-as-a-Service in one box: provision bare-metal servers on a rack's boot network"
)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Run the appliance daemon.
    Serve {
        /// Configuration file (TOML). Without it, embedded defaults: state in ./rackbox-data,
        /// HTTP on 127.0.0.1:5240, network boot off.
        #[arg(long, env = "RACKBOX_CONFIG")]
        config: Option<PathBuf>,
        /// Check the configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Run on a machine being commissioned, tested, deployed or erased (in the ephemeral
    /// ramdisk): settings from the kernel command line (rackbox.url=, rackbox.token=, ...) or
    /// --url/--token.
    Agent(rackbox::agent::entry::AgentArgs),
    /// Look for DHCP servers already answering on one of this host's interfaces: broadcast a
    /// DHCPDISCOVER and list the offers (runs here, not through the API; needs CAP_NET_RAW).
    /// Exits 3 when a server answers: managed DHCP there would clash with it.
    DhcpProbe {
        /// The interface, e.g. eth1.
        interface: String,
        /// How long to listen for offers, in seconds.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=30))]
        wait_secs: u64,
    },
    #[command(flatten)]
    Client(Box<cli::Command>),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.command {
        Top::Serve {
            config: config_path,
            check,
        } => {
            let config = match Config::load(config_path.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            if check {
                println!("configuration is valid");
                return ExitCode::SUCCESS;
            }
            rackbox::telemetry::init(&config.log.level, &config.log.target);
            rackbox::daemon::fix_malloc_thresholds();
            // A restart (the first-boot setup saved a boot network) serves again in this
            // process, with the config read anew.
            let mut config = config;
            loop {
                match runtime.block_on(rackbox::daemon::serve(config)) {
                    Ok(rackbox::daemon::Stopped::Restart) => {}
                    Ok(rackbox::daemon::Stopped::Signal) => return ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "rackbox stopped");
                        eprintln!("error: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                config = match Config::load(config_path.as_deref()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                };
            }
        }
        Top::DhcpProbe {
            interface,
            wait_secs,
        } => {
            let wait = std::time::Duration::from_secs(wait_secs);
            match runtime.block_on(rackbox::dhcp::probe::probe(&interface, wait)) {
                Ok(report) => print_probe(&report, args.conn.json),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Top::Agent(agent) => {
            rackbox::agent::entry::main(&runtime, args.conn.url, args.conn.token, agent)
        }
        Top::Client(command) => {
            restore_sigpipe();
            match runtime.block_on(cli::run(args.conn, *command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(match e {
                        CliError::Usage(_) => 2,
                        _ => 1,
                    })
                }
            }
        }
    }
}

/// Prints what a DHCP probe found; exit 3 when a server answered.
fn print_probe(report: &rackbox::dhcp::probe::ProbeReport, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else if report.clear {
        println!(
            "no DHCP server answered on {} in {} ms: managed DHCP is safe there",
            report.interface, report.waited_ms
        );
    } else {
        for s in &report.servers {
            println!(
                "DHCP server {} (from {}) offered {} on {}",
                s.server, s.mac, s.offered, report.interface
            );
        }
        println!(
            "use proxy mode on {}, or switch that server off",
            report.interface
        );
    }
    if report.clear {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// A command-line client piped into `head` should end quietly when the pipe closes, as other
/// Unix tools do, instead of panicking in `println!` (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    // SAFETY: signal() only changes the process-wide disposition of SIGPIPE to its default; it
    // installs no handler, so no code of ours can run in signal context. Called once, before any
    // request is made.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
