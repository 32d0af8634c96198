//! `[[upstream]]` and `[[route]]`.

use std::path::PathBuf;

use http::{Method, Uri};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use toml::Spanned;

use super::duration::{MILLISECOND, SECOND, duration_at_least};
use super::error::{Invalid, invalid};
use super::keys::{claim_headers, claim_path};
use super::raw::{RawClaimRule, RawRoute, RawUpstream, RawUrls};
use super::{ActiveHealth, Balance, Health, Protocol, Upstream};
use crate::jwt::Provider;
use crate::routes::{AuthMode, Route, RouteTable};
use crate::rules::{Check, ClaimRule};
use crate::upstream::tls::{self, UpstreamTls};

pub(super) fn validate_upstreams(raw: Vec<RawUpstream>) -> Result<Vec<Upstream>, Invalid> {
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(raw.len());
    for (i, up) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("upstream[{i}].{field}");
        if upstreams.iter().any(|u| u.name == *up.name.get_ref()) {
            return Err(invalid(
                &up.name,
                at("name"),
                format!("upstream {:?} is defined twice", up.name.get_ref()),
            ));
        }
        let texts = match up.url.get_ref() {
            RawUrls::One(url) => std::slice::from_ref(url),
            RawUrls::Many(urls) => urls.as_slice(),
        };
        if texts.is_empty() {
            return Err(invalid(&up.url, at("url"), "lists no URL"));
        }
        let urls = texts
            .iter()
            .map(|text| validate_url(text, &up.url, &at("url")))
            .collect::<Result<Vec<Uri>, Invalid>>()?;
        let first = &urls[0];
        if urls
            .iter()
            .any(|u| u.scheme() != first.scheme() || u.path() != first.path())
        {
            return Err(invalid(
                &up.url,
                at("url"),
                "every URL of an upstream has the same scheme and path prefix",
            ));
        }
        let protocol = match up.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("http1") => Protocol::Http1,
            Some("h2") => Protocol::Http2,
            Some(other) => {
                let span = up.protocol.as_ref().map(Spanned::span);
                return Err(Invalid {
                    span,
                    key: at("protocol"),
                    message: format!("{other:?} is not one of http1, h2"),
                });
            }
        };
        let tls = validate_tls(&up, &urls, protocol, &at)?;
        let balance = match up.balance.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("round_robin") => Balance::RoundRobin,
            Some("least_outstanding") => Balance::LeastOutstanding,
            Some(other) => {
                let span = up.balance.as_ref().map(Spanned::span);
                return Err(Invalid {
                    span,
                    key: at("balance"),
                    message: format!("{other:?} is not one of round_robin, least_outstanding"),
                });
            }
        };
        let dns_refresh = match &up.dns_refresh {
            None => None,
            Some(raw) => Some(duration_at_least(
                Some(raw.clone()),
                &at("dns_refresh"),
                0,
                SECOND,
            )?),
        };
        let several = urls.len() > 1 || dns_refresh.is_some();
        let health = validate_health(&up, several, &at)?;
        upstreams.push(Upstream {
            name: up.name.into_inner(),
            urls,
            tls,
            protocol,
            balance,
            dns_refresh,
            health,
            timeout: duration_at_least(up.timeout, &at("timeout"), 30, 10 * MILLISECOND)?,
            connect_timeout: duration_at_least(
                up.connect_timeout,
                &at("connect_timeout"),
                5,
                10 * MILLISECOND,
            )?,
        });
    }
    Ok(upstreams)
}

/// One endpoint URL: http or https, an authority, no query, no credentials.
fn validate_url(text: &str, span: &Spanned<RawUrls>, key: &str) -> Result<Uri, Invalid> {
    let url: Uri = text
        .parse()
        .map_err(|err| invalid(span, key, format!("{text:?} is not a URL: {err}")))?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.authority().is_none() {
        return Err(invalid(
            span,
            key,
            "must be http://host:port[/prefix] or https://host:port[/prefix]",
        ));
    }
    if url.query().is_some() {
        return Err(invalid(span, key, "must not have a query"));
    }
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(invalid(
            span,
            key,
            "must not carry credentials (user:password@)",
        ));
    }
    Ok(url)
}

