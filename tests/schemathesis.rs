//! The native API against its own OpenAPI document: schemathesis (scripts/deps.d/schemathesis.sh)
//! generates requests from `/api/v1/openapi.json` of a real `rackbox serve`, as an admin
//! of its own, and checks every answer: no 5xx,
//! every status code and body as documented, every documented-invalid request refused. Bounded: `--max-examples` per operation and `--max-time`
//! for the whole run (RACKBOX_SCHEMATHESIS_SECONDS, default 150).
//!
//! Left out, because they act outside the daemon: image and boot-resource fetches and syncs
//! (they would download from whatever URL was generated), machine actions and power
//! operations (they drive power drivers, and the command driver runs shell commands a
//! generated machine may carry). The power-state sync is held off for the same reason.
//!
//! tests/schemathesis.toml names the few operations whose schema-valid requests may still be
//! refused with 400 (content checks no schema can state), and why.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{ADMIN_PASSWORD, Api, Daemon};

fn schemathesis() -> PathBuf {
    let tools = std::env::var("RACKBOX_TOOLS").unwrap_or_else(|_| "/opt/rackbox-tools".into());
    PathBuf::from(tools).join("venv-schemathesis/bin/st")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_as_its_openapi_document_says() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "schemathesis is not installed: {} is missing. Install it as root with \
         `bash -c 'source scripts/lib/deps.sh; deps_install schemathesis'` (set RACKBOX_TOOLS to use \
         another directory).",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let daemon = Daemon::start_in(&state, "[power]\npoll_interval_secs = 86400\n");
    // Schemathesis runs as an admin of its own whose name it cannot guess: a generated
    // request may change a named user's password or delete a user, which would end the run's
    // token (a password change revokes the user's tokens), and generated logins with wrong
    // passwords would set the login gate on a user it logs in as.
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let user = format!("st-{}", std::process::id());
    let password = "schemathesis-runs-as-this-admin";
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(serde_json::json!({"username": user, "password": password, "role": "admin"})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let token = api.login(&user, password).await;
    let (status, doc) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/openapi.json",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    let seconds = std::env::var("RACKBOX_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "150".into());
    let report = dir.path().join("report");
    let settings = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let out = Command::new(&st)
        .args(["--config-file", settings])
        .arg("run")
        .arg(&doc_path)
        .args(["--url", &daemon.url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--max-examples", "25"])
        .args(["--max-time", &seconds])
        .args(["--workers", "1"])
        .args(["--seed", "13"])
        .args(["--request-timeout", "20"])
        // Left out: routes that fetch from URLs, drive BMCs or put DHCP frames on a host
        // interface (the probe): a fuzzer must send nothing beyond loopback.
        .args([
            "--exclude-path-regex",
            "^/api/v1/(images/(fetch|sync)|boot-resources/fetch|machines/\\{system_id\\}/(actions|power/)|network/dhcp-probe)",
        ])
        .args(["--no-color", "--report", "junit", "--report-dir"])
        .arg(&report)
        .output()
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The run's own summary, for the log (BENCHMARKS.md takes its figures from here).
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect();
    eprintln!("schemathesis: {}", summary.join("\nschemathesis: "));
    assert!(
        out.status.success(),
        "schemathesis found answers that break the document (exit {:?}):\n{stdout}\n{stderr}\n\
         daemon log:\n{}",
        out.status.code(),
        daemon.log()
    );
}
