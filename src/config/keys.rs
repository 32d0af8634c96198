//! `[jwt]`: validation rules, keys and key sources.

use std::collections::HashSet;
use std::path::PathBuf;

use http::Uri;
use toml::Spanned;

use super::duration::{MILLISECOND, SECOND, duration_at_least, duration_or};
use super::error::{Invalid, invalid};
use super::raw::RawJwt;
use crate::jwks::{self, Location, Source};
use crate::jwt::{Alg, Validation};
use crate::keys::{Key, KeyError, KeySet, SecretEncoding};

pub(super) fn validate_jwt(
    raw: RawJwt,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Validation, KeySet, Vec<Source>), Invalid> {
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
    };
    if validation.user_claim == validation.role_claim {
        let span = raw.role_claim.as_ref().map(Spanned::span);
        return Err(Invalid {
            span,
            key: "jwt.role_claim".to_owned(),
            message: format!(
                "{:?} is also the user_claim; one claim cannot be both",
                validation.role_claim
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
        keys.push(key.for_issuer(raw_key.issuer));
    }
    let mut sources = Vec::new();
    for (i, raw_source) in raw.jwks.into_iter().enumerate() {
        let span = raw_source.span();
        let raw_source = raw_source.into_inner();
        let at = |field: &str| format!("jwt.jwks[{i}].{field}");
        let default_alg = match &raw_source.alg {
            Some(alg) => Some(parse_alg(alg, &at("alg"))?),
            None => None,
        };
        // Floors keep "0s" from turning refreshes into a hot loop against
        // the identity provider (an unknown-kid flood fetches once per cooldown).
        let refresh = duration_at_least(raw_source.refresh, &at("refresh"), 300, SECOND)?;
        let cooldown =
            duration_at_least(raw_source.cooldown, &at("cooldown"), 30, 100 * MILLISECOND)?;
        let location = match (raw_source.file, raw_source.url) {
            (Some(path), None) => {
                if let Some(ca) = &raw_source.ca_file {
                    return Err(invalid(ca, at("ca_file"), "only a url source uses ca_file"));
                }
                let text = std::fs::read(path.get_ref()).map_err(|err| {
                    invalid(
                        &path,
                        at("file"),
                        format!("cannot read {}: {err}", path.get_ref().display()),
                    )
                })?;
                let loaded = jwks::parse_jwks(&text, raw_source.issuer.as_deref(), default_alg)
                    .map_err(|err| {
                        invalid(
                            &path,
                            at("file"),
                            format!("{}: {err}", path.get_ref().display()),
                        )
                    })?;
                keys.extend(loaded);
                Location::File(path.into_inner())
            }
            (None, Some(url)) => {
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
                let roots = match &raw_source.ca_file {
                    None => None,
                    Some(ca) => {
                        use rustls::pki_types::pem::PemObject;
                        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca.get_ref())
                            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                            .map_err(|err| {
                                invalid(
                                    ca,
                                    at("ca_file"),
                                    format!("cannot read {}: {err}", ca.get_ref().display()),
                                )
                            })?;
                        if certs.is_empty() {
                            return Err(invalid(ca, at("ca_file"), "holds no certificate"));
                        }
                        Some(certs)
                    }
                };
                let tls = jwks::client_config(roots.as_deref()).map_err(|err| {
                    invalid(
                        &url,
                        at("ca_file"),
                        format!("unusable CA certificate: {err}"),
                    )
                })?;
                Location::Url { url: parsed, tls }
            }
            _ => {
                return Err(Invalid {
                    span: Some(span),
                    key: format!("jwt.jwks[{i}]"),
                    message: "set exactly one of file or url".to_owned(),
                });
            }
        };
        sources.push(Source {
            location,
            issuer: raw_source.issuer,
            default_alg,
            refresh,
            cooldown,
        });
    }
    Ok((validation, KeySet::new(keys), sources))
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
    raw: Option<Spanned<String>>,
    key: &str,
    default: String,
) -> Result<String, Invalid> {
    match raw {
        None => Ok(default),
        Some(name)
            if ["exp", "nbf", "iat", "iss", "aud", "jti", ""]
                .contains(&name.get_ref().as_str()) =>
        {
            Err(invalid(
                &name,
                key,
                format!(
                    "{:?} is checked by the verifier; name another claim",
                    name.get_ref()
                ),
            ))
        }
        Some(name) => Ok(name.into_inner()),
    }
}
