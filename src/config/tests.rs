use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml", &|name| {
        (name == "SECRET").then(|| SECRET.to_owned())
    })
}

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8443"
tls_cert = "c.pem"
tls_key = "k.pem"
[[jwt.keys]]
alg = "HS256"
secret_env = "SECRET"
[[upstream]]
name = "app"
url = "http://127.0.0.1:8080"
"#;

const ROUTE: &str = "[[route]]\npath = \"/\"\nupstream = \"app\"\n";

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("config was accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn shipped_example_config_is_valid() {
    let text = include_str!("../../config/jwtgate.toml");
    let config = Config::from_toml_str(text, "config/jwtgate.toml", &|_| Some(SECRET.to_owned()));
    assert!(config.is_ok(), "{:?}", config.err());
}

#[test]
fn unknown_upstream_names_file_line_and_key() {
    let text = format!(
        "{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n[[route]]\npath = \"/x\"\nupstream = \"ap\"\n"
    );
    assert_eq!(
        error(&text),
        "test.toml:17: route[1].upstream: no upstream named \"ap\""
    );
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let text = format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\nrole = [\"admin\"]\n");
    let err = error(&text);
    assert!(err.starts_with("test.toml:15: "), "{err}");
    assert!(err.contains("unknown field `role`"), "{err}");
}

#[test]
fn missing_secret_env_is_named() {
    let text =
        BASE.replace("\"SECRET\"", "\"NOPE\"") + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert_eq!(
        error(&text),
        "test.toml:8: jwt.keys[0].secret_env: environment variable NOPE is not set"
    );
}

#[test]
fn a_base64_secret_is_decoded_when_secret_encoding_says_so() {
    use base64::Engine;
    let secret: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
    let stored = base64::engine::general_purpose::STANDARD.encode(&secret);
    let with = |encoding: &str, value: &str| {
        let text = BASE.replace(
            "secret_env = \"SECRET\"\n",
            &format!("secret_env = \"B64\"\n{encoding}"),
        ) + ROUTE;
        let value = value.to_owned();
        Config::from_toml_str(&text, "test.toml", &move |name| {
            (name == "B64").then(|| value.clone())
        })
    };
    let claims = serde_json::json!({"sub": "42", "exp": 4_000_000_000i64});
    let serde_json::Value::Object(claims) = claims else {
        unreachable!()
    };
    let token = crate::token::mint(
        &crate::keys::Key::hmac(None, crate::jwt::Alg::HS256, &secret).unwrap(),
        &claims,
    );
    let verifies = |config: &Config| {
        crate::jwt::verify(&token, &config.keys, &config.providers[0].validation, 0).is_ok()
    };

    // The default: the variable's bytes as they are, base64 text included.
    let raw = with("", &stored).unwrap();
    assert!(!verifies(&raw));
    let decoded = with("secret_encoding = \"base64\"\n", &format!("{stored}\n")).unwrap();
    assert!(verifies(&decoded));
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret);
    let decoded = with("secret_encoding = \"base64\"\n", &url_safe).unwrap();
    assert!(verifies(&decoded));

    // Decoded length is what counts: 31 bytes are too short for HS256.
    let short = base64::engine::general_purpose::STANDARD.encode(&secret[..31]);
    let err = with("secret_encoding = \"base64\"\n", &short).unwrap_err();
    assert!(
        err.to_string()
            .contains("at least 32 bytes, this one has 31"),
        "{err}"
    );

    let err = with("secret_encoding = \"base64\"\n", "not base64!").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("test.toml:9: jwt.keys[0].secret_encoding: the secret is not base64"),
        "{err}"
    );
    let err = with("secret_encoding = \"hex\"\n", &stored).unwrap_err();
    assert_eq!(
        err.to_string(),
        "test.toml:9: jwt.keys[0].secret_encoding: \"hex\" is not one of raw, base64"
    );
}

#[test]
fn short_hmac_secret_is_refused() {
    let text = BASE.replace("HS256", "HS512") + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert!(error(&text).contains("HS512 needs a secret of at least 64 bytes"));
}

