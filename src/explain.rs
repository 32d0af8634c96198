//! `jwtgate explain`: what the gateway would do with one request, without
//! sending it. Every step reuses the code the gateway runs, so the answer
//! cannot drift from the behaviour.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

use crate::auth::{self, AuthError};
use crate::config::Config;
use crate::headers::{self, Identity};
use crate::jwt::{self, JwtError, Validation};
use crate::routes::{self, AuthMode, RouteError};
use crate::token;

/// The report, and the status the gateway would answer (200: forwarded).
pub struct Explanation {
    pub report: String,
    pub decision: StatusCode,
}

/// Explains `method target` with an optional bearer `token` at time `now`.
pub fn explain(
    config: &Config,
    method: &Method,
    target: &str,
    token: Option<&str>,
    now: i64,
) -> Explanation {
    let mut out = String::new();
    let decision = walk(config, method, target, token, now, &mut out);
    let verdict = match decision {
        StatusCode::OK => "forward to the upstream".to_owned(),
        status => format!("answer {status} at the edge; the upstream is not contacted"),
    };
    let _ = writeln!(out, "decision: {verdict}");
    Explanation {
        report: out,
        decision,
    }
}

fn walk(
    config: &Config,
    method: &Method,
    target: &str,
    token: Option<&str>,
    now: i64,
    out: &mut String,
) -> StatusCode {
    let _ = writeln!(out, "request: {method} {target}");
    // Parsed as the server's HTTP layer parses it: an absolute-form target
    // (`https://host/path`) is routed by its path.
    let Ok(uri) = target.parse::<http::Uri>() else {
        let _ = writeln!(out, "target: refused: not an HTTP request target");
        return StatusCode::BAD_REQUEST;
    };
    let (path, query) = (uri.path(), uri.query());
    if method == Method::CONNECT {
        let _ = writeln!(
            out,
            "method: CONNECT asks for a tunnel; the gateway opens none"
        );
        return StatusCode::NOT_IMPLEMENTED;
    }
    let path = match routes::normalize(path) {
        Ok(path) => path,
        Err(err) => {
            let _ = writeln!(out, "path: refused: {err}");
            return StatusCode::BAD_REQUEST;
        }
    };
    let _ = writeln!(
        out,
        "path: {path} (normalised; routed and forwarded as this)"
    );

    let route = match config.routes.lookup(method, &path) {
        Ok(route) => route,
        Err(RouteError::NotFound) => {
            let _ = writeln!(out, "route: none matches");
            return StatusCode::NOT_FOUND;
        }
        Err(RouteError::MethodNotAllowed { prefix, allowed }) => {
            let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
            let _ = writeln!(
                out,
                "route: {prefix} is the longest matching prefix but allows only {}; no fall-through to shorter prefixes",
                allowed.join(", ")
            );
            return StatusCode::METHOD_NOT_ALLOWED;
        }
    };
    let upstream = &config.upstreams[route.upstream];
    let methods = route.methods.as_ref().map_or("any method".to_owned(), |m| {
        m.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    });
    let roles = if route.roles.is_empty() {
        "any valid token".to_owned()
    } else {
        format!("one of roles {}", route.roles.join(","))
    };
    let _ = writeln!(
        out,
        "route: {} (longest matching prefix; {methods}; auth {}; {roles}) → upstream {} ({})",
        route.prefix,
        auth_name(route.auth),
        upstream.name,
        upstream.url()
    );

    let mut request_headers = HeaderMap::new();
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        request_headers.insert(AUTHORIZATION, value);
    }
    if route.auth != AuthMode::None
        && let Some(token) = token
    {
        describe_token(config, token, now, out);
    }
    let mut measured = None;
    let verified = match auth::authorize(
        route,
        token,
        &config.keys,
        &config.providers,
        &config.revocations,
        now,
        &mut measured,
    ) {
        Ok(verified) => verified,
        Err(err) => {
            let status = match &err {
                AuthError::Forbidden { .. } | AuthError::ClaimRule { .. } => StatusCode::FORBIDDEN,
                AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
                // As the gateway answers: a key source that has not loaded
                // is the gateway's problem, not the token's.
                AuthError::Token(JwtError::KeysUnavailable { .. }) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                AuthError::Missing
                | AuthError::Token(_)
                | AuthError::Revoked { .. }
                | AuthError::WrongProvider { .. } => StatusCode::UNAUTHORIZED,
            };
            let _ = writeln!(out, "authorization: refused: {err}");
            return status;
        }
    };
    let _ = match (&verified, route.auth) {
        (_, AuthMode::None) => writeln!(out, "authorization: public route; no token checked"),
        (None, _) => writeln!(
            out,
            "authorization: optional route without a token; forwarded anonymously"
        ),
        (Some(v), _) => writeln!(
            out,
            "authorization: ok (user {}, roles [{}])",
            v.user.as_deref().unwrap_or("-"),
            v.roles
        ),
    };

    let no_headers = Vec::new();
    let claim_headers = verified.as_ref().map(|v| {
        let provider = config
            .provider_headers
            .get(v.provider)
            .unwrap_or(&no_headers);
        [provider.as_slice(), route.headers.as_slice()]
    });
    let identity = verified
        .as_ref()
        .zip(claim_headers.as_ref())
        .map(|(v, claim_headers)| Identity {
            user: v.user.as_deref(),
            roles: &v.roles,
            claims: &v.claims,
            claim_headers,
        });
    headers::remove_override_headers(
        &mut request_headers,
        &config.server.forward_override_headers,
    );
    headers::remove_hop_by_hop(&mut request_headers);
    headers::prepare_request(
        &mut request_headers,
        identity,
        &config.claim_header_names,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        None,
    );
    let forwarded = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let _ = writeln!(
        out,
        "upstream receives: {method} {}{forwarded} with gateway headers:",
        upstream.url().to_string().trim_end_matches('/')
    );
    for (name, value) in &request_headers {
        let _ = writeln!(
            out,
            "  {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    let _ = writeln!(
        out,
        "  (x-forwarded-for is the client's address; authorization and client identity headers are removed)"
    );
    StatusCode::OK
}

