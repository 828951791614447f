//! Benchmark driver for the TFTP server, run by scripts/bench-tftp.sh.
//!
//! It serves (`serve`) and downloads (`get`, `concurrent`) with the library's own client,
//! because the usual clients (tftp-hpa, curl) cannot negotiate RFC 7440 windows. The
//! server runs in its own process so the client does not share its runtime. Loopback
//! only, and every mode stops by itself.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rackbox::tftp::client::{ReadOptions, read_file};
use rackbox::tftp::{TftpConfig, TftpServer, TftpStats};

#[derive(Parser)]
#[command(about = "TFTP benchmark driver (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve ROOT on 127.0.0.1 and print "listening ADDR"; exits after --max-seconds.
    Serve {
        #[arg(long)]
        root: PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 128)]
        max_transfers: usize,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// Run the server on a single-threaded runtime, to see what cross-thread
        /// wake-ups cost a lock-step transfer.
        #[arg(long)]
        current_thread: bool,
    },
    /// Print a free UDP port on 127.0.0.1 (for the tftpd-hpa side of the comparison).
    FreePort,
    /// Download FILE once and print seconds and MiB/s.
    Get {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        file: String,
        #[arg(long, default_value_t = 1468)]
        blksize: u16,
        #[arg(long, default_value_t = 1)]
        windowsize: u16,
    },
    /// Download FILE with CLIENTS transfers at once and print the totals.
    Concurrent {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        file: String,
        #[arg(long, default_value_t = 100)]
        clients: usize,
        #[arg(long, default_value_t = 1468)]
        blksize: u16,
        #[arg(long, default_value_t = 1)]
        windowsize: u16,
    },
}

fn loopback_only(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: this benchmark stays on 127.0.0.1"
        ))
    }
}

fn options(blksize: u16, windowsize: u16) -> ReadOptions {
    ReadOptions {
        block_size: Some(blksize),
        window_size: (windowsize > 1).then_some(windowsize),
        transfer_size: true,
        timeout: Duration::from_secs(1),
        retries: 10,
    }
}

fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let mut runtime = match cli.command {
        Command::Serve {
            current_thread: true,
            ..
        } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Serve {
            root,
            listen,
            max_transfers,
            max_seconds,
            current_thread: _,
        } => {
            loopback_only(listen)?;
            let config = TftpConfig {
                listen,
                root,
                max_transfers,
                ..TftpConfig::default()
            };
            let stats = Arc::new(TftpStats::default());
            let server = TftpServer::bind(config, Arc::clone(&stats))
                .await
                .map_err(|error| error.to_string())?;
            println!("listening {}", server.local_addr());
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|error| error.to_string())?;
            // Stops on SIGTERM (the script is done) or after max_seconds, whichever first.
            let shutdown = async move {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(max_seconds)) => {}
                    _ = terminate.recv() => {}
                }
            };
            server
                .run(shutdown)
                .await
                .map_err(|error| error.to_string())?;
            let mut metrics = String::new();
            stats.render_prometheus(&mut metrics);
            eprint!("{metrics}");
            Ok(())
        }
        Command::FreePort => {
            let socket = UdpSocket::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
            let port = socket
                .local_addr()
                .map_err(|error| error.to_string())?
                .port();
            println!("{port}");
            Ok(())
        }
        Command::Get {
            server,
            file,
            blksize,
            windowsize,
        } => {
            loopback_only(server)?;
            let started = Instant::now();
            let summary = read_file(
                server,
                &file,
                &options(blksize, windowsize),
                &mut std::io::sink(),
            )
            .await
            .map_err(|error| format!("{file}: {error}"))?;
            let elapsed = started.elapsed();
            if summary
                .transfer_size
                .is_some_and(|size| size != summary.bytes)
            {
                return Err(format!(
                    "{file}: got {} bytes, tsize said {:?}",
                    summary.bytes, summary.transfer_size
                ));
            }
            println!(
                "bytes={} seconds={:.3} mib_per_s={:.1} blksize={} windowsize={}",
                summary.bytes,
                elapsed.as_secs_f64(),
                mib_per_second(summary.bytes, elapsed),
                summary.block_size,
                summary.window_size
            );
            Ok(())
        }
        Command::Concurrent {
            server,
            file,
            clients,
            blksize,
            windowsize,
        } => {
            loopback_only(server)?;
            let options = options(blksize, windowsize);
            let started = Instant::now();
            let mut transfers = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let file = file.clone();
                let options = options.clone();
                transfers.spawn(async move {
                    let started = Instant::now();
                    let result = read_file(server, &file, &options, &mut std::io::sink()).await;
                    (result, started.elapsed())
                });
            }
            let mut bytes = 0u64;
            let mut failures = 0usize;
            let mut slowest = Duration::ZERO;
            while let Some(joined) = transfers.join_next().await {
                match joined {
                    Ok((Ok(summary), elapsed)) => {
                        bytes += summary.bytes;
                        slowest = slowest.max(elapsed);
                    }
                    Ok((Err(error), _)) => {
                        failures += 1;
                        eprintln!("transfer failed: {error}");
                    }
                    Err(error) => {
                        failures += 1;
                        eprintln!("transfer task failed: {error}");
                    }
                }
            }
            let elapsed = started.elapsed();
            println!(
                "clients={clients} failures={failures} bytes={bytes} seconds={:.3} mib_per_s={:.1} slowest_s={:.3}",
                elapsed.as_secs_f64(),
                mib_per_second(bytes, elapsed),
                slowest.as_secs_f64()
            );
            Ok(())
        }
    }
}
