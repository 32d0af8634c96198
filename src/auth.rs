//! From a request's headers to a verified identity, under a route's policy.

use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::jwks::Keyring;
use crate::jwt::{self, Alg, JwtError, Provider, Roles, Verified};
use crate::keys::KeySet;
use crate::revocation::{Revocations, Revoked};
use crate::routes::{AuthMode, Route};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token on a route that requires one.
    #[error("no bearer token")]
    Missing,
    /// RFC 6750 §3.1 `invalid_request`: e.g. the token sent twice.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid token: {0}")]
    Token(#[from] JwtError),
    /// A token that verifies, listed in the revocation file.
    #[error("revoked: {why}")]
    Revoked { user: Option<String>, why: Revoked },
    /// A valid token without any of the route's roles.
    #[error(
        "token of user {} has roles [{}], route needs one of [{}]",
        user.as_deref().unwrap_or("-"),
        roles,
        required.join(", ")
    )]
    Forbidden {
        user: Option<String>,
        roles: Roles,
        required: Vec<String>,
    },
    /// A valid token from a provider the route does not accept.
    #[error("token of provider {provider:?} is not accepted on this route")]
    WrongProvider { provider: String },
    /// A valid token whose claims fail one of the route's rules.
    #[error("token of user {} fails the rule {rule}", user.as_deref().unwrap_or("-"))]
    ClaimRule { user: Option<String>, rule: String },
}

impl AuthError {
    /// The user of a token that verified but was refused anyway (revoked,
    /// or without the route's role), for the access log.
    pub fn user(&self) -> Option<&str> {
        match self {
            AuthError::Revoked { user, .. }
            | AuthError::Forbidden { user, .. }
            | AuthError::ClaimRule { user, .. } => user.as_deref(),
            _ => None,
        }
    }

    /// A stable, closed set of reason names for logs and the
    /// `jwtgate_auth_failures_total` metric (listed in
    /// `metrics::AUTH_FAILURE_REASONS`).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::Token(jwt) => jwt.reason(),
            AuthError::Revoked { .. } => "revoked",
            AuthError::Forbidden { .. } => "forbidden_role",
            AuthError::WrongProvider { .. } => "wrong_provider",
            AuthError::ClaimRule { .. } => "forbidden_claim",
        }
    }
}

/// What checking one request's token cost: recorded in the verification
/// histogram, `Server-Timing` and the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verification {
    /// `None`: refused before the header named a supported algorithm.
    pub alg: Option<Alg>,
    /// Whether a verified identity came out (role policy aside).
    pub accepted: bool,
    /// From extracting the token to a verified identity (or the refusal).
    pub elapsed: Duration,
}

/// The bearer token, if the request carries one (RFC 6750 §2.1).
///
/// The scheme is case-insensitive (RFC 9110 §11.1). An `Authorization` header
/// with another scheme is not a bearer token. More than one `Authorization`
/// header is an error: which one an upstream would read is anyone's guess.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    // Read as bytes: another scheme's credentials may be any octets.
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Ok(None);
    };
    if !value[..space].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    // b64token (RFC 6750 §2.1) after one or more spaces; jwt::verify refuses
    // anything that is not three base64url segments.
    match std::str::from_utf8(&value[space + 1..]) {
        Ok(token) => Ok(Some(token.trim_start_matches(' '))),
        Err(_) => Err(AuthError::InvalidRequest("the bearer token is not UTF-8")),
    }
}

/// A query string split around the token parameter (RFC 6750 §2.3).
#[derive(Debug, PartialEq, Eq)]
pub struct QueryToken<'q> {
    /// Every value of the parameter, as sent (a token needs no escapes).
    pub tokens: Vec<&'q str>,
    /// The query without the parameter, to forward; `None` when nothing is left.
    pub rest: Option<String>,
}

/// Finds `param` in `query` and removes it. Names are compared after
/// percent-decoding (`access%5Ftoken` is `access_token` to most backends),
/// so no spelling of the parameter reaches the upstream.
pub fn split_query_token<'q>(query: &'q str, param: &str) -> QueryToken<'q> {
    let mut tokens = Vec::new();
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decoded_name_is(name, param) {
            tokens.push(value);
        } else {
            kept.push(pair);
        }
    }
    let rest = kept.join("&");
    QueryToken {
        tokens,
        rest: (!rest.is_empty()).then_some(rest),
    }
}

/// `name` percent- and `+`-decoded (form encoding) equals `param`.
fn decoded_name_is(name: &str, param: &str) -> bool {
    let mut want = param.bytes();
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = |j: usize| bytes.get(j).and_then(|&h| char::from(h).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(hi), Some(lo)) => {
                        i += 2;
                        // Two hex digits fit a byte.
                        u8::try_from(hi * 16 + lo).unwrap_or(0)
                    }
                    _ => b'%',
                }
            }
            b'+' => b' ',
            b => b,
        };
        if want.next() != Some(b) {
            return false;
        }
        i += 1;
    }
    want.next().is_none()
}