#[test]
fn unreadable_public_key_file_names_line_and_key() {
    let text = BASE.replace(
        "secret_env = \"SECRET\"",
        "public_key_file = \"/nonexistent/idp.pem\"",
    ) + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    let text = text.replace("alg = \"HS256\"", "alg = \"RS256\"");
    let err = error(&text);
    assert!(
        err.starts_with("test.toml:8: jwt.keys[0].public_key_file: /nonexistent/idp.pem: "),
        "{err}"
    );
}

#[test]
fn hmac_key_with_a_public_key_file_is_refused() {
    let text = BASE.replace("secret_env = \"SECRET\"", "public_key_file = \"k.pem\"")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    let err = error(&text);
    assert!(
        err.contains("HS256 takes a shared secret, not a public key"),
        "{err}"
    );
}

#[test]
fn jwks_url_must_be_https_and_names_its_line() {
    let text = format!(
        "{BASE}[[jwt.jwks]]\nurl = \"http://idp/jwks\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n"
    );
    let err = error(&text);
    assert!(err.starts_with("test.toml:13: jwt.jwks[0].url: "), "{err}");
    assert!(err.contains("is not an https:// URL"), "{err}");
}

#[test]
fn discovery_source_is_bound_to_the_issuer_it_discovers() {
    let source = |extra: &str| {
        format!("{BASE}[[jwt.jwks]]\ndiscovery = \"https://idp.test/realms/x\"\n{extra}{ROUTE}")
    };
    let config = parse(&source("")).unwrap();
    let jwks = &config.jwks[0];
    assert_eq!(jwks.issuer.as_deref(), Some("https://idp.test/realms/x"));
    assert_eq!(
        jwks.endpoint(),
        "https://idp.test/realms/x/.well-known/openid-configuration"
    );
    assert_eq!(
        error(&source("issuer = \"https://other.test\"\n")),
        "test.toml:14: jwt.jwks[0].issuer: a discovery source is bound to the issuer it discovers; drop issuer"
    );
    let err = error(&source("url = \"https://idp.test/certs\"\n"));
    assert!(
        err.ends_with("jwt.jwks[0]: set exactly one of file, url or discovery"),
        "{err}"
    );
    let plain = format!("{BASE}[[jwt.jwks]]\ndiscovery = \"http://idp.test\"\n{ROUTE}");
    assert!(
        error(&plain).starts_with(
            "test.toml:13: jwt.jwks[0].discovery: \"http://idp.test\" is not an issuer URL"
        ),
        "{}",
        error(&plain)
    );
}

#[test]
fn jwks_refresh_and_cooldown_have_floors() {
    let source = |refresh: &str, cooldown: &str| {
        format!(
            "{BASE}[[jwt.jwks]]\nurl = \"https://idp/jwks\"\nrefresh = \"{refresh}\"\ncooldown = \"{cooldown}\"\n{ROUTE}"
        )
    };
    assert_eq!(
        error(&source("0s", "30s")),
        "test.toml:14: jwt.jwks[0].refresh: must be at least 1s"
    );
    assert_eq!(
        error(&source("5m", "0s")),
        "test.toml:15: jwt.jwks[0].cooldown: must be at least 100ms"
    );
    assert!(parse(&source("1s", "100ms")).is_ok());
}

#[test]
fn reload_watches_every_second_unless_told_otherwise() {
    let base = format!("{BASE}{ROUTE}");
    assert_eq!(parse(&base).unwrap().watch, Some(Duration::from_secs(1)));
    let off = format!("{BASE}[reload]\nwatch = false\nwatch_interval = \"5s\"\n{ROUTE}");
    assert_eq!(parse(&off).unwrap().watch, None);
    let fast = format!("{BASE}[reload]\nwatch_interval = \"250ms\"\n{ROUTE}");
    assert_eq!(
        parse(&fast).unwrap().watch,
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        error(&format!(
            "{BASE}[reload]\nwatch_interval = \"10ms\"\n{ROUTE}"
        )),
        "test.toml:13: reload.watch_interval: must be at least 100ms"
    );
}

#[test]
fn revocation_file_errors_name_that_file() {
    let text = format!("{BASE}[revocation]\nfile = \"/nonexistent/revoked.toml\"\n{ROUTE}");
    let err = error(&text);
    assert!(
        err.starts_with("test.toml:13: revocation.file: /nonexistent/revoked.toml: cannot read: "),
        "{err}"
    );
}