/// Passive ejection and the optional active checks.
fn validate_health(
    up: &RawUpstream,
    several: bool,
    at: &dyn Fn(&str) -> String,
) -> Result<Health, Invalid> {
    let default_eject_after = if several { 5 } else { 0 };
    let count = |raw: &Option<Spanned<u32>>, key: &str, default: u32, min: u32| match raw {
        Some(v) if *v.get_ref() < min => {
            Err(invalid(v, at(key), format!("must be at least {min}")))
        }
        Some(v) => Ok(*v.get_ref()),
        None => Ok(default),
    };
    let active = match &up.health_path {
        None => {
            let keys = [
                (
                    "health_interval",
                    up.health_interval.as_ref().map(Spanned::span),
                ),
                (
                    "health_timeout",
                    up.health_timeout.as_ref().map(Spanned::span),
                ),
                (
                    "healthy_threshold",
                    up.healthy_threshold.as_ref().map(Spanned::span),
                ),
                (
                    "unhealthy_threshold",
                    up.unhealthy_threshold.as_ref().map(Spanned::span),
                ),
            ];
            if let Some((key, span)) = keys.into_iter().find_map(|(k, s)| s.map(|s| (k, s))) {
                return Err(Invalid {
                    span: Some(span),
                    key: at(key),
                    message: "applies only with health_path".to_owned(),
                });
            }
            None
        }
        Some(path) => {
            let parsed = path
                .get_ref()
                .parse::<http::uri::PathAndQuery>()
                .ok()
                .filter(|p| p.path().starts_with('/'));
            let Some(parsed) = parsed else {
                return Err(invalid(
                    path,
                    at("health_path"),
                    "must be an absolute path like /healthz",
                ));
            };
            Some(ActiveHealth {
                path: parsed,
                interval: duration_at_least(
                    up.health_interval.clone(),
                    &at("health_interval"),
                    10,
                    10 * MILLISECOND,
                )?,
                timeout: duration_at_least(
                    up.health_timeout.clone(),
                    &at("health_timeout"),
                    2,
                    10 * MILLISECOND,
                )?,
                healthy_threshold: count(&up.healthy_threshold, "healthy_threshold", 2, 1)?,
                unhealthy_threshold: count(&up.unhealthy_threshold, "unhealthy_threshold", 3, 1)?,
            })
        }
    };
    Ok(Health {
        // One endpoint that is ejected leaves nothing to send to: unless
        // asked, such an upstream keeps being tried by every request.
        eject_after: count(&up.eject_after, "eject_after", default_eject_after, 0)?,
        eject_for: duration_at_least(up.eject_for.clone(), &at("eject_for"), 30, 10 * MILLISECOND)?,
        active,
    })
}

