//! Juju's MAAS provider against a real `rackbox serve`: the calls it makes at bootstrap and when
//! it adds and releases a machine, replayed with the same parameters through gomaasapi, the
//! library Juju is built on (tests/maas/juju/main.go, built against Debian's
//! golang-github-juju-gomaasapi-dev, which scripts/deps.d/juju.sh installs). gomaasapi decodes
//! and type-checks every answer the way Juju's client does; the machine's agent is played through
//! rackbox's own endpoints between the deploy and the release.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ADMIN_PASSWORD, Api, Daemon, machine};
use rackbox::model::Status;
use reqwest::Method;
use serde_json::{Value, json};

/// Builds the replay with Go in GOPATH mode over Debian's packaged sources.
fn build_replay() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("juju-replay");
    let gocode = Path::new("/usr/share/gocode/src/github.com/juju/gomaasapi");
    assert!(
        gocode.exists(),
        "gomaasapi is not installed ({} is missing): run `source scripts/deps.d/juju.sh` as root",
        gocode.display()
    );
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg("./tests/maas/juju")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env(
            "GOCACHE",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
        )
        .output()
        .expect("go runs (scripts/deps.d/juju.sh installs it)");
    assert!(
        built.status.success(),
        "building the Juju replay failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// Runs one phase of the replay; answers its output, after checking it passed.
fn phase(replay: &Path, name: &str, url: &str, key: &str, model: &str, daemon: &Daemon) -> String {
    let out = Command::new(replay)
        .args([name, url, key, model])
        .output()
        .expect("the replay runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    assert!(
        out.status.success() && !text.contains("FAILED"),
        "Juju's {name} phase failed:\n{text}{}\nrackbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    text
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// One call of the agent protocol.
async fn agent(
    api: &Api,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api.call(method, &format!("/api/agent/v1/{path}"), Some(token), body)
        .await
}

/// What the machine's firmware and agent do for a deploy: boot, take the task, write the image,
/// then the deployed OS reports in.
async fn play_deploy(api: &Api, mac: &str) -> Value {
    let token = api.boot_token(mac).await;
    let (s, task) = agent(api, Method::GET, "task", &token, None).await;
    assert_eq!(s, 200, "{task}");
    assert_eq!(task["task"], "deploy", "{task}");
    let (s, v) = agent(
        api,
        Method::POST,
        "complete",
        &token,
        Some(json!({"message": "image written"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let report = task["report_token"].as_str().unwrap().to_string();
    let (s, v) = agent(
        api,
        Method::POST,
        "deployed",
        &report,
        Some(json!({"message": "booted"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn juju_bootstraps_adds_and_releases_a_machine() {
    let replay = build_replay();
    let dir = tempfile::tempdir().unwrap();
    let mut wanted = machine("juju01", Status::Ready, 4, 8192);
    wanted.tags.insert("juju".into());
    let mut broken = machine("juju02", Status::Ready, 4, 8192);
    broken
        .tags
        .extend(["juju".to_string(), "broken".to_string()]);
    common::seed(
        dir.path(),
        vec![wanted, broken, machine("small1", Status::Ready, 1, 1024)],
    );
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    api.add_user(&admin, "juju", "juju-password-1").await;
    api.upload_image(&admin, "debian", "bookworm").await;
    let key = common::cli_maas_key(&daemon.url, &admin, "juju");
    let url = format!("{}/MAAS/", daemon.url);
    let model = "5a1c4e0e-57a8-4f0e-8c51-6d5a3e2f9b10";

    let deployed = phase(&replay, "deploy", &url, &key, model, &daemon);
    let system_id = field(&deployed, "SYSTEM_ID=");
    assert_eq!(
        system_id, "juju01",
        "tags=juju not broken, cores=2, mem=2G: juju01"
    );
    let task = play_deploy(&api, field(&deployed, "MAC=")).await;
    assert!(
        task["user_data"]
            .as_str()
            .unwrap()
            .contains("juju-was-here"),
        "the deploy carries Juju's (gzipped) cloud-config as text: {task}"
    );
    phase(&replay, "release", &url, &key, model, &daemon);
}
