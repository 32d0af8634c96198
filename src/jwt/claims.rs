//! The claim set: parsed once into a table of raw members, then the claims
//! the verifier needs are read from it and checked against the time
//! window, issuer and audience. Every other member stays raw, for rules
//! and headers that read it later.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::value::RawValue;

use super::object::{self, Object, Text, same_name};
use super::{JwtError, Roles, Segment, Validation};

/// The claims the verifier checks, as typed values, and the whole claim
/// set as raw members. `iss` and `aud` borrow from the decoded payload:
/// they are only compared, never kept.
#[derive(Debug, Default)]
pub(super) struct Claims<'a> {
    pub(super) exp: Option<i64>,
    pub(super) nbf: Option<i64>,
    pub(super) iat: Option<i64>,
    pub(super) iss: Option<Cow<'a, str>>,
    pub(super) aud: Option<Vec<Text<'a>>>,
    pub(super) user: Option<String>,
    pub(super) roles: Roles,
    pub(super) jti: Option<String>,
    pub(super) members: Object<'a>,
}

/// A claim set with more members than this is refused. It is read only
/// after the signature verified, so this bounds a trusted issuer's
/// mistakes, not an attacker.
const MAX_CLAIMS: usize = 4096;

/// Reads the claim set. The answer does not depend on member order: a
/// malformed payload is a JSON error, then a missing required claim, then
/// the first bad claim in the order `exp`, `nbf`, `iat`, `iss`, `aud`, the
/// user claim, the role claim, `jti`.
pub(super) fn parse_claims<'a>(
    json: &'a str,
    validation: &Validation,
) -> Result<Claims<'a>, JwtError> {
    let members = Object::parse_str(json, MAX_CLAIMS).map_err(|reason| JwtError::Json {
        segment: Segment::Payload,
        reason,
    })?;
    if let Some(claim) = (validation.required.iter()).find(|claim| members.get(claim).is_none()) {
        return Err(JwtError::MissingClaim {
            claim: claim.clone(),
        });
    }
    // One pass puts the registered claims in their slots: names compared
    // with constants, which the compiler does inline.
    let mut slots: [Option<&RawValue>; 6] = [None; 6];
    for (name, value) in members.members() {
        let slot = match &**name {
            "exp" => 0,
            "nbf" => 1,
            "iat" => 2,
            "iss" => 3,
            "aud" => 4,
            "jti" => 5,
            _ => continue,
        };
        slots[slot] = Some(value);
    }
    let [exp, nbf, iat, iss, aud, jti] = slots;
    // A fraction is rounded the strict way: exp down, nbf up; iat down, so
    // a revocation of tokens issued before a time holds.
    let exp = read(&"exp", exp, |raw| numeric_date(raw, Rounding::Down))?;
    let nbf = read(&"nbf", nbf, |raw| numeric_date(raw, Rounding::Up))?;
    let iat = read(&"iat", iat, |raw| numeric_date(raw, Rounding::Down))?;
    let iss = read(&"iss", iss, string)?;
    let aud = read(&"aud", aud, strings)?;
    let (user_claim, role_claim) = (&validation.user_claim, &validation.role_claim);
    let user = read(user_claim, value_at(&members, &user_claim.0), user_id)?;
    let roles = read(role_claim, value_at(&members, &role_claim.0), roles)?.unwrap_or_default();
    let jti = read(&"jti", jti, string)?.map(Cow::into_owned);
    Ok(Claims {
        exp,
        nbf,
        iat,
        iss,
        aud,
        user,
        roles,
        jti,
        members,
    })
}

/// A claim's value converted to its type, if present; `claim` names it
/// in the refusal.
fn read<'a, T>(
    claim: &dyn std::fmt::Display,
    value: Option<&'a RawValue>,
    convert: impl FnOnce(&'a RawValue) -> Result<T, &'static str>,
) -> Result<Option<T>, JwtError> {
    let value = value.map(convert).transpose();
    value.map_err(|problem| JwtError::InvalidClaim {
        claim: claim.to_string(),
        problem,
    })
}

