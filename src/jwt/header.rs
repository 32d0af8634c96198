//! The JOSE header: only `alg`, `kid` and the extensions that must refuse
//! the token are read, and an accepted header segment is remembered per
//! thread (most traffic repeats a handful of headers).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use super::claims::{MemberName, Seen};
use super::{Alg, JwtError, Segment, decode_segment, parse_object};

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

pub(super) fn parse_header(segment: &str) -> Result<KnownHeader, JwtError> {
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

/// The header members the verifier reads. Others (`typ`, `cty`, `jwk`, `jku`,
/// `x5u`, `x5c`, …) are ignored: a token never chooses its own key. Like the
/// claims, the header may not repeat a member, known or not.
pub(super) struct Header<'a> {
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

pub(super) struct HeaderVisitor;

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
pub(super) struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}
