//! The HTTP attacks of issue 13 (parts 2, 5 and 6) against the real daemon, over real sockets:
//! half-sent and idle connections, a connection flood past the cap, stalled bodies, anonymous
//! huge bodies on the MAAS face, and floods of wrong logins (429 per user and per source, 503
//! past the hashing queue, memory bounded).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{ADMIN_PASSWORD, Daemon};

fn addr(d: &Daemon) -> String {
    d.url.trim_start_matches("http://").to_string()
}

/// What the server sends before it closes or `wait` passes: (bytes, closed).
fn read_until_close(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (String::from_utf8_lossy(&out).into(), false);
            }
            // Reset by the server: closed too.
            Err(_) => return (String::from_utf8_lossy(&out).into(), true),
        }
    }
}

fn healthz(d: &Daemon) -> String {
    let mut s = TcpStream::connect(addr(d)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    read_until_close(&mut s, Duration::from_secs(10)).0
}

/// A connection that sent part of a request's headers and nothing more.
fn half_sent(d: &Daemon) -> TcpStream {
    let mut s = TcpStream::connect(addr(d)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    s
}

#[test]
fn half_sent_requests_are_closed_after_the_header_timeout_and_the_cap_keeps_healthz_up() {
    let d = Daemon::start_configured("header_read_timeout_secs = 5\nmax_connections = 40", "", "");
    // Up to the cap less one, half-sent requests are held open...
    let mut held: Vec<TcpStream> = (0..39).map(|_| half_sent(&d)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // ...and /healthz still answers on the last slot.
    assert!(healthz(&d).contains(" 200 "), "healthz while 39 are held");
    // Past the cap, a connection is answered 503 and closed at once, not held. (The slot
    // /healthz used may come back before the first of these, which then takes it.)
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = 0;
    let extra: Vec<TcpStream> = (0..11).map(|_| half_sent(&d)).collect();
    for mut s in extra {
        let (answer, closed) = read_until_close(&mut s, Duration::from_millis(500));
        if closed {
            assert!(answer.is_empty() || answer.contains(" 503 "), "{answer}");
            refused += 1;
        } else {
            held.push(s);
        }
    }
    assert!(
        refused >= 10,
        "only {refused} of 11 past the cap were refused"
    );
    // Every held connection is closed by the server once its headers are overdue.
    for s in &mut held {
        let (_, closed) = read_until_close(s, Duration::from_secs(15));
        assert!(closed, "a half-sent request was still open");
    }
    assert!(healthz(&d).contains(" 200 "), "healthz after the flood");
    assert!(
        d.log().contains("the connection cap is reached"),
        "{}",
        d.log()
    );
}

#[test]
fn an_idle_kept_alive_connection_is_closed_but_a_slow_body_is_not_cut() {
    let d = Daemon::start_configured(
        "header_read_timeout_secs = 2\nbody_idle_timeout_secs = 2",
        "",
        "",
    );
    // A whole request on a kept-alive connection, answered; then the idle connection closes.
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, closed) = read_until_close(&mut s, Duration::from_secs(15));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle kept-alive connection stayed open");

    // A body sent slowly, for longer than the header timeout but never idle for the body
    // timeout, is read whole and answered (401: a wrong password).
    let body = br#"{"username":"nobody","password":"wrong-password"}"#;
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    write!(
        s,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    for chunk in body.chunks(body.len() / 8 + 1) {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(chunk).unwrap();
    }
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(30));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // A body that stops is abandoned: an answer (400) and the connection closes.
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    s.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user",
    )
    .unwrap();
    let (answer, closed) = read_until_close(&mut s, Duration::from_secs(15));
    assert!(closed, "a stalled body held its connection; got {answer:?}");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
}

/// Sends the head of a request with a 60 MiB body and 64 KiB of it, and reads what comes back
/// within 10 s (the rest of the body is never sent).
fn huge_body(d: &Daemon, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr(d)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        60 * 1024 * 1024
    )
    .unwrap();
    let _ = s.write_all(&vec![b'x'; 64 * 1024]);
    read_until_close(&mut s, Duration::from_secs(10)).0
}

