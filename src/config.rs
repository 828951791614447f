//! Configuration: a TOML file (`--config`, on the appliance /etc/rackbox/rackbox.toml) or, with no
//! file, embedded defaults that work on a laptop. Unknown keys and bad values refuse to start with
//! an error that names the key. Every setting is documented in README.md.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::lifecycle::Deadlines;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database and other state live.
    pub state_dir: PathBuf,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub lifecycle: LifecycleConfig,
    pub store: StoreConfig,
    pub power: PowerConfig,
    pub images: ImagesConfig,
    /// Network boot: DHCP/proxyDHCP per boot interface. Off (no interfaces) by default.
    pub boot: BootConfig,
    /// The TFTP server for firmware's first stage (the boot loaders).
    pub tftp: TftpSection,
}

/// The `[tftp]` section. The served directory is not configurable: rackbox owns it (it is
/// `<images.dir>/tftp`, on the cache's file system so that its entries can be hard links to the
/// cache's blobs) and keeps in it exactly the boot loaders of the image cache.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TftpSection {
    /// Serve TFTP. Unset: on when any boot interface is `managed` or `proxy` (the firmware
    /// rackbox answers asks rackbox for its loader), off otherwise.
    pub enabled: Option<bool>,
    /// Address of the request socket. On a multi-homed appliance, the boot interface's address.
    pub listen: SocketAddr,
    /// Transfers at once; more get "server busy" and firmware retries.
    pub max_transfers: usize,
    /// Largest block size granted (RFC 2348); 1468 fills a 1500-byte frame.
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmission timeout in seconds when the client does not ask for one (RFC 2349).
    pub timeout: f64,
    /// Retransmissions in a row without progress before a transfer is abandoned.
    pub retries: u32,
    /// Largest retransmission timeout in seconds a client may ask for (RFC 2349); a larger
    /// one is not acknowledged and `timeout` applies.
    pub max_client_timeout: u64,
    /// Seconds without progress after which a transfer is abandoned, whatever its timeouts.
    pub stall_limit: f64,
}

impl Default for TftpSection {
    fn default() -> Self {
        let d = crate::tftp::TftpConfig::default();
        TftpSection {
            enabled: None,
            listen: d.listen,
            max_transfers: d.max_transfers,
            max_blksize: d.max_blksize,
            max_windowsize: d.max_windowsize,
            timeout: d.timeout.as_secs_f64(),
            retries: d.retries,
            max_client_timeout: d.max_client_timeout.as_secs(),
            stall_limit: d.stall_limit.as_secs_f64(),
        }
    }
}

impl TftpSection {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        use crate::tftp::options::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
        if self.max_transfers == 0 || self.max_transfers > 65_536 {
            return Err(("tftp.max_transfers", "must be between 1 and 65536".into()));
        }
        if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&self.max_blksize) {
            return Err((
                "tftp.max_blksize",
                format!(
                    "{} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} (RFC 2348)",
                    self.max_blksize
                ),
            ));
        }
        if self.max_windowsize == 0 {
            return Err((
                "tftp.max_windowsize",
                "must be between 1 and 65535 (RFC 7440)".into(),
            ));
        }
        // RFC 2349 timeouts are 1-255 s; a sub-second default is allowed for fast links.
        if !(self.timeout > 0.0 && self.timeout <= 255.0) {
            return Err((
                "tftp.timeout",
                format!(
                    "{} must be more than 0 and at most 255 seconds",
                    self.timeout
                ),
            ));
        }
        if self.retries == 0 || self.retries > 100 {
            return Err(("tftp.retries", "must be between 1 and 100".into()));
        }
        if !(1..=255).contains(&self.max_client_timeout) {
            return Err((
                "tftp.max_client_timeout",
                format!(
                    "{} must be between 1 and 255 seconds (RFC 2349)",
                    self.max_client_timeout
                ),
            ));
        }
        if !(self.stall_limit > self.timeout && self.stall_limit <= 3600.0) {
            return Err((
                "tftp.stall_limit",
                format!(
                    "{} must be longer than tftp.timeout ({}) and at most 3600 seconds",
                    self.stall_limit, self.timeout
                ),
            ));
        }
        Ok(())
    }
}

/// Power drivers and the power-state sync.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PowerConfig {
    /// How often every machine's BMC is asked for its power state.
    pub poll_interval_secs: u64,
    /// How many BMCs are asked at once.
    pub poll_concurrency: usize,
    /// Deadline of one power query.
    pub query_timeout_secs: u64,
}

