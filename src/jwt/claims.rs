//! The claim set: read in one pass into typed values, refusing duplicates,
//! then checked against the time window, issuer and audience.

use std::borrow::Cow;

use super::json::{Compact, Json, Name, Reader};
use super::{JwtError, Roles, Segment, Validation};

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
    pub(super) roles: Roles,
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

/// A claim the verifier reads, in the order its problems are reported:
/// whatever order the payload has, a token with a bad `exp` and a bad `sub`
/// is refused for its `exp`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Exp,
    Nbf,
    Iat,
    Iss,
    Aud,
    User,
    Role,
    Jti,
}

impl Slot {
    fn claim(self, validation: &Validation) -> &str {
        match self {
            Slot::Exp => "exp",
            Slot::Nbf => "nbf",
            Slot::Iat => "iat",
            Slot::Iss => "iss",
            Slot::Aud => "aud",
            Slot::User => &validation.user_claim,
            Slot::Role => &validation.role_claim,
            Slot::Jti => "jti",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Which [`Slot`] a member name fills, if any. The configured user and
/// role claims come first, so `user_claim = "iss"` reads `iss` as the user.
struct Slots<'v> {
    user: Name<'v>,
    role: Name<'v>,
}

impl<'v> Slots<'v> {
    const EXP: u64 = Name::key_of("exp");
    const NBF: u64 = Name::key_of("nbf");
    const IAT: u64 = Name::key_of("iat");
    const ISS: u64 = Name::key_of("iss");
    const AUD: u64 = Name::key_of("aud");
    const JTI: u64 = Name::key_of("jti");

    fn new(validation: &'v Validation) -> Self {
        Slots {
            user: Name::new(&validation.user_claim),
            role: Name::new(&validation.role_claim),
        }
    }

    #[inline(always)]
    fn of(&self, name: &Name<'_>) -> Option<Slot> {
        if name.is(&self.user) {
            return Some(Slot::User);
        }
        if name.is(&self.role) {
            return Some(Slot::Role);
        }
        match name.key() {
            key if key == Self::EXP => Some(Slot::Exp),
            key if key == Self::NBF => Some(Slot::Nbf),
            key if key == Self::IAT => Some(Slot::Iat),
            key if key == Self::ISS => Some(Slot::Iss),
            key if key == Self::AUD => Some(Slot::Aud),
            key if key == Self::JTI => Some(Slot::Jti),
            _ => None,
        }
    }
}

/// Reads the claim set, converting each claim the verifier reads to its
/// type as it goes. A claim of the wrong type is remembered,
/// not refused at once, so the answer does not depend on member order: a
/// malformed payload is a JSON error, then a missing required claim, then
/// the first bad claim in [`Slot`] order.
///
/// Most payloads are compact JSON of plain values and are read once, by
/// [`Compact`], each claim straight into its type (a [`Json`] value per
/// claim, made and matched again, went through memory both ways); where it
/// stops, the whole text is read again by [`Reader`], which gives every
/// refusal. A test holds the two readings equal.
pub(super) fn parse_claims<'a>(
    json: &'a [u8],
    validation: &Validation,
) -> Result<Claims<'a>, JwtError> {
    let reader = Reader::new(json, Segment::Payload)?;
    let slots = Slots::new(validation);
    let mut reading = Reading::new(validation, &slots);
    let compact = Compact::object(reader.text(), |compact, name| match slots.of(name) {
        // A claim of the wrong type stops it: the reader below names it.
        Some(slot) => reading.take_compact(slot, compact),
        None => {
            reading.other(name);
            compact.skip()
        }
    });
    if compact.is_none() {
        reading = read_generally(reader, validation, &slots)?;
    }
    reading.finish(validation, &slots)
}

/// Reads the claim set with [`Reader`], which gives every refusal.
fn read_generally<'a, 'v>(
    reader: Reader<'a>,
    validation: &'v Validation,
    slots: &Slots<'v>,
) -> Result<Reading<'a, 'v>, JwtError> {
    let mut reading = Reading::new(validation, slots);
    reader.object(|reader, name| {
        match slots.of(name) {
            Some(slot) => {
                if let Err(what) = reading.take(slot, reader.value()?) {
                    reading.problem(slot, what);
                }
            }
            None => {
                reading.other(name);
                reader.skip()?;
            }
        }
        Ok(())
    })?;
    Ok(reading)
}

