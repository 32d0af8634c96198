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

/// Longest token accepted by default, in bytes. Bounds the work an attacker
/// can ask for; most access tokens are well under 2 KiB (`[jwt]` keeps this
/// limit; a provider's `max_token_bytes` may raise it for issuers such as
/// Entra ID, whose group claims grow large).
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

/// What a token must satisfy besides its signature: one provider's rules.
/// Built once from the config.
#[derive(Clone, Debug)]
pub struct Validation {
    /// Allowed clock skew on `exp`, `nbf` and `iat`, in seconds. Defaults to 30.
    pub leeway: i64,
    /// `iss` must equal one of these. Empty (and no `issuer_patterns`):
    /// `iss` is not checked.
    pub issuers: Vec<String>,
    /// `iss` may also be `prefix` + one tenant + `suffix`, the tenant any
    /// non-empty text without `/` (an issuer template with `tenants = ["*"]`).
    pub issuer_patterns: Vec<(String, String)>,
    /// `aud` (string or array) must contain one of these. Empty: not checked.
    pub audiences: Vec<String>,
    /// Claims that must be present. Defaults to `["exp"]`.
    pub required: Vec<String>,
    /// Claim forwarded as the user id (string or integer). Defaults to `sub`.
    pub user_claim: ClaimPath,
    /// Claim holding the role(s) (string or array of strings). Defaults to `role`.
    pub role_claim: ClaimPath,
    /// Accepted JOSE `typ` values, lower case without `application/`
    /// (RFC 9068 §4). Empty: not checked.
    pub typ: Vec<String>,
    /// Longest token accepted, in bytes. Defaults to [`MAX_TOKEN_LEN`].
    pub max_token_bytes: usize,
}

impl Default for Validation {
    fn default() -> Self {
        Validation {
            leeway: 30,
            issuers: Vec::new(),
            issuer_patterns: Vec::new(),
            audiences: Vec::new(),
            required: vec!["exp".to_owned()],
            user_claim: ClaimPath::from("sub"),
            role_claim: ClaimPath::from("role"),
            typ: Vec::new(),
            max_token_bytes: MAX_TOKEN_LEN,
        }
    }
}

impl Validation {
    /// Whether `iss` is one of this provider's issuers.
    pub fn accepts_issuer(&self, iss: &str) -> bool {
        self.issuers.iter().any(|issuer| issuer == iss)
            || (self.issuer_patterns.iter()).any(|(prefix, suffix)| {
                iss.strip_prefix(prefix.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                    .is_some_and(|tenant| !tenant.is_empty() && !tenant.contains('/'))
            })
    }

    /// Whether issuers are checked at all.
    pub fn checks_issuer(&self) -> bool {
        !self.issuers.is_empty() || !self.issuer_patterns.is_empty()
    }
}

/// Who issues tokens: a name, and what its tokens must satisfy. Its keys
/// carry its index in the gateway's provider list ([`Key::provider`]).
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub validation: Validation,
}

/// Where a claim is: a top-level name (which may hold dots, slashes and
/// colons: `https://example.com/roles`, `cognito:groups`), or a path of
/// names into nested objects (`["realm_access", "roles"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

impl From<&str> for ClaimPath {
    fn from(name: &str) -> ClaimPath {
        ClaimPath(vec![name.to_owned()])
    }
}

impl From<String> for ClaimPath {
    fn from(name: String) -> ClaimPath {
        ClaimPath(vec![name])
    }
}

impl ClaimPath {
    /// The top-level name, when the path is just one.
    pub fn name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [name] => Some(name),
            _ => None,
        }
    }
}

/// `sub`, or `["realm_access","roles"]` for a path, as the config spells it.
impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:?}", self.0),
        }
    }
}

/// The identity a verified token carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub alg: Alg,
    /// The index of the provider whose keys verified it.
    pub provider: usize,
    /// The user claim, decoded: `X-User-Id` carries it percent-encoded
    /// where it is not header-safe.
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

/// The roles a token carries, decoded; `X-Role` joins them by `,`,
/// each percent-encoded where it is not header-safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles(Vec<String>);

