//! The deployment files say what the code accepts: the Kubernetes ConfigMap
//! and the systemd unit's config are configs the gateway loads, with the
//! certificate files their deployment provides; the manifests point probes
//! at the admin endpoints it serves. (No container engine, cluster or
//! systemd runs here; see docs/deploying.md.)
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
    let dir = scratch("configmap");
    // The revocation list is the ConfigMap's other key, mounted beside it.
    let revoked = dir.join("revoked.toml");
    std::fs::write(&revoked, embedded(&configmap, "revoked.toml")).unwrap();
    // The certificate Secret (kubernetes.io/tls: keys tls.crt and tls.key),
    // mounted as a directory.
    let tls_dir = dir.join("tls");
    DevPki::generate()
        .unwrap()
        .write(&tls_dir.join("tls.crt"), &tls_dir.join("tls.key"))
        .unwrap();
    let text = embedded(&configmap, "jwtgate.toml")
        .replace(
            "\"/etc/jwtgate/config/revoked.toml\"",
            &format!("{:?}", revoked.display().to_string()),
        )
        .replace("\"/etc/jwtgate/tls/", &format!("\"{}/", tls_dir.display()));
    assert_eq!(
        text.matches(&dir.display().to_string()).count(),
        3,
        "the ConfigMap names the revocation list, tls.crt and tls.key: {text}"
    );
    let config = Config::from_toml_str(&text, "configmap", &|name| {
        (name == "JWTGATE_SECRET").then(|| "x".repeat(32))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    tls::load_server_config(&config.server.tls_cert, &config.server.tls_key)
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
        "mountPath: /etc/jwtgate/tls\n",
        "secretName: jwtgate-tls\n",
        "kubectl create secret tls jwtgate-tls",
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
    let moved = ["/run/credentials/", "/etc/"]
        .iter()
        .fold(text, |text, prefix| {
            text.replace(
                &format!("\"{prefix}"),
                &format!("\"{}{prefix}", root.display()),
            )
        });
    let config = Config::from_toml_str(&moved, config_source, &|name| {
        (name == "JWTGATE_SECRET").then(|| "x".repeat(32))
    })
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

/// Docker's rule for one path: the last pattern that matches decides, `!`
/// includes again. Patterns here are names or `*`; a name covers what is
/// under it.
fn docker_sends(ignore: &str, path: &str) -> bool {
    let mut sent = true;
    for pattern in ignore.lines().map(str::trim) {
        if pattern.is_empty() || pattern.starts_with('#') {
            continue;
        }
        let (include, name) = match pattern.strip_prefix('!') {
            Some(name) => (true, name),
            None => (false, pattern),
        };
        let name = name.trim_end_matches('/');
        assert!(
            name == "*" || !name.contains(['*', '?', '[']),
            "pattern {pattern:?} needs a real matcher"
        );
        if name == "*" || path == name || path.starts_with(&format!("{name}/")) {
            sent = include;
        }
    }
    sent
}

/// The build context `docker build -f deploy/Dockerfile .` sends holds what
/// the Dockerfile copies and not target/ (gigabytes after a build), .git,
/// keys or the quick start's secret.
#[test]
fn dockerignore_sends_what_the_dockerfile_copies_and_not_target() {
    let ignore = read(".dockerignore");
    let dockerfile = read("deploy/Dockerfile");
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    assert!(copied.contains(&"src"), "{copied:?}");
    for path in copied {
        assert!(docker_sends(&ignore, path.trim_end_matches('/')), "{path}");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists(),
            "{path}"
        );
    }
    for path in [
        "target",
        "target/release/jwtgate",
        ".git",
        "fuzz/target",
        "certs/server.key",
        "jwtgate.secret",
    ] {
        assert!(!docker_sends(&ignore, path), "{path} is sent");
    }
}

/// The Deployment runs a pinned image, the one the Dockerfile's documented
/// build command tags; the public Service carries HTTPS only, and the admin
/// port is on its own in-cluster Service.
#[test]
fn k8s_runs_a_pinned_image_and_keeps_the_admin_port_off_the_public_service() {
    let deployment = read("deploy/k8s/deployment.yaml");
    let images: Vec<&str> = deployment
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    let pinned = format!("jwtgate:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(images, [pinned.as_str()]);
    assert!(deployment.contains("imagePullPolicy: IfNotPresent"));
    assert!(
        read("deploy/Dockerfile")
            .contains(&format!("docker build -f deploy/Dockerfile -t {pinned} .")),
        "the Dockerfile's build command tags {pinned}"
    );

    let services = read("deploy/k8s/service.yaml");
    let by_name: HashMap<&str, &str> = services
        .split("\n---\n")
        .map(|doc| {
            let name = doc
                .lines()
                .skip_while(|l| *l != "metadata:")
                .find_map(|l| l.trim().strip_prefix("name: "))
                .unwrap();
            (name, doc)
        })
        .collect();
    let ports = |doc: &str| -> String { doc.split_once("\n  ports:\n").unwrap().1.to_owned() };
    let public = ports(by_name["jwtgate"]);
    assert!(public.contains("targetPort: https"));
    assert!(
        !public.contains("admin") && !public.contains("9901"),
        "{public}"
    );
    let admin = by_name["jwtgate-admin"];
    assert!(admin.contains("targetPort: admin"));
    assert!(admin.contains("  type: ClusterIP\n"), "{admin}");
}
