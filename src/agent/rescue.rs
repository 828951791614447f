//! Rescue mode: the owner's way into the ephemeral environment. The agent writes the owner's
//! SSH keys to root's `authorized_keys`, makes an ed25519 host key with `dropbearkey` and runs
//! Debian's dropbear (in the ramdisk since scripts/build-ephemeral.sh put it there) on port 22,
//! keys only, no passwords. The agent stays up beside it and keeps asking the appliance for its
//! next task; leaving rescue mode powers the machine off.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the ramdisk keeps dropbear and dropbearkey (busybox's directory), then the places a
/// Debian system has them.
const BIN_DIRS: &[&str] = &["/bin", "/usr/sbin", "/usr/bin", "/sbin"];

/// How long dropbear may take to listen after it starts.
const LISTEN_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub(crate) enum RescueError {
    #[error(
        "the owner has no SSH keys, so nobody could log in: add one (rackbox sshkey add) and enter rescue mode again"
    )]
    NoKeys,
    #[error("SSH key {index} is not one line of an authorized_keys file")]
    BadKey { index: usize },
    #[error("{program} is not in the ephemeral environment (looked in {dirs})")]
    Missing { program: &'static str, dirs: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("dropbearkey could not make a host key: {0}")]
    HostKey(String),
    #[error("dropbear stopped at once ({0}); see the console for its words")]
    Exited(String),
    #[error("dropbear does not listen on port {port} after {secs} s")]
    NotListening { port: u16, secs: u64 },
}

/// The running SSH server.
pub(crate) struct Rescue {
    /// dropbear in the foreground (`-F`): the agent owns it and sees when it stops.
    child: tokio::process::Child,
    /// Root of the files the agent writes (`/` in the ramdisk).
    root: PathBuf,
    pub(crate) port: u16,
    /// The host key's fingerprint (`SHA256:...`), for the owner to check on first login.
    pub(crate) fingerprint: String,
    pub(crate) keys: usize,
}

impl Rescue {
    /// Whether dropbear is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Writes the owner's current keys (the owner may have added one since).
    pub(crate) fn update_keys(&mut self, keys: &[String]) -> Result<(), RescueError> {
        self.keys = write_authorized_keys(&self.root, keys)?;
        Ok(())
    }
}

fn find(program: &'static str) -> Result<PathBuf, RescueError> {
    BIN_DIRS
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| RescueError::Missing {
            program,
            dirs: BIN_DIRS.join(", "),
        })
}

/// The authorized_keys text: one key per line; blank keys dropped; a key with a line break in it
/// refused (it would smuggle in a second line, with options of its own).
pub(crate) fn authorized_keys(keys: &[String]) -> Result<String, RescueError> {
    let mut text = String::new();
    for (index, key) in keys.iter().enumerate() {
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        if key.contains(['\n', '\r', '\0']) {
            return Err(RescueError::BadKey { index });
        }
        text.push_str(key);
        text.push('\n');
    }
    if text.is_empty() {
        return Err(RescueError::NoKeys);
    }
    Ok(text)
}

/// Writes `<root>/root/.ssh/authorized_keys` (directory 0700, file 0600, replaced atomically).
/// Returns how many keys it holds.
pub(crate) fn write_authorized_keys(root: &Path, keys: &[String]) -> Result<usize, RescueError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let text = authorized_keys(keys)?;
    let dir = root.join("root/.ssh");
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| RescueError::Write { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(werr(&dir))?;
    // dropbear refuses keys under a directory others can write.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(werr(&dir))?;
    let file = dir.join("authorized_keys");
    let tmp = dir.join(".authorized_keys.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr(&tmp))?;
        f.write_all(text.as_bytes()).map_err(werr(&tmp))?;
        f.sync_all().map_err(werr(&tmp))?;
    }
    std::fs::rename(&tmp, &file).map_err(werr(&file))?;
    Ok(text.lines().count())
}

/// Makes the host key unless it exists; returns its fingerprint.
async fn host_key(root: &Path) -> Result<(PathBuf, String), RescueError> {
    let dropbearkey = find("dropbearkey")?;
    let dir = root.join("etc/dropbear");
    std::fs::create_dir_all(&dir).map_err(|source| RescueError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let key = dir.join("dropbear_ed25519_host_key");
    let run = |args: Vec<std::ffi::OsString>| {
        let program = dropbearkey.clone();
        async move {
            let out = tokio::process::Command::new(program)
                .args(args)
                .output()
                .await
                .map_err(|source| RescueError::Spawn {
                    program: "dropbearkey",
                    source,
                })?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(text)
            } else {
                Err(RescueError::HostKey(text.trim().to_string()))
            }
        }
    };
    if !key.is_file() {
        run(vec![
            "-t".into(),
            "ed25519".into(),
            "-f".into(),
            key.clone().into(),
        ])
        .await?;
    }
    let public = run(vec!["-y".into(), "-f".into(), key.clone().into()]).await?;
    let fingerprint = public
        .lines()
        .find_map(|l| l.strip_prefix("Fingerprint:"))
        .map(|f| f.trim().to_string())
        .unwrap_or_default();
    Ok((key, fingerprint))
}

/// Writes the keys, makes the host key and starts dropbear on `port`; returns once it listens.
pub async fn start(root: &Path, keys: &[String], port: u16) -> Result<Rescue, RescueError> {
    let count = write_authorized_keys(root, keys)?;
    let dropbear = find("dropbear")?;
    let (key, fingerprint) = host_key(root).await?;
    // -F foreground (the agent is its parent), -E log to stderr (the console), -s no password
    // logins, -m no message of the day.
    let mut child = tokio::process::Command::new(dropbear)
        .arg("-F")
        .arg("-E")
        .arg("-s")
        .arg("-m")
        .arg("-p")
        .arg(port.to_string())
        .arg("-r")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RescueError::Spawn {
            program: "dropbear",
            source,
        })?;
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(RescueError::Exited(status.to_string()));
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.start_kill();
            return Err(RescueError::NotListening {
                port,
                secs: LISTEN_WAIT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::info!(port, keys = count, %fingerprint, "rescue mode: dropbear listens");
    Ok(Rescue {
        child,
        root: root.to_path_buf(),
        port,
        fingerprint,
        keys: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_per_line_and_none_is_refused() {
        let keys = vec![
            " ssh-ed25519 AAAA a@b ".to_string(),
            String::new(),
            "ssh-rsa BBBB c@d".into(),
        ];
        assert_eq!(
            authorized_keys(&keys).expect("keys"),
            "ssh-ed25519 AAAA a@b\nssh-rsa BBBB c@d\n"
        );
        assert!(matches!(authorized_keys(&[]), Err(RescueError::NoKeys)));
        assert!(matches!(
            authorized_keys(&["  ".into()]),
            Err(RescueError::NoKeys)
        ));
        assert!(matches!(
            authorized_keys(&["ssh-ed25519 A\ncommand=\"x\" ssh-rsa B".into()]),
            Err(RescueError::BadKey { index: 0 })
        ));
    }

    #[test]
    fn authorized_keys_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let n = write_authorized_keys(dir.path(), &["ssh-ed25519 AAAA x".into()]).expect("write");
        assert_eq!(n, 1);
        let file = dir.path().join("root/.ssh/authorized_keys");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("root/.ssh")), 0o700);
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "ssh-ed25519 AAAA x\n"
        );
        // A second write replaces the keys.
        write_authorized_keys(dir.path(), &["ssh-rsa B y".into(), "ssh-rsa C z".into()])
            .expect("rewrite");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "ssh-rsa B y\nssh-rsa C z\n"
        );
    }
}
