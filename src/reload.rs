//! Hot reload: on SIGHUP, or when the config file or a file it names
//! changes, a new gateway and TLS config are built from scratch, validated,
//! and swapped in. An invalid config changes nothing: the running one stays,
//! one error line is logged and `jwtgate_config_reloads_total{result="failure"}`
//! counts it.
//!
//! Requests already running finish on the gateway they started with (they
//! hold an `Arc` to it); the next request, even on the same connection, gets
//! the new one. New connections handshake with the new certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use crate::config::{Config, ConfigError};
use crate::gateway::{Gateway, unix_now};
use crate::tls;

/// The gateway and TLS config in force.
pub struct Live {
    gateway: ArcSwap<Gateway>,
    tls: ArcSwap<ServerConfig>,
}

impl Live {
    pub fn new(gateway: Gateway, tls: Arc<ServerConfig>) -> Live {
        Live {
            gateway: ArcSwap::from_pointee(gateway),
            tls: ArcSwap::new(tls),
        }
    }

    /// The gateway for a request arriving now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.load_full()
    }

    /// The TLS config for a connection accepted now.
    pub fn tls(&self) -> Arc<ServerConfig> {
        self.tls.load_full()
    }
}

/// Why a reload was refused; the running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `file:line: key: error` (see [`crate::config::tls_error`]).
    #[error("{0}")]
    Tls(String),
    /// A new key source did not load in time; `pending` says why for each
    /// (its last fetch error, or that none has finished).
    #[error(
        "{config}: key sources did not load within {}s: {}",
        wait.as_secs(),
        pending.join("; ")
    )]
    KeysUnavailable {
        config: String,
        pending: Vec<String>,
        wait: Duration,
    },
}

/// What a successful reload put in force.
#[derive(Debug)]
pub struct Reloaded {
    pub routes: usize,
    pub revocations: usize,
    /// Settings that changed in the file but only take effect on restart.
    pub needs_restart: Vec<&'static str>,
}

/// Reloads one config file into a [`Live`].
pub struct Reloader {
    path: PathBuf,
    live: Arc<Live>,
    /// The config the process started with, for what a reload cannot change.
    started: FixedSettings,
    /// How long a new JWKS URL may take to load before the reload is refused.
    key_wait: Duration,
    /// The watched files as last read; also one reload at a time (SIGHUP
    /// and the file watcher may race).
    seen: tokio::sync::Mutex<Fingerprint>,
    /// Files named by the last config that was refused.
    attempted: std::sync::Mutex<Vec<PathBuf>>,
}

impl Reloader {
    /// `started`: [`Reloader::fixed_settings`] of the config the process
    /// started with.
    pub fn new(path: &Path, live: Arc<Live>, started: FixedSettings) -> Reloader {
        let mut reloader = Reloader {
            path: path.to_owned(),
            live,
            started,
            key_wait: Duration::from_secs(10),
            seen: tokio::sync::Mutex::new(Fingerprint(Vec::new())),
            attempted: std::sync::Mutex::new(Vec::new()),
        };
        *reloader.seen.get_mut() = Fingerprint::of(&reloader.watched_files());
        reloader
    }

    /// Counts changes to the watched files since `baseline` (taken before
    /// the config in force was read), so an edit made during start-up is
    /// not missed.
    pub fn since(mut self, baseline: Baseline) -> Reloader {
        let files = self.watched_files();
        *self.seen.get_mut() = Fingerprint::extend(&baseline.0, &files);
        self
    }

    /// How long a new key source may take to load before a reload is
    /// refused. Defaults to 10 s.
    pub fn key_wait(mut self, wait: Duration) -> Reloader {
        self.key_wait = wait;
        self
    }

    /// What a reload of `config` cannot change (listeners, runtime, logging).
    pub fn fixed_settings(config: &Config) -> FixedSettings {
        FixedSettings::of(config)
    }

