//! The file as written: serde structs that refuse unknown keys and keep
//! spans, so validation can point at the line of a bad value.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    pub(super) admin: Option<RawAdmin>,
    pub(super) log: Option<RawLog>,
    #[serde(default)]
    pub(super) jwt: RawJwt,
    #[serde(default)]
    pub(super) upstream: Vec<RawUpstream>,
    #[serde(default)]
    pub(super) route: Vec<RawRoute>,
    #[serde(default)]
    pub(super) provider: Vec<Spanned<RawProvider>>,
    pub(super) revocation: Option<RawRevocation>,
    pub(super) reload: Option<RawReload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub(super) watch: Option<bool>,
    pub(super) watch_interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub(super) file: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Spanned<String>,
    pub(super) tls_cert: PathBuf,
    pub(super) tls_key: PathBuf,
    pub(super) workers: Option<Spanned<usize>>,
    pub(super) handshake_timeout: Option<Spanned<String>>,
    pub(super) header_read_timeout: Option<Spanned<String>>,
    pub(super) max_connections: Option<Spanned<usize>>,
    pub(super) shutdown_grace: Option<Spanned<String>>,
    pub(super) max_header_bytes: Option<Spanned<usize>>,
    pub(super) max_headers: Option<Spanned<usize>>,
    pub(super) max_uri_bytes: Option<Spanned<usize>>,
    pub(super) max_body_bytes: Option<Spanned<u64>>,
    pub(super) server_timing: Option<bool>,
    pub(super) forward_override_headers: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Spanned<String>,
    pub(super) ready_needs_upstreams: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<Spanned<String>>,
    pub(super) format: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    #[serde(default)]
    pub(super) issuers: Vec<String>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    pub(super) leeway: Option<Spanned<String>>,
    pub(super) require: Option<Spanned<Vec<String>>>,
    pub(super) user_claim: Option<Spanned<RawClaimPath>>,
    pub(super) role_claim: Option<Spanned<RawClaimPath>>,
    pub(super) query_param: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    pub(super) jwks: Vec<Spanned<RawJwks>>,
    pub(super) verified_cache: Option<usize>,
}

/// A claim: a string is a top-level name (dots, slashes and colons
/// included), an array a path into nested objects.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawClaimPath {
    Name(String),
    Path(Vec<String>),
}

/// `[[provider]]`: one token issuer, with what `[jwt]` holds plus its own
/// issuer templates, token type, size limit and claim headers.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: Spanned<String>,
    pub(super) issuers: Spanned<Vec<String>>,
    pub(super) tenants: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    pub(super) typ: Option<Spanned<Vec<String>>>,
    pub(super) leeway: Option<Spanned<String>>,
    pub(super) require: Option<Spanned<Vec<String>>>,
    pub(super) user_claim: Option<Spanned<RawClaimPath>>,
    pub(super) role_claim: Option<Spanned<RawClaimPath>>,
    pub(super) max_token_bytes: Option<Spanned<usize>>,
    pub(super) headers: Option<Spanned<std::collections::BTreeMap<String, RawClaimPath>>>,
    pub(super) payload_header: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) keys: Vec<Spanned<RawKey>>,
    #[serde(default)]
    pub(super) jwks: Vec<Spanned<RawJwks>>,
}

/// `[[route.claims]]`: one rule on one claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimRule {
    pub(super) claim: Spanned<RawClaimPath>,
    pub(super) any_of: Option<Vec<String>>,
    pub(super) all_of: Option<Vec<String>>,
    pub(super) equals: Option<String>,
    pub(super) glob: Option<String>,
    #[serde(default)]
    pub(super) space_separated: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKey {
    pub(super) kid: Option<Spanned<String>>,
    pub(super) alg: Spanned<String>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<PathBuf>>,
    pub(super) secret_encoding: Option<Spanned<String>>,
    pub(super) public_key_file: Option<Spanned<PathBuf>>,
    pub(super) issuer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwks {
    pub(super) file: Option<Spanned<PathBuf>>,
    pub(super) url: Option<Spanned<String>>,
    /// An issuer URL whose OpenID Connect discovery document names the JWKS.
    pub(super) discovery: Option<Spanned<String>>,
    pub(super) issuer: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    pub(super) alg: Option<Spanned<String>>,
    pub(super) refresh: Option<Spanned<String>>,
    pub(super) cooldown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) name: Spanned<String>,
    pub(super) url: Spanned<RawUrls>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) connect_timeout: Option<Spanned<String>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    pub(super) tls_server_name: Option<Spanned<String>>,
    pub(super) client_cert: Option<Spanned<PathBuf>>,
    pub(super) client_key: Option<Spanned<PathBuf>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) balance: Option<Spanned<String>>,
    pub(super) dns_refresh: Option<Spanned<String>>,
    pub(super) eject_after: Option<Spanned<u32>>,
    pub(super) eject_for: Option<Spanned<String>>,
    pub(super) health_path: Option<Spanned<String>>,
    pub(super) health_interval: Option<Spanned<String>>,
    pub(super) health_timeout: Option<Spanned<String>>,
    pub(super) healthy_threshold: Option<Spanned<u32>>,
    pub(super) unhealthy_threshold: Option<Spanned<u32>>,
}

/// `url = "http://a"` or `url = ["http://a", "http://b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawUrls {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) path: Spanned<String>,
    pub(super) upstream: Spanned<String>,
    #[serde(default)]
    pub(super) auth: Option<Spanned<String>>,
    pub(super) methods: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) roles: Option<Spanned<Vec<String>>>,
    pub(super) providers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    #[serde(default)]
    pub(super) claims: Vec<Spanned<RawClaimRule>>,
    pub(super) headers: Option<Spanned<std::collections::BTreeMap<String, RawClaimPath>>>,
}