impl Roles {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn new(roles: Vec<String>) -> Roles {
        Roles(roles)
    }

    #[cfg(test)]
    pub(crate) fn of(roles: &[&str]) -> Roles {
        Roles(roles.iter().map(|role| (*role).to_owned()).collect())
    }
}

/// `a, b`, for messages.
impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
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
    #[error("token longer than the provider's max_token_bytes")]
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
    #[error("typ {typ:?} is not accepted")]
    BadType { typ: Option<String> },
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
            JwtError::BadType { .. } => "bad_typ",
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
            JwtError::BadIssuer
            | JwtError::IssuerNotBound { .. }
            | JwtError::BadAudience
            | JwtError::BadType { .. } => "the token is not for this service",
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
    verify_for(token, keys, validation, None, now, alg_seen)
}

/// Verifies a token issued by one of `providers`: its `iss`, read before
/// the signature is checked only to choose, picks the provider, whose keys
/// alone may then verify it and whose rules it must satisfy. A provider
/// that checks no issuer takes the tokens no other provider claims.
pub fn verify_among(
    token: &str,
    keys: &KeySet,
    providers: &[Provider],
    now: i64,
    alg_seen: &mut Option<Alg>,
) -> Result<Verified, JwtError> {
    if let [only] = providers {
        return verify_for(token, keys, &only.validation, None, now, alg_seen);
    }
    let longest = (providers.iter())
        .map(|provider| provider.validation.max_token_bytes)
        .max()
        .unwrap_or(MAX_TOKEN_LEN);
    if token.len() > longest {
        return Err(JwtError::TooLong);
    }
    let (_, _, payload_b64, _) = split(token)?;
    let payload = decode(payload_b64, Segment::Payload)?;
    let iss = claims::issuer(&payload)?;
    let chosen = (providers.iter())
        .position(|p| {
            iss.as_deref()
                .is_some_and(|iss| p.validation.accepts_issuer(iss))
        })
        .or_else(|| (providers.iter()).position(|p| !p.validation.checks_issuer()));
    match chosen {
        Some(index) => {
            let validation = &providers[index].validation;
            let verified = verify_for(token, keys, validation, Some(index), now, alg_seen)?;
            Ok(Verified {
                provider: index,
                ..verified
            })
        }
        None if iss.is_none() => Err(JwtError::MissingClaim {
            claim: "iss".to_owned(),
        }),
        None => Err(JwtError::BadIssuer),
    }
}

/// Verifies with the keys of `provider` (all keys when `None`).
fn verify_for(
    token: &str,
    keys: &KeySet,
    validation: &Validation,
    provider: Option<usize>,
    now: i64,
    alg_seen: &mut Option<Alg>,
) -> Result<Verified, JwtError> {
    if token.len() > validation.max_token_bytes {
        return Err(JwtError::TooLong);
    }
    let (signing_input, header_b64, payload_b64, signature_b64) = split(token)?;
    let candidates = Candidates { keys, provider };

    let (alg, kid, key, signature) = with_header(header_b64, |alg, kid, typ| {
        *alg_seen = Some(alg);
        let signature = Signature::decode(signature_b64, alg)?;
        let key = select_key(candidates, kid, alg, signing_input, signature.bytes())?;
        // RFC 8725 §3.11: the type tells an access token from an ID or a
        // logout token whose claims would pass as well.
        if !validation.typ.is_empty()
            && !typ.is_some_and(|typ| validation.typ.iter().any(|t| typ_is(typ, t)))
        {
            return Err(JwtError::BadType {
                typ: typ.map(str::to_owned),
            });
        }
        // The kid is wanted again only to look for another key of an issuer.
        let kid = key.issuer.as_ref().and(kid).map(str::to_owned);
        Ok((alg, kid, key, signature))
    })?;

    let payload =
        String::from_utf8(decode(payload_b64, Segment::Payload)?).map_err(|_| JwtError::Json {
            segment: Segment::Payload,
            reason: "not UTF-8".to_owned(),
        })?;
    let claims = parse_claims(&payload, validation)?;
    check_claims(&claims, validation, now)?;
    // A key bound to an issuer vouches only for that issuer's tokens: a
    // token signed by IdP B must not claim to come from IdP A. Where
    // issuers share keys (one key set under two issuer spellings), another
    // key of the token's issuer that verifies it will do.
    if let Some(bound) = &key.issuer
        && claims.iss.as_deref() != Some(bound.as_str())
    {
        let iss = claims.iss.as_deref();
        let mut others = candidates
            .matching(kid.as_deref(), alg)
            .filter(|other| other.issuer.is_none() || other.issuer.as_deref() == iss);
        if !others.any(|other| other.verify(signing_input.as_bytes(), signature.bytes())) {
            return Err(JwtError::IssuerNotBound {
                kid: key.kid.clone(),
                issuer: bound.clone(),
            });
        }
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
        provider: provider.unwrap_or(0),
        user,
        roles,
        exp,
        iat,
        jti,
        claims: ClaimSet::new(payload, index),
    })
}