    /// Reads, validates and swaps in the config file and everything it names.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let mut seen = self.seen.lock().await;
        // Taken before reading: an edit made while loading triggers another reload.
        *seen = Fingerprint::of(&self.watched_files());
        let result = self.build().await;
        if let Ok(mut attempted) = self.attempted.lock() {
            *attempted = match result {
                Ok(_) => Vec::new(),
                Err(_) => crate::config::files_named(&self.path),
            };
        }
        // The new (or refused) config may name other files.
        *seen = Fingerprint::extend(&seen, &self.watched_files());
        let metrics = self.live.gateway().metrics().clone();
        match &result {
            Ok(_) => metrics.count_reload(Some(unix_now())),
            Err(_) => metrics.count_reload(None),
        }
        result
    }

    async fn build(&self) -> Result<Reloaded, ReloadError> {
        let config = Config::load(&self.path)?;
        let file = self.path.display().to_string();
        let tls = tls::load_server_config(&config.server.tls_cert, &config.server.tls_key)
            .map_err(|err| ReloadError::Tls(crate::config::tls_error(&self.path, &err)))?;
        let needs_restart = self.started.differences(&FixedSettings::of(&config));
        let routes = config.routes.routes().len();
        let revocations = config.revocations.len();
        let gateway = Gateway::reloaded(config, &self.live.gateway());
        // A new JWKS URL must have loaded: swapping in a key set that cannot
        // decide any token would turn valid requests into 503s.
        let waited = tokio::time::timeout(self.key_wait, async {
            while !gateway.keys_ready() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        if waited.await.is_err() {
            return Err(ReloadError::KeysUnavailable {
                config: file,
                pending: gateway.keyring().pending(),
                wait: self.key_wait,
            });
        }
        self.live.tls.store(tls);
        gateway.take_over();
        self.live.gateway.store(Arc::new(gateway));
        Ok(Reloaded {
            routes,
            revocations,
            needs_restart,
        })
    }

    /// Reloads, logging the outcome: what the signal handler and the file
    /// watcher call.
    pub async fn reload_and_log(&self, why: &str) {
        match self.reload().await {
            Ok(done) => {
                tracing::info!(
                    trigger = why,
                    routes = done.routes,
                    revocations = done.revocations,
                    "config reloaded"
                );
                if !done.needs_restart.is_empty() {
                    tracing::warn!(
                        settings = %done.needs_restart.join(", "),
                        "changed settings take effect only after a restart"
                    );
                }
            }
            Err(err) => {
                tracing::error!(trigger = why, error = %err, "config reload failed; keeping the running config");
            }
        }
    }

    /// Reloads on every SIGHUP and, while the config in force has
    /// `[reload] watch`, whenever the config file or a file it names
    /// changes. Runs until dropped.
    pub async fn run(self: Arc<Self>, mut hangup: Hangup) {
        loop {
            // Read each round: a reload may turn watching on or off.
            let poll = self.live.gateway().watch();
            let why = tokio::select! {
                () = next_hangup(&mut hangup) => "SIGHUP",
                () = tokio::time::sleep(poll.unwrap_or(Duration::from_secs(1))) => {
                    if poll.is_none()
                        || Fingerprint::of(&self.watched_files()) == *self.seen.lock().await
                    {
                        continue;
                    }
                    // Editors and `kubectl` may write in several steps: wait
                    // until the files stop changing before reading them.
                    tokio::time::sleep(SETTLE).await;
                    "file change"
                }
            };
            // Also after a failure the files count as seen: the next edit
            // triggers the next attempt.
            self.reload_and_log(why).await;
        }
    }

    /// The config file, every file the config in force was built from, and
    /// those a refused config named (say, a key file not written yet).
    fn watched_files(&self) -> Vec<PathBuf> {
        let gateway = self.live.gateway();
        let mut files = vec![self.path.clone()];
        files.extend(gateway.files().iter().cloned());
        if let Ok(attempted) = self.attempted.lock() {
            files.extend(attempted.iter().cloned());
        }
        files
    }
}

/// The config file and the files it names, as they were before reading.
pub struct Baseline(Fingerprint);

impl Baseline {
    pub fn of(path: &Path) -> Baseline {
        let mut files = vec![path.to_owned()];
        files.extend(crate::config::files_named(path));
        Baseline(Fingerprint::of(&files))
    }

    /// Takes `written` as it is now: files the gateway wrote itself while
    /// starting (the generated development certificate) are no change.
    pub fn written(mut self, written: &[&Path]) -> Baseline {
        for (path, seen) in &mut self.0.0 {
            if written.contains(&path.as_path()) {
                *seen = stamp(path);
            }
        }
        self
    }
}

/// Pause between seeing a change and reading the files.
const SETTLE: Duration = Duration::from_millis(100);

/// Per file: modification time, length and inode (a ConfigMap update
/// swaps a symlink: a new inode even if time and size look the same).
#[derive(PartialEq, Eq)]
struct Fingerprint(Vec<(PathBuf, Option<Stamp>)>);

/// Modification time, length, inode.
type Stamp = (SystemTime, u64, u64);

impl Fingerprint {
    fn of(files: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            files
                .iter()
                .map(|path| (path.clone(), stamp(path)))
                .collect(),
        )
    }

    /// The fingerprint of `files`, keeping what `earlier` saw of the files
    /// it had: a change made to them since then still counts as a change.
    fn extend(earlier: &Fingerprint, files: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            files
                .iter()
                .map(|path| match earlier.0.iter().find(|(p, _)| p == path) {
                    Some((_, seen)) => (path.clone(), *seen),
                    None => (path.clone(), stamp(path)),
                })
                .collect(),
        )
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), inode(&meta)))
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// A SIGHUP listener, for [`Reloader::run`].
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub type Hangup = ();

