//! The JOSE header: only `alg`, `kid` and the extensions that must refuse
//! the token are read, and an accepted header segment is remembered per
//! thread (most traffic repeats a handful of headers).
//!
//! The header is read before the signature is checked, so anyone can make
//! the gateway read one: its size and member count are capped well above
//! what issuers send (`alg`, `kid`, `typ`, `x5t`, `x5t#S256`, `jku`, `x5u`,
//! `cty`, …), so no header costs more than a small one to refuse.

use std::cell::RefCell;

use super::object::{Object, Text};
use super::{Alg, JwtError, Segment, decode};

/// Largest decoded header accepted.
pub const MAX_HEADER_LEN: usize = 1024;
/// Most members a header may have.
pub const MAX_HEADER_MEMBERS: usize = 32;

/// A header segment this thread parsed and accepted, and what it said.
pub(super) struct KnownHeader {
    segment: String,
    alg: Alg,
    kid: Option<String>,
    typ: Option<String>,
}

thread_local! {
    /// The last accepted header segment on this thread. One issuer signs
    /// every token with the same header, byte for byte, so comparing the
    /// segment replaces a base64 decode and a JSON parse. What a segment
    /// says is a pure function of its bytes, so a hit gives exactly what
    /// parsing would; only headers that passed every header check are
    /// remembered. Per thread: no lock, no sharing.
    static LAST_HEADER: RefCell<Option<KnownHeader>> = const { RefCell::new(None) };
}

/// Reads the header's `alg`, `kid` and `typ` (refusing `crit`, `b64:
/// false`, unknown algorithms) and hands them to `then`.
pub(super) fn with_header<R>(
    segment: &str,
    then: impl FnOnce(Alg, Option<&str>, Option<&str>) -> Result<R, JwtError>,
) -> Result<R, JwtError> {
    LAST_HEADER.with_borrow_mut(|last| {
        let known = match last {
            Some(known) if known.segment == segment => known,
            _ => last.insert(parse_header(segment)?),
        };
        then(known.alg, known.kid.as_deref(), known.typ.as_deref())
    })
}

fn malformed(reason: impl Into<String>) -> JwtError {
    JwtError::Json {
        segment: Segment::Header,
        reason: reason.into(),
    }
}

/// Reads `alg`, `kid` and `typ`, and refuses what no key may be used for.
/// Other members (`cty`, `jwk`, `jku`, `x5u`, `x5c`, …) are ignored: a
/// token never chooses its own key. Like the claims, the header may not
/// repeat a member, known or not.
pub(super) fn parse_header(segment: &str) -> Result<KnownHeader, JwtError> {
    // Checked on the encoded length, before any decoding.
    if segment.len() > MAX_HEADER_LEN / 3 * 4 + 2 {
        return Err(malformed(format!("longer than {MAX_HEADER_LEN} bytes")));
    }
    let json = decode(segment, Segment::Header)?;
    let header = Object::parse(&json, MAX_HEADER_MEMBERS).map_err(malformed)?;
    let string = |name: &str| -> Result<Option<String>, JwtError> {
        header
            .get(name)
            .map(|raw| match serde_json::from_str::<Text<'_>>(raw.get()) {
                Ok(text) => Ok(text.0.into_owned()),
                Err(_) => Err(malformed(format!("member {name:?} is not a string"))),
            })
            .transpose()
    };
    let alg = string("alg")?;
    // A `kid` must be a string; `null` is not "no kid".
    let kid = string("kid")?;
    let typ = string("typ")?;
    // RFC 7797 unencoded payloads are not supported; only `b64: true`
    // (the default meaning) passes.
    let unencoded = match header.get("b64").map(|raw| raw.get()) {
        None | Some("true") => false,
        Some("false") => true,
        Some(_) => return Err(malformed("member \"b64\" is not a boolean")),
    };
    // Any `crit`, even `null`, is refused (RFC 7515 §4.1.11): no extension
    // is implemented.
    if unencoded || header.get("crit").is_some() {
        return Err(JwtError::Crit);
    }
    let alg = alg.ok_or_else(|| malformed("missing member \"alg\""))?;
    Ok(KnownHeader {
        segment: segment.to_owned(),
        alg: Alg::from_name(&alg).ok_or(JwtError::UnsupportedAlg { alg })?,
        kid,
        typ,
    })
}