/// The token from the `Authorization` header or, when `query_param` is
/// configured, from the query. Both, or the parameter twice: 400, since
/// RFC 6750 §2 allows one method per request.
pub fn find_token<'r>(
    headers: &'r HeaderMap,
    query: Option<&QueryToken<'r>>,
) -> Result<Option<&'r str>, AuthError> {
    let header = bearer_token(headers)?;
    let Some(query) = query else {
        return Ok(header);
    };
    match (header, query.tokens.as_slice()) {
        (header, []) => Ok(header),
        (None, [token]) => Ok(Some(token)),
        (None, _) => Err(AuthError::InvalidRequest("the token parameter is repeated")),
        (Some(_), _) => Err(AuthError::InvalidRequest(
            "the token is sent both in the header and the query",
        )),
    }
}

/// Authenticates and authorises a request for `route` given the token found
/// by [`find_token`]. `Ok(None)`: forward without identity (public route, or
/// optional route without a token).
///
/// When a token was present, `measured` receives what verifying it cost
/// (an out-parameter because it is wanted on refusal too).
pub fn authorize(
    route: &Route,
    token: Option<&str>,
    keys: &KeySet,
    providers: &[Provider],
    revocations: &Revocations,
    now: i64,
    measured: &mut Option<Verification>,
) -> Result<Option<Verified>, AuthError> {
    let Some(token) = token_to_check(route, token)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut alg = None;
    let verified = jwt::verify_among(token, keys, providers, now, &mut alg);
    conclude(
        route,
        verified,
        providers,
        revocations,
        alg,
        started,
        measured,
    )
}

/// [`authorize`] against the live key set: JWKS sources, the refresh on an
/// unknown `kid`, and the verified-token cache. The request path uses this.
pub async fn authorize_live(
    route: &Route,
    token: Option<&str>,
    keys: &Keyring,
    providers: &[Provider],
    revocations: &Revocations,
    now: i64,
    measured: &mut Option<Verification>,
) -> Result<Option<Verified>, AuthError> {
    let Some(token) = token_to_check(route, token)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut alg = None;
    let verified = keys.verify(token, providers, now, &mut alg).await;
    conclude(
        route,
        verified,
        providers,
        revocations,
        alg,
        started,
        measured,
    )
}

/// The token the route needs checked; `None`: the request goes through
/// without identity (public route, or optional route without a token).
fn token_to_check<'t>(route: &Route, token: Option<&'t str>) -> Result<Option<&'t str>, AuthError> {
    match (route.auth, token) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => Ok(None),
        (_, Some(token)) => Ok(Some(token)),
        (AuthMode::Required, None) => Err(AuthError::Missing),
    }
}

/// Records what verification cost, then applies the revocation list (after
/// the verified-token cache, so a cached token is refused too) and the
/// route's policy: its providers and audiences (401: the token is not for
/// this route), then its roles and claim rules (403).
fn conclude(
    route: &Route,
    verified: Result<Verified, JwtError>,
    providers: &[Provider],
    revocations: &Revocations,
    alg: Option<Alg>,
    started: Instant,
    measured: &mut Option<Verification>,
) -> Result<Option<Verified>, AuthError> {
    *measured = Some(Verification {
        alg,
        accepted: verified.is_ok(),
        elapsed: started.elapsed(),
    });
    let verified = verified?;
    if let Err(why) = revocations.check(&verified) {
        return Err(AuthError::Revoked {
            user: verified.user,
            why,
        });
    }
    if !route.providers.is_empty() && !route.providers.contains(&verified.provider) {
        let provider = providers.get(verified.provider).map(|p| p.name.clone());
        return Err(AuthError::WrongProvider {
            provider: provider.unwrap_or_default(),
        });
    }
    if !route.audiences.is_empty() {
        let aud = verified
            .claims
            .get(&["aud"])
            .and_then(crate::rules::claim_values);
        let fits =
            aud.is_some_and(|aud| aud.iter().any(|a| route.audiences.iter().any(|x| x == a)));
        if !fits {
            return Err(AuthError::Token(JwtError::BadAudience));
        }
    }
    let verified = check_roles(route, verified)?;
    match route
        .rules
        .iter()
        .find(|rule| !rule.holds(&verified.claims))
    {
        Some(rule) => Err(AuthError::ClaimRule {
            user: verified.user,
            rule: rule.to_string(),
        }),
        None => Ok(Some(verified)),
    }
}

