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

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::keys::{Key, KeySet};

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
    pub kid: Option<String>,
    /// The user claim, as forwarded in `X-User-Id`.
    pub user: Option<String>,
    /// The roles, each a header-safe string without commas.
    pub roles: Vec<String>,
    pub exp: Option<i64>,
    /// `iat`, for revocations of a subject's tokens issued before a time.
    pub iat: Option<i64>,
    /// `jti` (RFC 7519 §4.1.7), for revoking one token.
    pub jti: Option<String>,
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
    #[error("key {kid:?} is bound to issuer {issuer:?}; the token names another")]
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
        // Fixed-length signatures (HMAC, ECDSA, EdDSA) decode into a small
        // buffer; only RSA needs room for a modulus of up to 8192 bits.
        let mut small = [0u8; 96];
        let mut large;
        let buf: &mut [u8] = match alg.signature_len() {
            Some(_) => &mut small,
            None => {
                large = [0u8; MAX_SIGNATURE_LEN];
                &mut large
            }
        };
        let signature = decode_into(signature_b64, buf, Segment::Signature)?;
        if alg
            .signature_len()
            .is_some_and(|len| len != signature.len())
        {
            return Err(JwtError::BadSignature);
        }
        Ok((alg, select_key(keys, kid, alg, signing_input, signature)?))
    })?;

    let (mut payload_buf, mut payload_heap) = ([0u8; 1024], Vec::new());
    let payload = decode_segment(
        payload_b64,
        &mut payload_buf,
        &mut payload_heap,
        Segment::Payload,
    )?;
    let claims = parse_claims(payload, validation)?;
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

    Ok(Verified {
        alg,
        kid: key.kid.clone(),
        user: claims.user,
        roles: claims.roles,
        exp: claims.exp,
        iat: claims.iat,
        jti: claims.jti,
    })
}

/// A header segment this thread parsed and accepted, and what it said.
struct KnownHeader {
    segment: String,
    alg: Alg,
    kid: Option<String>,
}

thread_local! {
    /// The last accepted header segment on this thread. One issuer signs
    /// every token with the same header, byte for byte, so comparing the
    /// segment (~40 bytes) replaces a base64 decode and a JSON parse. What a
    /// segment says is a pure function of its bytes, so a hit gives exactly
    /// what parsing would; only headers that passed every header check are
    /// remembered. Per thread: no lock, no sharing.
    static LAST_HEADER: RefCell<Option<KnownHeader>> = const { RefCell::new(None) };
}

/// Reads the header's `alg` and `kid` (refusing `crit`, `b64: false`,
/// unknown algorithms) and hands them to `then`.
fn with_header<R>(
    segment: &str,
    then: impl FnOnce(Alg, Option<&str>) -> Result<R, JwtError>,
) -> Result<R, JwtError> {
    LAST_HEADER.with_borrow_mut(|last| {
        let known = match last {
            Some(known) if known.segment == segment => known,
            _ => last.insert(parse_header(segment)?),
        };
        then(known.alg, known.kid.as_deref())
    })
}

fn parse_header(segment: &str) -> Result<KnownHeader, JwtError> {
    // Decoded on the stack unless unusually large.
    let (mut buf, mut heap) = ([0u8; 256], Vec::new());
    let json = decode_segment(segment, &mut buf, &mut heap, Segment::Header)?;
    let header: Header<'_> = parse_object(json, Segment::Header)?;
    if header.crit.0 || header.b64 == Some(false) {
        return Err(JwtError::Crit);
    }
    let alg = Alg::from_name(&header.alg).ok_or_else(|| JwtError::UnsupportedAlg {
        alg: header.alg.clone().into_owned(),
    })?;
    Ok(KnownHeader {
        segment: segment.to_owned(),
        alg,
        kid: header.kid.map(Cow::into_owned),
    })
}

/// Splits `header.payload.signature`, returning the signing input too.
fn split(token: &str) -> Result<(&str, &str, &str, &str), JwtError> {
    let mut dots = token.match_indices('.').map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(match token.bytes().filter(|&b| b == b'.').count() {
            4 => JwtError::Encrypted,
            dots => JwtError::PartCount { parts: dots + 1 },
        });
    };
    Ok((
        &token[..second],
        &token[..first],
        &token[first + 1..second],
        &token[second + 1..],
    ))
}

/// Picks the key for this token and checks the signature with it.
///
/// A `kid` selects the keys with that id (several sources may reuse one),
/// whose algorithm must match. Without a `kid`, every key of the token's
/// algorithm is tried (key rotation). When no key decides and a key source
/// has not loaded yet, the answer is "unavailable", not "invalid".
fn select_key<'k>(
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

