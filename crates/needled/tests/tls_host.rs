//! Off loopback needled serves HTTPS only (a self-signed certificate made on first start,
//! its SHA-256 printed), checked with real clients: curl (`--cacert`, a child process) and the
//! Rust client with the pinned fingerprint. Plain HTTP gets no answer, and a foreign `Host`
//! header (DNS rebinding) is refused with 421 `host_not_allowed`, changing nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use needle_client::harness::{Launch, Running};
use needle_client::{Client, Error, Tls};
use serde_json::Value;

struct Started {
    running: Running,
    port: u16,
    fingerprint: Option<String>,
    technician: String,
}

/// needled bound to `bind` (port 0) on needle-client's harness: the port, the scheme and the
/// certificate's fingerprint come from its ready file.
fn start(data: &Path, bind: &str) -> Started {
    let file = data.join("test.toml");
    std::fs::write(&file, "[control]\nmax_tick_gap_ms = 500\n").unwrap();
    let running = Launch::new(env!("CARGO_BIN_EXE_needled"), &file, data)
        .bind(bind)
        .start()
        .expect("start needled");
    let fingerprint = running.tls_sha256.clone();
    assert_eq!(
        running.scheme,
        if fingerprint.is_some() {
            "https"
        } else {
            "http"
        }
    );
    Started {
        port: running.port().expect("a port"),
        technician: running.token("technician").unwrap(),
        fingerprint,
        running,
    }
}

/// curl's HTTP status (000 when there was no HTTP answer), its exit code and the body.
fn curl(args: &[&str]) -> (String, Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.to_owned(), out.status.code(), body.to_owned())
}

#[test]
fn off_loopback_only_tls_answers_and_a_foreign_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), "0.0.0.0:0");
    let fp = n
        .fingerprint
        .clone()
        .expect("the certificate's fingerprint is printed");
    let cert = dir.path().join("tls-cert.pem");
    let https = format!("https://127.0.0.1:{}", n.port);
    let auth = format!("Authorization: Bearer {}", n.technician);

    // curl trusting the self-signed certificate.
    let (status, code, body) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        &format!("{https}/v1/health"),
    ]);
    assert_eq!((status.as_str(), code), ("200", Some(0)), "{body}");

    // Plain HTTP to the same port: no HTTP answer at all.
    let (status, code, _) = curl(&[&format!("http://127.0.0.1:{}/v1/health", n.port)]);
    assert_eq!(status, "000");
    assert_ne!(code, Some(0));

    // Without trusting the certificate curl refuses to talk (exit 60: peer certificate).
    let (status, code, _) = curl(&[&format!("{https}/v1/health")]);
    assert_eq!((status.as_str(), code), ("000", Some(60)));

    // A DNS-rebinding page: the right address, a foreign Host. Refused before any handler,
    // with a stable code, the console's pages too, and a command changes nothing.
    let events = |host: Option<&str>| {
        let mut args = vec!["--cacert", cert.to_str().unwrap(), "-H", &auth];
        let h;
        if let Some(host) = host {
            h = format!("Host: {host}");
            args.extend(["-H", h.as_str()]);
        }
        let url = format!("{https}/v1/events?limit=1000");
        args.push(&url);
        curl(&args)
    };
    let before = events(None);
    assert_eq!(before.0, "200", "{}", before.2);
    for path in ["/v1/status", "/", "/v1/events"] {
        let (status, _, body) = curl(&[
            "--cacert",
            cert.to_str().unwrap(),
            "-H",
            "Host: evil.example",
            "-H",
            &auth,
            &format!("{https}{path}"),
        ]);
        assert_eq!(status, "421", "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "host_not_allowed", "{path}");
    }
    let (status, _, _) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-X",
        "POST",
        "-H",
        "Host: evil.example:7878",
        "-H",
        &auth,
        &format!("{https}/v1/home"),
    ]);
    assert_eq!(status, "421");
    let after = events(None);
    assert_eq!(before.2, after.2, "the refused command changed nothing");

    // The Rust client (needle-client) with the pinned fingerprint, and with the certificate
    // as its CA file; a wrong pin is refused by the client.
    let client = |tls: Tls| {
        Client::builder(&https, &n.technician)
            .tls(tls)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    };
    assert!(client(Tls::Sha256(fp.clone())).health().is_ok());
    let version = client(Tls::Sha256(fp.clone())).version().unwrap();
    assert_eq!(version.tls_sha256.as_deref(), Some(fp.as_str()));
    assert!(client(Tls::CaFile(cert.clone())).health().is_ok());
    let wrong = "00".repeat(32);
    assert!(matches!(
        client(Tls::Sha256(wrong.clone())).health(),
        Err(Error::Transport(_))
    ));
    // Without any trust the https base gets no answer either.
    assert!(matches!(
        Client::new(&https, &n.technician).health(),
        Err(Error::Transport(_))
    ));
    // The harness's own client of it is pinned already.
    assert!(n.running.client("technician").unwrap().status().is_ok());

    // needlectl shows the same fingerprint offline, from the certificate file.
    let shown = Command::new(env!("CARGO_BIN_EXE_needlectl"))
        .args(["tls-fingerprint", "--cert", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), fp);

    // needlectl with the pinned fingerprint.
    let ctl = Command::new(env!("CARGO_BIN_EXE_needlectl"))
        .args([
            "--url",
            &https,
            "--tls-sha256",
            &fp,
            "--token",
            &n.technician,
            "status",
        ])
        .env_remove("NEEDLE_TLS_SHA256")
        .env_remove("NEEDLE_CA_FILE")
        .output()
        .unwrap();
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let ctl = Command::new(env!("CARGO_BIN_EXE_needlectl"))
        .args([
            "--url",
            &https,
            "--tls-sha256",
            &wrong,
            "--token",
            &n.technician,
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(
        ctl.status.code(),
        Some(3),
        "a wrong pin is a connection failure"
    );

    // Restarted, it keeps its certificate (the pin stays valid).
    drop(n);
    let n = start(dir.path(), "0.0.0.0:0");
    assert_eq!(n.fingerprint.as_deref(), Some(fp.as_str()));
}

#[test]
fn on_loopback_a_foreign_host_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let n = start(dir.path(), "127.0.0.1:0");
    assert_eq!(n.fingerprint, None, "plain HTTP on loopback");
    let url = format!("http://127.0.0.1:{}/v1/health", n.port);
    let (status, _, _) = curl(&[&url]);
    assert_eq!(status, "200");
    let (status, _, body) = curl(&["-H", "Host: evil.example", &url]);
    assert_eq!(status, "421", "{body}");
    let (status, _, _) = curl(&["-H", "Host: localhost:1234", &url]);
    assert_eq!(status, "200");
}
