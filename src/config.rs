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
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Name of the admin account made on first start.
    pub admin_username: String,
    /// File holding the first admin's password. When unset (or missing), a password is generated,
    /// printed once on standard error and written to `<state_dir>/initial-admin-password` (mode 0600).
    pub admin_password_file: Option<PathBuf>,
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
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// At most this many writes share one fsync'd transaction (group commit). 1 = one commit each.
    pub max_batch: usize,
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
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5240)),
            public_url: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            admin_username: "admin".into(),
            admin_password_file: None,
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
        LifecycleConfig {
            commissioning_timeout_secs: d.commissioning_ms / 1000,
            testing_timeout_secs: d.testing_ms / 1000,
            deploying_timeout_secs: d.deploying_ms / 1000,
            releasing_timeout_secs: d.releasing_ms / 1000,
            disk_erasing_timeout_secs: d.disk_erasing_ms / 1000,
            rescue_timeout_secs: d.rescue_ms / 1000,
            reconcile_interval_secs: 5,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_batch: 512 }
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
        Ok(())
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
        let e = Config::parse("state_dir = 5\n", Path::new("x.toml")).unwrap_err();
        assert!(e.to_string().contains("state_dir"), "{e}");
    }
}