/// Decodes into `buf` when it fits, else into `heap`: typical headers and
/// claim sets fit on the stack, so the common path does not allocate.
fn decode_segment<'b>(
    segment: &str,
    buf: &'b mut [u8],
    heap: &'b mut Vec<u8>,
    which: Segment,
) -> Result<&'b [u8], JwtError> {
    // The standard engine rejects padding, non-alphabet bytes (whitespace,
    // '+', '/') and non-zero trailing bits: one token, one spelling.
    // Unpadded base64 decodes to at most 3 bytes per 4 characters.
    if segment.len() / 4 * 3 + 3 <= buf.len() {
        return decode_into(segment, buf, which);
    }
    *heap = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Base64 { segment: which })?;
    Ok(heap)
}

fn decode_into<'b>(segment: &str, buf: &'b mut [u8], which: Segment) -> Result<&'b [u8], JwtError> {
    let len = URL_SAFE_NO_PAD
        .decode_slice(segment, buf)
        .map_err(|_| JwtError::Base64 { segment: which })?;
    Ok(&buf[..len])
}

fn parse_object<'a, T: Deserialize<'a>>(json: &'a [u8], which: Segment) -> Result<T, JwtError> {
    // serde accepts a JSON array for a struct; a JOSE header must be an object.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(JwtError::Json {
            segment: which,
            reason: "not an object".to_owned(),
        });
    }
    serde_json::from_str(utf8(json, which)?).map_err(|err| JwtError::Json {
        segment: which,
        reason: err.to_string(),
    })
}

/// RFC 7515 §5.2 step 4 and RFC 7519 §7.2 step 10: the JSON must be UTF-8.
/// serde_json checks only the strings it decodes and skips ignored ones
/// unchecked, so the whole segment is checked here.
fn utf8(json: &[u8], which: Segment) -> Result<&str, JwtError> {
    std::str::from_utf8(json).map_err(|_| JwtError::Json {
        segment: which,
        reason: "not UTF-8".to_owned(),
    })
}

/// The header members the verifier reads. Others (`typ`, `cty`, `jwk`, `jku`,
/// `x5u`, `x5c`, …) are ignored: a token never chooses its own key. Like the
/// claims, the header may not repeat a member, known or not.
struct Header<'a> {
    alg: Cow<'a, str>,
    /// A `kid` must be a string; `null` is not "no kid".
    kid: Option<Cow<'a, str>>,
    /// Any `crit`, even `null`, is refused (RFC 7515 §4.1.11): no extension
    /// is implemented.
    crit: Present,
    /// RFC 7797 unencoded payloads are not supported; only `b64: true`
    /// (the default meaning) passes.
    b64: Option<bool>,
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        let (mut alg, mut kid, mut crit, mut b64) = (None, None, Present::default(), None);
        let mut seen = Seen::default();
        while let Some(MemberName(name)) = map.next_key::<MemberName<'de>>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
            match &*name {
                "alg" => alg = Some(map.next_value::<MemberName<'de>>()?.0),
                "kid" => kid = Some(map.next_value::<MemberName<'de>>()?.0),
                "crit" => crit = map.next_value::<Present>()?,
                "b64" => b64 = Some(map.next_value::<bool>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            seen.push(name);
        }
        let alg = alg.ok_or_else(|| de::Error::missing_field("alg"))?;
        Ok(Header {
            alg,
            kid,
            crit,
            b64,
        })
    }
}

/// Whether a member was present at all, whatever its value.
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The claims the verifier checks, as typed values. `iss` and `aud` borrow
/// from the decoded payload: they are only compared, never kept.
#[derive(Debug, Default)]
struct Claims<'a> {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    iss: Option<Cow<'a, str>>,
    aud: Option<Audience<'a>>,
    user: Option<String>,
    roles: Vec<String>,
    jti: Option<String>,
}

/// RFC 7519 §4.1.3: one string or an array of strings.
#[derive(Debug)]
enum Audience<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Audience<'_> {
    fn any(&self, accepted: &[String]) -> bool {
        let ok = |a: &Cow<'_, str>| accepted.iter().any(|x| x == a);
        match self {
            Audience::One(a) => ok(a),
            Audience::Many(list) => list.iter().any(ok),
        }
    }
}

/// The claims as they appear in the payload, read in one pass without
/// building a `serde_json::Value`; their types are checked afterwards.
#[derive(Default)]
struct RawClaims<'a> {
    exp: Option<Json<'a>>,
    nbf: Option<Json<'a>>,
    iat: Option<Json<'a>>,
    iss: Option<Json<'a>>,
    aud: Option<Json<'a>>,
    user: Option<Json<'a>>,
    role: Option<Json<'a>>,
    jti: Option<Json<'a>>,
    /// Bit i set: `validation.required[i]` was present.
    present: u64,
}