#[test]
fn jwks_source_needs_exactly_one_of_file_url_or_discovery() {
    let text = format!(
        "{BASE}[[jwt.jwks]]\nissuer = \"x\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n"
    );
    assert!(error(&text).contains("jwt.jwks[0]: set exactly one of file, url or discovery"));
}

#[test]
fn jwks_file_without_a_usable_key_is_refused_naming_the_file() {
    let path = std::env::temp_dir().join(format!("jwtgate-cfg-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
    )
    .unwrap();
    let text = format!(
        "{BASE}[[jwt.jwks]]\nfile = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"app\"\n",
        path.display()
    );
    let err = error(&text);
    assert!(err.starts_with("test.toml:13: jwt.jwks[0].file: "), "{err}");
    assert!(err.contains("key 0 (kid r)"), "{err}");
}

#[test]
fn syntax_errors_name_the_line() {
    let err = error("[server]\nlisten = \n");
    assert!(err.starts_with("test.toml:2"), "{err}");
}

#[test]
fn route_paths_must_be_normal() {
    let text = format!("{BASE}[[route]]\npath = \"/a/../b\"\nupstream = \"app\"\n");
    assert!(error(&text).contains("not in normal form"));
}

#[test]
fn roles_need_a_required_token() {
    for auth in ["none", "optional"] {
        let text = format!(
            "{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\nauth = \"{auth}\"\nroles = [\"admin\"]\n"
        );
        assert_eq!(
            error(&text),
            "test.toml:16: route[0].roles: roles need auth = \"required\": \
             without a token a request would pass them"
        );
    }
}

#[test]
fn overlapping_routes_are_refused() {
    let text = format!(
        "{BASE}[[route]]\npath = \"/a\"\nupstream = \"app\"\n[[route]]\npath = \"/a/\"\nupstream = \"app\"\n"
    );
    assert!(error(&text).contains("overlaps"));
}

#[test]
fn bad_listen_address_is_named() {
    let err = error(&BASE.replace("127.0.0.1:8443", "localhost"));
    assert!(err.starts_with("test.toml:3: server.listen: "), "{err}");
}

#[test]
fn parser_errors_name_the_key_too() {
    let text = BASE.replace("[[upstream]]", "[[upstream]]\ntimeout = 5")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    let err = error(&text);
    assert!(
        err.starts_with("test.toml:10: upstream[0].timeout: invalid type"),
        "{err}"
    );
    let text = format!(
        "{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n[[route]]\npath = \"/x\"\nupstream = \"app\"\nrole = 1\n"
    );
    let err = error(&text);
    assert!(
        err.starts_with("test.toml:18: route[1].role: unknown field `role`"),
        "{err}"
    );
}

#[test]
fn upstream_credentials_and_shared_identity_claims_are_refused() {
    let text = BASE.replace("http://127.0.0.1:8080", "http://user:pw@127.0.0.1:8080")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert!(error(&text).contains("upstream[0].url: must not carry credentials"));
    let text = BASE.replace("[[jwt.keys]]", "[jwt]\nrole_claim = \"sub\"\n[[jwt.keys]]")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert!(error(&text).contains("jwt.role_claim: \"sub\" is also the user_claim"));
}

#[test]
fn identity_claims_cannot_shadow_checked_claims() {
    let text = BASE.replace("[[jwt.keys]]", "[jwt]\nuser_claim = \"exp\"\n[[jwt.keys]]")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert!(error(&text).contains("jwt.user_claim: \"exp\" is checked by the verifier"));
    for key in ["user_claim", "role_claim"] {
        let text = BASE.replace(
            "[[jwt.keys]]",
            &format!("[jwt]\n{key} = \"jti\"\n[[jwt.keys]]"),
        ) + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
        let expected = format!("jwt.{key}: \"jti\" is checked by the verifier");
        assert!(error(&text).contains(&expected), "{}", error(&text));
    }
}

#[test]
fn admin_listener_is_off_unless_configured() {
    let text = format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n");
    let config = parse(&text).unwrap();
    assert!(config.admin.is_none());
    assert!(config.server.server_timing);
    let text = text.replace(
        "[[jwt.keys]]",
        "server_timing = false\n[admin]\nlisten = \"127.0.0.1:9901\"\n[[jwt.keys]]",
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.admin.map(|a| a.listen),
        Some("127.0.0.1:9901".parse().unwrap())
    );
    assert!(!config.server.server_timing);
}

#[test]
fn bad_admin_address_is_named() {
    let text = BASE.replace(
        "[[jwt.keys]]",
        "[admin]\nlisten = \"nowhere\"\n[[jwt.keys]]",
    ) + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert_eq!(
        error(&text),
        "test.toml:7: admin.listen: \"nowhere\" is not an address:port"
    );
}

#[test]
fn limits_have_defaults_and_floors() {
    let text = format!("{BASE}[[route]]\npath = \"/\"\nupstream = \"app\"\n");
    let server = parse(&text).map(|c| c.server).ok();
    let limits = server.map(|s| {
        (
            s.max_header_bytes,
            s.max_headers,
            s.max_uri_bytes,
            s.max_body_bytes,
        )
    });
    assert_eq!(limits, Some((16 * 1024, 100, 8 * 1024, 10 * 1024 * 1024)));
    let low = text.replace("[server]", "[server]\nmax_headers = 2");
    assert!(error(&low).contains("server.max_headers: must be at least 8"));
}

#[test]
fn query_param_must_be_a_plain_name() {
    let text = BASE.replace("[[jwt.keys]]", "[jwt]\nquery_param = \"a&b\"\n[[jwt.keys]]")
        + "[[route]]\npath = \"/\"\nupstream = \"app\"\n";
    assert!(error(&text).contains("jwt.query_param"));
}

#[test]
fn timeouts_cannot_be_zero() {
    let server = |key: &str| {
        let text = BASE.replace(
            "tls_key = \"k.pem\"\n",
            &format!("tls_key = \"k.pem\"\n{key} = \"0s\"\n"),
        );
        error(&format!("{text}{ROUTE}"))
    };
    assert_eq!(
        server("handshake_timeout"),
        "test.toml:6: server.handshake_timeout: must be at least 100ms"
    );
    assert_eq!(
        server("header_read_timeout"),
        "test.toml:6: server.header_read_timeout: must be at least 100ms"
    );
    for key in ["timeout", "connect_timeout"] {
        let text = format!("{BASE}{key} = \"0ms\"\n{ROUTE}");
        assert_eq!(
            error(&text),
            format!("test.toml:12: upstream[0].{key}: must be at least 10ms")
        );
    }
    let grace = BASE.replace(
        "tls_key = \"k.pem\"\n",
        "tls_key = \"k.pem\"\nshutdown_grace = \"0s\"\n",
    );
    assert!(parse(&format!("{grace}{ROUTE}")).is_ok());
}

#[test]
fn durations_take_units() {
    assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
    assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("30"), None);
    assert_eq!(parse_duration("s"), None);
    assert_eq!(parse_duration("-1s"), None);
    assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
}

