//! Compact JWS verification (RFC 7515 §7.1, RFC 7519 §7.2, RFC 8725).
//!
//! The order of work is the security argument:
//! 1. split the token into exactly three canonical base64url segments;
//! 2. read only `alg`, `kid` and `crit` from the header;
//! 3. pick the key by `kid` (or by algorithm) and require that *the key's*
//!    algorithm equals the header's — the algorithm is pinned by configuration;
//! 4. check the signature over the exact `header.payload` bytes in constant time;
//! 5. only then parse the claims and check the time window, issuer and audience.
//!
//! Nothing here does I/O or reads the clock: `now` is passed in.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::keys::{Key, KeySet};

mod claims;
mod header;
pub mod object;

pub use claims::ClaimSet;
use claims::{check_claims, parse_claims};
use header::with_header;
pub use header::{MAX_HEADER_LEN, MAX_HEADER_MEMBERS};

/// Longest token accepted, in bytes. Bounds the work an attacker can ask for;
/// real access tokens are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Signature algorithms a key can be bound to (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Longest signature any algorithm produces: RSA with an 8192-bit modulus.
pub const MAX_SIGNATURE_LEN: usize = 1024;

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The registered name, compared case-sensitively as RFC 7515 §4.1.1
    /// requires: `hs256` and `None` are not algorithms.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Whether the key is a shared secret (HMAC) rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// Length of a signature in bytes, where the algorithm fixes it. RSA
    /// signatures are as long as the key's modulus, which the key checks.
    pub fn signature_len(self) -> Option<usize> {
        match self {
            Alg::HS256 => Some(32),
            Alg::HS384 => Some(48),
            Alg::HS512 => Some(64),
            // RFC 7518 §3.4: JOSE ECDSA signatures are R || S, each the
            // size of the curve order; RFC 8032 §5.1.6: Ed25519 is 64.
            Alg::ES256 => Some(64),
            Alg::ES384 => Some(96),
            Alg::EdDSA => Some(64),
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => None,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a token must satisfy besides its signature. Built once from the config.
#[derive(Clone, Debug)]
pub struct Validation {
    /// Allowed clock skew on `exp`, `nbf` and `iat`, in seconds. Defaults to 30.
    pub leeway: i64,
    /// `iss` must equal one of these. Empty: `iss` is not checked.
    pub issuers: Vec<String>,
    /// `aud` (string or array) must contain one of these. Empty: not checked.
    pub audiences: Vec<String>,
    /// Claims that must be present. Defaults to `["exp"]`.
    pub required: Vec<String>,
    /// Claim forwarded as the user id (string or integer). Defaults to `sub`.
    pub user_claim: String,
    /// Claim holding the role(s) (string or array of strings). Defaults to `role`.
    pub role_claim: String,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            leeway: 30,
            issuers: Vec::new(),
            audiences: Vec::new(),
            required: vec!["exp".to_owned()],
            user_claim: "sub".to_owned(),
            role_claim: "role".to_owned(),
        }
    }
}

/// The identity a verified token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub alg: Alg,
    /// The user claim, as forwarded in `X-User-Id`.
    pub user: Option<String>,
    pub roles: Roles,
    pub exp: Option<i64>,
    /// `iat`, for revocations of a subject's tokens issued before a time.
    pub iat: Option<i64>,
    /// `jti` (RFC 7519 §4.1.7), for revoking one token.
    pub jti: Option<String>,
    /// Every claim, for rules and headers that read others.
    pub claims: ClaimSet,
}

/// The roles a token carries, held as the `X-Role` value the upstream
/// gets: joined by `,`. Each role is non-empty, header-safe and has no
/// comma, so the value splits back exactly. One allocation per token,
/// none per role, and no join per request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles(String);

impl Roles {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|role| !role.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The roles joined by `,`: the `X-Role` header value.
    pub fn joined(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn of(roles: &[&str]) -> Roles {
        Roles(roles.join(","))
    }
}

/// `a, b`, for messages.
impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.replace(',', ", "))
    }
}