fn parse_claims<'a>(json: &'a [u8], validation: &Validation) -> Result<Claims<'a>, JwtError> {
    let mut de = serde_json::Deserializer::from_str(utf8(json, Segment::Payload)?);
    let raw = ClaimsSeed(validation)
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|err| JwtError::Json {
            segment: Segment::Payload,
            reason: err.to_string(),
        })?;
    for (i, claim) in validation.required.iter().enumerate() {
        if raw.present & (1 << i) == 0 {
            return Err(JwtError::MissingClaim {
                claim: claim.clone(),
            });
        }
    }
    Ok(Claims {
        exp: raw.exp.map(|v| numeric_date("exp", v)).transpose()?,
        nbf: raw.nbf.map(|v| numeric_date("nbf", v)).transpose()?,
        iat: raw.iat.map(|v| numeric_date("iat", v)).transpose()?,
        iss: raw
            .iss
            .map(|v| match v {
                Json::Str(s) => Ok(s),
                _ => Err(invalid("iss", NOT_A_STRING)),
            })
            .transpose()?,
        aud: raw
            .aud
            .map(|v| match v {
                Json::Str(s) => Ok(Audience::One(s)),
                Json::Strings(list) => Ok(Audience::Many(list)),
                _ => Err(invalid("aud", NOT_STRINGS)),
            })
            .transpose()?,
        user: raw
            .user
            .map(|v| user_id(&validation.user_claim, v))
            .transpose()?,
        roles: match raw.role {
            Some(v) => roles(&validation.role_claim, v)?,
            None => Vec::new(),
        },
        jti: raw
            .jti
            .map(|v| match v {
                Json::Str(s) => Ok(s.into_owned()),
                _ => Err(invalid("jti", NOT_A_STRING)),
            })
            .transpose()?,
    })
}

const NOT_A_NUMERIC_DATE: &str = "is not a NumericDate";
const NOT_A_STRING: &str = "is not a string";
const NOT_STRINGS: &str = "is not a string or an array of strings";
const NOT_A_USER_ID: &str = "is not a string or an integer";
const NOT_HEADER_SAFE: &str = "holds characters not allowed in a forwarded header";

fn invalid(claim: &str, problem: &'static str) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_owned(),
        problem,
    }
}

/// Beyond 2^53 a JSON number is no longer an exact integer in most parsers.
const MAX_NUMERIC_DATE: i64 = 1 << 53;

/// RFC 7519 §2 NumericDate: a JSON number of seconds, possibly fractional.
/// Strings, booleans, null and out-of-range values are refused, never
/// treated as absent.
fn numeric_date(claim: &str, value: Json<'_>) -> Result<i64, JwtError> {
    let seconds = match value {
        Json::Int(v) => Some(v),
        Json::UInt(v) => i64::try_from(v).ok(),
        // Rounded towards the past: a fractional exp ends at the start of its second.
        Json::Float(v) if v.is_finite() && v.abs() <= MAX_NUMERIC_DATE as f64 => {
            Some(v.floor() as i64)
        }
        _ => None,
    };
    seconds
        .filter(|s| (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(s))
        .ok_or_else(|| invalid(claim, NOT_A_NUMERIC_DATE))
}

fn user_id(claim: &str, value: Json<'_>) -> Result<String, JwtError> {
    let user = match value {
        Json::Str(s) => s.into_owned(),
        Json::Int(v) => v.to_string(),
        Json::UInt(v) => v.to_string(),
        _ => return Err(invalid(claim, NOT_A_USER_ID)),
    };
    match is_header_safe(&user) {
        true => Ok(user),
        false => Err(invalid(claim, NOT_HEADER_SAFE)),
    }
}

fn roles(claim: &str, value: Json<'_>) -> Result<Vec<String>, JwtError> {
    let roles: Vec<String> = match value {
        Json::Str(s) => vec![s.into_owned()],
        Json::Strings(list) => list.into_iter().map(Cow::into_owned).collect(),
        _ => return Err(invalid(claim, NOT_STRINGS)),
    };
    // Roles travel joined by "," in one header, so a comma inside one role
    // would let a token smuggle a second role past the policy.
    match roles.iter().all(|r| is_header_safe(r) && !r.contains(',')) {
        true => Ok(roles),
        false => Err(invalid(claim, NOT_HEADER_SAFE)),
    }
}

/// Non-empty visible ASCII with inner spaces: safe in any header value
/// (RFC 9110 §5.5) and unambiguous to every backend framework.
fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A claim value, classified by JSON type. Only the shapes claims may take
/// are kept; anything else is `Other` and consumed with bounded work.
#[derive(Debug)]
enum Json<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Strings(Vec<Cow<'a, str>>),
    Other,
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut strings = Vec::new();
        let mut all_strings = true;
        while let Some(item) = seq.next_element::<Json<'de>>()? {
            match item {
                Json::Str(s) if all_strings => strings.push(s),
                _ => all_strings = false,
            }
        }
        Ok(if all_strings {
            Json::Strings(strings)
        } else {
            Json::Other
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Other)
    }
}

