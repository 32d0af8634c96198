//! The claim set: read in one pass into typed values without building a
//! `serde_json::Value`, refusing duplicates, then checked against the time
//! window, issuer and audience.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{JwtError, Segment, Validation, utf8};

/// The claims the verifier checks, as typed values. `iss` and `aud` borrow
/// from the decoded payload: they are only compared, never kept.
#[derive(Debug, Default)]
pub(super) struct Claims<'a> {
    pub(super) exp: Option<i64>,
    pub(super) nbf: Option<i64>,
    pub(super) iat: Option<i64>,
    pub(super) iss: Option<Cow<'a, str>>,
    pub(super) aud: Option<Audience<'a>>,
    pub(super) user: Option<String>,
    pub(super) roles: Vec<String>,
    pub(super) jti: Option<String>,
}

/// RFC 7519 §4.1.3: one string or an array of strings.
#[derive(Debug)]
pub(super) enum Audience<'a> {
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
pub(super) struct RawClaims<'a> {
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

pub(super) fn parse_claims<'a>(
    json: &'a [u8],
    validation: &Validation,
) -> Result<Claims<'a>, JwtError> {
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

pub(super) const NOT_A_NUMERIC_DATE: &str = "is not a NumericDate";
pub(super) const NOT_A_STRING: &str = "is not a string";
pub(super) const NOT_STRINGS: &str = "is not a string or an array of strings";
pub(super) const NOT_A_USER_ID: &str = "is not a string or an integer";
pub(super) const NOT_HEADER_SAFE: &str = "holds characters not allowed in a forwarded header";

pub(super) fn invalid(claim: &str, problem: &'static str) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_owned(),
        problem,
    }
}

/// Beyond 2^53 a JSON number is no longer an exact integer in most parsers.
pub(super) const MAX_NUMERIC_DATE: i64 = 1 << 53;

/// RFC 7519 §2 NumericDate: a JSON number of seconds, possibly fractional.
/// Strings, booleans, null and out-of-range values are refused, never
/// treated as absent.
pub(super) fn numeric_date(claim: &str, value: Json<'_>) -> Result<i64, JwtError> {
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

pub(super) fn user_id(claim: &str, value: Json<'_>) -> Result<String, JwtError> {
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

pub(super) fn roles(claim: &str, value: Json<'_>) -> Result<Vec<String>, JwtError> {
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
pub(super) fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A claim value, classified by JSON type. Only the shapes claims may take
/// are kept; anything else is `Other` and consumed with bounded work.
#[derive(Debug)]
pub(super) enum Json<'a> {
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

pub(super) struct JsonVisitor;

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

pub(super) struct ClaimsSeed<'v>(&'v Validation);

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
        // Parsers that disagree on which duplicate wins let a token mean one
        // thing here and another upstream; RFC 7519 §4 (and RFC 7515 §5.2
        // for the header) lets us refuse duplicates outright.
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
pub(super) struct MemberName<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(MemberNameVisitor)
    }
}

pub(super) struct MemberNameVisitor;

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
pub(super) struct Seen<'de> {
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

    pub(super) fn contains(&self, name: &str) -> bool {
        let same = |seen: &Cow<'de, str>| seen == name;
        self.inline[..self.len].iter().any(same) || self.spill.iter().any(same)
    }

    pub(super) fn push(&mut self, name: Cow<'de, str>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = name;
                self.len += 1;
            }
            None => self.spill.push(name),
        }
    }
}

pub(super) fn check_claims(
    claims: &Claims<'_>,
    validation: &Validation,
    now: i64,
) -> Result<(), JwtError> {
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