/// The raw value at `path` in `object`: `None` where a step is missing or
/// is not an object (or repeats a name).
pub(super) fn value_at<'a, S: AsRef<str>>(object: &Object<'a>, path: &[S]) -> Option<&'a RawValue> {
    let (first, rest) = path.split_first()?;
    let mut value = object.get(first.as_ref())?;
    for step in rest {
        value = object::find(value.get(), step.as_ref())?;
    }
    Some(value)
}

/// The claim set's `iss`, read before the signature is checked only to
/// choose the provider whose keys may verify the token.
pub(super) fn issuer(payload: &[u8]) -> Result<Option<String>, JwtError> {
    let members = Object::parse(payload, MAX_CLAIMS).map_err(|reason| JwtError::Json {
        segment: Segment::Payload,
        reason,
    })?;
    Ok(read(&"iss", members.get("iss"), string)?.map(Cow::into_owned))
}

/// A verified token's whole claim set: the payload text and where each
/// top-level member lies in it, so a rule or a header can read any claim,
/// nested ones included, without parsing the claim set again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimSet {
    text: String,
    /// In the order [`Object`] keeps them (sorted by name when `sorted`).
    members: Vec<(MemberName, Range<usize>)>,
    sorted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum MemberName {
    /// Where the name lies in the text (it had no escapes).
    At(Range<usize>),
    /// A name spelled with escapes, decoded.
    Decoded(Box<str>),
}

/// The member places of a [`ClaimSet`], before it owns its text.
pub(super) struct ClaimIndex(Vec<(MemberName, Range<usize>)>, bool);

impl ClaimSet {
    /// Keeps `text` with the places of its members, which `object` (parsed
    /// from `text` and borrowing from it) gives as `index`.
    pub(super) fn new(text: String, index: ClaimIndex) -> ClaimSet {
        ClaimSet {
            text,
            members: index.0,
            sorted: index.1,
        }
    }

    /// Where `object`'s members lie in `text`, which it was parsed from.
    pub(super) fn index(text: &str, object: &Object<'_>) -> ClaimIndex {
        let base = text.as_ptr() as usize;
        // Borrowed names and raw values are slices of `text`.
        let at = |part: &str| {
            let start = (part.as_ptr() as usize).wrapping_sub(base);
            start..start + part.len()
        };
        let members = (object.members())
            .map(|(name, value)| {
                let name = match name {
                    Cow::Borrowed(name) => MemberName::At(at(name)),
                    Cow::Owned(name) => MemberName::Decoded(name.as_str().into()),
                };
                (name, at(value.get()))
            })
            .collect();
        ClaimIndex(members, object.is_sorted())
    }

    /// A claim set from JSON text, for tests elsewhere.
    #[cfg(test)]
    pub(crate) fn parse_for_tests(text: &str) -> ClaimSet {
        let object = Object::parse(text.as_bytes(), MAX_CLAIMS).unwrap_or_default();
        let index = ClaimSet::index(text, &object);
        ClaimSet::new(text.to_owned(), index)
    }

    fn name<'s>(&'s self, name: &'s MemberName) -> &'s str {
        match name {
            MemberName::At(range) => self.text.get(range.clone()).unwrap_or_default(),
            MemberName::Decoded(name) => name,
        }
    }

    /// The whole claim set as the token carried it (decoded from base64url).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The raw JSON text of the top-level claim `name`.
    pub fn top(&self, name: &str) -> Option<&str> {
        let at = match self.sorted {
            true => (self.members)
                .binary_search_by(|(member, _)| self.name(member).cmp(name))
                .ok()?,
            false => {
                (self.members.iter()).position(|(member, _)| same_name(self.name(member), name))?
            }
        };
        self.text.get(self.members[at].1.clone())
    }

    /// The raw JSON text at `path`: its first element names a top-level
    /// claim, each next one a member of the object before. `None` when a
    /// step is missing, is not an object, or repeats a member name.
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&str> {
        let (first, rest) = path.split_first()?;
        let mut value = self.top(first.as_ref())?;
        for step in rest {
            value = object::find(value, step.as_ref())?.get();
        }
        Some(value)
    }
}

