//! The deployment files say what the code accepts: the Kubernetes ConfigMap
//! holds a config the gateway loads, and the manifests point probes at the
//! admin endpoints it serves. (No container engine runs here; see README.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jwtgate::config::Config;

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
    let unit = read("deploy/jwtgate.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/jwtgate serve --config /etc/jwtgate/jwtgate.toml")
    );
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