/// The token's contents and every check it fails, each found by running the
/// real verifier with the previous failure's check relaxed.
fn describe_token(config: &Config, token: &str, now: i64, out: &mut String) {
    match token::decode_unverified(token) {
        Ok((header, claims)) => {
            let _ = writeln!(out, "token header (unverified): {header}");
            let _ = writeln!(out, "token claims (unverified): {claims}");
        }
        Err(err) => {
            let _ = writeln!(out, "token: {err}");
        }
    }
    let mut providers = config.providers.clone();
    let mut at = now;
    let mut failures = Vec::new();
    for _ in 0..8 {
        match jwt::verify_among(token, &config.keys, &providers, at, &mut None) {
            Ok(_) => break,
            Err(err) => {
                let mut relaxed = false;
                let mut next = at;
                for provider in &mut providers {
                    next = at;
                    relaxed |= relax(&err, &mut provider.validation, &mut next);
                }
                at = next;
                failures.push(err);
                if !relaxed {
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        let _ = writeln!(
            out,
            "token checks: all pass (key, algorithm, signature, time window, issuer, audience, required claims)"
        );
    }
    for failure in &failures {
        let _ = writeln!(
            out,
            "token check failed: {failure} (reason {})",
            failure.reason()
        );
    }
}

/// Relaxes the check behind `err` so the next run reports the next failure.
/// Key, algorithm, signature and format failures cannot be relaxed.
fn relax(err: &JwtError, validation: &mut Validation, at: &mut i64) -> bool {
    match err {
        JwtError::Expired { exp, leeway, .. } => {
            *at = exp.saturating_add(*leeway).saturating_sub(1)
        }
        JwtError::NotYetValid { nbf, .. } => *at = *nbf,
        JwtError::IssuedInFuture { iat, .. } => *at = *iat,
        JwtError::BadIssuer => {
            validation.issuers.clear();
            validation.issuer_patterns.clear();
        }
        JwtError::BadAudience => validation.audiences.clear(),
        JwtError::BadType { .. } => validation.typ.clear(),
        JwtError::MissingClaim { claim } => {
            validation.required.retain(|c| c != claim);
            match claim.as_str() {
                "iss" => {
                    validation.issuers.clear();
                    validation.issuer_patterns.clear();
                }
                "aud" => validation.audiences.clear(),
                _ => {}
            }
        }
        _ => return false,
    }
    true
}

fn auth_name(auth: AuthMode) -> &'static str {
    match auth {
        AuthMode::None => "none",
        AuthMode::Optional => "optional",
        AuthMode::Required => "required",
    }
}
