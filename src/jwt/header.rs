//! The JOSE header: only `alg`, `kid` and the extensions that must refuse
//! the token are read, and an accepted header segment is remembered per
//! thread (most traffic repeats a handful of headers).

use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use super::json::{Json, Reader, Syntax};
use super::{Alg, JwtError, Segment, decode_segment};

/// A header segment this thread parsed and accepted, and what it said.
pub(super) struct KnownHeader {
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
pub(super) fn with_header<R>(
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

/// Reads `alg` and `kid`, and refuses what no key may be used for. Other
/// members (`typ`, `cty`, `jwk`, `jku`, `x5u`, `x5c`, …) are ignored: a
/// token never chooses its own key. Like the claims, the header may not
/// repeat a member, known or not.
pub(super) fn parse_header(segment: &str) -> Result<KnownHeader, JwtError> {
    // Decoded on the stack unless unusually large.
    let (mut buf, mut heap) = ([MaybeUninit::uninit(); 256], Vec::new());
    let json = decode_segment(segment, &mut buf, &mut heap, Segment::Header)?;
    let (mut alg, mut kid, mut extension) = (None, None, false);
    Reader::new(json, Segment::Header)?.object(|reader, name| {
        match name.as_str() {
            "alg" => alg = Some(reader.string()?),
            // A `kid` must be a string; `null` is not "no kid".
            "kid" => kid = Some(reader.string()?),
            // Any `crit`, even `null`, is refused (RFC 7515 §4.1.11): no
            // extension is implemented.
            "crit" => {
                reader.skip()?;
                extension = true;
            }
            // RFC 7797 unencoded payloads are not supported; only
            // `b64: true` (the default meaning) passes.
            "b64" => match reader.value()? {
                Json::Bool(b64) => extension |= !b64,
                _ => return Err(Syntax("b64 is not a boolean")),
            },
            _ => reader.skip()?,
        }
        Ok(())
    })?;
    if extension {
        return Err(JwtError::Crit);
    }
    let alg = alg.ok_or_else(|| JwtError::Json {
        segment: Segment::Header,
        reason: "missing member \"alg\"".to_owned(),
    })?;
    Ok(KnownHeader {
        segment: segment.to_owned(),
        alg: Alg::from_name(&alg).ok_or_else(|| JwtError::UnsupportedAlg {
            alg: alg.clone().into_owned(),
        })?,
        kid: kid.map(Cow::into_owned),
    })
}
