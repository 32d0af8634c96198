//! The playground in a real browser: headless Chromium (the distribution's
//! package; nothing is downloaded) driven over the DevTools protocol. It
//! opens the page, goes through every act by clicking and typing, checks
//! that what the page shows is what the gateway answers to the same request,
//! and saves a screenshot per act under `target/playground-screenshots/`.
//!
//! Skipped, with a note on stderr, when no Chromium is installed (CI has
//! only the Rust toolchain). `JWTGATE_CHROMIUM` names another binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use support::{Client, Protocol};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use jwtgate::demo::Playground;

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("JWTGATE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A headless Chromium with its own profile; killed and removed on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
    devtools: SocketAddr,
}

impl Browser {
    fn launch(binary: &PathBuf) -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "jwtgate-browser-test-{}-{}",
            std::process::id(),
            jwtgate::gateway::unix_now()
        ));
        let mut child = Command::new(binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                // The playground's CA is made for this run; the browser is
                // not asked to trust it, only to proceed past it.
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (found, port) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.strip_prefix("DevTools listening on ws://") {
                    let _ = found.send(url.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let devtools = port
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address")
            .parse()
            .unwrap();
        Browser {
            child,
            profile,
            devtools,
        }
    }

    /// The DevTools connection to the browser's first page.
    async fn page(&self) -> Page {
        let (_, _, list) = support::plain_get(self.devtools, "/json/list").await;
        let targets: Value = serde_json::from_str(&list).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_owned();
        let tcp = TcpStream::connect(self.devtools).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        Page { ws, next: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

struct Page {
    ws: WebSocketStream<TcpStream>,
    next: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let command = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer"))
                .unwrap()
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "waited for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Scrolls `id` into view and clicks its centre with the mouse.
    async fn click(&mut self, id: &str) {
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.getElementById('{id}'); \
                 e.scrollIntoView({{ block: 'center' }}); \
                 const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": at[0], "y": at[1], "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Presses and releases `key` ("Tab" or "Enter") on the keyboard.
    async fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Tab" => (9, ""),
            "Enter" => (13, "\r"),
            _ => panic!("no key code for {key}"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({ "type": kind, "key": key, "code": key,
                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code });
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", event).await;
        }
    }

    async fn focused(&mut self) -> Value {
        self.eval("document.activeElement && (document.activeElement.id || document.activeElement.className)")
            .await
    }

    /// Clicks into a field, selects what is there, and types `text` over it.
    async fn type_into(&mut self, id: &str, text: &str) {
        self.click(id).await;
        // A number field has no text selection: a person would clear it.
        self.eval(&format!(
            "(e => {{ e.select(); if (e.type === 'number') e.value = ''; }})(document.getElementById('{id}'))"
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Clicks `button` and waits for the exchange panel `panel` to show a new result.
    async fn exchange(&mut self, button: &str, panel: &str) -> Shown {
        let count = format!("document.getElementById('{panel}').dataset.shown || '0'");
        let before = self.eval(&count).await;
        self.eval("window.waitFrom = performance.now()").await;
        self.click(button).await;
        self.wait_for(
            &format!("{panel} after {button}"),
            &format!("({count}) !== {before}"),
        )
        .await;
        // Some frames for the result to be laid out and any shift reported.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.eval("window.waits.push([window.waitFrom, performance.now()])")
            .await;
        self.shown(panel).await
    }

    async fn shown(&mut self, panel: &str) -> Shown {
        let value = self
            .eval(&format!(
                "(() => {{ const c = document.getElementById('{panel}'); \
                 const q = (k) => c.querySelector('.' + k); \
                 return {{ request: q('request').textContent, status: q('v-status').textContent, \
                   challenge: q('v-challenge').textContent, timing: q('v-timing').textContent, \
                   user: q('u-x-user-id').textContent, role: q('u-x-role').textContent, \
                   authorization: q('u-authorization').textContent }}; }})()"
            ))
            .await;
        serde_json::from_value(value).unwrap()
    }

    async fn screenshot(&mut self, section: &str, name: &str) {
        let clip = self
            .eval(&format!(
                "(() => {{ const r = document.getElementById('{section}').getBoundingClientRect(); \
                 return {{ x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, scale: 1 }}; }})()"
            ))
            .await;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }),
            )
            .await;
        let png = STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/playground-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        // Capturing beyond the viewport resizes it and back; let that
        // relayout be reported before the next result is measured.
        self.eval(
            "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One exchange as the page shows it.
#[derive(Debug, serde::Deserialize)]
struct Shown {
    request: String,
    status: String,
    challenge: String,
    timing: String,
    user: String,
    role: String,
    authorization: String,
}

impl Shown {
    fn code(&self) -> u16 {
        self.status[..3].parse().unwrap()
    }
}

/// Sends the request the page says it sent, from Rust over TLS, and checks
/// the page showed the gateway's answer and what the upstream received.
async fn agrees_with_gateway(client: &Client, shown: &Shown) {
    let mut lines = shown.request.lines();
    let first = lines.next().unwrap();
    let path = first.split(' ').nth(1).unwrap();
    let mut request = Request::get(path);
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        if !name.eq_ignore_ascii_case("host") {
            request = request.header(name, value);
        }
    }
    let reply = client
        .send(request.body(Full::<Bytes>::default()).unwrap())
        .await;
    assert_eq!(reply.status.as_u16(), shown.code(), "{shown:?}");
    assert_eq!(
        reply.header("www-authenticate").unwrap_or("(none)"),
        shown.challenge,
        "{shown:?}"
    );
    let seen = reply.json()["headers"].clone();
    let upstream = |name: &str| match seen.get(name) {
        _ if seen.is_null() => "—".to_owned(),
        Some(value) => value.as_str().unwrap().to_owned(),
        None => "(absent)".to_owned(),
    };
    assert_eq!(upstream("x-user-id"), shown.user, "{shown:?}");
    assert_eq!(upstream("x-role"), shown.role, "{shown:?}");
    assert_eq!(upstream("authorization"), shown.authorization, "{shown:?}");
    if reply.status.is_success() {
        assert!(shown.timing.starts_with("jwt;dur=") || shown.timing.starts_with("(none"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_act_clicked_through_in_headless_chromium_shows_the_gateways_real_answers() {
    let Some(binary) = chromium() else {
        eprintln!("skipped: no chromium on PATH (set JWTGATE_CHROMIUM to run this test)");
        return;
    };
    let playground = Playground::start(0).await.unwrap();
    let client = Client::with_roots(
        playground.addr(),
        vec![playground.ca_cert().clone()],
        Protocol::Http1,
    );
    let browser = Browser::launch(&binary);
    let mut page = browser.page().await;
    page.call("Page.enable", json!({})).await;
    page.call("Page.navigate", json!({ "url": playground.url() }))
        .await;
    page.wait_for(
        "the session to load",
        "(document.getElementById('fp-hex') || {}).dataset?.hex || null",
    )
    .await;

    // Every layout shift, whether or not a click preceded it; those while a
    // result arrives are picked out below (screenshots resize the page).
    page.eval(
        "window.shifts = []; window.waits = []; \
         new PerformanceObserver((list) => { for (const e of list.getEntries()) \
         window.shifts.push({ at: e.startTime, value: e.value, nodes: (e.sources || []).map((s) => s.node \
           ? (s.node.id || s.node.className || s.node.nodeName) : '?') }); \
         }).observe({ type: 'layout-shift' }); true",
    )
    .await;

    // Act 1: no token, sent from the keyboard: Tab to the skip link, Enter,
    // Tab to the act's button, Enter.
    page.press("Tab").await;
    assert_eq!(page.focused().await, "skip");
    page.press("Enter").await;
    page.press("Tab").await;
    assert_eq!(page.focused().await, "memory-send");
    page.press("Enter").await;
    page.wait_for(
        "a result after Enter",
        "document.getElementById('memory-result').dataset.shown === '1'",
    )
    .await;
    let shown = page.exchange("memory-send", "memory-result").await;
    assert_eq!(shown.code(), 401);
    assert_eq!(shown.challenge, "Bearer realm=\"jwtgate\"");
    assert_eq!(shown.user, "—");
    agrees_with_gateway(&client, &shown).await;
    page.screenshot("act-memory", "act-1-no-memory").await;

    // Act 2: the identity card.
    page.type_into("card-user", "1").await;
    page.type_into("card-role", "admin").await;
    let shown = page.exchange("card-public", "card-result").await;
    assert_eq!(shown.code(), 200);
    assert!(shown.request.contains("X-User-Id: 1"), "{shown:?}");
    assert_eq!(shown.user, "(absent)");
    assert_eq!(shown.role, "(absent)");
    agrees_with_gateway(&client, &shown).await;
    let shown = page.exchange("card-with-token", "card-result").await;
    assert_eq!((shown.code(), shown.user.as_str()), (200, "42"));
    assert_eq!(shown.authorization, "(absent)");
    agrees_with_gateway(&client, &shown).await;
    let shown = page.exchange("card-none", "card-result").await;
    assert_eq!(shown.code(), 401);
    agrees_with_gateway(&client, &shown).await;
    page.screenshot("act-card", "act-2-identity-card").await;

    // Act 3: the fingerprint the page computed is the HMAC Rust computes.
    let secret = page
        .eval("document.getElementById('fp-secret').value")
        .await;
    let message = page
        .eval("document.getElementById('fp-message').value")
        .await;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"demo","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(message.as_str().unwrap())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_str().unwrap().as_bytes());
    let expected: String = ring::hmac::sign(&key, input.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hex = page
        .eval("document.getElementById('fp-hex').dataset.hex")
        .await;
    assert_eq!(hex, expected);
    let shown = page.exchange("fp-send", "fp-result").await;
    assert_eq!((shown.code(), shown.user.as_str()), (200, "42"));
    agrees_with_gateway(&client, &shown).await;
    let edited = format!("{}x", secret.as_str().unwrap());
    page.type_into("fp-secret", &edited).await;
    page.wait_for(
        "the changed bits",
        "document.getElementById('fp-changed').textContent.includes('of 256 bits')",
    )
    .await;
    let shown = page.exchange("fp-send", "fp-result").await;
    assert_eq!(shown.code(), 401);
    assert!(shown.challenge.contains("invalid_token"));
    agrees_with_gateway(&client, &shown).await;
    page.screenshot("act-fingerprint", "act-3-fingerprint")
        .await;

    // Act 4: anatomy.
    page.type_into("an-sub", "42").await;
    page.type_into("an-role", "user").await;
    page.click("an-mint").await;
    page.wait_for(
        "a minted token",
        "document.getElementById('an-token').value.split('.').length === 3",
    )
    .await;
    let claims = page
        .eval("document.getElementById('an-claims').textContent")
        .await;
    assert!(claims.as_str().unwrap().contains("\"role\": \"user\""));
    let parts = page
        .eval("document.querySelectorAll('#an-colored .part-header, #an-colored .part-claims, #an-colored .part-signature').length")
        .await;
    assert_eq!(parts, 3);
    let shown = page.exchange("an-send", "an-result").await;
    assert_eq!((shown.code(), shown.role.as_str()), (200, "user"));
    agrees_with_gateway(&client, &shown).await;
    page.screenshot("act-anatomy", "act-4-anatomy").await;

    // Act 5: validation.
    for (button, code, challenge) in [
        ("val-tamper", 401, "invalid_token"),
        ("val-expired", 401, "expired"),
        ("val-user", 403, "insufficient_scope"),
        ("val-admin", 200, "(none)"),
    ] {
        let shown = page.exchange(button, "val-result").await;
        assert_eq!(shown.code(), code, "{button}");
        assert!(shown.challenge.contains(challenge), "{button}: {shown:?}");
        agrees_with_gateway(&client, &shown).await;
        page.screenshot("act-validation", &format!("act-5-validation-{button}"))
            .await;
    }

    // Act 6: a token watched until it expires, then revocation.
    page.type_into("life-ttl", "1").await;
    page.click("life-start").await;
    page.wait_for(
        "the countdown to reach 401",
        "document.getElementById('life-result').dataset.status === '401'",
    )
    .await;
    let shown = page.shown("life-result").await;
    assert!(shown.challenge.contains("expired"));
    agrees_with_gateway(&client, &shown).await;
    page.click("rev-mint").await;
    page.wait_for(
        "tokens A and B",
        "document.getElementById('rev-file').textContent.startsWith('A has jti')",
    )
    .await;
    page.click("rev-revoke").await;
    page.wait_for(
        "the revocation file",
        "document.getElementById('rev-file').textContent.includes('[[revoke]]')",
    )
    .await;
    page.exchange("rev-send", "rev-b").await;
    let a = page.shown("rev-a").await;
    let b = page.shown("rev-b").await;
    assert_eq!(a.code(), 401);
    assert!(a.challenge.contains("revoked"));
    assert_eq!(b.code(), 200);
    agrees_with_gateway(&client, &a).await;
    agrees_with_gateway(&client, &b).await;
    page.screenshot("act-lifetime", "act-6-lifetime").await;

    // Act 7: this connection, and the same request on the wire.
    page.click("tls-connection").await;
    let version = page
        .wait_for(
            "the connection facts",
            "(t => t === '—' ? null : t)(document.getElementById('tls-version').textContent)",
        )
        .await;
    assert_eq!(version, "TLSv1_3");
    page.click("tls-wire").await;
    let verdict = page
        .wait_for(
            "the wire capture",
            "(t => t.includes('answered') ? t : null)(document.getElementById('wire-verdict').textContent)",
        )
        .await;
    assert!(
        verdict
            .as_str()
            .unwrap()
            .contains("is readable in the plaintext bytes, and not anywhere"),
        "{verdict}"
    );
    page.screenshot("act-https", "act-7-https").await;

    // Results fill panels of a fixed size: nothing below them moves.
    let shifts = page
        .eval(
            "window.shifts.filter((s) => window.waits.some(([from, to]) => s.at >= from && s.at <= to))",
        )
        .await;
    let waits = page.eval("window.waits.length").await;
    assert_eq!(waits, 12, "every exchange was measured");
    let total: f64 = shifts
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    // Web Vitals calls a cumulative shift under 0.1 good. Panels of a fixed
    // size keep it near zero; shifts Chromium attributes to no node (seen
    // at ~0.005 each on a loaded host) stay well under the bound.
    assert!(total < 0.1, "layout shifts while results arrived: {shifts}");

    // The whole page at phone width.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    )
    .await;
    let overflow = page
        .eval("document.documentElement.scrollWidth > window.innerWidth")
        .await;
    assert_eq!(overflow, false, "the page scrolls sideways at phone width");
    page.screenshot("act-validation", "phone-act-5").await;

    drop(page);
    drop(browser);
    playground.stop().await;
}
