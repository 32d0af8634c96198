//! The `jwtgate` binary as a user runs it: errors are one line and exit 1;
//! tokens round-trip; `serve` runs from a config file; `demo` passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use support::{Protocol, Upstream};

const BIN: &str = env!("CARGO_BIN_EXE_jwtgate");

/// The tests' own config: never `config/jwtgate.toml`, which users edit.
const FIXTURE: &str = include_str!("fixtures/jwtgate.toml");

/// The 1-based number of the first line of `text` that starts with `start`.
fn line_of(text: &str, start: &str) -> usize {
    text.lines().position(|l| l.starts_with(start)).unwrap() + 1
}

/// Runs the binary to completion; a run longer than 30 s is killed and fails the test.
fn jwtgate(args: &[&str], dir: &std::path::Path) -> Output {
    jwtgate_with(args, dir, &[])
}

/// [`jwtgate`] with `env` added.
fn jwtgate_with(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("JWTGATE_SECRET", support::SECRET)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("jwtgate {args:?} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The fixture names config/revoked.toml.
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/revoked.toml"), "# no entries\n").unwrap();
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn broken_config_is_one_line_naming_file_line_and_key_with_exit_1() {
    let dir = scratch("broken");
    let broken = FIXTURE.replacen(
        "upstream = \"app\"\nmethods",
        "upstream = \"ap\"\nmethods",
        1,
    );
    std::fs::write(dir.join("jwtgate.toml"), &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l == "upstream = \"ap\"")
        .unwrap()
        + 1;
    let output = jwtgate(&["serve", "--config", "jwtgate.toml"], &dir);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!("error: jwtgate.toml:{line}: route[1].upstream: no upstream named \"ap\"\n")
    );
}

#[test]
fn startup_failures_are_one_line_never_a_panic() {
    let dir = scratch("startup");
    std::fs::write(dir.join("bad.crt"), "not a certificate").unwrap();
    std::fs::write(dir.join("bad.key"), "not a key").unwrap();
    // Two certificates; one's key with the other's certificate.
    for name in ["a", "b"] {
        jwtgate::tls::DevPki::generate()
            .unwrap()
            .write(
                &dir.join(format!("{name}.crt")),
                &dir.join(format!("{name}.key")),
            )
            .unwrap();
    }
    let example = FIXTURE;
    let cert_line = line_of(example, "tls_cert");
    let unreadable =
        format!("jwtgate.toml:{cert_line}: server.tls_cert: bad.crt holds no certificate");
    let mismatched = format!(
        "jwtgate.toml:{cert_line}: server.tls_cert, server.tls_key: the private key does not belong to the certificate"
    );
    let cases = [
        ("missing file", None, "error: nope.toml: cannot read: "),
        (
            "missing secret",
            Some(example.replace("JWTGATE_SECRET", "JWTGATE_UNSET_VAR")),
            "jwt.keys[0].secret_env: environment variable JWTGATE_UNSET_VAR is not set",
        ),
        (
            "bad listen",
            Some(example.replace("0.0.0.0:8443", "0.0.0.0:http")),
            "server.listen: \"0.0.0.0:http\" is not an address:port",
        ),
        (
            "unreadable cert",
            Some(
                example
                    .replace("certs/server.crt", "bad.crt")
                    .replace("certs/server.key", "bad.key"),
            ),
            unreadable.as_str(),
        ),
        (
            "key of another certificate",
            Some(
                example
                    .replace("certs/server.crt", "a.crt")
                    .replace("certs/server.key", "b.key"),
            ),
            mismatched.as_str(),
        ),
        ("not TOML", Some("[server\n".to_owned()), "jwtgate.toml:1"),
    ];
    for (name, text, expected) in cases {
        let config = match &text {
            Some(text) => {
                std::fs::write(dir.join("jwtgate.toml"), text).unwrap();
                "jwtgate.toml"
            }
            None => "nope.toml",
        };
        // `check` refuses what `serve` refuses (a missing file aside).
        if text.is_some() {
            let checked = jwtgate(&["check", "--config", config], &dir);
            assert_eq!(
                checked.status.code(),
                Some(1),
                "check {name}: {}",
                stderr(&checked)
            );
            assert!(
                stderr(&checked).contains(expected),
                "check {name}: {}",
                stderr(&checked)
            );
        }
        let output = jwtgate(&["serve", "--config", config], &dir);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn minted_token_inspects_and_verifies_with_the_same_secret() {
    let dir = scratch("token");
    let mint = jwtgate(
        &[
            "token",
            "mint",
            "--secret-env",
            "JWTGATE_SECRET",
            "--claim",
            "sub=42",
            "--claim",
            "role=user",
            "--ttl",
            "15m",
            "--kid",
            "2026-11",
        ],
        &dir,
    );
    assert!(mint.status.success(), "{}", stderr(&mint));
    let token = String::from_utf8(mint.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let inspect = jwtgate(&["token", "inspect", &token], &dir);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("\"sub\": \"42\"") && text.contains("\"role\": \"user\""),
        "{text}"
    );
    assert!(text.contains("expires: in "), "{text}");
    assert!(!text.contains("warning"), "{text}");

    // A duplicated claim: shown, with a warning that the gateway refuses it.
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"sub":"42","role":"user","role":"admin"}"#,
    );
    let doubled = format!("{header}.{payload}.{signature}");
    let inspect = jwtgate(&["token", "inspect", &doubled], &dir);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("warning: \"role\" appears more than once (shown: the last copy); the gateway refuses this token"),
        "{text}"
    );

    let verified = jwtgate(
        &["token", "inspect", &token, "--secret-env", "JWTGATE_SECRET"],
        &dir,
    );
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("signature: valid"));

    // The same secret kept as base64, as secrets usually are.
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, support::SECRET);
    let from_base64 = jwtgate_with(
        &[
            "token",
            "inspect",
            &token,
            "--secret-env",
            "SECRET_B64",
            "--secret-encoding",
            "base64",
        ],
        &dir,
        &[("SECRET_B64", &b64)],
    );
    assert!(from_base64.status.success(), "{}", stderr(&from_base64));
    assert!(String::from_utf8_lossy(&from_base64.stdout).contains("signature: valid"));

    std::fs::write(
        dir.join("other.key"),
        "a-different-secret-of-sufficient-length!",
    )
    .unwrap();
    let wrong = jwtgate(
        &["token", "inspect", &token, "--secret-file", "other.key"],
        &dir,
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("signature does not verify"));
}