pub(super) const NOT_A_NUMERIC_DATE: &str = "is not a NumericDate";
pub(super) const NOT_A_STRING: &str = "is not a string";
pub(super) const NOT_STRINGS: &str = "is not a string or an array of strings";
pub(super) const NOT_A_USER_ID: &str = "is not a string or an integer";

/// Beyond 2^53 a JSON number is no longer an exact integer in most parsers.
pub(super) const MAX_NUMERIC_DATE: i64 = 1 << 53;

#[derive(Clone, Copy)]
enum Rounding {
    Down,
    Up,
}

/// RFC 7519 §2 NumericDate: a JSON number of seconds, possibly fractional,
/// within ±2^53. Strings, booleans, null and out-of-range values are
/// refused, never treated as absent.
///
/// Read from the number's decimal text, never through `f64`: the range is
/// checked on the exact value (`9007199254740992.5` is out of range though
/// it rounds to 2^53) and a fraction is rounded exactly.
fn numeric_date(raw: &RawValue, rounding: Rounding) -> Result<i64, &'static str> {
    exact_seconds(raw.get(), rounding).ok_or(NOT_A_NUMERIC_DATE)
}

fn exact_seconds(number: &str, rounding: Rounding) -> Option<i64> {
    // Nearly every token: a plain integer, whose reading is exact as is.
    let digits = number.strip_prefix('-').unwrap_or(number);
    if digits.len() <= 16 && digits.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = number.parse::<i64>().ok()?;
        return (seconds.abs() <= MAX_NUMERIC_DATE).then_some(seconds);
    }
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The digits without the point; the point sits `point` digits in.
    let digits = || whole.bytes().chain(fraction.bytes());
    let leading_zeros = digits().take_while(|&b| b == b'0').count();
    let point = (whole.len() as i64).saturating_add(exponent) - leading_zeros as i64;
    let significant = digits().skip(leading_zeros);
    // 2^53 has 16 digits: more before the point is out of range.
    if point > 16 {
        return None;
    }
    let before_point = usize::try_from(point).unwrap_or(0);
    let mut seconds: i64 = 0;
    let mut has_fraction = false;
    let mut taken = 0;
    for digit in significant {
        match taken < before_point {
            true => seconds = seconds * 10 + i64::from(digit - b'0'),
            false => has_fraction |= digit != b'0',
        }
        taken += 1;
    }
    // Trailing zeros the exponent adds, as in `1e3`.
    for _ in taken..before_point {
        seconds *= 10;
    }
    if seconds > MAX_NUMERIC_DATE || (seconds == MAX_NUMERIC_DATE && has_fraction) {
        return None;
    }
    let away = i64::from(has_fraction);
    Some(match (negative, rounding) {
        (false, Rounding::Down) => seconds,
        (false, Rounding::Up) => seconds + away,
        (true, Rounding::Down) => -seconds - away,
        (true, Rounding::Up) => -seconds,
    })
}

fn string(raw: &RawValue) -> Result<Cow<'_, str>, &'static str> {
    // A string without escapes is its text between the quotes: serde_json
    // has checked it holds no control character.
    let text = raw.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return Ok(Cow::Borrowed(inner));
    }
    match serde_json::from_str::<Text<'_>>(text) {
        Ok(text) => Ok(text.0),
        Err(_) => Err(NOT_A_STRING),
    }
}

/// One string or an array of strings (RFC 7519 §4.1.3 for `aud`).
fn strings(raw: &RawValue) -> Result<Vec<Text<'_>>, &'static str> {
    match raw.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(raw.get()).map_err(|_| NOT_STRINGS),
        _ => string(raw)
            .map(|one| vec![Text(one)])
            .map_err(|_| NOT_STRINGS),
    }
}