/// The TLS settings of an https upstream; refuses them on an http one.
fn validate_tls(
    up: &RawUpstream,
    urls: &[Uri],
    protocol: Protocol,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<UpstreamTls>, Invalid> {
    if urls.iter().all(|u| u.scheme_str() != Some("https")) {
        let keys = [
            ("ca_file", up.ca_file.as_ref().map(Spanned::span)),
            ("client_cert", up.client_cert.as_ref().map(Spanned::span)),
            ("client_key", up.client_key.as_ref().map(Spanned::span)),
            (
                "tls_server_name",
                up.tls_server_name.as_ref().map(Spanned::span),
            ),
        ];
        if let Some((key, span)) = keys.into_iter().find_map(|(k, s)| s.map(|s| (k, s))) {
            return Err(Invalid {
                span: Some(span),
                key: at(key),
                message: "applies only to an https url".to_owned(),
            });
        }
        return Ok(None);
    }
    let certs = |path: &Spanned<PathBuf>, key: &str| {
        let certs = CertificateDer::pem_file_iter(path.get_ref())
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| {
                invalid(
                    path,
                    at(key),
                    format!("cannot read {}: {err}", path.get_ref().display()),
                )
            })?;
        if certs.is_empty() {
            return Err(invalid(path, at(key), "holds no certificate"));
        }
        Ok(certs)
    };
    let roots = up
        .ca_file
        .as_ref()
        .map(|ca| certs(ca, "ca_file"))
        .transpose()?;
    let identity = match (&up.client_cert, &up.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key.get_ref()).map_err(|err| {
                invalid(
                    key,
                    at("client_key"),
                    format!("cannot read {}: {err}", key.get_ref().display()),
                )
            })?;
            Some((chain, key))
        }
        (Some(cert), None) => {
            return Err(invalid(cert, at("client_cert"), "needs client_key too"));
        }
        (None, Some(key)) => {
            return Err(invalid(key, at("client_key"), "needs client_cert too"));
        }
    };
    let alpn: &[u8] = match protocol {
        Protocol::Http1 => b"http/1.1",
        Protocol::Http2 => b"h2",
    };
    let config = tls::client_config(roots.as_deref(), identity, alpn)
        .map_err(|err| invalid(&up.url, at("url"), format!("unusable TLS settings: {err}")))?;
    let server_name = match &up.tls_server_name {
        Some(name) => Some(ServerName::try_from(name.get_ref().clone()).map_err(|_| {
            invalid(
                name,
                at("tls_server_name"),
                "is not a DNS name or IP address",
            )
        })?),
        None => {
            let usable = |url: &Uri| {
                let host = url.host().unwrap_or_default();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                ServerName::try_from(bare).is_ok()
            };
            if !urls.iter().all(usable) {
                return Err(invalid(
                    &up.url,
                    at("url"),
                    "its host is not a DNS name or IP address usable in TLS; set tls_server_name",
                ));
            }
            None
        }
    };
    Ok(Some(UpstreamTls {
        config,
        server_name,
    }))
}