#[test]
fn the_maas_face_answers_an_anonymous_huge_body_before_reading_it() {
    let d = Daemon::start();
    let answer = huge_body(&d, "POST", "/MAAS/api/2.0/files/");
    assert!(answer.starts_with("HTTP/1.1 401"), "files/: {answer:?}");
    let answer = huge_body(&d, "POST", "/MAAS/api/2.0/files/?op=add");
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "files/?op=add: {answer:?}"
    );
    let answer = huge_body(&d, "POST", "/MAAS/api/2.0/version/");
    assert!(answer.starts_with("HTTP/1.1 405"), "version/: {answer:?}");
    // An anonymous action takes only a small body: refused by its Content-Length alone.
    let answer = huge_body(&d, "GET", "/MAAS/api/2.0/describe/");
    assert!(answer.starts_with("HTTP/1.1 413"), "describe/: {answer:?}");
    let answer = huge_body(&d, "POST", "/MAAS/accounts/authenticate/");
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "authenticate/: {answer:?}"
    );
    // Bad credentials count as none.
    let mut s = TcpStream::connect(addr(&d)).unwrap();
    write!(
        s,
        "POST /MAAS/api/2.0/files/ HTTP/1.1\r\nHost: x\r\nAuthorization: OAuth oauth_consumer_key=\"a\", oauth_token=\"b\", oauth_signature=\"&c\", oauth_signature_method=\"PLAINTEXT\"\r\nContent-Length: {}\r\n\r\n",
        60 * 1024 * 1024
    )
    .unwrap();
    let (answer, _) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 401"), "bad key: {answer:?}");
}

async fn login(http: &reqwest::Client, url: &str, user: &str, password: &str) -> reqwest::Response {
    http.post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_per_user_and_per_source_on_every_face() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = Daemon::start();
    let http = reqwest::Client::new();
    // The admin and a name that is no user are treated alike: 5 attempts, then 429.
    for user in ["admin", "ghost"] {
        for i in 0..5 {
            let r = login(&http, &d.url, user, "wrong-password").await;
            assert_eq!(r.status(), 401, "{user} attempt {i}");
        }
        let r = login(&http, &d.url, user, "wrong-password").await;
        assert_eq!(r.status(), 429, "{user}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "rate_limited");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("too many failed logins"), "{message}");
        assert!(!message.contains(user), "{message}");
    }
    // While it must wait, even the right password is not tried.
    let r = login(&http, &d.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429);
    // The MAAS face's login goes through the same gate.
    let r = http
        .post(format!("{}/MAAS/accounts/authenticate/", d.url))
        .form(&[("username", "ghost"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Per source: 20 attempts from this address in all (10 so far), then other names wait too.
    for i in 0..10 {
        let r = login(&http, &d.url, &format!("user{i}"), "wrong-password").await;
        assert_eq!(r.status(), 401, "user{i}");
    }
    let r = login(&http, &d.url, "user-fresh", "wrong-password").await;
    assert_eq!(
        r.status(),
        429,
        "a fresh name from a source past its attempts"
    );
    assert!(d.log().contains("failed login"));
    assert!(
        !d.log().contains("wrong-password"),
        "a password reached the log"
    );
}

/// VmRSS or VmHWM of a process, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn two_hundred_concurrent_wrong_logins_keep_memory_bounded() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No throttle and a queue for all of them: this is about the hashing alone.
    let d = Daemon::start_configured(
        "",
        "login_free_failures_per_user = 100000\nlogin_free_failures_per_source = 100000\nlogin_hash_queue = 1000\nlogin_hash_wait_secs = 600",
        "",
    );
    let pid = d.child.id();
    let http = reqwest::Client::new();
    // One login first, so the baseline has the hashing slots' memory in it already.
    assert_eq!(
        login(&http, &d.url, "admin", "wrong-password")
            .await
            .status(),
        401
    );
    let before = status_kib(pid, "VmRSS:");
    let logins: Vec<_> = (0..200)
        .map(|i| {
            let http = http.clone();
            let url = d.url.clone();
            tokio::spawn(async move {
                login(&http, &url, &format!("u{i}"), "wrong-password")
                    .await
                    .status()
            })
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), 401);
    }
    let peak = status_kib(pid, "VmHWM:");
    let after = status_kib(pid, "VmRSS:");
    eprintln!("RSS before {before} KiB, peak {peak} KiB, after {after} KiB");
    // Without the bound, each of 200 logins took 19 MiB at once (3.8 GiB).
    assert!(
        peak < before + 150 * 1024,
        "peak RSS grew from {before} KiB to {peak} KiB"
    );
    assert!(
        after < before + 100 * 1024,
        "RSS stayed at {after} KiB (was {before} KiB)"
    );
}

#[tokio::test]
async fn logins_past_the_hashing_queue_are_answered_503_at_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let d = Daemon::start_configured(
        "",
        "login_hash_slots = 1\nlogin_hash_queue = 1\nlogin_free_failures_per_user = 100000\nlogin_free_failures_per_source = 100000",
        "",
    );
    let http = reqwest::Client::new();
    let logins: Vec<_> = (0..20)
        .map(|i| {
            let http = http.clone();
            let url = d.url.clone();
            tokio::spawn(async move {
                let r = login(&http, &url, &format!("u{i}"), "wrong-password").await;
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            })
        })
        .collect();
    let mut busy = 0;
    for l in logins {
        match l.await.unwrap() {
            (401, _) => {}
            (503, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(busy > 0, "no login was turned away");
    // Turned-away logins were not counted: the admin still logs in.
    let r = login(&http, &d.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
}