impl Default for PowerConfig {
    fn default() -> Self {
        PowerConfig {
            poll_interval_secs: 60,
            poll_concurrency: 16,
            query_timeout_secs: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the API, boot files and control page.
    pub listen: SocketAddr,
    /// URL machines and clients use to reach rackbox, when it differs from `listen`
    /// (e.g. the boot interface's address). Used in iPXE scripts and MAAS describe/.
    pub public_url: Option<String>,
    /// The longest a client may take to send a request's headers, and the longest a kept-alive
    /// connection may wait idle for its next request; then the connection is closed. Never
    /// applies while a body or an answer (a long image download) is flowing.
    pub header_read_timeout_secs: u64,
    /// A request body (an upload) that sends nothing for this long is abandoned.
    pub body_idle_timeout_secs: u64,
    /// Connections served at once; beyond it a new connection is answered 503 and closed.
    pub max_connections: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Name of the admin account made on first start.
    pub admin_username: String,
    /// File holding the first admin's password. When unset (or missing), a password is generated,
    /// printed once on standard error and written to `<state_dir>/initial-admin-password` (mode 0600).
    pub admin_password_file: Option<PathBuf>,
    /// Password hashes (argon2, 19 MiB each) computed at once; each slot keeps its memory.
    pub login_hash_slots: usize,
    /// Logins that may wait for a hashing slot; more are answered 503 at once.
    pub login_hash_queue: usize,
    /// The longest a login waits for a hashing slot before it is answered 503.
    pub login_hash_wait_secs: u64,
    /// Login attempts for one user name before each further one is delayed (1 s, 2 s, 4 s...).
    pub login_free_failures_per_user: u32,
    /// Login attempts from one address (IPv6: per /64) before each further one is delayed.
    pub login_free_failures_per_source: u32,
    /// The longest delay between two login attempts once they are delayed.
    pub login_max_delay_secs: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "rackbox=debug". RUST_LOG overrides it.
    pub level: String,
    /// "auto" (journald when present, else stderr), "journald" or "stderr".
    pub target: String,
}

/// How long each in-progress status may last, in seconds, before the machine fails with a reason.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    pub commissioning_timeout_secs: u64,
    pub testing_timeout_secs: u64,
    pub deploying_timeout_secs: u64,
    pub releasing_timeout_secs: u64,
    pub disk_erasing_timeout_secs: u64,
    pub rescue_timeout_secs: u64,
    /// How often the reconciler looks for machines past their deadline.
    pub reconcile_interval_secs: u64,
    /// Unknown machines that network-boot are enlisted as New (else told to boot locally).
    pub enlistment: bool,
    /// Enlisted machines start commissioning at once.
    pub commission_enlisted: bool,
    /// The largest inventory `/api/agent/v1/enlist` (anonymous) and `/inventory` take, in KiB.
    pub enlist_max_inventory_kib: u64,
    /// Enlistments one source address may make at once...
    pub enlist_burst: u32,
    /// ...and then one more every this many seconds.
    pub enlist_interval_secs: u64,
    /// No machine is enlisted while this many machines are New.
    pub enlist_max_new: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// At most this many writes share one fsync'd transaction (group commit). 1 = one commit each.
    pub max_batch: usize,
    /// MiB kept free on the state disk (a reserve file) for logins, deletes and the appliance's
    /// own records when the disk fills up; 0 keeps none.
    pub reserve_mib: u64,
}

/// The image cache (deployable images and boot resources).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// The cache directory; on the appliance its own partition, /var/lib/rackbox/images.
    /// Default: `<state_dir>/images`.
    pub dir: Option<PathBuf>,
    /// MiB always left free on the cache's file system: imports stop before eating into it.
    pub reserve_mib: u64,
    /// A download giving up after this many attempts in a row that gain no byte.
    pub fetch_attempts: u32,
    /// A download that receives nothing for this long is cut and resumed with Range.
    pub fetch_read_timeout_secs: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            dir: None,
            reserve_mib: 64,
            fetch_attempts: 5,
            fetch_read_timeout_secs: 60,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("./rackbox-data"),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            lifecycle: LifecycleConfig::default(),
            store: StoreConfig::default(),
            power: PowerConfig::default(),
            images: ImagesConfig::default(),
            boot: BootConfig::default(),
            tftp: TftpSection::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5240)),
            public_url: None,
            header_read_timeout_secs: 10,
            body_idle_timeout_secs: 60,
            max_connections: 1024,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_username: "admin".into(),
            admin_password_file: None,
            login_hash_slots: 2,
            login_hash_queue: 32,
            login_hash_wait_secs: 5,
            login_free_failures_per_user: 5,
            login_free_failures_per_source: 20,
            login_max_delay_secs: 60,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            target: "auto".into(),
        }
    }
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        let d = Deadlines::default();
        let e = crate::service::EnlistOptions::default();
        LifecycleConfig {
            commissioning_timeout_secs: d.commissioning_ms / 1000,
            testing_timeout_secs: d.testing_ms / 1000,
            deploying_timeout_secs: d.deploying_ms / 1000,
            releasing_timeout_secs: d.releasing_ms / 1000,
            disk_erasing_timeout_secs: d.disk_erasing_ms / 1000,
            rescue_timeout_secs: d.rescue_ms / 1000,
            reconcile_interval_secs: 5,
            enlistment: true,
            commission_enlisted: false,
            enlist_max_inventory_kib: (e.max_inventory_bytes / 1024) as u64,
            enlist_burst: e.burst,
            enlist_interval_secs: e.interval.as_secs(),
            enlist_max_new: e.max_new,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_batch: 512,
            reserve_mib: crate::store::reserve::DEFAULT_BYTES >> 20,
        }
    }
}

