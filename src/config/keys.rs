//! `[jwt]`: validation rules, keys and key sources.

use std::collections::HashSet;
use std::path::PathBuf;

use http::Uri;
use toml::Spanned;

use super::duration::{MILLISECOND, SECOND, duration_at_least, duration_or};
use super::error::{Invalid, invalid};
use super::raw::{RawClaimPath, RawJwks, RawJwt, RawProvider};
use crate::headers::{Carries, ClaimHeader};
use crate::jwks::{self, Location, Source};
use crate::jwt::{Alg, ClaimPath, Provider, Validation};
use crate::keys::{Key, KeyError, SecretEncoding};

/// `[jwt]` as a provider, or `[[provider]]` tables: each provider's rules,
/// keys (stamped with its index) and key sources, in config order.
pub(super) struct Providers {
    pub(super) providers: Vec<Provider>,
    /// Per provider, the claim headers its tokens send upstream.
    pub(super) headers: Vec<Vec<ClaimHeader>>,
    pub(super) keys: Vec<Key>,
    pub(super) sources: Vec<Source>,
}

/// Validates `[jwt]` and every `[[provider]]`. `[jwt]` is a provider (the
/// first, named "jwt") when it has keys or when no `[[provider]]` exists.
pub(super) fn validate_providers(
    jwt: RawJwt,
    raw_providers: Vec<Spanned<RawProvider>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Providers, Invalid> {
    let mut all = Providers {
        providers: Vec::new(),
        headers: Vec::new(),
        keys: Vec::new(),
        sources: Vec::new(),
    };
    let jwt_has_keys = !jwt.keys.is_empty() || !jwt.jwks.is_empty();
    if jwt_has_keys || raw_providers.is_empty() {
        let (validation, keys, sources) = validate_jwt(jwt, env, "jwt", 0)?;
        all.providers.push(Provider {
            name: "jwt".to_owned(),
            validation,
        });
        all.headers.push(Vec::new());
        all.keys.extend(keys);
        all.sources.extend(sources);
    }
    let mut names = HashSet::from(["jwt".to_owned()]);
    for (i, raw) in raw_providers.into_iter().enumerate() {
        let span = raw.span();
        let raw = raw.into_inner();
        let at = |field: &str| format!("provider[{i}].{field}");
        if !names.insert(raw.name.get_ref().clone()) || raw.name.get_ref().is_empty() {
            return Err(invalid(
                &raw.name,
                at("name"),
                format!(
                    "{:?} is empty or names another provider",
                    raw.name.get_ref()
                ),
            ));
        }
        let index = all.providers.len();
        let (issuers, issuer_patterns) = issuers(&raw, &at)?;
        let as_jwt = RawJwt {
            issuers: Vec::new(),
            audiences: raw.audiences,
            leeway: raw.leeway,
            require: raw.require,
            user_claim: raw.user_claim,
            role_claim: raw.role_claim,
            query_param: None,
            keys: raw.keys,
            jwks: raw.jwks,
            verified_cache: None,
        };
        let prefix = format!("provider[{i}]");
        let (mut validation, keys, sources) = validate_jwt(as_jwt, env, &prefix, index)?;
        if keys.is_empty() && sources.is_empty() {
            return Err(Invalid {
                span: Some(span),
                key: prefix,
                message: "a provider needs [[provider.keys]] or [[provider.jwks]]".to_owned(),
            });
        }
        validation.issuers = issuers;
        validation.issuer_patterns = issuer_patterns;
        validation.typ = match raw.typ {
            Some(typ) if typ.get_ref().iter().any(String::is_empty) => {
                return Err(invalid(&typ, at("typ"), "a typ cannot be empty"));
            }
            Some(typ) => (typ.into_inner().iter())
                .map(|t| {
                    let t = t.to_ascii_lowercase();
                    t.strip_prefix("application/")
                        .map(str::to_owned)
                        .unwrap_or(t)
                })
                .collect(),
            None => Vec::new(),
        };
        validation.max_token_bytes = match raw.max_token_bytes {
            Some(max) if !(1024..=1024 * 1024).contains(max.get_ref()) => {
                return Err(invalid(
                    &max,
                    at("max_token_bytes"),
                    "must be 1024 to 1048576",
                ));
            }
            Some(max) => max.into_inner(),
            None => 16 * 1024,
        };
        let mut headers = claim_headers(raw.headers, &at("headers"))?;
        headers.extend(payload_header(raw.payload_header, &at("payload_header"))?);
        all.headers.push(headers);
        all.providers.push(Provider {
            name: raw.name.into_inner(),
            validation,
        });
        all.keys.extend(keys);
        all.sources.extend(sources);
    }
    Ok(all)
}

/// Exact issuers, and templates open to any tenant as prefix and suffix.
type Issuers = (Vec<String>, Vec<(String, String)>);

/// A provider's issuers: exact ones, those a `{tenant}` template makes
/// with each listed tenant, and templates open to any tenant (`tenants =
/// ["*"]`, said explicitly) as prefix and suffix.
fn issuers(raw: &RawProvider, at: &dyn Fn(&str) -> String) -> Result<Issuers, Invalid> {
    if raw.issuers.get_ref().is_empty() {
        return Err(invalid(
            &raw.issuers,
            at("issuers"),
            "a provider needs at least one issuer",
        ));
    }
    let tenants = raw
        .tenants
        .as_ref()
        .map(|t| t.get_ref().as_slice())
        .unwrap_or_default();
    let (mut exact, mut patterns) = (Vec::new(), Vec::new());
    for issuer in raw.issuers.get_ref() {
        let Some((prefix, suffix)) = issuer.split_once("{tenant}") else {
            exact.push(issuer.clone());
            continue;
        };
        if suffix.contains("{tenant}") || tenants.is_empty() {
            return Err(invalid(
                &raw.issuers,
                at("issuers"),
                format!(
                    "{issuer:?}: a template holds {{tenant}} once, and needs `tenants` (a list, or [\"*\"] for any)"
                ),
            ));
        }
        for tenant in tenants {
            match tenant.as_str() {
                "*" => patterns.push((prefix.to_owned(), suffix.to_owned())),
                t if t.is_empty() || t.contains('/') => {
                    let span = raw.tenants.as_ref().map(Spanned::span);
                    return Err(Invalid {
                        span,
                        key: at("tenants"),
                        message: format!("{t:?} is not a tenant"),
                    });
                }
                t => exact.push(format!("{prefix}{t}{suffix}")),
            }
        }
    }
    Ok((exact, patterns))
}

/// `headers = { X-Email = "email" }`: header names checked, and never one
/// the gateway sets itself.
pub(super) fn claim_headers(
    raw: Option<Spanned<std::collections::BTreeMap<String, RawClaimPath>>>,
    key: &str,
) -> Result<Vec<ClaimHeader>, Invalid> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let span = raw.span();
    let mut headers = Vec::new();
    for (name, claim) in raw.into_inner() {
        let fail = |message: String| Invalid {
            span: Some(span.clone()),
            key: format!("{key}.{name}"),
            message,
        };
        let parsed = header_name(&name).map_err(fail)?;
        let claim = claim_path(claim)
            .ok_or_else(|| fail("a claim path needs at least one non-empty name".to_owned()))?;
        headers.push(ClaimHeader {
            name: parsed,
            carries: Carries::Claim(claim),
        });
    }
    Ok(headers)
}