/// The route's role policy: any one of its roles, or any valid token.
fn check_roles(route: &Route, verified: Verified) -> Result<Verified, AuthError> {
    if !route.roles.is_empty()
        && !verified
            .roles
            .iter()
            .any(|r| route.roles.iter().any(|x| x == r))
    {
        return Err(AuthError::Forbidden {
            user: verified.user,
            roles: verified.roles,
            required: route.roles.clone(),
        });
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer a.b.c", "bearer a.b.c", "BEARER  a.b.c"] {
            assert_eq!(bearer_token(&headers(&[v])).unwrap(), Some("a.b.c"), "{v}");
        }
    }

    #[test]
    fn other_schemes_are_not_tokens() {
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwYXNz"])).unwrap(),
            None
        );
        assert_eq!(bearer_token(&headers(&["Bearer"])).unwrap(), None);
        assert_eq!(bearer_token(&headers(&[])).unwrap(), None);
        // Any octets in another scheme's credentials (RFC 9110 §5.5).
        let mut latin1 = HeaderMap::new();
        let digest = HeaderValue::from_bytes(b"Digest username=\"\xe9\"").unwrap();
        latin1.append(AUTHORIZATION, digest);
        assert_eq!(bearer_token(&latin1).unwrap(), None);
    }

    #[test]
    fn a_bearer_token_that_is_not_utf8_is_an_invalid_request() {
        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer a.\xe9.c").unwrap(),
        );
        assert!(matches!(
            bearer_token(&h),
            Err(AuthError::InvalidRequest(_))
        ));
        // UTF-8 beyond ASCII is read, and refused by the verifier as malformed.
        let mut h = HeaderMap::new();
        h.append(
            AUTHORIZATION,
            HeaderValue::from_bytes("Bearer a.é.c".as_bytes()).unwrap(),
        );
        assert_eq!(bearer_token(&h).unwrap(), Some("a.é.c"));
    }

    #[test]
    fn every_failure_reason_has_a_metric_counter() {
        use crate::metrics::AUTH_FAILURE_REASONS;
        let jwt_errors = [
            JwtError::TooLong,
            JwtError::PartCount { parts: 2 },
            JwtError::Encrypted,
            JwtError::Base64 {
                segment: jwt::Segment::Header,
            },
            JwtError::UnsupportedAlg { alg: "x".into() },
            JwtError::Crit,
            JwtError::UnknownKid { kid: "k".into() },
            JwtError::AlgNotAllowed { alg: Alg::HS256 },
            JwtError::BadSignature,
            JwtError::Expired {
                exp: 0,
                now: 0,
                leeway: 0,
            },
            JwtError::NotYetValid {
                nbf: 0,
                now: 0,
                leeway: 0,
            },
            JwtError::BadIssuer,
            JwtError::BadAudience,
            JwtError::MissingClaim { claim: "x".into() },
        ];
        let auth_errors = [
            AuthError::Missing,
            AuthError::InvalidRequest("x"),
            AuthError::Revoked {
                user: None,
                why: Revoked::Token,
            },
            AuthError::Forbidden {
                user: None,
                roles: Roles::default(),
                required: vec![],
            },
        ];
        let reasons = jwt_errors
            .into_iter()
            .map(AuthError::Token)
            .chain(auth_errors)
            .map(|e| e.reason());
        for reason in reasons {
            assert!(AUTH_FAILURE_REASONS.contains(&reason), "{reason}");
        }
    }

    #[test]
    fn query_token_is_found_in_any_spelling_and_removed() {
        let q = split_query_token("a=1&access_token=t.o.k&b=2", "access_token");
        assert_eq!(q.tokens, vec!["t.o.k"]);
        assert_eq!(q.rest.as_deref(), Some("a=1&b=2"));
        let q = split_query_token("access%5ftoken=x&access%5Ftoken=y", "access_token");
        assert_eq!(q.tokens, vec!["x", "y"]);
        assert_eq!(q.rest, None);
        let q = split_query_token("access_tokens=x&%zz&access_token", "access_token");
        assert_eq!(q.tokens, vec![""]);
        assert_eq!(q.rest.as_deref(), Some("access_tokens=x&%zz"));
    }

    #[test]
    fn token_in_header_and_query_is_an_invalid_request() {
        let q = split_query_token("access_token=a.b.c", "access_token");
        let h = headers(&["Bearer a.b.c"]);
        assert!(matches!(
            find_token(&h, Some(&q)),
            Err(AuthError::InvalidRequest(_))
        ));
        assert_eq!(find_token(&headers(&[]), Some(&q)).unwrap(), Some("a.b.c"));
        assert_eq!(find_token(&headers(&[]), None).unwrap(), None);
    }

    #[test]
    fn two_authorization_headers_are_an_invalid_request() {
        let err = bearer_token(&headers(&["Bearer a.b.c", "Bearer a.b.c"])).unwrap_err();
        assert!(matches!(err, AuthError::InvalidRequest(_)));
    }
}