#[test]
fn compound_durations_are_read_and_a_bad_one_names_file_line_and_key() {
    let with_grace = |grace: &str| {
        BASE.replace(
            "tls_key = \"k.pem\"\n",
            &format!("tls_key = \"k.pem\"\nshutdown_grace = \"{grace}\"\n"),
        ) + ROUTE
    };
    let config = parse(&with_grace("1m30s")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(90));
    let err = error(&with_grace("1m30x"));
    assert!(
        err.starts_with(
            "test.toml:6: server.shutdown_grace: \"1m30x\" is not a duration like \"500ms\", \"30s\", \"1m30s\""
        ),
        "{err}"
    );
    let err = error(&with_grace("90"));
    assert!(
        err.starts_with("test.toml:6: server.shutdown_grace: \"90\" is not a duration"),
        "{err}"
    );
}

#[test]
fn override_headers_are_removed_unless_listed_and_unknown_names_are_refused() {
    let text = format!("{BASE}{ROUTE}");
    assert!(
        parse(&text)
            .unwrap()
            .server
            .forward_override_headers
            .is_empty()
    );
    let listed = text.replace(
        "tls_key = \"k.pem\"\n",
        "tls_key = \"k.pem\"\nforward_override_headers = [\"X-HTTP-Method-Override\", \"x-original-url\"]\n",
    );
    let kept = parse(&listed).unwrap().server.forward_override_headers;
    assert_eq!(kept, ["x-http-method-override", "x-original-url"]);
    let unknown = text.replace(
        "tls_key = \"k.pem\"\n",
        "tls_key = \"k.pem\"\nforward_override_headers = [\"X-Forwarded-For\"]\n",
    );
    let err = error(&unknown);
    assert!(
        err.starts_with("test.toml:6: server.forward_override_headers: \"X-Forwarded-For\" is not one of X-Original-URL,"),
        "{err}"
    );
}