#[test]
fn demo_walks_through_every_step_and_exits_zero() {
    let output = jwtgate(&["demo"], &scratch("demo"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    assert!(text.contains("8 passed, 0 failed"), "{text}");
    assert!(text.contains("`jwtgate serve --dev-cert`"), "{text}");
}

#[tokio::test]
async fn demo_web_prints_one_url_serves_the_page_and_stops_on_sigint() {
    use std::io::BufRead;
    /// Killed on drop, so a failing test leaves no playground behind.
    struct Running(Option<std::process::Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(child) = &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let mut running = Running(Some(
        Command::new(BIN)
            .args(["demo", "--web"])
            .env_remove("JWTGATE_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let stdout = running.0.as_mut().unwrap().stdout.take().unwrap();
    let (url, ca) = tokio::task::spawn_blocking(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let url = lines.next().unwrap().unwrap();
        let note = lines.next().unwrap().unwrap();
        let ca = note.split("--cacert ").nth(1).unwrap().split(')').next();
        (url, PathBuf::from(ca.unwrap()))
    })
    .await
    .unwrap();
    let port: u16 = url
        .strip_prefix("jwtgate playground: https://localhost:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("{url}"))
        .parse()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca_cert = CertificateDer::from_pem_file(&ca).unwrap();
    let client = support::Client::with_roots(addr, vec![ca_cert], Protocol::Http1);
    let page = client.get("/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("jwtgate playground"));
    assert_eq!(
        client.get("/orders", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let child = running.0.take().unwrap();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    // The run's certificate, key, secret and revocation list are gone.
    assert!(!ca.parent().unwrap().exists());

    let port_alone = jwtgate(&["demo", "--port", "8443"], &scratch("demo-port"));
    assert_eq!(port_alone.status.code(), Some(2), "--port needs --web");
}

#[test]
fn check_prints_the_route_table_longest_prefix_first() {
    let dir = scratch("check");
    std::fs::write(dir.join("jwtgate.toml"), FIXTURE).unwrap();
    let output = jwtgate(&["check", "--dev-cert", "--config", "jwtgate.toml"], &dir);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text.contains("serve --dev-cert would generate a development certificate"),
        "{text}"
    );
    let prefixes: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with('/'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(prefixes, ["/public", "/admin", "/"]);
    assert!(
        text.contains("revocation list: config/revoked.toml (0 entries)"),
        "{text}"
    );
    assert!(
        text.contains("reload: on SIGHUP and on file changes (checked every 1s)"),
        "{text}"
    );
}

/// `config/jwtgate.toml` as shipped (with the revocation list it names),
/// checked where a user runs the quick start: `check --dev-cert` passes.
/// (The other tests use their own fixture, so edits to it break only this.)
#[test]
fn the_shipped_example_config_passes_check() {
    let dir = scratch("shipped");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["config/jwtgate.toml", "config/revoked.toml"] {
        std::fs::copy(repo.join(file), dir.join(file)).unwrap();
    }
    let output = jwtgate(&["check", "--dev-cert"], &dir);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// The README's quick start, its two terminal blocks run as written by two
/// shells that share nothing but the directory (the second inherits no
/// `JWTGATE_SECRET`). Only `cargo run` becomes the built binary, and the
/// port a free one; the config is what the README says to edit, pointed at
/// a recording upstream.
#[tokio::test]
async fn the_readme_quick_start_works_in_two_terminals() {
    let readme = include_str!("../README.md");
    let block = |title: &str| {
        let start = readme
            .find(&format!("```sh\n# {title}\n"))
            .unwrap_or_else(|| panic!("README has no block starting \"# {title}\""));
        let body = &readme[start + "```sh\n".len()..];
        body[..body.find("```").unwrap()].to_owned()
    };
    let dir = scratch("quick-start");
    let upstream = Upstream::start().await;
    let port = free_port();
    let config = FIXTURE
        .replace("0.0.0.0:8443", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8080", &upstream.addr.to_string());
    std::fs::write(dir.join("config/jwtgate.toml"), config).unwrap();
    let as_here = |script: String| {
        let script = script
            .replace("cargo run -q --release --", BIN)
            .replace("cargo run --release --", BIN)
            .replace("localhost:8443", &format!("localhost:{port}"));
        assert!(!script.contains("cargo "), "{script}");
        script
    };
    let terminal = |script: String| {
        let mut shell = Command::new("bash");
        shell
            .args(["-eu", "-o", "pipefail", "-c", &as_here(script)])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap());
        shell
    };

    /// Terminal 1's shell and the gateway it started, ended on drop: each
    /// by its own process id (the shell's children, then the shell).
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            let shell = self.0.id();
            let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
                .unwrap_or_default();
            let pids = children
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .chain([shell])
                .filter(|&pid| pid > 1);
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = self.0.wait();
        }
    }
    let log = std::fs::File::create(dir.join("terminal-1.log")).unwrap();
    let mut first = Group(
        terminal(block("Terminal 1"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        let log = || std::fs::read_to_string(dir.join("terminal-1.log")).unwrap();
        assert!(first.0.try_wait().unwrap().is_none(), "{}", log());
        assert!(started.elapsed() < Duration::from_secs(20), "{}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut second = terminal(block("Terminal 2"));
    let second = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    assert!(
        second.status.success(),
        "{}\n{}",
        stderr(&second),
        std::fs::read_to_string(dir.join("terminal-1.log")).unwrap()
    );
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.last().header("x-user-id"), Some("42"));
    assert_eq!(upstream.last().header("x-role"), Some("user"));
    drop(first);
}

#[test]
fn a_missing_certificate_is_a_start_up_error_unless_dev_cert_is_given() {
    let dir = scratch("no-cert");
    std::fs::write(dir.join("jwtgate.toml"), FIXTURE).unwrap();
    let line = line_of(FIXTURE, "tls_cert");
    let expected = format!(
        "error: jwtgate.toml:{line}: server.tls_cert: certs/server.crt does not exist (for a development certificate there, run serve --dev-cert)\n"
    );
    // `check` first: it fails the same way, and fast.
    for command in ["check", "serve"] {
        let output = jwtgate(&[command, "--config", "jwtgate.toml"], &dir);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), expected, "{command}");
        assert!(!dir.join("certs").exists(), "{command} wrote certs/");
    }

    // One file present, the other missing: named, even with --dev-cert.
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    jwtgate::tls::DevPki::generate()
        .unwrap()
        .write(&dir.join("certs/server.crt"), &dir.join("certs/other.key"))
        .unwrap();
    let key_line = line_of(FIXTURE, "tls_key");
    for command in ["check", "serve"] {
        let output = jwtgate(&[command, "--dev-cert", "--config", "jwtgate.toml"], &dir);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{command}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output),
            format!(
                "error: jwtgate.toml:{key_line}: server.tls_key: certs/server.key does not exist\n"
            ),
            "{command}"
        );
    }
}

/// `jwtgate serve --dev-cert` on the fixture config, in `dir`, proxying to `upstream`.
/// Killed on drop, so a failing test leaves no gateway behind.
struct Served {
    child: Option<std::process::Child>,
    client: support::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Served {
    /// Writes `dir/jwtgate.toml`: the fixture config on a free port, with
    /// `upstream`, no iss/aud checks, and `edit` applied. Returns the port
    /// and the text.
    fn write_config(
        dir: &std::path::Path,
        upstream: SocketAddr,
        edit: impl Fn(String) -> String,
    ) -> (u16, String) {
        let port = free_port();
        let text = edit(
            FIXTURE
                .replace("0.0.0.0:8443", &format!("127.0.0.1:{port}"))
                .replace("127.0.0.1:8080", &upstream.to_string())
                .replace("issuers = [", "# issuers = [")
                .replace("audiences = [", "# audiences = ["),
        );
        std::fs::write(dir.join("jwtgate.toml"), &text).unwrap();
        (port, text)
    }

    async fn start(dir: &std::path::Path, port: u16) -> Served {
        Served::start_with(dir, port, &[], |_| ()).await
    }

    /// Starts it with `env` added, calling `while_starting` with its pid
    /// until it listens.
    async fn start_with(
        dir: &std::path::Path,
        port: u16,
        env: &[(&str, &str)],
        while_starting: impl Fn(u32),
    ) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--dev-cert", "--config", "jwtgate.toml"])
            .current_dir(dir)
            .env("JWTGATE_SECRET", support::SECRET)
            .env_remove("JWTGATE_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("gateway did not start");
            }
            while_starting(child.id());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ca = CertificateDer::from_pem_file(dir.join("certs/ca.crt")).unwrap();
        let client = support::Client::with_roots(addr, vec![ca], Protocol::Http1);
        Served {
            child: Some(child),
            client,
        }
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
        }
    }

    /// SIGTERM, then the exit status and everything logged.
    async fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("-TERM");
        let child = self.child.take().unwrap();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The JSON access-log lines of a served gateway's log.
fn access_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect()
}

fn user_42_token() -> String {
    support::mint_with(
        support::SECRET,
        Some("2026-11"),
        serde_json::json!({
            "sub": "42",
            "role": "user",
            "iat": jwtgate::gateway::unix_now() - 5,
            "exp": jwtgate::gateway::unix_now() + 60,
        }),
    )
}

#[tokio::test]
async fn serve_with_dev_cert_generates_a_certificate_and_proxies_until_sigterm() {
    let dir = scratch("serve");
    let upstream = Upstream::start().await;
    let (port, _) = Served::write_config(&dir, upstream.addr, |c| c);
    let served = Served::start(&dir, port).await;
    let client = &served.client;
    let token = user_42_token();
    let reply = client.get("/orders", Some(&token)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.last().header("x-user-id"), Some("42"));
    assert_eq!(
        client.get("/orders", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let key_mode = std::fs::metadata(dir.join("certs/server.key")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);
    }
    let _ = key_mode;

    // The watcher (every second) must not take the certificate the gateway
    // generated for itself for an edit.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, log) = served.stop().await;
    assert!(status.success(), "{status:?}");
    assert!(!log.contains("config reloaded"), "{log}");

    // One JSON access line per request, with the request id the upstream
    // got, and never the token.
    assert!(!log.contains(&token), "the token was logged");
    let access = access_lines(&log);
    assert_eq!(access.len(), 2, "{log}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["user"], "42");
    assert_eq!(access[0]["auth"], "verified");
    assert_eq!(access[0]["route"], "/");
    assert_eq!(
        access[0]["request_id"],
        upstream.seen()[0].header("x-request-id").unwrap()
    );
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["reason"], "missing");
}

/// wrk and some TLS stacks send an IP address as SNI (RFC 6066 §3 forbids
/// it); rustls ignores it and warns per handshake. That line is noise an
/// operator cannot act on and any client can make the gateway write, so it
/// is logged only when the filter names rustls.
#[tokio::test]
async fn an_ip_address_sent_as_sni_is_served_and_not_warned_about_per_handshake() {
    let dir = scratch("ip-sni");
    let upstream = Upstream::start().await;
    let request_with_ip_sni = |port: u16| {
        let mut child = Command::new("timeout")
            .args(["10", "openssl", "s_client", "-quiet", "-ign_eof"])
            .args(["-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /orders HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // No token: the gateway answers, so the connection was served.
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    };
    let warned = |log: &str| log.contains("IP address presented as hostname");

    let (port, _) = Served::write_config(&dir, upstream.addr, |c| c);
    let served = Served::start(&dir, port).await;
    request_with_ip_sni(port);
    request_with_ip_sni(port);
    let (_, log) = served.stop().await;
    assert!(!warned(&log), "{log}");

    let (port, _) = Served::write_config(&dir, upstream.addr, |c| c);
    let env = [("JWTGATE_LOG", "info,rustls=warn")];
    let served = Served::start_with(&dir, port, &env, |_| ()).await;
    request_with_ip_sni(port);
    let (_, log) = served.stop().await;
    assert!(
        warned(&log),
        "a filter naming rustls shows the warning: {log}"
    );
}

/// The fixture config with the file watcher off, so only SIGHUP reloads.
fn no_watch(config: String) -> String {
    config.replace("\nwatch = true ", "\nwatch = false")
}

#[tokio::test]
async fn sighup_reloads_routes_and_revocations_and_a_broken_config_changes_nothing() {
    let dir = scratch("sighup");
    let upstream = Upstream::start().await;
    // Only SIGHUP reloads here: the file watcher is off.
    let (port, base) = Served::write_config(&dir, upstream.addr, no_watch);
    assert!(base.contains("watch = false"));
    let served = Served::start(&dir, port).await;
    let client = &served.client;
    let token = user_42_token();
    assert_eq!(
        client.get("/hello", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let hello = "\n[[route]]\npath = \"/hello\"\nupstream = \"app\"\nauth = \"none\"\n";
    std::fs::write(dir.join("jwtgate.toml"), format!("{base}{hello}")).unwrap();
    served.signal("-HUP");
    let started = Instant::now();
    while client.get("/hello", None).await.status != StatusCode::OK {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file: refused, the running config (with /hello) stays.
    std::fs::write(dir.join("jwtgate.toml"), format!("{base}{hello}[[route]\n")).unwrap();
    served.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.get("/hello", None).await.status, StatusCode::OK);
    assert_eq!(
        client.get("/orders", Some(&token)).await.status,
        StatusCode::OK
    );

    // Revoking user 42's tokens issued until now.
    std::fs::write(dir.join("jwtgate.toml"), format!("{base}{hello}")).unwrap();
    std::fs::write(
        dir.join("config/revoked.toml"),
        "[[revoke]]\nsub = \"42\"\nbefore = \"2100-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    served.signal("-HUP");
    let started = Instant::now();
    while client.get("/orders", Some(&token)).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "revocation not loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, log) = served.stop().await;
    assert!(status.success(), "{status:?}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let messages = |text: &str| {
        lines
            .iter()
            .filter(|l| l["message"] == text)
            .collect::<Vec<_>>()
    };
    assert_eq!(messages("config reloaded").len(), 2, "{log}");
    let failed = messages("config reload failed; keeping the running config");
    assert_eq!(failed.len(), 1, "{log}");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("jwtgate.toml:"), "{error}");
    let revoked: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "access" && l["reason"] == "revoked")
        .collect();
    assert!(!revoked.is_empty(), "{log}");
    assert_eq!(revoked[0]["status"], 401);
    // Who is still using a revoked token is what an operator wants to see.
    assert_eq!(revoked[0]["user"], "42");
}

#[tokio::test]
async fn sighup_during_start_up_does_not_end_the_process_and_still_reloads() {
    let dir = scratch("early-hup");
    let upstream = Upstream::start().await;
    // SIGHUP alone must carry the revocation made during start-up.
    let (port, _) = Served::write_config(&dir, upstream.addr, no_watch);
    // From the moment the process has a SIGHUP handler (SigCgt bit 1 in
    // /proc: the exec itself cannot be protected), until it listens.
    // A long revocation list keeps start-up busy for a while.
    let entries: String = (0..20_000)
        .map(|i| format!("[[revoke]]\njti = \"stolen-{i}\"\n"))
        .collect();
    std::fs::write(dir.join("config/revoked.toml"), entries).unwrap();
    let sent = std::sync::atomic::AtomicUsize::new(0);
    let hup = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (1 - 1)) != 0);
        if caught {
            // The operator revokes user 42 while the gateway starts, then asks
            // for a reload.
            if sent.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                let revoke_42 = "[[revoke]]\nsub = \"42\"\n";
                let path = dir.join("config/revoked.toml");
                let text = std::fs::read_to_string(&path).unwrap() + revoke_42;
                std::fs::write(dir.join("config/revoked.new"), text).unwrap();
                std::fs::rename(dir.join("config/revoked.new"), path).unwrap();
            }
            let _ = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let served = Served::start_with(&dir, port, &[], hup).await;
    assert!(
        sent.into_inner() > 0,
        "start-up was over before a SIGHUP could be sent"
    );
    let token = user_42_token();
    let started = Instant::now();
    while served.client.get("/orders", Some(&token)).await.status != StatusCode::UNAUTHORIZED {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the revocation made during start-up was lost"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, log) = served.stop().await;
    assert!(status.success(), "{status:?}: {log}");
}

#[tokio::test]
async fn readyz_says_not_ready_while_connections_drain() {
    let dir = scratch("drain");
    let slow = Upstream::with(|_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(
            b"late",
        )))
    })
    .await;
    let admin_port = free_port();
    let with_admin = |c: String| {
        c.replace(
            "# [admin]\n# listen = \"127.0.0.1:9901\"",
            &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\""),
        )
    };
    let (port, config) = Served::write_config(&dir, slow.addr, with_admin);
    assert!(config.contains(&format!("127.0.0.1:{admin_port}")));
    let served = Served::start(&dir, port).await;
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    assert_eq!(support::plain_get(admin, "/readyz").await.0, StatusCode::OK);

    let client = support::Client::with_roots(
        format!("127.0.0.1:{port}").parse().unwrap(),
        vec![CertificateDer::from_pem_file(dir.join("certs/ca.crt")).unwrap()],
        Protocol::Http1,
    );
    let token = user_42_token();
    let in_flight = tokio::spawn(async move { client.get("/orders", Some(&token)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    served.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, body) = support::plain_get(admin, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("serving"), "{body}");
    let (status, _, metrics) = support::plain_get(admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("jwtgate_requests_in_flight 1\n"),
        "{metrics}"
    );

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "late");
    let (status, log) = served.stop().await;
    assert!(status.success(), "{status:?}: {log}");
}

#[tokio::test]
async fn the_access_line_of_a_verified_request_the_upstream_failed_names_its_user() {
    let dir = scratch("serve-502");
    // Nothing listens on the discard port: the upstream refuses.
    let (port, _) = Served::write_config(&dir, "127.0.0.1:9".parse().unwrap(), |c| c);
    let served = Served::start(&dir, port).await;
    let reply = served.client.get("/orders", Some(&user_42_token())).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let (status, log) = served.stop().await;
    assert!(status.success(), "{status:?}");
    let access = access_lines(&log);
    assert_eq!(access.len(), 1, "{log}");
    assert_eq!(access[0]["status"], 502);
    assert_eq!(access[0]["auth"], "verified");
    assert_eq!(access[0]["user"], "42");
}

#[test]
fn explain_shows_route_token_verdict_and_decision_without_traffic() {
    // At explain's default config path, config/jwtgate.toml.
    let dir = scratch("explain");
    std::fs::write(dir.join("config/jwtgate.toml"), FIXTURE).unwrap();
    let repo = dir.as_path();
    let user = support::mint_with(
        support::SECRET,
        Some("2026-11"),
        serde_json::json!({"sub": "42", "role": "user", "iss": "https://login.example.com",
            "aud": "orders-api", "exp": jwtgate::gateway::unix_now() + 60}),
    );
    let forbidden = jwtgate(
        &["explain", "--token", &user, "GET", "/public/../admin/users"],
        repo,
    );
    let text = String::from_utf8_lossy(&forbidden.stdout);
    assert!(forbidden.status.success(), "{}", stderr(&forbidden));
    assert!(text.contains("path: /admin/users"), "{text}");
    assert!(text.contains("route: /admin "), "{text}");
    assert!(text.contains("token checks: all pass"), "{text}");
    assert!(text.contains("decision: answer 403 Forbidden"), "{text}");

    let bad = support::mint_with(
        support::SECRET,
        Some("2026-11"),
        serde_json::json!({"sub": "42", "iss": "https://evil.example.com", "exp": 1}),
    );
    let refused = jwtgate(&["explain", "--token", &bad, "GET", "/orders"], repo);
    let text = String::from_utf8_lossy(&refused.stdout);
    for failure in ["reason expired", "reason bad_issuer", "\"aud\" is missing"] {
        assert!(text.contains(failure), "{failure}: {text}");
    }
    assert!(text.contains("decision: answer 401 Unauthorized"), "{text}");

    let forwarded = jwtgate(
        &["explain", "--token", &user, "GET", "/orders?page=2"],
        repo,
    );
    let text = String::from_utf8_lossy(&forwarded.stdout);
    assert!(
        text.contains("x-user-id: 42") && text.contains("x-role: user"),
        "{text}"
    );
    assert!(text.contains("decision: forward to the upstream"), "{text}");

    // An absolute-form target is routed by its path, as the server does.
    let absolute = jwtgate(
        &[
            "explain",
            "--token",
            &user,
            "GET",
            "https://x.example/admin",
        ],
        repo,
    );
    let text = String::from_utf8_lossy(&absolute.stdout);
    assert!(text.contains("path: /admin "), "{text}");
    assert!(text.contains("decision: answer 403 Forbidden"), "{text}");

    let tunnel = jwtgate(&["explain", "--token", &user, "CONNECT", "/orders"], repo);
    let text = String::from_utf8_lossy(&tunnel.stdout);
    assert!(
        text.contains("decision: answer 501 Not Implemented"),
        "{text}"
    );

    // The same token, revoked by its jti.
    std::fs::write(dir.join("jwtgate.toml"), FIXTURE).unwrap();
    std::fs::write(
        dir.join("config/revoked.toml"),
        "[[revoke]]\njti = \"stolen\"\n",
    )
    .unwrap();
    let stolen = support::mint_with(
        support::SECRET,
        Some("2026-11"),
        serde_json::json!({"sub": "42", "role": "user", "iss": "https://login.example.com",
            "aud": "orders-api", "jti": "stolen", "exp": jwtgate::gateway::unix_now() + 60}),
    );
    let revoked = jwtgate(
        &[
            "explain",
            "--config",
            "jwtgate.toml",
            "--token",
            &stolen,
            "GET",
            "/orders",
        ],
        &dir,
    );
    let text = String::from_utf8_lossy(&revoked.stdout);
    assert!(
        text.contains("authorization: refused: revoked: token id is revoked"),
        "{text}"
    );
    assert!(text.contains("decision: answer 401 Unauthorized"), "{text}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command generates test keys");
    assert!(status.success(), "openssl {args:?}");
}

/// A fresh P-256 private key in `dir/name` (SEC1 PEM).
fn p256_key(dir: &std::path::Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ],
    );
}

#[test]
fn token_minted_with_a_pem_private_key_verifies_with_its_public_key_and_a_jwks_file() {
    let dir = scratch("pem-mint");
    p256_key(&dir, "ec.key");
    openssl(
        &dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec.p8",
        ],
    );
    openssl(
        &dir,
        &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"],
    );
    let mint = jwtgate(
        &[
            "token",
            "mint",
            "--key-file",
            "ec.p8",
            "--alg",
            "ES256",
            "--kid",
            "e1",
            "--claim",
            "sub=42",
        ],
        &dir,
    );
    assert!(mint.status.success(), "{}", stderr(&mint));
    let token = String::from_utf8(mint.stdout).unwrap().trim().to_owned();

    let by_pem = jwtgate(
        &[
            "token",
            "inspect",
            &token,
            "--public-key-file",
            "ec.pub",
            "--alg",
            "ES256",
        ],
        &dir,
    );
    assert!(
        by_pem.status.success(),
        "{}",
        String::from_utf8_lossy(&by_pem.stdout)
    );
    assert!(String::from_utf8_lossy(&by_pem.stdout).contains("signature: valid"));

    // The same public key as a JWKS file, built from the PEM's point.
    let pem = std::fs::read(dir.join("ec.pub")).unwrap();
    let der = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(&pem).unwrap();
    let point = &der.as_ref()[der.as_ref().len() - 64..];
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let jwks = serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "kid": "e1", "x": b64(&point[..32]), "y": b64(&point[32..])
    }]});
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).unwrap();
    let by_jwks = jwtgate(
        &["token", "inspect", &token, "--jwks-file", "jwks.json"],
        &dir,
    );
    assert!(
        by_jwks.status.success(),
        "{}",
        String::from_utf8_lossy(&by_jwks.stdout)
    );

    // A token signed by another key fails against that JWKS, exit 1.
    p256_key(&dir, "other.key");
    openssl(
        &dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "other.key",
            "-out",
            "other.p8",
        ],
    );
    let forged = jwtgate(
        &[
            "token",
            "mint",
            "--key-file",
            "other.p8",
            "--alg",
            "ES256",
            "--kid",
            "e1",
            "--claim",
            "sub=1",
        ],
        &dir,
    );
    let forged = String::from_utf8(forged.stdout).unwrap().trim().to_owned();
    let refused = jwtgate(
        &["token", "inspect", &forged, "--jwks-file", "jwks.json"],
        &dir,
    );
    assert_eq!(refused.status.code(), Some(1));
}