/// Starts listening for SIGHUP (within a Tokio runtime).
#[cfg(unix)]
pub fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload by file change only");
            None
        }
    }
}

#[cfg(not(unix))]
pub fn hangup_signal() -> Hangup {}

async fn next_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup
        && signal.recv().await.is_some()
    {
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await
}

/// The settings bound at start-up, taken before the config is consumed.
pub struct FixedSettings(Vec<(&'static str, String)>);

impl FixedSettings {
    /// Listeners, runtime, connection handling and logging: a reload that
    /// changes them warns instead. Each value is kept as its `Debug` text,
    /// which is all a comparison needs.
    fn of(config: &Config) -> FixedSettings {
        let server = &config.server;
        let admin = config.admin.as_ref().map(|a| a.listen);
        FixedSettings(vec![
            ("server.listen", format!("{:?}", server.listen)),
            ("admin.listen", format!("{admin:?}")),
            ("server.workers", format!("{:?}", server.workers)),
            (
                "server.max_connections",
                format!("{:?}", server.max_connections),
            ),
            (
                "server.handshake_timeout",
                format!("{:?}", server.handshake_timeout),
            ),
            (
                "server.header_read_timeout",
                format!("{:?}", server.header_read_timeout),
            ),
            (
                "server.shutdown_grace",
                format!("{:?}", server.shutdown_grace),
            ),
            (
                "server.max_header_bytes",
                format!("{:?}", server.max_header_bytes),
            ),
            ("server.max_headers", format!("{:?}", server.max_headers)),
            ("log", format!("{:?}", config.log)),
        ])
    }

    /// The names of the settings whose values differ in `other`.
    fn differences(&self, other: &FixedSettings) -> Vec<&'static str> {
        self.0
            .iter()
            .zip(&other.0)
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| a.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(server: &str) -> FixedSettings {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"c\"\ntls_key = \"k\"\n{server}\n\
             [[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:8080\"\n\
             [[route]]\npath = \"/\"\nupstream = \"app\"\nauth = \"none\"\n"
        );
        let config = Config::from_toml_str(&text, "t.toml", &|_| None).unwrap();
        FixedSettings::of(&config)
    }

    #[test]
    fn only_settings_bound_at_start_up_are_named() {
        let base = settings("");
        assert!(
            base.differences(&settings("max_uri_bytes = 100"))
                .is_empty()
        );
        assert_eq!(
            base.differences(&settings("workers = 3\nshutdown_grace = \"5s\"")),
            ["server.workers", "server.shutdown_grace"]
        );
    }
}
