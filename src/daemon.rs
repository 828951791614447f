//! `rackbox serve`: opens the store, builds the service, starts the HTTP server and the background
//! tasks, tells systemd it is ready, and on SIGTERM/SIGINT stops taking requests, lets in-flight
//! ones finish, and waits until the store's writer has committed everything it acknowledged.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::service::{Service, ServiceError};
use crate::store::{Store, StoreError, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(
        "cannot listen on {addr}: {source} (is another rackbox running? set [http] listen in the config)"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the admin password file {path}: {source}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    StateFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image cache: {0}")]
    Images(#[from] crate::images::ImageError),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error(transparent)]
    Dhcp(#[from] crate::dhcp::DhcpError),
    #[error("TFTP: {0} (set [tftp] listen, or enabled = false, in the config)")]
    Tftp(#[from] crate::tftp::TftpError),
    #[error("cannot prepare the TFTP root: {0}")]
    TftpRoot(#[from] crate::tftp::root::RootError),
}

/// Runs the daemon until a shutdown signal.
/// Keeps large blocks out of glibc's heap. glibc raises its mmap threshold to the size of each
/// large block freed (up to 32 MiB), after which argon2's 19 MiB login buffers come from the
/// heap and stay resident once freed; an appliance's idle memory would then be its busiest
/// login's. A fixed threshold (which also stops the raising) keeps every block of 1 MiB or more
/// in a mapping of its own, handed back to the system when freed.
pub fn fix_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator, under the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Why [`serve`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: the process ends.
    Signal,
    /// The first-boot setup chose a new boot network: serve again, with the config read anew.
    Restart,
}

pub async fn serve(config: Config) -> Result<Stopped, DaemonError> {
    let store = Store::open(
        &config.database_path(),
        StoreOptions {
            max_batch: config.store.max_batch,
            reserve_bytes: config.store.reserve_mib << 20,
        },
    )?;
    let writer = store.take_writer();
    // Opening the cache also cleans what a killed run left: partial imports, orphan blobs.
    let images = crate::images::ImageCache::open(store.clone(), config.cache_options()).await?;
    let (service, effects) = Service::new(store.clone(), images.clone(), config.deadlines())?;
    let service = Arc::new(
        service
            .with_enlist(config.enlist_options())
            .with_login(config.login_options()),
    );
    bootstrap_admin(&service, &config).await?;
    let mut boot_state = http::BootNetworkState {
        from_file: config.boot_from_file(),
        failed: None,
    };
    let setup_boot = service.setup_record()?.boot_interfaces_toml;
    let config = match &setup_boot {
        Some(toml) if !boot_state.from_file => match config.with_setup_boot(toml) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the boot network chosen in the setup is not valid; network boot stays off");
                boot_state.failed = Some(e.to_string());
                config
            }
        },
        _ => config,
    };

    service.set_subnets(subnet_plans(&config.boot));

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(DaemonError::Http)?;
    let dhcp_stats = Arc::new(crate::dhcp::DhcpStats::default());
    // A boot interface in the config file that cannot start stops the daemon (the operator
    // fixes the file); one the setup chose leaves the daemon serving, so the page can fix it.
    let dhcp_servers = match crate::dhcp::bind_all(&config, &service, &dhcp_stats) {
        Ok(servers) => servers,
        Err(e) if !boot_state.from_file => {
            tracing::error!(error = %e, "the boot network chosen in the setup did not start");
            boot_state.failed = Some(e.to_string());
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let tftp_stats = Arc::new(crate::tftp::TftpStats::default());
    let tftp_server = if config.tftp_enabled() {
        // Watching starts before the first fill, so no change can fall between the two; and the
        // root is filled before the socket is bound, so the first request finds the loaders.
        let changes = images.watch_boot();
        refresh_tftp_root(&images, &config.tftp_root()).await?;
        let server = crate::tftp::TftpServer::bind(config.tftp_config(), tftp_stats.clone())
            .await?
            .with_observer(tftp_timeline(&service));
        Some((server, changes))
    } else {
        None
    };
    let state = AppState {
        service: service.clone(),
        metrics: Arc::default(),
        images: images.clone(),
        public_url: config.public_url().into(),
        dhcp: dhcp_stats,
        boot: Arc::new(config.boot.clone()),
        boot_state: Arc::new(boot_state),
        restarter: Arc::default(),
        closing: Arc::new(watch::channel(false).0),
        tftp: tftp_stats,
    };
    let restarter = state.restarter.clone();

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let reconciler = tokio::spawn(crate::service::run_reconciler(
        service.clone(),
        Duration::from_secs(config.lifecycle.reconcile_interval_secs),
        stopped(stop_rx.clone()),
    ));
    let conductor = tokio::spawn(crate::service::run_conductor(
        service.clone(),
        effects,
        stopped(stop_rx.clone()),
    ));
    let power_sync = tokio::spawn(crate::service::run_power_sync(
        service.clone(),
        crate::service::PowerSync {
            interval: Duration::from_secs(config.power.poll_interval_secs),
            concurrency: config.power.poll_concurrency,
            timeout: Duration::from_secs(config.power.query_timeout_secs),
        },
        stopped(stop_rx.clone()),
    ));
    let watchdog = tokio::spawn(watchdog(store.clone(), stopped(stop_rx.clone())));
    let dhcp: Vec<_> = dhcp_servers
        .into_iter()
        .map(|server| tokio::spawn(server.run(stopped(stop_rx.clone()))))
        .collect();
    let mut tftp = Vec::new();
    if let Some((server, changes)) = tftp_server {
        tracing::info!(listen = %server.local_addr(), root = %config.tftp_root().display(), "TFTP serves the boot loaders");
        let shutdown = stopped(stop_rx.clone());
        tftp.push(tokio::spawn(async move {
            if let Err(error) = server.run(shutdown).await {
                tracing::error!(%error, "TFTP server stopped");
            }
        }));
        tftp.push(tokio::spawn(keep_tftp_root(
            images.clone(),
            config.tftp_root(),
            changes,
            stopped(stop_rx.clone()),
        )));
    }

    tracing::info!(
        listen = %local,
        state_dir = %config.state_dir.display(),
        images_dir = %config.images_dir().display(),
        version = env!("CARGO_PKG_VERSION"),
        "rackbox is serving"
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    // Each request carries its peer's address: enlistment and failed logins are counted per
    // source address.
    // Long-lived answers (the page's live streams) end when `closing` turns, so the drain
    // below does not wait on a browser tab.
    let closing = state.closing.clone();
    let asked = restarter.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            () = asked.wake.notified() => {}
        }
        closing.send_replace(true);
    };
    http::serve::serve(
        listener,
        http::router(state),
        config.http_limits(),
        shutdown,
    )
    .await;
    let stopped = if restarter.asked() {
        Stopped::Restart
    } else {
        Stopped::Signal
    };

    tracing::info!(?stopped, "shutting down: finishing in-flight work");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = tokio::join!(reconciler, conductor, power_sync, watchdog);
    for task in dhcp {
        let _ = task.await;
    }
    for task in tftp {
        let _ = task.await;
    }
    // Dropping the last service and store handles: the writer commits what is queued and exits.
    drop(service);
    drop(store);
    images.shutdown();
    drop(images);
    if let Some(writer) = writer {
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
    tracing::info!("stopped; every acknowledged write is on disk");
    Ok(stopped)
}

/// Files each TFTP transfer in the boot timeline of the machine at its peer's address.
fn tftp_timeline(service: &Arc<Service>) -> crate::tftp::TransferObserver {
    use crate::model::timeline::{Step, TransferOutcome};
    use crate::tftp::TransferEnd;
    let service = service.clone();
    Arc::new(move |r: crate::tftp::TransferReport| {
        let outcome = match r.end {
            TransferEnd::Completed => TransferOutcome::Completed,
            TransferEnd::AbortedByClient => TransferOutcome::AbortedByClient,
            TransferEnd::TimedOut => TransferOutcome::TimedOut,
            TransferEnd::Refused => TransferOutcome::Refused,
            TransferEnd::Failed => TransferOutcome::Failed,
        };
        let ms = r.duration.as_millis() as u64;
        let step = Step::Tftp {
            file: r.file,
            bytes: r.bytes,
            size: r.size,
            ms,
            outcome,
        };
        service.boot_step_from(r.peer.ip(), ms, step);
    })
}

/// Makes the TFTP root hold exactly the image cache's boot loaders (see `tftp::root`).
async fn refresh_tftp_root(
    images: &crate::images::ImageCache,
    root: &Path,
) -> Result<(), DaemonError> {
    let files = images.tftp_files()?;
    let root = root.to_path_buf();
    let report = tokio::task::spawn_blocking(move || crate::tftp::root::materialize(&root, &files))
        .await
        .map_err(|e| crate::images::ImageError::Internal(e.to_string()))??;
    for name in &report.refused {
        tracing::warn!(name, "boot loader name cannot be a TFTP path; not served");
    }
    tracing::info!(
        linked = report.linked,
        copied = report.copied,
        unchanged = report.unchanged,
        removed = report.removed,
        "TFTP root refreshed from the boot resources"
    );
    Ok(())
}

/// Refreshes the TFTP root after every change to the boot resources, however it was made
/// (upload, fetch, sync, delete), until shutdown. A failed refresh is logged and retried at the
/// next change; what the root held before stays served.
async fn keep_tftp_root(
    images: Arc<crate::images::ImageCache>,
    root: std::path::PathBuf,
    mut changes: tokio::sync::watch::Receiver<u64>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        if let Err(error) = refresh_tftp_root(&images, &root).await {
            tracing::error!(%error, "cannot refresh the TFTP root; it keeps its previous files");
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Makes the first admin on an empty store. Its password comes from `auth.admin_password_file`,
/// or is generated, written to `<state_dir>/initial-admin-password` (0600) and printed once.
async fn bootstrap_admin(service: &Service, config: &Config) -> Result<(), DaemonError> {
    let from_file = match &config.auth.admin_password_file {
        Some(path) if path.exists() => Some(
            std::fs::read_to_string(path)
                .map_err(|source| DaemonError::PasswordFile {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        _ => None,
    };
    let generated = service
        .bootstrap_admin(&config.auth.admin_username, from_file)
        .await?;
    if let Some(password) = generated {
        let path = config.state_dir.join("initial-admin-password");
        write_secret_file(&path, &password)?;
        // Printed once, on the console, not through the log.
        let mut err = std::io::stderr();
        let _ = writeln!(
            err,
            "rackbox: created admin account {:?} with password: {password}\nrackbox: (also saved in {}; change it with `rackbox user passwd`)",
            config.auth.admin_username,
            path.display()
        );
    }
    Ok(())
}

fn write_secret_file(path: &Path, text: &str) -> Result<(), DaemonError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| DaemonError::StateFile {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(format!("{text}\n").as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Pings systemd's watchdog while the store's writer still answers and its database is open: a
/// full disk (the writer answers, a restart would not help) keeps the pings going, a database
/// that could not be reopened after an I/O error stops them, so systemd restarts rackbox.
async fn watchdog(store: Store, shutdown: impl std::future::Future<Output = ()>) {
    let Some(timeout) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (timeout / 2).max(Duration::from_millis(100));
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let alive =
            tokio::time::timeout(period, store.write_essential(|_| Ok::<(), StoreError>(()))).await;
        let failed = matches!(store.state(), crate::store::StoreState::Failed { .. });
        match alive {
            Ok(Ok(())) | Ok(Err(StoreError::DiskFull { .. })) if !failed => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ => tracing::error!(
                state = ?store.state(),
                "store writer did not answer or its database is closed; withholding the watchdog ping"
            ),
        }
    }
}

/// The boot subnets as deployed machines' links use them: every served subnet with its DHCP
/// pool, reserved ranges and this host's own addresses on it out of reach of static links.
fn subnet_plans(boot: &crate::config::BootConfig) -> Vec<crate::model::network::SubnetPlan> {
    let mut plans = Vec::new();
    for iface in boot
        .interfaces
        .iter()
        .filter(|i| i.mode != crate::config::BootMode::Off)
    {
        let own: Vec<std::net::Ipv4Addr> = crate::net::interface_info(&iface.name)
            .map(|info| info.addresses.iter().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        for s in &iface.subnets {
            let mut unavailable: Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)> = s
                .dynamic_ranges
                .iter()
                .chain(&s.reserved_ranges)
                .map(|r| (r.start, r.end))
                .collect();
            unavailable.extend(
                own.iter()
                    .filter(|a| s.cidr.contains(**a))
                    .map(|a| (*a, *a)),
            );
            plans.push(crate::model::network::SubnetPlan {
                cidr: s.cidr.to_string(),
                network: s.cidr.network(),
                prefix: s.cidr.prefix(),
                gateway: s.gateway,
                dns: s.dns_servers.clone(),
                domain: s.domain.clone(),
                unavailable,
            });
        }
    }
    plans
}