fn user_id(raw: &RawValue) -> Result<String, &'static str> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => Ok(string(raw)?.into_owned()),
        // An integer, spelled as the token spelled it: JSON integers have
        // one spelling (no leading zeros, no `+`), `-0` aside.
        _ => match text.parse::<i64>() {
            Ok(_) if text != "-0" => Ok(text.to_owned()),
            _ => match text.parse::<u64>() {
                Ok(_) => Ok(text.to_owned()),
                Err(_) => Err(NOT_A_USER_ID),
            },
        },
    }
}

/// One string or an array of strings. Any characters: the forwarded
/// header encodes what is not header-safe (see `headers`).
fn roles(raw: &RawValue) -> Result<Roles, &'static str> {
    let roles = strings(raw)?;
    Ok(Roles::new(
        roles.into_iter().map(|role| role.0.into_owned()).collect(),
    ))
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
    if validation.checks_issuer() {
        match &claims.iss {
            Some(iss) if validation.accepts_issuer(iss) => {}
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
            Some(aud)
                if aud
                    .iter()
                    .any(|a| validation.audiences.iter().any(|x| *x == a.0)) => {}
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
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn down(text: &str) -> Option<i64> {
        exact_seconds(text, Rounding::Down)
    }

    fn up(text: &str) -> Option<i64> {
        exact_seconds(text, Rounding::Up)
    }

    #[test]
    fn numeric_dates_are_read_exactly_at_the_2_pow_53_bounds() {
        assert_eq!(down("9007199254740992"), Some(MAX_NUMERIC_DATE));
        assert_eq!(down("-9007199254740992"), Some(-MAX_NUMERIC_DATE));
        assert_eq!(down("9007199254740992.0"), Some(MAX_NUMERIC_DATE));
        assert_eq!(down("9.007199254740992e15"), Some(MAX_NUMERIC_DATE));
        assert_eq!(down("9007199254740991.9"), Some(MAX_NUMERIC_DATE - 1));
        assert_eq!(up("9007199254740991.1"), Some(MAX_NUMERIC_DATE));
        // Each of these rounds to 2^53 as an f64, and is beyond it.
        for beyond in [
            "9007199254740993",
            "9007199254740992.5",
            "9007199254740992.0000000001",
            "-9007199254740992.5",
            "90071992547409921e-1",
            "1e16",
            "1e400",
            "-1e400",
            "1e99999999999999999999",
        ] {
            assert_eq!(down(beyond), None, "{beyond}");
            assert_eq!(up(beyond), None, "{beyond}");
        }
    }

    #[test]
    fn fractions_round_the_strict_way_on_both_signs() {
        assert_eq!((down("1.5"), up("1.5")), (Some(1), Some(2)));
        assert_eq!((down("-1.5"), up("-1.5")), (Some(-2), Some(-1)));
        assert_eq!((down("2.0"), up("2.000")), (Some(2), Some(2)));
        assert_eq!((down("0.001"), up("1e-400")), (Some(0), Some(1)));
        assert_eq!((down("-0"), up("-0.0")), (Some(0), Some(0)));
        assert_eq!((down("15e-1"), up("1.5E0")), (Some(1), Some(2)));
        assert_eq!(down("0.00017e7"), Some(1700));
        assert_eq!(
            down("1700000000e-9999999999999999999"),
            None,
            "exponent beyond i64"
        );
        assert_eq!(down("1e-99999999999"), Some(0));
    }

    proptest! {
        /// Away from 2^53, where f64 is exact enough, the reading agrees
        /// with floor and ceil of the standard parser's value.
        #[test]
        fn agrees_with_f64_away_from_the_bound(
            whole in -4_000_000_000i64..4_000_000_000,
            fraction in "[0-9]{0,6}",
            exponent in -3i32..4,
        ) {
            let text = match fraction.is_empty() {
                true => format!("{whole}e{exponent}"),
                false => format!("{whole}.{fraction}e{exponent}"),
            };
            let value: f64 = text.parse().unwrap();
            prop_assert_eq!(down(&text), Some(value.floor() as i64), "{}", text);
            prop_assert_eq!(up(&text), Some(value.ceil() as i64), "{}", text);
        }
    }
}