/// A claim header's name: valid, and never one the gateway sets or reads itself.
fn header_name(name: &str) -> Result<http::HeaderName, String> {
    let parsed = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let reserved = [
        "x-user-id",
        "x-role",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "host",
        "authorization",
        "forwarded",
        "connection",
        "cookie",
        "content-length",
        "transfer-encoding",
        "te",
        "upgrade",
    ];
    match reserved.contains(&parsed.as_str()) {
        true => Err(format!("{name:?} is set or checked by the gateway itself")),
        false => Ok(parsed),
    }
}

/// `payload_header = "X-Jwt-Payload"`: the whole verified claim set in one header.
fn payload_header(raw: Option<Spanned<String>>, key: &str) -> Result<Option<ClaimHeader>, Invalid> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let name = header_name(raw.get_ref()).map_err(|message| invalid(&raw, key, message))?;
    Ok(Some(ClaimHeader {
        name,
        carries: Carries::Payload,
    }))
}

/// A claim path from the file: a name, or a non-empty path of names.
pub(super) fn claim_path(raw: RawClaimPath) -> Option<ClaimPath> {
    let path = match raw {
        RawClaimPath::Name(name) => vec![name],
        RawClaimPath::Path(path) => path,
    };
    (!path.is_empty() && path.iter().all(|name| !name.is_empty())).then_some(ClaimPath(path))
}

