//! The command-line client driven against a real `rackbox serve` on loopback.

mod common;

use std::process::{Command, Output};

use common::{ADMIN_PASSWORD, Daemon};
use rackbox::model::Status;

/// Runs `rackbox ARGS` with its config in `home` (so `login` saves there).
fn rackbox(home: &std::path::Path, url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(common::rackbox_bin())
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("RACKBOX_URL", url)
        .env_remove("RACKBOX_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn cli_drives_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut big = common::machine("big222", Status::Ready, 32, 131072);
    big.tags.insert("gpu".into());
    common::seed(
        &state,
        vec![common::machine("sml222", Status::Ready, 4, 8192), big],
    );
    let daemon = Daemon::start_in(&state, "");
    let home = dir.path().join("home");
    let url = daemon.url.as_str();

    // Without a token: one clear line, non-zero exit.
    let out = rackbox(&home, url, &["machine", "list"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("HTTP 401") && err.lines().count() == 1,
        "{err}"
    );

    // Log in with the password on stdin; the token is saved for the next commands.
    let text = ok(&rackbox(
        &home,
        url,
        &["login", "--username", "admin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    ));
    assert!(text.contains("logged in as admin"), "{text}");
    let saved = std::fs::read_to_string(home.join("rackbox/cli.toml")).unwrap();
    assert!(saved.contains("rbx_"));
    assert!(ok(&rackbox(&home, url, &["whoami"], None)).contains("admin"));

    // A table for people.
    let table = ok(&rackbox(&home, url, &["machine", "list"], None));
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("SYSTEM_ID") && header.contains("STATUS"),
        "{table}"
    );
    assert!(
        table.contains("big222") && table.contains("sml222") && table.contains("Ready"),
        "{table}"
    );

    // JSON for scripts.
    let json: serde_json::Value = serde_json::from_str(&ok(&rackbox(
        &home,
        url,
        &["--json", "machine", "list"],
        None,
    )))
    .unwrap();
    assert_eq!(json["total"], 2);

    // Interface links: dhcp and link-up need no boot subnet; auto names one, and this rackbox
    // has no boot network, so it is refused with why.
    let links = ok(&rackbox(
        &home,
        url,
        &["machine", "link", "sml222", "eth0", "dhcp"],
        None,
    ));
    assert!(
        links
            .lines()
            .next()
            .unwrap_or_default()
            .starts_with("INTERFACE")
            && links.contains("eth0")
            && links.contains("dhcp"),
        "{links}"
    );
    let out = rackbox(
        &home,
        url,
        &[
            "machine",
            "link",
            "sml222",
            "eth0",
            "auto",
            "--subnet",
            "192.0.2.0/24",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a subnet of the boot network"), "{err}");
    let links = ok(&rackbox(
        &home,
        url,
        &["machine", "unlink", "sml222", "eth0"],
        None,
    ));
    assert!(!links.contains("dhcp"), "{links}");

    // Add a machine: with no power driver it stays New.
    let added: serde_json::Value = serde_json::from_str(&ok(&rackbox(
        &home,
        url,
        &[
            "--json",
            "machine",
            "add",
            "--mac",
            "52:54:00:0a:0b:0c",
            "--hostname",
            "web1",
            "--tag",
            "edge",
        ],
        None,
    )))
    .unwrap();
    assert_eq!(added["status"], "new");
    let id = added["system_id"].as_str().unwrap().to_string();
    assert!(ok(&rackbox(&home, url, &["machine", "show", &id], None)).contains("web1"));

    // Allocation picks the smallest fit, and a constraint nothing meets is a clear error.
    let got: serde_json::Value = serde_json::from_str(&ok(&rackbox(
        &home,
        url,
        &["--json", "machine", "allocate", "--cpu", "2"],
        None,
    )))
    .unwrap();
    assert_eq!(got["system_id"], "sml222");
    let out = rackbox(&home, url, &["machine", "allocate", "--tag", "fpga"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tags=fpga"));

    // Deploy with user data, then an invalid action names the status.
    let ud = dir.path().join("user-data");
    std::fs::write(&ud, "#cloud-config\nhostname: x\n").unwrap();
    let shown = ok(&rackbox(
        &home,
        url,
        &[
            "machine",
            "deploy",
            "sml222",
            "--user-data-file",
            ud.to_str().unwrap(),
        ],
        None,
    ));
    assert!(shown.contains("Deploying"), "{shown}");
    let out = rackbox(&home, url, &["machine", "commission", "sml222"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Deploying"));
    let out = ok(&rackbox(&home, url, &["machine", "abort", "sml222"], None));
    assert!(out.contains("Allocated"), "{out}");
    let out = ok(&rackbox(
        &home,
        url,
        &["machine", "release", "sml222", "--erase", "quick"],
        None,
    ));
    assert!(out.contains("Disk erasing"), "{out}");
    let tests = ok(&rackbox(
        &home,
        url,
        &["machine", "test-results", "big222"],
        None,
    ));
    assert_eq!(tests.trim(), "big222: no test results yet");
    let timeline = ok(&rackbox(
        &home,
        url,
        &["machine", "timeline", "big222"],
        None,
    ));
    assert_eq!(
        timeline.trim(),
        "big222: no network boot seen since rackbox started"
    );
    // Firmware asks for big222's script (a Ready machine boots its disk): now it is a step.
    let mut http = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    std::io::Write::write_all(
        &mut http,
        format!(
            "GET /boot/{}.ipxe HTTP/1.0\r\n\r\n",
            common::mac_for("big222")
        )
        .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut http, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let timeline = ok(&rackbox(
        &home,
        url,
        &["machine", "timeline", "big222"],
        None,
    ));
    assert!(
        timeline.contains("current boot of")
            && timeline.contains("iPXE script")
            && timeline.contains("boot the local disk"),
        "{timeline}"
    );
    let events = ok(&rackbox(&home, url, &["machine", "events", "sml222"], None));
    for action in ["allocate", "deploy", "abort", "release"] {
        assert!(events.contains(action), "{action} in {events}");
    }

    // Leases: none yet (network boot is off here), but the table is there.
    let leases = ok(&rackbox(&home, url, &["lease", "list"], None));
    assert!(
        leases.starts_with("IP") && leases.contains("MAC"),
        "{leases}"
    );

    // Users, keys, tokens, zones.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "carol-password\n").unwrap();
    ok(&rackbox(
        &home,
        url,
        &[
            "user",
            "add",
            "carol",
            "--password-file",
            pw.to_str().unwrap(),
        ],
        None,
    ));
    assert!(ok(&rackbox(&home, url, &["user", "list"], None)).contains("carol"));
    ok(&rackbox(
        &home,
        url,
        &[
            "sshkey",
            "add",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcarolkey000000 carol@x",
            "--user",
            "carol",
        ],
        None,
    ));
    assert!(
        ok(&rackbox(
            &home,
            url,
            &["sshkey", "list", "--user", "carol"],
            None
        ))
        .contains("carol@x")
    );
    let token = ok(&rackbox(
        &home,
        url,
        &[
            "token", "create", "--maas", "--user", "carol", "--name", "juju",
        ],
        None,
    ));
    assert_eq!(token.trim().split(':').count(), 3, "MAAS key form: {token}");
    assert!(ok(&rackbox(&home, url, &["token", "list"], None)).contains("maas"));
    ok(&rackbox(
        &home,
        url,
        &["zone", "add", "rack2", "--description", "second rack"],
        None,
    ));
    assert!(ok(&rackbox(&home, url, &["zone", "list"], None)).contains("second rack"));
    ok(&rackbox(
        &home,
        url,
        &[
            "machine",
            "edit",
            &id,
            "--zone",
            "rack2",
            "--add-tag",
            "blue",
        ],
        None,
    ));
    let out = rackbox(&home, url, &["zone", "delete", "rack2"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&id),
        "zone in use names the machine"
    );
    ok(&rackbox(&home, url, &["machine", "delete", &id], None));
    ok(&rackbox(&home, url, &["zone", "delete", "rack2"], None));

    // Piped into a reader that goes away (`| head`), the client ends quietly, without a panic.
    let mut child = Command::new(common::rackbox_bin())
        .args(["machine", "list"])
        .env("XDG_CONFIG_HOME", &home)
        .env("RACKBOX_URL", url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unreachable appliance is one clear line too.
    let out = rackbox(&home, "http://127.0.0.1:9", &["machine", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach rackbox at http://127.0.0.1:9"),
        "{err}"
    );
}