/// [`parse_claims`] without the compact reader: what it must agree with.
#[cfg(test)]
pub(super) fn parse_claims_generally<'a>(
    json: &'a [u8],
    validation: &Validation,
) -> Result<Claims<'a>, JwtError> {
    let reader = Reader::new(json, Segment::Payload)?;
    let slots = Slots::new(validation);
    read_generally(reader, validation, &slots)?.finish(validation, &slots)
}

/// The claims read so far, and what is known about the rest.
struct Reading<'a, 'v> {
    claims: Claims<'a>,
    /// Bit per [`Slot`]: its member was present, whatever its value.
    seen: u8,
    /// Required claims that fill no slot (rare): the index in
    /// `validation.required`, the name, and whether a member had it.
    others: Vec<(usize, Name<'v>, bool)>,
    /// The first bad claim in [`Slot`] order.
    problem: Option<(Slot, &'static str)>,
}

impl<'a, 'v> Reading<'a, 'v> {
    #[inline(always)]
    fn new(validation: &'v Validation, slots: &Slots<'_>) -> Self {
        let mut others = Vec::new();
        for (i, claim) in validation.required.iter().enumerate() {
            let name = Name::new(claim);
            if slots.of(&name).is_none() {
                others.push((i, name, false));
            }
        }
        Reading {
            claims: Claims::default(),
            seen: 0,
            others,
            problem: None,
        }
    }

    /// A member that fills no slot.
    #[inline(always)]
    fn other(&mut self, name: &Name<'_>) {
        for (_, other, present) in &mut self.others {
            *present |= name.is(other);
        }
    }

    /// Converts a member's value to its slot's type.
    #[inline(always)]
    fn take(&mut self, slot: Slot, value: Json<'a>) -> Result<(), &'static str> {
        self.seen |= slot.bit();
        let claims = &mut self.claims;
        match slot {
            // A fraction is rounded the strict way: exp down, nbf up; iat
            // down, so a revocation of tokens issued before a time holds.
            Slot::Exp => numeric_date(value, f64::floor).map(|t| claims.exp = Some(t)),
            Slot::Nbf => numeric_date(value, f64::ceil).map(|t| claims.nbf = Some(t)),
            Slot::Iat => numeric_date(value, f64::floor).map(|t| claims.iat = Some(t)),
            Slot::Iss => string(value).map(|iss| claims.iss = Some(iss)),
            Slot::Aud => audience(value).map(|aud| claims.aud = Some(aud)),
            Slot::User => user_id(value).map(|user| claims.user = Some(user)),
            Slot::Role => roles(value).map(|roles| claims.roles = roles),
            Slot::Jti => string(value).map(|jti| claims.jti = Some(jti.into_owned())),
        }
    }

    /// Reads a claim's value straight into its slot's type, as
    /// [`Reading::take`] would convert it: `None` (stop) for any other
    /// shape or a value of the wrong type, which the general reader reads.
    /// After `None` this reading is half done and must be thrown away.
    #[inline(always)]
    fn take_compact(&mut self, slot: Slot, compact: &mut Compact<'a>) -> Option<()> {
        self.seen |= slot.bit();
        let claims = &mut self.claims;
        match slot {
            Slot::Exp => claims.exp = Some(compact_numeric_date(compact)?),
            Slot::Nbf => claims.nbf = Some(compact_numeric_date(compact)?),
            Slot::Iat => claims.iat = Some(compact_numeric_date(compact)?),
            Slot::Iss => claims.iss = Some(Cow::Borrowed(compact.string()?)),
            Slot::Jti => claims.jti = Some(compact.string()?.to_owned()),
            Slot::Aud => {
                claims.aud = Some(match compact.peek()? {
                    b'[' => Audience::Many(compact.string_list()?),
                    _ => Audience::One(Cow::Borrowed(compact.string()?)),
                })
            }
            Slot::User => {
                claims.user = Some(match compact.peek()? {
                    b'"' => compact
                        .string()
                        .filter(|user| is_header_safe(user))?
                        .to_owned(),
                    _ => compact.uint()?.to_string(),
                })
            }
            Slot::Role => {
                claims.roles = match compact.peek()? {
                    b'[' => roles(Json::Strings(compact.string_list()?)),
                    _ => roles(Json::Str(Cow::Borrowed(compact.string()?))),
                }
                .ok()?
            }
        }
        Some(())
    }

    fn problem(&mut self, slot: Slot, what: &'static str) {
        if self.problem.is_none_or(|(first, _)| slot < first) {
            self.problem = Some((slot, what));
        }
    }

    #[inline(always)]
    fn finish(self, validation: &Validation, slots: &Slots<'_>) -> Result<Claims<'a>, JwtError> {
        for (i, claim) in validation.required.iter().enumerate() {
            let present = match slots.of(&Name::new(claim)) {
                Some(slot) => self.seen & slot.bit() != 0,
                None => (self.others.iter()).any(|(at, _, present)| *at == i && *present),
            };
            if !present {
                return Err(JwtError::MissingClaim {
                    claim: claim.clone(),
                });
            }
        }
        match self.problem {
            Some((slot, what)) => Err(invalid(slot.claim(validation), what)),
            None => Ok(self.claims),
        }
    }
}

pub(super) const NOT_A_NUMERIC_DATE: &str = "is not a NumericDate";
pub(super) const NOT_A_STRING: &str = "is not a string";
pub(super) const NOT_STRINGS: &str = "is not a string or an array of strings";
pub(super) const NOT_A_USER_ID: &str = "is not a string or an integer";
pub(super) const NOT_HEADER_SAFE: &str = "holds characters not allowed in a forwarded header";

fn invalid(claim: &str, problem: &'static str) -> JwtError {
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
fn numeric_date(value: Json<'_>, round: fn(f64) -> f64) -> Result<i64, &'static str> {
    let seconds = match value {
        Json::Int(v) => Some(v),
        Json::UInt(v) => i64::try_from(v).ok(),
        Json::Float(v) if v.is_finite() && v.abs() <= MAX_NUMERIC_DATE as f64 => {
            Some(round(v) as i64)
        }
        _ => None,
    };
    seconds
        .filter(|s| (-MAX_NUMERIC_DATE..=MAX_NUMERIC_DATE).contains(s))
        .ok_or(NOT_A_NUMERIC_DATE)
}

/// [`numeric_date`] of a `UInt`, the only number the compact reader reads.
#[inline(always)]
fn compact_numeric_date(compact: &mut Compact<'_>) -> Option<i64> {
    i64::try_from(compact.uint()?)
        .ok()
        .filter(|&s| s <= MAX_NUMERIC_DATE)
}

fn string(value: Json<'_>) -> Result<Cow<'_, str>, &'static str> {
    match value {
        Json::Str(s) => Ok(s),
        _ => Err(NOT_A_STRING),
    }
}

/// RFC 7519 §4.1.3: one string or an array of strings.
fn audience(value: Json<'_>) -> Result<Audience<'_>, &'static str> {
    match value {
        Json::Str(aud) => Ok(Audience::One(aud)),
        Json::Strings(list) => Ok(Audience::Many(list)),
        _ => Err(NOT_STRINGS),
    }
}

fn user_id(value: Json<'_>) -> Result<String, &'static str> {
    let user = match value {
        Json::Str(s) => s.into_owned(),
        Json::Int(v) => v.to_string(),
        Json::UInt(v) => v.to_string(),
        _ => return Err(NOT_A_USER_ID),
    };
    match is_header_safe(&user) {
        true => Ok(user),
        false => Err(NOT_HEADER_SAFE),
    }
}

fn roles(value: Json<'_>) -> Result<Roles, &'static str> {
    // Roles travel joined by "," in one header, so a comma inside one role
    // would let a token smuggle a second role past the policy.
    let fits = |role: &str| is_header_safe(role) && !role.contains(',');
    match value {
        Json::Str(role) if fits(&role) => Ok(Roles(role.into_owned())),
        Json::Strings(list) if list.iter().all(|role| fits(role)) => Ok(Roles(list.join(","))),
        Json::Str(_) | Json::Strings(_) => Err(NOT_HEADER_SAFE),
        _ => Err(NOT_STRINGS),
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