/// Network boot: which interfaces rackbox answers DHCP on, and what it hands out.
/// See docs/config-boot.md.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// Interfaces facing the machines' boot network. Empty: network boot is off.
    pub interfaces: Vec<BootInterface>,
    /// Boot file for legacy BIOS PXE (option 93 = 0), fetched over TFTP.
    pub bios_loader: String,
    /// Boot file for UEFI PXE on x86 (option 93 = 6, 7 or 9), fetched over TFTP.
    pub uefi_loader: String,
    /// Boot file for UEFI PXE on ARM64 (option 93 = 11). Unset: ARM64 PXE clients get no boot file.
    pub arm64_loader: Option<String>,
    /// Folder under `http.public_url` from which UEFI HTTP boot clients (15/16, and 19 when
    /// `arm64_loader` is set) download their loader: they get
    /// `{public_url}/{http_loader_dir}/{uefi_loader or arm64_loader}` as a full URL.
    pub http_loader_dir: String,
    /// How long an address stays out of the pool after a client declined it (it is in use by
    /// something rackbox does not know).
    pub decline_quarantine_secs: u64,
    /// How long an offered address is held for the client that was offered it.
    pub offer_hold_secs: u64,
}

/// One boot interface.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootInterface {
    /// The interface name, e.g. "eth1". It must exist when rackbox starts.
    pub name: String,
    /// `managed`: rackbox is the DHCP server; `proxy`: another server gives addresses and rackbox
    /// adds only the boot information (proxyDHCP); `off`: nothing is answered.
    #[serde(default = "default_mode")]
    pub mode: BootMode,
    /// The subnets served on this interface (directly attached, or behind DHCP relays).
    /// Needed in `managed` mode; ignored in `proxy` mode.
    #[serde(default)]
    pub subnets: Vec<BootSubnet>,
}

fn default_mode() -> BootMode {
    BootMode::Managed
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Managed,
    Proxy,
    Off,
}

/// A subnet rackbox hands out addresses in.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootSubnet {
    /// The network, e.g. "192.0.2.0/24".
    pub cidr: crate::net::Cidr,
    /// Default router (option 3).
    #[serde(default)]
    pub gateway: Option<std::net::Ipv4Addr>,
    /// Option 6.
    #[serde(default)]
    pub dns_servers: Vec<std::net::Ipv4Addr>,
    /// Option 42.
    #[serde(default)]
    pub ntp_servers: Vec<std::net::Ipv4Addr>,
    /// Option 15.
    #[serde(default)]
    pub domain: Option<String>,
    /// Addresses handed out to clients, `[{ start = "...", end = "..." }]`.
    pub dynamic_ranges: Vec<crate::net::Ipv4Range>,
    /// Addresses inside the dynamic ranges that are never handed out (static hosts, BMCs).
    #[serde(default)]
    pub reserved_ranges: Vec<crate::net::Ipv4Range>,
    /// Lease time (option 51). Short, as MAAS does: firmware and ramdisks only need the address
    /// for minutes, and a short lease gives the pool back quickly.
    #[serde(default = "default_lease_time")]
    pub lease_time_secs: u32,
}

fn default_lease_time() -> u32 {
    600
}

impl Default for BootConfig {
    fn default() -> Self {
        BootConfig {
            interfaces: Vec::new(),
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "snponly.efi".into(),
            arm64_loader: None,
            http_loader_dir: "boot".into(),
            decline_quarantine_secs: 600,
            offer_hold_secs: 60,
        }
    }
}

/// Largest dynamic pool per subnet: the allocator scans the pool in memory.
const MAX_POOL: u64 = 1 << 16;