#[test]
fn upstream_tls_keys_need_an_https_url_and_a_client_cert_needs_its_key() {
    let text = BASE.replace(
        "url = \"http://127.0.0.1:8080\"",
        "url = \"http://127.0.0.1:8080\"\nca_file = \"ca.pem\"",
    ) + ROUTE;
    assert_eq!(
        error(&text),
        "test.toml:12: upstream[0].ca_file: applies only to an https url"
    );
    let text = BASE
        .replace("http://127.0.0.1:8080", "https://127.0.0.1:8443")
        .replace("[[upstream]]", "[[upstream]]\nclient_cert = \"c.pem\"")
        + ROUTE;
    assert!(error(&text).contains("upstream[0].client_cert: needs client_key too"));
    let text = BASE.replace("http://127.0.0.1:8080", "https://127.0.0.1:8443") + ROUTE;
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.upstreams[0].tls.is_some());
    assert!(
        config
            .upstreams
            .iter()
            .all(|u| u.tls.as_ref().is_some_and(|t| t.server_name.is_none()))
    );
}

#[test]
fn an_upstream_may_list_several_urls_of_one_scheme_and_prefix() {
    let several = |urls: &str| {
        BASE.replace("url = \"http://127.0.0.1:8080\"", &format!("url = {urls}")) + ROUTE
    };
    let config = parse(&several(
        r#"["http://10.0.0.1:80/api", "http://10.0.0.2:80/api"]"#,
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstreams[0].urls.len(), 2);
    assert_eq!(config.upstreams[0].balance, Balance::RoundRobin);
    assert_eq!(config.upstreams[0].health.eject_after, 5);
    assert!(
        error(&several(
            r#"["http://10.0.0.1:80", "https://10.0.0.2:443"]"#
        ))
        .contains("upstream[0].url: every URL of an upstream has the same scheme and path prefix")
    );
    assert!(error(&several("[]")).contains("upstream[0].url: lists no URL"));
    // A lone URL keeps being tried: no ejection unless asked for.
    let config = parse(&format!("{BASE}{ROUTE}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.upstreams[0].health.eject_after, 0);
}

#[test]
fn balance_and_health_keys_are_checked() {
    let with = |keys: &str| BASE.replace("[[upstream]]", &format!("[[upstream]]\n{keys}")) + ROUTE;
    assert!(
        error(&with("protocol = \"h3\""))
            .contains("upstream[0].protocol: \"h3\" is not one of http1, h2")
    );
    assert!(
        error(&with("balance = \"random\"")).contains(
            "upstream[0].balance: \"random\" is not one of round_robin, least_outstanding"
        )
    );
    assert!(
        error(&with("health_interval = \"5s\""))
            .contains("upstream[0].health_interval: applies only with health_path")
    );
    assert!(
        error(&with("health_path = \"healthz\""))
            .contains("upstream[0].health_path: must be an absolute path like /healthz")
    );
    assert!(
        error(&with("health_path = \"/h\"\nhealthy_threshold = 0"))
            .contains("upstream[0].healthy_threshold: must be at least 1")
    );
    let config = parse(&with(
        "balance = \"least_outstanding\"\nhealth_path = \"/healthz\"\neject_after = 3\neject_for = \"1m\"\ndns_refresh = \"30s\"",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.balance, Balance::LeastOutstanding);
    assert_eq!(upstream.dns_refresh, Some(Duration::from_secs(30)));
    assert_eq!(upstream.health.eject_after, 3);
    assert_eq!(upstream.health.eject_for, Duration::from_secs(60));
    let active = upstream.health.active.as_ref().expect("active checks");
    assert_eq!(active.path, "/healthz");
    assert_eq!(
        (
            active.interval,
            active.timeout,
            active.healthy_threshold,
            active.unhealthy_threshold
        ),
        (Duration::from_secs(10), Duration::from_secs(2), 2, 3)
    );
}
