//! The deployment files say what the code accepts: the Kubernetes ConfigMap
//! and the systemd unit's config are configs the gateway loads, with the
//! certificate files their deployment provides; the manifests point probes
//! at the admin endpoints it serves. (No container engine, cluster or
//! systemd runs here; see README.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jwtgate::config::Config;
use jwtgate::tls::{self, DevPki};

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The block scalar under `<key>: |`, un-indented.
fn embedded(configmap: &str, key: &str) -> String {
    let mut lines = configmap
        .lines()
        .skip_while(|l| l.trim_start() != format!("{key}: |"))
        .skip(1);
    let first = lines.next().unwrap();
    let indent = first.len() - first.trim_start().len();
    std::iter::once(first)
        .chain(lines.take_while(|l| l.is_empty() || l.len() - l.trim_start().len() >= indent))
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn configmap_holds_a_valid_config_with_admin_on_the_probed_port() {
    let configmap = read("deploy/k8s/configmap.yaml");
    // The revocation list is the ConfigMap's other key, mounted beside it.
    let revoked =
        std::env::temp_dir().join(format!("jwtgate-cm-revoked-{}.toml", std::process::id()));
    std::fs::write(&revoked, embedded(&configmap, "revoked.toml")).unwrap();
    let text = embedded(&configmap, "jwtgate.toml").replace(
        "\"/etc/jwtgate/config/revoked.toml\"",
        &format!("{:?}", revoked.display().to_string()),
    );
    assert_ne!(
        text,
        embedded(&configmap, "jwtgate.toml"),
        "the ConfigMap names the revocation list"
    );
    let config = Config::from_toml_str(&text, "configmap", &|name| {
        (name == "JWTGATE_SECRET").then(|| "x".repeat(32))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = config.admin.expect("probes need the admin listener");
    assert_eq!(admin.listen.to_string(), "0.0.0.0:9901");
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8443");
    assert!(
        config.watch.is_some(),
        "ConfigMap edits are picked up by the watcher"
    );

    let deployment = read("deploy/k8s/deployment.yaml");
    for probe in [
        "path: /readyz",
        "path: /healthz",
        "containerPort: 9901",
        "containerPort: 8443",
        "mountPath: /etc/jwtgate/config\n",
        "\"/etc/jwtgate/config/jwtgate.toml\"",
    ] {
        assert!(deployment.contains(probe), "{probe}");
    }
    assert!(
        !deployment.contains("subPath"),
        "subPath mounts never see ConfigMap updates"
    );
}

#[test]
fn dockerfile_and_unit_run_the_serve_command_the_cli_has() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(r#"CMD ["serve", "--config", "/etc/jwtgate/jwtgate.toml"]"#));
    let unit = read("deploy/systemd/jwtgate.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/jwtgate serve --config /etc/jwtgate/jwtgate.toml")
    );
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtgate-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The values of `key=` lines in a unit file, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The systemd unit reads the certificate and key through LoadCredential=
/// (its DynamicUser cannot read a root-only key), and the config its
/// ExecStart names — found through the unit's own install lines — names
/// exactly those credentials and files the unit installs, and loads with
/// them: the config validates and the certificate and key make a TLS config.
#[test]
fn systemd_unit_reads_the_key_as_a_credential_and_its_config_loads_with_them() {
    let unit = read("deploy/systemd/jwtgate.service");
    // `#   install -m MODE SOURCE DEST`: where each installed file comes from.
    let installed: HashMap<&str, (&str, &str)> = unit
        .lines()
        .filter_map(|l| l.trim_start_matches(['#', ' ']).strip_prefix("install -m "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(words.len(), 3, "install -m MODE SOURCE DEST: {l}");
            (words[2], (words[1], words[0]))
        })
        .collect();
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1);
    let config_path = exec[0]
        .split_once(" --config ")
        .map(|(_, path)| path.trim())
        .expect("ExecStart names its config");
    let (config_source, _) = installed
        .get(config_path)
        .unwrap_or_else(|| panic!("the unit says how to install {config_path}"));
    let text = read(config_source);

    assert_eq!(unit_values(&unit, "DynamicUser"), ["yes"]);
    let credentials: HashMap<&str, &str> = unit_values(&unit, "LoadCredential")
        .into_iter()
        .map(|c| c.split_once(':').expect("LoadCredential=NAME:PATH"))
        .collect();
    let credential_dir = "/run/credentials/jwtgate.service/";

    // The files as the deployment lays them out, under a scratch root.
    let root = scratch("systemd");
    let here = |path: &Path| root.join(path.strip_prefix("/").unwrap());
    let pki = DevPki::generate().unwrap();
    let env_file = unit_values(&unit, "EnvironmentFile");
    assert_eq!(env_file.len(), 1);
    for (dest, (source, _)) in &installed {
        let material = match *source {
            "server.crt" => pki.server_chain_pem.clone(),
            "server.key" => pki.server_key_pem.clone(),
            "secret.env" => continue,
            _ if source.ends_with(".toml") => read(source),
            _ => continue,
        };
        let path = here(Path::new(dest));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, material).unwrap();
    }
    for (name, source) in &credentials {
        let (_, mode) = installed
            .get(source)
            .unwrap_or_else(|| panic!("the unit says how to install {source}"));
        // The point of the credential: the key itself stays root-only.
        if name.ends_with(".key") {
            assert_eq!(*mode, "600", "{source}");
        }
        let copy = here(&Path::new(credential_dir).join(name));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(here(Path::new(source)), copy).unwrap();
    }

    // Absolute file paths, moved under the scratch root (route paths stay).
    let moved = ["/run/credentials/", "/etc/"].iter().fold(text, |text, prefix| {
        text.replace(&format!("\"{prefix}"), &format!("\"{}{prefix}", root.display()))
    });
    let config = Config::from_toml_str(
        &moved,
        config_source,
        &|name| (name == "JWTGATE_SECRET").then(|| "x".repeat(32)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let named = |path: &Path| PathBuf::from("/").join(path.strip_prefix(&root).unwrap());
    for (key, path) in [
        ("tls_cert", &config.server.tls_cert),
        ("tls_key", &config.server.tls_key),
    ] {
        let path = named(path);
        let credential = path
            .to_str()
            .and_then(|p| p.strip_prefix(credential_dir))
            .unwrap_or_else(|| panic!("{key} {path:?} is not a credential"));
        assert!(
            credentials.contains_key(credential),
            "{key}: no LoadCredential={credential}"
        );
    }
    let revocations = named(config.revocation_file.as_deref().unwrap());
    assert!(
        installed.contains_key(revocations.to_str().unwrap()),
        "the unit says how to install {revocations:?}"
    );
    tls::load_server_config(&config.server.tls_cert, &config.server.tls_key)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        unit.contains("JWTGATE_SECRET="),
        "the unit says which variable secret.env sets"
    );

    // The drain fits in the time systemd gives it.
    let stop: u64 = unit_values(&unit, "TimeoutStopSec")[0].parse().unwrap();
    assert!(config.server.shutdown_grace.as_secs() < stop);
}
