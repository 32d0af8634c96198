//! From a request's headers to a verified identity, under a route's policy.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::jwks::Keyring;
use crate::jwt::{JwtError, Validation, Verified};
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
    /// A valid token without any of the route's roles.
    #[error("token of {user:?} has roles {roles:?}, route needs one of {required:?}")]
    Forbidden {
        user: Option<String>,
        roles: Vec<String>,
        required: Vec<String>,
    },
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
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidRequest("Authorization header is not ASCII"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    // b64token (RFC 6750 §2.1) after one or more spaces; jwt::verify refuses
    // anything that is not three base64url segments.
    Ok(Some(token.trim_start_matches(' ')))
}

/// Authenticates and authorises a request for `route`. `Ok(None)`: forward
/// without identity (public route, or optional route without a token).
pub async fn authorize(
    route: &Route,
    headers: &HeaderMap,
    keys: &Keyring,
    validation: &Validation,
    now: i64,
) -> Result<Option<Verified>, AuthError> {
    if route.auth == AuthMode::None {
        return Ok(None);
    }
    let token = match (bearer_token(headers)?, route.auth) {
        (Some(token), _) => token,
        (None, AuthMode::Optional) => return Ok(None),
        (None, _) => return Err(AuthError::Missing),
    };
    let verified = keys.verify(token, validation, now).await?;
    if !route.roles.is_empty() && !verified.roles.iter().any(|r| route.roles.contains(r)) {
        return Err(AuthError::Forbidden {
            user: verified.user,
            roles: verified.roles,
            required: route.roles.clone(),
        });
    }
    Ok(Some(verified))
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
    }

    #[test]
    fn two_authorization_headers_are_an_invalid_request() {
        let err = bearer_token(&headers(&["Bearer a.b.c", "Bearer a.b.c"])).unwrap_err();
        assert!(matches!(err, AuthError::InvalidRequest(_)));
    }
}