/// Which part of a token a problem was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// Why a token was refused. Each variant is one reason a log line or metric names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("token has {parts} dot-separated parts, a JWS has 3")]
    PartCount { parts: usize },
    #[error("token is a JWE (5 parts); only signed tokens are accepted")]
    Encrypted,
    #[error("{segment} is not canonical unpadded base64url")]
    Base64 { segment: Segment },
    #[error("{segment} is not a JSON object: {reason}")]
    Json { segment: Segment, reason: String },
    #[error("algorithm {alg:?} is not supported")]
    UnsupportedAlg { alg: String },
    #[error("header uses an extension (crit or b64); none is supported")]
    Crit,
    #[error("no key with kid {kid:?}")]
    UnknownKid { kid: String },
    /// The token may be valid, but a key source that could hold its key has
    /// never loaded (e.g. the JWKS endpoint is down since start-up): the
    /// gateway, not the client, is at fault.
    #[error("keys unavailable: {pending} key source(s) not loaded yet")]
    KeysUnavailable { pending: usize },
    #[error(
        "key {} is bound to issuer {issuer:?}; the token names another",
        kid.as_deref().unwrap_or("without kid")
    )]
    IssuerNotBound { kid: Option<String>, issuer: String },
    #[error("no key accepts algorithm {alg}")]
    AlgNotAllowed { alg: Alg },
    #[error("key {kid:?} is bound to {key_alg}, token says {alg}")]
    AlgMismatch { kid: String, key_alg: Alg, alg: Alg },
    #[error("signature does not verify")]
    BadSignature,
    #[error("expired at {exp}, now {now} (leeway {leeway}s)")]
    Expired { exp: i64, now: i64, leeway: i64 },
    #[error("not valid before {nbf}, now {now} (leeway {leeway}s)")]
    NotYetValid { nbf: i64, now: i64, leeway: i64 },
    #[error("issued in the future at {iat}, now {now} (leeway {leeway}s)")]
    IssuedInFuture { iat: i64, now: i64, leeway: i64 },
    #[error("issuer is not accepted")]
    BadIssuer,
    #[error("audience is not accepted")]
    BadAudience,
    #[error("required claim {claim:?} is missing")]
    MissingClaim { claim: String },
    #[error("claim {claim:?} {problem}")]
    InvalidClaim {
        claim: String,
        problem: &'static str,
    },
}

impl JwtError {
    /// A stable, closed set of reason names for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLong
            | JwtError::PartCount { .. }
            | JwtError::Encrypted
            | JwtError::Base64 { .. }
            | JwtError::Json { .. } => "malformed",
            JwtError::UnsupportedAlg { .. }
            | JwtError::AlgNotAllowed { .. }
            | JwtError::AlgMismatch { .. } => "alg_not_allowed",
            JwtError::Crit => "crit",
            JwtError::UnknownKid { .. } => "unknown_kid",
            JwtError::KeysUnavailable { .. } => "keys_unavailable",
            JwtError::IssuerNotBound { .. } => "bad_issuer",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired { .. } => "expired",
            JwtError::NotYetValid { .. } | JwtError::IssuedInFuture { .. } => "not_yet_valid",
            JwtError::BadIssuer => "bad_issuer",
            JwtError::BadAudience => "bad_audience",
            JwtError::MissingClaim { .. } | JwtError::InvalidClaim { .. } => "invalid_claims",
        }
    }

    /// The short text a client may see in `error_description` (RFC 6750 §3).
    /// It names the failed check, never key material or claim values.
    pub fn client_description(&self) -> &'static str {
        match self {
            JwtError::Expired { .. } => "the token has expired",
            JwtError::NotYetValid { .. } | JwtError::IssuedInFuture { .. } => {
                "the token is not valid yet"
            }
            JwtError::BadSignature
            | JwtError::UnknownKid { .. }
            | JwtError::AlgNotAllowed { .. }
            | JwtError::AlgMismatch { .. }
            | JwtError::UnsupportedAlg { .. } => "the token signature is invalid",
            JwtError::BadIssuer | JwtError::IssuerNotBound { .. } | JwtError::BadAudience => {
                "the token is not for this service"
            }
            JwtError::KeysUnavailable { .. } => "the signing keys are not available yet",
            JwtError::MissingClaim { .. } | JwtError::InvalidClaim { .. } => {
                "the token claims are invalid"
            }
            JwtError::TooLong
            | JwtError::PartCount { .. }
            | JwtError::Encrypted
            | JwtError::Base64 { .. }
            | JwtError::Json { .. }
            | JwtError::Crit => "the token is malformed",
        }
    }
}

/// Verifies a compact JWS and returns the identity it carries.
///
/// `now` is seconds since the Unix epoch.
pub fn verify(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    now: i64,
) -> Result<Verified, JwtError> {
    verify_reporting_alg(token, keys, validation, now, &mut None)
}