impl BootConfig {
    /// Checks the boot section; an error names the key and, in the message, the interface and
    /// subnet it is about.
    fn validate(&self, public_url: &str) -> Result<(), (&'static str, String)> {
        for (key, name) in [
            ("boot.bios_loader", Some(&self.bios_loader)),
            ("boot.uefi_loader", Some(&self.uefi_loader)),
            ("boot.arm64_loader", self.arm64_loader.as_ref()),
        ] {
            if let Some(name) = name
                && (name.is_empty() || name.len() > 127)
            {
                return Err((
                    key,
                    format!(
                        "{name:?} must be 1 to 127 bytes long (it goes in the BOOTP file field)"
                    ),
                ));
            }
        }
        let url = format!(
            "{public_url}/{}/{}",
            self.http_loader_dir.trim_matches('/'),
            self.uefi_loader
        );
        if url.len() > 255 || self.http_loader_dir.contains(char::is_whitespace) {
            return Err((
                "boot.http_loader_dir",
                format!("{url:?} must be a URL of at most 255 bytes"),
            ));
        }
        if self.decline_quarantine_secs == 0 {
            return Err((
                "boot.decline_quarantine_secs",
                "must be at least 1 second".into(),
            ));
        }
        if self.offer_hold_secs == 0 || self.offer_hold_secs > 3600 {
            return Err((
                "boot.offer_hold_secs",
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut all_subnets: Vec<(&str, &BootSubnet)> = Vec::new();
        for iface in &self.interfaces {
            let name = iface.name.as_str();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err((
                    "boot.interfaces.name",
                    format!("{name:?} is not an interface name"),
                ));
            }
            if !names.insert(name) {
                return Err((
                    "boot.interfaces.name",
                    format!("interface {name:?} is listed twice"),
                ));
            }
            if iface.mode == BootMode::Off {
                continue;
            }
            if crate::net::interface_index(name).is_err() {
                return Err((
                    "boot.interfaces.name",
                    format!("interface {name:?} does not exist on this machine (see `ip link`)"),
                ));
            }
            if iface.mode == BootMode::Managed && iface.subnets.is_empty() {
                return Err((
                    "boot.interfaces.subnets",
                    format!("interface {name:?} is in managed mode and needs at least one subnet"),
                ));
            }
            for subnet in &iface.subnets {
                subnet.validate(name)?;
                if let Some((other, o)) = all_subnets
                    .iter()
                    .find(|(_, o)| o.cidr.overlaps(&subnet.cidr))
                {
                    return Err((
                        "boot.interfaces.subnets.cidr",
                        format!(
                            "subnet {} of interface {name:?} overlaps subnet {} of interface {other:?}",
                            subnet.cidr, o.cidr
                        ),
                    ));
                }
                all_subnets.push((name, subnet));
            }
        }
        Ok(())
    }
}

impl BootSubnet {
    fn validate(&self, iface: &str) -> Result<(), (&'static str, String)> {
        let cidr = self.cidr;
        let at = format!("interface {iface:?}, subnet {cidr}");
        if let Some(gw) = self.gateway
            && !cidr.contains(gw)
        {
            return Err((
                "boot.interfaces.subnets.gateway",
                format!("{at}: gateway {gw} is outside the subnet"),
            ));
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty()
                || domain.len() > 253
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err((
                "boot.interfaces.subnets.domain",
                format!("{at}: {domain:?} is not a domain name"),
            ));
        }
        if self.lease_time_secs < 10 {
            return Err((
                "boot.interfaces.subnets.lease_time_secs",
                format!("{at}: must be at least 10 seconds"),
            ));
        }
        if self.dynamic_ranges.is_empty() {
            return Err((
                "boot.interfaces.subnets.dynamic_ranges",
                format!("{at}: needs at least one range to hand out"),
            ));
        }
        let mut pool = 0u64;
        for (key, ranges) in [
            (
                "boot.interfaces.subnets.dynamic_ranges",
                &self.dynamic_ranges,
            ),
            (
                "boot.interfaces.subnets.reserved_ranges",
                &self.reserved_ranges,
            ),
        ] {
            for (i, r) in ranges.iter().enumerate() {
                if r.start > r.end {
                    return Err((key, format!("{at}: range {r} starts after it ends")));
                }
                if !cidr.contains(r.start) || !cidr.contains(r.end) {
                    return Err((key, format!("{at}: range {r} is outside the subnet")));
                }
                if cidr.prefix() < 31
                    && (r.contains(cidr.network()) || r.contains(cidr.broadcast()))
                {
                    return Err((
                        key,
                        format!("{at}: range {r} includes the network or broadcast address"),
                    ));
                }
                if let Some(other) = ranges[..i].iter().find(|o| o.overlaps(r)) {
                    return Err((key, format!("{at}: range {r} overlaps range {other}")));
                }
                if key.ends_with("dynamic_ranges") {
                    pool += r.len();
                    if let Some(gw) = self.gateway
                        && r.contains(gw)
                    {
                        return Err((key, format!("{at}: range {r} includes the gateway {gw}")));
                    }
                }
            }
        }
        if pool > MAX_POOL {
            return Err((
                "boot.interfaces.subnets.dynamic_ranges",
                format!(
                    "{at}: {pool} addresses is more than the {MAX_POOL} one subnet can hand out"
                ),
            ));
        }
        Ok(())
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl Config {
    /// Loads `path`, or the embedded defaults when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        // toml's messages name the key, the line and what was expected.
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Whether the config file names the boot interfaces itself: then the operator set the
    /// network up by hand and the first-boot setup does not ask.
    pub fn boot_from_file(&self) -> bool {
        !self.boot.interfaces.is_empty()
    }

    /// This configuration with the boot interfaces the first-boot setup chose
    /// (`[[boot.interfaces]]` TOML, the file's own form), checked as the file is. The file wins:
    /// when it names interfaces, the setup's are not used.
    pub fn with_setup_boot(&self, interfaces_toml: &str) -> Result<Config, ConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Chosen {
            boot: ChosenBoot,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ChosenBoot {
            interfaces: Vec<BootInterface>,
        }
        if self.boot_from_file() {
            return Ok(self.clone());
        }
        let source = Path::new("(the first-boot setup's boot network)");
        let chosen: Chosen = toml::from_str(interfaces_toml).map_err(|e| ConfigError::Parse {
            path: source.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        let mut config = self.clone();
        config.boot.interfaces = chosen.boot.interfaces;
        config.validate(source)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid("state_dir", "must not be empty".into()));
        }
        if let Some(url) = &self.http.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "http.public_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        let h = &self.http;
        if !(1..=3600).contains(&h.header_read_timeout_secs) {
            return Err(invalid(
                "http.header_read_timeout_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=3600).contains(&h.body_idle_timeout_secs) {
            return Err(invalid(
                "http.body_idle_timeout_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=65_536).contains(&h.max_connections) {
            return Err(invalid(
                "http.max_connections",
                "must be between 1 and 65536 (and below the open-files limit)".into(),
            ));
        }
        let a = &self.auth;
        for (key, v, max) in [
            ("auth.login_hash_slots", a.login_hash_slots as u64, 64),
            ("auth.login_hash_queue", a.login_hash_queue as u64, 65_536),
            ("auth.login_hash_wait_secs", a.login_hash_wait_secs, 600),
            ("auth.login_max_delay_secs", a.login_max_delay_secs, 86_400),
        ] {
            let min = u64::from(key != "auth.login_hash_queue");
            if !(min..=max).contains(&v) {
                return Err(invalid(key, format!("must be between {min} and {max}")));
            }
        }
        for (key, v) in [
            (
                "auth.login_free_failures_per_user",
                a.login_free_failures_per_user,
            ),
            (
                "auth.login_free_failures_per_source",
                a.login_free_failures_per_source,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if crate::model::ids::check_name("user", &self.auth.admin_username).is_err() {
            return Err(invalid(
                "auth.admin_username",
                format!("{:?} is not a valid user name", self.auth.admin_username),
            ));
        }
        if !matches!(self.log.target.as_str(), "auto" | "journald" | "stderr") {
            return Err(invalid(
                "log.target",
                format!(
                    "{:?} must be one of auto, journald, stderr",
                    self.log.target
                ),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a tracing filter (try \"info\" or \"rackbox=debug\")",
                    self.log.level
                ),
            ));
        }
        let l = &self.lifecycle;
        for (key, v) in [
            (
                "lifecycle.commissioning_timeout_secs",
                l.commissioning_timeout_secs,
            ),
            ("lifecycle.testing_timeout_secs", l.testing_timeout_secs),
            ("lifecycle.deploying_timeout_secs", l.deploying_timeout_secs),
            ("lifecycle.releasing_timeout_secs", l.releasing_timeout_secs),
            (
                "lifecycle.disk_erasing_timeout_secs",
                l.disk_erasing_timeout_secs,
            ),
            ("lifecycle.rescue_timeout_secs", l.rescue_timeout_secs),
            (
                "lifecycle.reconcile_interval_secs",
                l.reconcile_interval_secs,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1 second".into()));
            }
        }
        if !(1..=64 * 1024).contains(&l.enlist_max_inventory_kib) {
            return Err(invalid(
                "lifecycle.enlist_max_inventory_kib",
                "must be between 1 and 65536 KiB".into(),
            ));
        }
        if !(1..=1000).contains(&l.enlist_burst) {
            return Err(invalid(
                "lifecycle.enlist_burst",
                "must be between 1 and 1000".into(),
            ));
        }
        if !(1..=86_400).contains(&l.enlist_interval_secs) {
            return Err(invalid(
                "lifecycle.enlist_interval_secs",
                "must be between 1 and 86400 seconds".into(),
            ));
        }
        if l.enlist_max_new == 0 {
            return Err(invalid(
                "lifecycle.enlist_max_new",
                "must be at least 1 (to enlist nothing, set lifecycle.enlistment = false)".into(),
            ));
        }
        if self.power.poll_concurrency == 0 {
            return Err(invalid(
                "power.poll_concurrency",
                "must be at least 1".into(),
            ));
        }
        if self.store.max_batch == 0 || self.store.max_batch > 65_536 {
            return Err(invalid(
                "store.max_batch",
                "must be between 1 and 65536".into(),
            ));
        }
        if self.store.reserve_mib > 4096 {
            return Err(invalid(
                "store.reserve_mib",
                "must be at most 4096 (MiB)".into(),
            ));
        }
        if let Some(dir) = &self.images.dir
            && dir.as_os_str().is_empty()
        {
            return Err(invalid("images.dir", "must not be empty".into()));
        }
        if self.images.fetch_attempts == 0 {
            return Err(invalid(
                "images.fetch_attempts",
                "must be at least 1".into(),
            ));
        }
        if self.images.fetch_read_timeout_secs == 0 {
            return Err(invalid(
                "images.fetch_read_timeout_secs",
                "must be at least 1 second".into(),
            ));
        }
        self.tftp
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        self.boot
            .validate(&self.public_url())
            .map_err(|(key, message)| invalid(key, message))
    }

    /// Whether `rackbox serve` runs the TFTP server: as configured, else when rackbox answers
    /// network-boot DHCP on any interface.
    pub fn tftp_enabled(&self) -> bool {
        self.tftp.enabled.unwrap_or_else(|| {
            self.boot
                .interfaces
                .iter()
                .any(|i| matches!(i.mode, BootMode::Managed | BootMode::Proxy))
        })
    }

    /// The directory TFTP serves, kept by the daemon: `<images.dir>/tftp`.
    pub fn tftp_root(&self) -> PathBuf {
        self.images_dir().join("tftp")
    }

    /// The TFTP server's settings, from `[tftp]`.
    pub fn tftp_config(&self) -> crate::tftp::TftpConfig {
        let t = &self.tftp;
        crate::tftp::TftpConfig {
            listen: t.listen,
            root: self.tftp_root(),
            max_transfers: t.max_transfers,
            max_blksize: t.max_blksize,
            max_windowsize: t.max_windowsize,
            // validate() keeps it in (0, 255]; the fallback is never taken.
            timeout: std::time::Duration::try_from_secs_f64(t.timeout)
                .unwrap_or(std::time::Duration::from_secs(2)),
            retries: t.retries,
            max_client_timeout: std::time::Duration::from_secs(t.max_client_timeout),
            // validate() keeps it above `timeout`; the fallback is never taken.
            stall_limit: std::time::Duration::try_from_secs_f64(t.stall_limit)
                .unwrap_or(std::time::Duration::from_secs(15)),
        }
    }

    /// The image cache's directory.
    pub fn images_dir(&self) -> PathBuf {
        self.images
            .dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("images"))
    }

    /// The image cache's options, from `[images]`.
    pub fn cache_options(&self) -> crate::images::CacheOptions {
        crate::images::CacheOptions {
            dir: self.images_dir(),
            reserve_bytes: self.images.reserve_mib.saturating_mul(1 << 20),
            fetch_attempts: self.images.fetch_attempts,
            read_timeout: std::time::Duration::from_secs(self.images.fetch_read_timeout_secs),
        }
    }

    /// The deadlines of the life cycle, from the timeouts.
    pub fn deadlines(&self) -> Deadlines {
        let l = &self.lifecycle;
        Deadlines {
            commissioning_ms: l.commissioning_timeout_secs * 1000,
            testing_ms: l.testing_timeout_secs * 1000,
            deploying_ms: l.deploying_timeout_secs * 1000,
            releasing_ms: l.releasing_timeout_secs * 1000,
            disk_erasing_ms: l.disk_erasing_timeout_secs * 1000,
            rescue_ms: l.rescue_timeout_secs * 1000,
        }
    }

    /// Enlistment and its bounds, from `[lifecycle]`.
    pub fn enlist_options(&self) -> crate::service::EnlistOptions {
        let l = &self.lifecycle;
        crate::service::EnlistOptions {
            enabled: l.enlistment,
            commission: l.commission_enlisted,
            // validate() keeps it at most 64 MiB.
            max_inventory_bytes: usize::try_from(l.enlist_max_inventory_kib * 1024)
                .unwrap_or(usize::MAX),
            burst: l.enlist_burst,
            interval: std::time::Duration::from_secs(l.enlist_interval_secs),
            max_new: l.enlist_max_new,
        }
    }

    /// How password logins are bounded (`[auth]` `login_*`).
    pub fn login_options(&self) -> crate::service::LoginOptions {
        let a = &self.auth;
        crate::service::LoginOptions {
            hash_slots: a.login_hash_slots,
            hash_queue: a.login_hash_queue,
            hash_wait: std::time::Duration::from_secs(a.login_hash_wait_secs),
            free_failures_per_user: a.login_free_failures_per_user,
            free_failures_per_source: a.login_free_failures_per_source,
            max_delay: std::time::Duration::from_secs(a.login_max_delay_secs),
        }
    }

    /// The bounds on HTTP connections (`[http]`).
    pub fn http_limits(&self) -> crate::http::serve::Limits {
        let h = &self.http;
        crate::http::serve::Limits {
            header_read_timeout: std::time::Duration::from_secs(h.header_read_timeout_secs),
            body_idle_timeout: std::time::Duration::from_secs(h.body_idle_timeout_secs),
            max_connections: h.max_connections,
        }
    }

    /// The database file.
    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("rackbox.redb")
    }

    /// The base URL machines and clients use.
    pub fn public_url(&self) -> String {
        self.http
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.http.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_defaults() {
        let c = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:5240");
    }

    #[test]
    fn enlistment_bounds_have_defaults_and_can_be_set() {
        let d = Config::default().enlist_options();
        assert_eq!(
            (
                d.max_inventory_bytes,
                d.burst,
                d.interval.as_secs(),
                d.max_new
            ),
            (256 * 1024, 5, 10, 256)
        );
        let c = Config::parse(
            "[lifecycle]\nenlist_max_inventory_kib = 64\nenlist_burst = 2\nenlist_interval_secs = 60\nenlist_max_new = 3\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let o = c.enlist_options();
        assert_eq!(
            (
                o.max_inventory_bytes,
                o.burst,
                o.interval.as_secs(),
                o.max_new
            ),
            (64 * 1024, 2, 60, 3)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[http]\nlisten = \"nonsense\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = Config::parse("[http]\nlistn = \"1.2.3.4:5\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::parse("[log]\ntarget = \"syslog\"\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("log.target"), "{e}");
        let e = Config::parse(
            "[lifecycle]\ndeploying_timeout_secs = 0\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("lifecycle.deploying_timeout_secs"),
            "{e}"
        );
        for (text, key) in [
            (
                "enlist_max_inventory_kib = 0",
                "lifecycle.enlist_max_inventory_kib",
            ),
            (
                "enlist_max_inventory_kib = 65537",
                "lifecycle.enlist_max_inventory_kib",
            ),
            ("enlist_burst = 0", "lifecycle.enlist_burst"),
            ("enlist_interval_secs = 0", "lifecycle.enlist_interval_secs"),
            ("enlist_max_new = 0", "lifecycle.enlist_max_new"),
            ("enlist_max_new = -1", "enlist_max_new"),
        ] {
            let e = Config::parse(&format!("[lifecycle]\n{text}\n"), Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = Config::parse("state_dir = 5\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("state_dir"), "{e}");
    }

    const BOOT: &str = r#"
[[boot.interfaces]]
name = "lo"
mode = "managed"
[[boot.interfaces.subnets]]
cidr = "192.0.2.0/24"
gateway = "192.0.2.254"
dns_servers = ["192.0.2.53"]
ntp_servers = ["192.0.2.123"]
domain = "maas"
dynamic_ranges = [{ start = "192.0.2.100", end = "192.0.2.199" }]
reserved_ranges = [{ start = "192.0.2.150", end = "192.0.2.155" }]
lease_time_secs = 600
"#;

    #[test]
    fn tftp_follows_the_boot_interfaces_unless_set() {
        let off = Config::default();
        assert!(!off.tftp_enabled(), "no boot interface: no TFTP");
        let c = Config::parse(BOOT, Path::new("x.toml")).unwrap();
        assert!(c.tftp_enabled(), "a managed interface turns TFTP on");
        let c = Config::parse(
            &format!("{BOOT}\n[tftp]\nenabled = false\n"),
            Path::new("x"),
        )
        .unwrap();
        assert!(!c.tftp_enabled());
        let c = Config::parse(
            "[tftp]\nenabled = true\nlisten = \"192.0.2.1:69\"\ntimeout = 1.5\nmax_windowsize = 8\n",
            Path::new("x"),
        )
        .unwrap();
        assert!(c.tftp_enabled());
        let t = c.tftp_config();
        assert_eq!(t.listen.to_string(), "192.0.2.1:69");
        assert_eq!(t.timeout, std::time::Duration::from_millis(1500));
        assert_eq!(t.max_windowsize, 8);
        assert_eq!(t.max_blksize, 1468);
        assert_eq!(t.root, c.images_dir().join("tftp"));
    }

    #[test]
    fn http_and_login_bounds_have_defaults_and_errors_name_the_key() {
        let c = Config::default();
        let (h, l) = (c.http_limits(), c.login_options());
        assert_eq!(
            (
                h.header_read_timeout.as_secs(),
                h.body_idle_timeout.as_secs(),
                h.max_connections
            ),
            (10, 60, 1024)
        );
        assert_eq!(
            (l.hash_slots, l.hash_queue, l.free_failures_per_user),
            (2, 32, 5)
        );
        let c = Config::parse(
            "[http]\nmax_connections = 50\n[auth]\nlogin_hash_slots = 4\nlogin_hash_queue = 0\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.http_limits().max_connections, 50);
        assert_eq!(
            (c.login_options().hash_slots, c.login_options().hash_queue),
            (4, 0)
        );
        for (text, key) in [
            ("[http]\nmax_connections = 0", "http.max_connections"),
            (
                "[http]\nheader_read_timeout_secs = 0",
                "http.header_read_timeout_secs",
            ),
            (
                "[http]\nbody_idle_timeout_secs = 0",
                "http.body_idle_timeout_secs",
            ),
            ("[auth]\nlogin_hash_slots = 0", "auth.login_hash_slots"),
            ("[auth]\nlogin_hash_slots = 65", "auth.login_hash_slots"),
            (
                "[auth]\nlogin_hash_wait_secs = 0",
                "auth.login_hash_wait_secs",
            ),
            (
                "[auth]\nlogin_free_failures_per_user = 0",
                "auth.login_free_failures_per_user",
            ),
            (
                "[auth]\nlogin_free_failures_per_source = 0",
                "auth.login_free_failures_per_source",
            ),
            (
                "[auth]\nlogin_max_delay_secs = 0",
                "auth.login_max_delay_secs",
            ),
        ] {
            let e = Config::parse(text, Path::new("x.toml")).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn tftp_errors_name_the_key() {
        for (text, key) in [
            ("listen = \"nowhere\"", "listen"),
            ("max_transfers = 0", "tftp.max_transfers"),
            ("max_blksize = 4", "tftp.max_blksize"),
            ("max_blksize = 65465", "tftp.max_blksize"),
            ("max_windowsize = 0", "tftp.max_windowsize"),
            ("timeout = 0", "tftp.timeout"),
            ("timeout = 300", "tftp.timeout"),
            ("retries = 0", "tftp.retries"),
            ("root = \"/srv/tftp\"", "root"),
            ("enabled = \"yes\"", "enabled"),
        ] {
            let e = Config::parse(&format!("[tftp]\n{text}\n"), Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn boot_section_parses_and_defaults_to_off() {
        assert!(Config::default().boot.interfaces.is_empty());
        let c = Config::parse(BOOT, Path::new("x.toml")).unwrap();
        let i = &c.boot.interfaces[0];
        assert_eq!(i.mode, BootMode::Managed);
        assert_eq!(i.subnets[0].cidr.to_string(), "192.0.2.0/24");
        assert_eq!(i.subnets[0].dynamic_ranges[0].len(), 100);
    }

    #[test]
    fn boot_errors_name_the_key() {
        let bad = |from: &str, to: &str, key: &str| {
            let text = BOOT.replace(from, to);
            let e = Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{from} -> {to}: {e}");
        };
        bad(
            "192.0.2.199\" }]\nreserved",
            "192.0.3.9\" }]\nreserved",
            "boot.interfaces.subnets.dynamic_ranges",
        );
        bad(
            r#"end = "192.0.2.199" }]"#,
            r#"end = "192.0.2.199" }, { start = "192.0.2.190", end = "192.0.2.200" }]"#,
            "overlaps",
        );
        bad(
            "name = \"lo\"",
            "name = \"rbx-no-such0\"",
            "boot.interfaces.name",
        );
        bad("mode = \"managed\"", "mode = \"sometimes\"", "mode");
        bad(
            "cidr = \"192.0.2.0/24\"",
            "cidr = \"192.0.2.1/24\"",
            "host bits",
        );
        bad(
            "gateway = \"192.0.2.254\"",
            "gateway = \"198.51.100.1\"",
            "boot.interfaces.subnets.gateway",
        );
        bad(
            "lease_time_secs = 600",
            "lease_time_secs = 1",
            "boot.interfaces.subnets.lease_time_secs",
        );
        bad(
            "lease_time_secs = 600",
            "lease_time_secs = 600\nbogus = 1",
            "bogus",
        );
        bad(
            r#"start = "192.0.2.150""#,
            r#"start = "10.0.0.1""#,
            "boot.interfaces.subnets.reserved_ranges",
        );
    }
}