struct ClaimsSeed<'v>(&'v Validation);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawClaims<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = RawClaims<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClaims<'de>, A::Error> {
        let validation = self.0;
        let mut raw = RawClaims::default();
        // RFC 8725 §3.1 warns that parsers disagreeing on which duplicate wins
        // is an attack; RFC 7519 §4 lets us refuse duplicates outright.
        let mut seen = Seen::default();
        while let Some(MemberName(name)) = map.next_key::<MemberName<'de>>()? {
            if seen.contains(&name) {
                return Err(de::Error::custom(format_args!("duplicate member {name:?}")));
            }
            if let Some(i) = validation.required.iter().position(|r| *r == name) {
                raw.present |= 1 << i;
            }
            let slot = if name == validation.user_claim {
                &mut raw.user
            } else if name == validation.role_claim {
                &mut raw.role
            } else {
                match &*name {
                    "exp" => &mut raw.exp,
                    "nbf" => &mut raw.nbf,
                    "iat" => &mut raw.iat,
                    "iss" => &mut raw.iss,
                    "aud" => &mut raw.aud,
                    "jti" => &mut raw.jti,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        seen.push(name);
                        continue;
                    }
                }
            };
            *slot = Some(map.next_value::<Json<'de>>()?);
            seen.push(name);
        }
        Ok(raw)
    }
}

/// A member name, borrowed from the payload unless it has escapes. (serde's
/// own `Cow<str>` impl always allocates: one `String` per claim.)
struct MemberName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(MemberNameVisitor)
    }
}

struct MemberNameVisitor;

impl<'de> Visitor<'de> for MemberNameVisitor {
    type Value = MemberName<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberName<'de>, E> {
        Ok(MemberName(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<MemberName<'de>, E> {
        Ok(MemberName(Cow::Owned(v.to_owned())))
    }
}

/// Member names read so far. The first [`Seen::INLINE`] stay on the stack,
/// so a typical claim set is checked for duplicates without allocating.
struct Seen<'de> {
    inline: [Cow<'de, str>; Seen::INLINE],
    len: usize,
    spill: Vec<Cow<'de, str>>,
}

impl Default for Seen<'_> {
    fn default() -> Self {
        Seen {
            inline: [const { Cow::Borrowed("") }; Seen::INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl<'de> Seen<'de> {
    const INLINE: usize = 16;

    fn contains(&self, name: &str) -> bool {
        let same = |seen: &Cow<'de, str>| seen == name;
        self.inline[..self.len].iter().any(same) || self.spill.iter().any(same)
    }

    fn push(&mut self, name: Cow<'de, str>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = name;
                self.len += 1;
            }
            None => self.spill.push(name),
        }
    }
}

fn check_claims(claims: &Claims<'_>, validation: &Validation, now: i64) -> Result<(), JwtError> {
    let leeway = validation.leeway;
    if let Some(exp) = claims.exp {
        // RFC 7519 §4.1.4: the token must not be accepted "on or after" exp.
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired { exp, now, leeway });
        }
    }
    if let Some(nbf) = claims.nbf
        && now < nbf.saturating_sub(leeway)
    {
        return Err(JwtError::NotYetValid { nbf, now, leeway });
    }
    if let Some(iat) = claims.iat
        && iat.saturating_sub(leeway) > now
    {
        return Err(JwtError::IssuedInFuture { iat, now, leeway });
    }
    if !validation.issuers.is_empty() {
        match &claims.iss {
            Some(iss) if validation.issuers.iter().any(|i| i == iss) => {}
            Some(_) => return Err(JwtError::BadIssuer),
            None => {
                return Err(JwtError::MissingClaim {
                    claim: "iss".to_owned(),
                });
            }
        }
    }
    if !validation.audiences.is_empty() {
        match &claims.aud {
            Some(aud) if aud.any(&validation.audiences) => {}
            Some(_) => return Err(JwtError::BadAudience),
            None => {
                return Err(JwtError::MissingClaim {
                    claim: "aud".to_owned(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