pub(super) fn validate_jwt(
    raw: RawJwt,
    env: &dyn Fn(&str) -> Option<String>,
    section: &str,
    provider: usize,
) -> Result<(Validation, Vec<Key>, Vec<Source>), Invalid> {
    let named = |key: &mut String| {
        if let Some(rest) = key.strip_prefix("jwt") {
            *key = format!("{section}{rest}");
        }
    };
    let (validation, keys, mut sources) =
        validate_section(raw, env, provider).map_err(|mut err| {
            named(&mut err.key);
            err
        })?;
    // Sources name themselves in messages as their table does.
    for source in &mut sources {
        named(&mut source.name);
    }
    Ok((validation, keys, sources))
}

fn validate_section(
    raw: RawJwt,
    env: &dyn Fn(&str) -> Option<String>,
    provider: usize,
) -> Result<(Validation, Vec<Key>, Vec<Source>), Invalid> {
    let defaults = Validation::default();
    let leeway = duration_or(raw.leeway, "jwt.leeway", 30)?;
    let required = match raw.require {
        // A bound on per-token work, not a limit of the verifier: every
        // required claim the verifier does not read itself is compared
        // with every member name of every token.
        Some(require) if require.get_ref().len() > 64 => {
            return Err(invalid(
                &require,
                "jwt.require",
                "at most 64 claims can be required",
            ));
        }
        Some(require) => require.into_inner(),
        None => defaults.required,
    };
    let validation = Validation {
        leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
        issuers: raw.issuers,
        audiences: raw.audiences,
        required,
        user_claim: identity_claim(raw.user_claim, "jwt.user_claim", defaults.user_claim)?,
        role_claim: identity_claim(
            raw.role_claim.clone(),
            "jwt.role_claim",
            defaults.role_claim,
        )?,
        ..Validation::default()
    };
    if validation.user_claim == validation.role_claim {
        let span = raw.role_claim.as_ref().map(Spanned::span);
        return Err(Invalid {
            span,
            key: "jwt.role_claim".to_owned(),
            message: format!(
                "{:?} is also the user_claim; one claim cannot be both",
                validation.role_claim.to_string()
            ),
        });
    }

    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for (i, raw_key) in raw.keys.into_iter().enumerate() {
        let span = raw_key.span();
        let raw_key = raw_key.into_inner();
        let at = |field: &str| format!("jwt.keys[{i}].{field}");
        let alg = parse_alg(&raw_key.alg, &at("alg"))?;
        let whole = |message: String| Invalid {
            span: Some(span.clone()),
            key: format!("jwt.keys[{i}]"),
            message,
        };
        let encoding = match &raw_key.secret_encoding {
            None => SecretEncoding::Raw,
            Some(name) if raw_key.public_key_file.is_some() => {
                return Err(invalid(
                    name,
                    at("secret_encoding"),
                    "applies to secret_env and secret_file, not public_key_file",
                ));
            }
            Some(name) => SecretEncoding::from_name(name.get_ref()).ok_or_else(|| {
                invalid(
                    name,
                    at("secret_encoding"),
                    format!("{:?} is not one of raw, base64", name.get_ref()),
                )
            })?,
        };
        let decode = |stored: Vec<u8>| {
            encoding.decode(stored).map_err(|err| {
                let span = raw_key.secret_encoding.as_ref().map(Spanned::span);
                Invalid {
                    span,
                    key: at("secret_encoding"),
                    message: err.to_string(),
                }
            })
        };
        let material = match (
            raw_key.secret_env,
            raw_key.secret_file,
            raw_key.public_key_file,
        ) {
            (Some(var), None, None) => KeyMaterial::Secret(decode(
                env(var.get_ref())
                    .filter(|s| !s.is_empty())
                    .map(String::into_bytes)
                    .ok_or_else(|| {
                        invalid(
                            &var,
                            at("secret_env"),
                            format!("environment variable {} is not set", var.get_ref()),
                        )
                    })?,
            )?),
            (None, Some(path), None) => {
                KeyMaterial::Secret(decode(std::fs::read(path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("secret_file"),
                        format!("cannot read {}: {err}", path.get_ref().display()),
                    )
                })?)?)
            }
            (None, None, Some(path)) => KeyMaterial::PublicKey(path),
            _ => {
                return Err(whole(
                    "set exactly one of secret_env, secret_file or public_key_file (inline secrets are not accepted)".to_owned(),
                ));
            }
        };
        if let Some(kid) = &raw_key.kid
            && !kids.insert(kid.get_ref().clone())
        {
            return Err(invalid(
                kid,
                at("kid"),
                format!("kid {:?} is used twice", kid.get_ref()),
            ));
        }
        let kid = raw_key.kid.map(Spanned::into_inner);
        // The algorithm decides what the material may be: a public key can
        // never become an HMAC secret, nor a secret a public key.
        let key = match material {
            KeyMaterial::Secret(secret) => {
                Key::hmac(kid, alg, &secret).map_err(|err| whole(err.to_string()))?
            }
            // Refused before the file is read: the algorithm decides.
            KeyMaterial::PublicKey(path) if alg.is_hmac() => {
                return Err(invalid(
                    &path,
                    at("public_key_file"),
                    KeyError::PublicKeyForHmac { alg }.to_string(),
                ));
            }
            KeyMaterial::PublicKey(path) => {
                Key::from_pem_file(kid, alg, path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("public_key_file"),
                        format!("{}: {err}", path.get_ref().display()),
                    )
                })?
            }
        };
        keys.push(key.for_issuer(raw_key.issuer).for_provider(provider));
    }
    let mut sources = Vec::new();
    for (i, raw_source) in raw.jwks.into_iter().enumerate() {
        let (source, loaded) = validate_source(raw_source, &format!("jwt.jwks[{i}]"), provider)?;
        if let Some(loaded) = loaded {
            keys.extend(loaded);
        }
        sources.push(source);
    }
    Ok((validation, keys, sources))
}