pub(super) fn validate_routes(
    raw: Vec<RawRoute>,
    upstreams: &[Upstream],
    providers: &[Provider],
) -> Result<RouteTable, Invalid> {
    if raw.is_empty() {
        return Err(Invalid {
            span: None,
            key: "route".to_owned(),
            message: "no [[route]] is configured; every request would be a 404".to_owned(),
        });
    }
    let mut routes: Vec<(Route, Spanned<String>)> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("route[{i}].{field}");
        let prefix =
            route_prefix(r.path.get_ref()).map_err(|msg| invalid(&r.path, at("path"), msg))?;
        let upstream = upstreams
            .iter()
            .position(|u| u.name == *r.upstream.get_ref())
            .ok_or_else(|| {
                invalid(
                    &r.upstream,
                    at("upstream"),
                    format!("no upstream named {:?}", r.upstream.get_ref()),
                )
            })?;
        let auth = match r.auth.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("required") => AuthMode::Required,
            Some("optional") => AuthMode::Optional,
            Some("none") => AuthMode::None,
            Some(other) => {
                let span = r.auth.as_ref().map(Spanned::span);
                return Err(Invalid {
                    span,
                    key: at("auth"),
                    message: format!("{other:?} is not one of none, optional, required"),
                });
            }
        };
        let methods = match &r.methods {
            None => None,
            Some(list) if list.get_ref().is_empty() => {
                return Err(invalid(
                    list,
                    at("methods"),
                    "an empty list allows nothing; omit it to allow every method",
                ));
            }
            Some(list) => Some(
                list.get_ref()
                    .iter()
                    .map(|m| match Method::from_bytes(m.as_bytes()) {
                        Ok(method) if m.bytes().all(|b| b.is_ascii_uppercase()) => Ok(method),
                        _ => Err(invalid(
                            list,
                            at("methods"),
                            format!("{m:?} is not an upper-case HTTP method"),
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let roles = match r.roles {
            None => Vec::new(),
            // An optional route lets a request without a token through,
            // so roles there would stop only the users who sent one.
            Some(roles) if auth != AuthMode::Required => {
                return Err(invalid(
                    &roles,
                    at("roles"),
                    "roles need auth = \"required\": without a token a request would pass them",
                ));
            }
            Some(roles) if roles.get_ref().iter().any(String::is_empty) => {
                return Err(invalid(&roles, at("roles"), "roles must be non-empty"));
            }
            Some(roles) => roles.into_inner(),
        };
        // Like roles: on a route that lets requests without a token through,
        // a claim rule or provider list would stop only token holders.
        let needs_token = |what: &str, span: Option<std::ops::Range<usize>>| Invalid {
            span,
            key: at(what),
            message: format!(
                "{what} need auth = \"required\": without a token a request would pass them"
            ),
        };
        if auth != AuthMode::Required {
            if let Some(first) = r.claims.first() {
                return Err(needs_token("claims", Some(first.span())));
            }
            if let Some(list) = &r.providers {
                return Err(needs_token("providers", Some(list.span())));
            }
            if !r.audiences.is_empty() {
                return Err(needs_token("audiences", None));
            }
        }
        let allowed = match &r.providers {
            None => Vec::new(),
            Some(list) => (list.get_ref().iter())
                .map(|name| {
                    (providers.iter())
                        .position(|p| p.name == *name)
                        .ok_or_else(|| {
                            invalid(list, at("providers"), format!("no provider named {name:?}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let rules = (r.claims.into_iter().enumerate())
            .map(|(j, rule)| claim_rule(rule, &at(&format!("claims[{j}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let route = Route {
            prefix,
            methods,
            auth,
            roles,
            upstream,
            providers: allowed,
            audiences: r.audiences,
            rules,
            headers: claim_headers(r.headers, &at("headers"))?,
        };
        if let Some(j) = routes.iter().position(|(other, _)| overlaps(other, &route)) {
            return Err(invalid(
                &r.path,
                at("path"),
                format!(
                    "overlaps route[{j}] ({:?}): same prefix, some method in common",
                    routes[j].1.get_ref()
                ),
            ));
        }
        routes.push((route, r.path));
    }
    Ok(RouteTable::new(
        routes.into_iter().map(|(route, _)| route).collect(),
    ))
}

/// `[[route.claims]]`: a claim path and at least one check.
fn claim_rule(raw: Spanned<RawClaimRule>, key: &str) -> Result<ClaimRule, Invalid> {
    let span = raw.span();
    let raw = raw.into_inner();
    let fail = |message: &str| Invalid {
        span: Some(span.clone()),
        key: key.to_owned(),
        message: message.to_owned(),
    };
    let claim = claim_path(raw.claim.into_inner())
        .ok_or_else(|| fail("claim: a claim path needs at least one non-empty name"))?;
    let mut checks = Vec::new();
    for (list, check) in [
        (raw.any_of, Check::AnyOf as fn(_) -> _),
        (raw.all_of, Check::AllOf),
    ] {
        match list {
            Some(list) if list.is_empty() => {
                return Err(fail("any_of and all_of need at least one value"));
            }
            Some(list) => checks.push(check(list)),
            None => {}
        }
    }
    checks.extend(raw.equals.map(Check::Equals));
    checks.extend(raw.glob.map(Check::Glob));
    if checks.is_empty() {
        return Err(fail("a rule needs any_of, all_of, equals or glob"));
    }
    Ok(ClaimRule {
        claim,
        space_separated: raw.space_separated,
        checks,
    })
}

/// Two routes with one prefix must not both accept a method.
pub(super) fn overlaps(a: &Route, b: &Route) -> bool {
    a.prefix == b.prefix
        && match (&a.methods, &b.methods) {
            (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
            _ => true,
        }
}

/// A route path must already be normal; a trailing slash is dropped.
pub(super) fn route_prefix(path: &str) -> Result<String, String> {
    match crate::routes::normalize(path) {
        Ok(normal) if normal == path => {
            let trimmed = path.trim_end_matches('/');
            Ok(if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            })
        }
        Ok(normal) => Err(format!("{path:?} is not in normal form; write {normal:?}")),
        Err(err) => Err(format!("{path:?}: {err}")),
    }
}