/// A decoded signature: on the stack for the algorithms whose signatures
/// have a fixed length, on the heap for RSA's (as long as the modulus).
enum Signature {
    Fixed([u8; 96], usize),
    Rsa(Vec<u8>),
}

impl Signature {
    fn decode(segment: &str, alg: Alg) -> Result<Signature, JwtError> {
        let Some(len) = alg.signature_len() else {
            return decode(segment, Segment::Signature).map(Signature::Rsa);
        };
        let mut buf = [0; 96];
        match URL_SAFE_NO_PAD.decode_slice(segment, &mut buf) {
            Ok(decoded) if decoded == len => Ok(Signature::Fixed(buf, len)),
            // Too long for any fixed-length signature, or not this one's length.
            Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                Err(JwtError::BadSignature)
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => Err(JwtError::Base64 {
                segment: Segment::Signature,
            }),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Signature::Fixed(buf, len) => buf.get(..*len).unwrap_or_default(),
            Signature::Rsa(bytes) => bytes,
        }
    }
}

/// RFC 9068 §4 / RFC 8725 §3.11: `typ` compared without case and with or
/// without the `application/` prefix; `expected` is in that form already.
fn typ_is(typ: &str, expected: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case(expected)
}

/// The keys a token may be verified with: one provider's, or all.
#[derive(Clone, Copy)]
pub(super) struct Candidates<'k> {
    keys: &'k KeySet,
    provider: Option<usize>,
}

impl<'k> Candidates<'k> {
    fn of_provider(self, key: &Key) -> bool {
        self.provider
            .is_none_or(|provider| key.provider == provider)
    }

    fn by_kid<'s>(self, kid: &'s str) -> impl Iterator<Item = &'k Key> + use<'k, 's> {
        self.keys
            .by_kid(kid)
            .filter(move |key| self.of_provider(key))
    }

    fn by_alg(self, alg: Alg) -> impl Iterator<Item = &'k Key> {
        self.keys
            .by_alg(alg)
            .filter(move |key| self.of_provider(key))
    }

    /// The keys of `alg` a token with `kid` may have been signed with.
    fn matching<'s>(
        self,
        kid: Option<&'s str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'k Key> + use<'k, 's> {
        let named = kid.into_iter().flat_map(move |kid| self.by_kid(kid));
        let any = kid
            .is_none()
            .then(|| self.by_alg(alg))
            .into_iter()
            .flatten();
        named.chain(any).filter(move |key| key.alg == alg)
    }
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
    keys: Candidates<'k>,
    kid: Option<&str>,
    alg: Alg,
    signing_input: &str,
    signature: &[u8],
) -> Result<&'k Key, JwtError> {
    let unavailable = || JwtError::KeysUnavailable {
        pending: keys.keys.pending(),
    };
    // Key sources (JWKS) hold only public keys, so a missing one can never
    // decide an HMAC token: those stay 401, never 503.
    let pending = if alg.is_hmac() {
        0
    } else {
        keys.keys.pending()
    };
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