/// Validates one key source table, named `name` (`jwt.jwks[2]`) in
/// messages; a file source is read and parsed here, and its keys returned.
/// The shape any table holding a key source shares: exactly one of `file`,
/// `url` or `discovery`, with `issuer`, `ca_file`, `alg`, `refresh` and
/// `cooldown` beside it.
pub(super) fn validate_source(
    raw: Spanned<RawJwks>,
    name: &str,
    provider: usize,
) -> Result<(Source, Option<Vec<Key>>), Invalid> {
    let span = raw.span();
    let raw = raw.into_inner();
    let at = |field: &str| format!("{name}.{field}");
    let default_alg = match &raw.alg {
        Some(alg) => Some(parse_alg(alg, &at("alg"))?),
        None => None,
    };
    // Floors keep "0s" from turning refreshes into a hot loop against
    // the identity provider (an unknown-kid flood fetches once per cooldown).
    let refresh = duration_at_least(raw.refresh, &at("refresh"), 300, SECOND)?;
    let cooldown = duration_at_least(raw.cooldown, &at("cooldown"), 30, 100 * MILLISECOND)?;
    let trust = |ca_file: &Option<Spanned<PathBuf>>, url: &Spanned<String>, key: &str| {
        let roots = match ca_file {
            None => None,
            Some(ca) => Some(read_ca_file(ca, &at("ca_file"))?),
        };
        jwks::Trust::new(roots)
            .map_err(|err| invalid(url, at(key), format!("unusable CA certificate: {err}")))
    };
    let raw_issuer = raw.issuer;
    let mut issuer = raw_issuer.as_ref().map(|i| i.get_ref().clone());
    let mut skipped = Vec::new();
    let mut loaded = None;
    let location = match (raw.file, raw.url, raw.discovery) {
        (Some(path), None, None) => {
            if let Some(ca) = &raw.ca_file {
                return Err(invalid(
                    ca,
                    at("ca_file"),
                    "only a url or discovery source uses ca_file",
                ));
            }
            let text = std::fs::read(path.get_ref()).map_err(|err| {
                invalid(
                    &path,
                    at("file"),
                    format!("cannot read {}: {err}", path.get_ref().display()),
                )
            })?;
            let parsed =
                jwks::parse_jwks(&text, issuer.as_deref(), default_alg).map_err(|err| {
                    invalid(
                        &path,
                        at("file"),
                        format!("{}: {err}", path.get_ref().display()),
                    )
                })?;
            skipped = parsed.skipped;
            loaded = Some(
                (parsed.keys.into_iter())
                    .map(|key| key.for_provider(provider))
                    .collect(),
            );
            Location::File(path.into_inner())
        }
        (None, Some(url), None) => {
            let parsed: Uri = url
                .get_ref()
                .parse()
                .ok()
                .filter(|u: &Uri| u.scheme_str() == Some("https") && u.host().is_some())
                .ok_or_else(|| {
                    invalid(
                        &url,
                        at("url"),
                        format!("{:?} is not an https:// URL", url.get_ref()),
                    )
                })?;
            Location::Url {
                trust: trust(&raw.ca_file, &url, "ca_file")?,
                url: parsed,
            }
        }
        (None, None, Some(discovered)) => {
            if let Some(bound) = &raw_issuer {
                return Err(invalid(
                    bound,
                    at("issuer"),
                    "a discovery source is bound to the issuer it discovers; drop issuer",
                ));
            }
            let url = jwks::discovery_url(discovered.get_ref()).ok_or_else(|| {
                invalid(
                    &discovered,
                    at("discovery"),
                    format!(
                        "{:?} is not an issuer URL (https://, no query or fragment)",
                        discovered.get_ref()
                    ),
                )
            })?;
            issuer = Some(discovered.get_ref().clone());
            Location::Discovery {
                trust: trust(&raw.ca_file, &discovered, "ca_file")?,
                issuer: discovered.into_inner(),
                url,
            }
        }
        _ => {
            return Err(Invalid {
                span: Some(span),
                key: name.to_owned(),
                message: "set exactly one of file, url or discovery".to_owned(),
            });
        }
    };
    let source = Source {
        name: name.to_owned(),
        location,
        issuer,
        default_alg,
        refresh,
        cooldown,
        provider,
        skipped,
    };
    Ok((source, loaded))
}