/// [`verify`], also reporting in `alg_seen` the token's algorithm as soon as
/// its header named a supported one, so refusals can be counted per algorithm.
pub fn verify_reporting_alg(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    now: i64,
    alg_seen: &mut Option<Alg>,
) -> Result<Verified, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let (signing_input, header_b64, payload_b64, signature_b64) = split(token)?;

    let (alg, key) = with_header(header_b64, |alg, kid| {
        *alg_seen = Some(alg);
        let signature = decode(signature_b64, Segment::Signature)?;
        if alg
            .signature_len()
            .is_some_and(|len| len != signature.len())
        {
            return Err(JwtError::BadSignature);
        }
        Ok((alg, select_key(keys, kid, alg, signing_input, &signature)?))
    })?;

    let payload =
        String::from_utf8(decode(payload_b64, Segment::Payload)?).map_err(|_| JwtError::Json {
            segment: Segment::Payload,
            reason: "not UTF-8".to_owned(),
        })?;
    let claims = parse_claims(payload.as_bytes(), validation)?;
    check_claims(&claims, validation, now)?;
    // A key bound to an issuer vouches only for that issuer's tokens: a
    // token signed by IdP B must not claim to come from IdP A.
    if let Some(bound) = &key.issuer
        && claims.iss.as_deref() != Some(bound.as_str())
    {
        return Err(JwtError::IssuerNotBound {
            kid: key.kid.clone(),
            issuer: bound.clone(),
        });
    }

    let index = ClaimSet::index(&payload, &claims.members);
    let (user, roles, exp, iat, jti) = (
        claims.user,
        claims.roles,
        claims.exp,
        claims.iat,
        claims.jti,
    );
    Ok(Verified {
        alg,
        user,
        roles,
        exp,
        iat,
        jti,
        claims: ClaimSet::new(payload, index),
    })
}

/// Splits `header.payload.signature`, returning the signing input too.
pub(super) fn split(token: &str) -> Result<(&str, &str, &str, &str), JwtError> {
    let bytes = token.as_bytes();
    let dot_after = |from: usize| memchr::memchr(b'.', &bytes[from..]).map(|i| from + i);
    let first = dot_after(0);
    let second = first.and_then(|first| dot_after(first + 1));
    match (first, second) {
        (Some(first), Some(second)) if dot_after(second + 1).is_none() => Ok((
            &token[..second],
            &token[..first],
            &token[first + 1..second],
            &token[second + 1..],
        )),
        _ => Err(match memchr::memchr_iter(b'.', bytes).count() {
            4 => JwtError::Encrypted,
            dots => JwtError::PartCount { parts: dots + 1 },
        }),
    }
}

/// Picks the key for this token and checks the signature with it.
///
/// A `kid` selects the keys with that id (several sources may reuse one),
/// whose algorithm must match. Without a `kid`, every key of the token's
/// algorithm is tried (key rotation). When no key decides and a key source
/// has not loaded yet, the answer is "unavailable", not "invalid".
pub(super) fn select_key<'k>(
    keys: &'k KeySet,
    kid: Option<&str>,
    alg: Alg,
    signing_input: &str,
    signature: &[u8],
) -> Result<&'k Key, JwtError> {
    let unavailable = || JwtError::KeysUnavailable {
        pending: keys.pending(),
    };
    // Key sources (JWKS) hold only public keys, so a missing one can never
    // decide an HMAC token: those stay 401, never 503.
    let pending = if alg.is_hmac() { 0 } else { keys.pending() };
    if let Some(kid) = kid {
        let mut named = keys.by_kid(kid).peekable();
        let Some(first) = named.peek().copied() else {
            return Err(match pending {
                0 => JwtError::UnknownKid {
                    kid: kid.to_owned(),
                },
                _ => unavailable(),
            });
        };
        let mut of_alg = named.filter(|key| key.alg == alg).peekable();
        // A source still loading may hold another key with this kid.
        if of_alg.peek().is_none() {
            return Err(match pending {
                0 => JwtError::AlgMismatch {
                    kid: kid.to_owned(),
                    key_alg: first.alg,
                    alg,
                },
                _ => unavailable(),
            });
        }
        return match of_alg.find(|key| key.verify(signing_input.as_bytes(), signature)) {
            Some(key) => Ok(key),
            None if pending > 0 => Err(unavailable()),
            None => Err(JwtError::BadSignature),
        };
    }
    let mut candidates = keys.by_alg(alg).peekable();
    if candidates.peek().is_none() {
        return Err(match pending {
            0 => JwtError::AlgNotAllowed { alg },
            _ => unavailable(),
        });
    }
    match candidates.find(|key| key.verify(signing_input.as_bytes(), signature)) {
        Some(key) => Ok(key),
        None if pending > 0 => Err(unavailable()),
        None => Err(JwtError::BadSignature),
    }
}

/// Decodes one segment: strict unpadded base64url (RFC 7515 §2), so
/// padding, whitespace, the `+` and `/` of plain base64 and non-zero
/// trailing bits are all refused, and no two strings decode alike.
pub(super) fn decode(segment: &str, which: Segment) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Base64 { segment: which })
}

#[cfg(test)]
mod tests;