/// The certificates of a `ca_file`: at least one.
fn read_ca_file(
    ca: &Spanned<PathBuf>,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, Invalid> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca.get_ref())
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            invalid(
                ca,
                key,
                format!("cannot read {}: {err}", ca.get_ref().display()),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(ca, key, "holds no certificate"));
    }
    Ok(certs)
}

/// What a `[[jwt.keys]]` entry names: a secret's bytes, or a PEM file.
pub(super) enum KeyMaterial {
    Secret(Vec<u8>),
    PublicKey(Spanned<PathBuf>),
}

pub(super) fn parse_alg(alg: &Spanned<String>, key: &str) -> Result<Alg, Invalid> {
    Alg::from_name(alg.get_ref()).ok_or_else(|| {
        let names: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
        invalid(
            alg,
            key,
            format!("{:?} is not one of {}", alg.get_ref(), names.join(", ")),
        )
    })
}

/// The user and role claims must not be claims the verifier checks itself:
/// `user_claim = "exp"` would switch off expiry, and `user_claim = "jti"`
/// revocation by token id (`jti` would be read as a user, never as an id).
pub(super) fn identity_claim(
    raw: Option<Spanned<RawClaimPath>>,
    key: &str,
    default: ClaimPath,
) -> Result<ClaimPath, Invalid> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let span = raw.span();
    let fail = |message: String| Invalid {
        span: Some(span.clone()),
        key: key.to_owned(),
        message,
    };
    let path = claim_path(raw.into_inner())
        .ok_or_else(|| fail("a claim path needs at least one non-empty name".to_owned()))?;
    match path.name() {
        Some(name) if ["exp", "nbf", "iat", "iss", "aud", "jti"].contains(&name) => Err(fail(
            format!("{name:?} is checked by the verifier; name another claim"),
        )),
        _ => Ok(path),
    }
}
