//! Emergency revocation: token ids and subjects refused although their
//! tokens verify.
//!
//! ```toml
//! [[revoke]]
//! jti = "9f1c…"                      # this one token
//! [[revoke]]
//! sub = "42"
//! before = "2026-11-28T12:00:00Z"    # user 42's tokens issued (iat) earlier
//! ```
//!
//! The file is named by `[revocation] file` and reloaded with the config.
//! Lookups are two hash probes, done only when the file lists anything.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, parse_toml};
use crate::jwt::Verified;

/// The revocation list in force.
#[derive(Debug, Default)]
pub struct Revocations {
    tokens: HashSet<Box<str>>,
    /// User id → tokens issued before this Unix time are refused
    /// (`None`: every token of that user).
    subjects: HashMap<Box<str>, Option<i64>>,
}

/// Why a verified token is refused anyway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Revoked {
    #[error("token id is revoked")]
    Token,
    /// `before: None`: every token of the user.
    #[error("{}", subject_message(*before, "are revoked"))]
    Subject { before: Option<i64> },
    #[error("{}", subject_message(*before, "are revoked and the token has no iat"))]
    SubjectWithoutIat { before: Option<i64> },
}

fn subject_message(before: Option<i64>, what: &str) -> String {
    match before {
        Some(at) => format!(
            "tokens of this user issued before {} {what}",
            format_rfc3339(at)
        ),
        None => format!("all tokens of this user {what}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    revoke: Vec<Spanned<RawEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    jti: Option<Spanned<String>>,
    sub: Option<Spanned<String>>,
    /// A quoted RFC 3339 string (as documented) or a bare TOML offset
    /// date-time; anything else is refused with the same message.
    before: Option<Spanned<toml::Value>>,
    /// Free text for the operator (ticket, reason); not used.
    #[allow(dead_code)]
    note: Option<String>,
}

impl Revocations {
    pub fn from_toml_str(text: &str, file: &str) -> Result<Revocations, ConfigError> {
        let error =
            |span, key: String, message: &str| ConfigError::at(file, text, span, key, message);
        let raw: RawFile = parse_toml(text, file)?;
        let mut list = Revocations::default();
        for (i, entry) in raw.revoke.iter().enumerate() {
            let at = |field: &str| format!("revoke[{i}]{field}");
            let span = Some(entry.span());
            let entry = entry.get_ref();
            let before = match &entry.before {
                Some(before) => Some(parse_before(before.get_ref()).ok_or_else(|| {
                    error(
                        Some(before.span()),
                        at(".before"),
                        "is not an RFC 3339 date-time with a time zone, e.g. \"2026-11-28T12:00:00Z\"",
                    )
                })?),
                None => None,
            };
            match (&entry.jti, &entry.sub) {
                (Some(jti), None) => {
                    if jti.get_ref().is_empty() {
                        return Err(error(Some(jti.span()), at(".jti"), "is empty"));
                    }
                    if let Some(b) = &entry.before {
                        return Err(error(
                            Some(b.span()),
                            at(".before"),
                            "applies to sub entries only; a jti names one token",
                        ));
                    }
                    list.tokens.insert(jti.get_ref().as_str().into());
                }
                (None, Some(sub)) => {
                    if sub.get_ref().is_empty() {
                        return Err(error(Some(sub.span()), at(".sub"), "is empty"));
                    }
                    // Two entries for one user: the later cut-off covers both
                    // (and no cut-off covers everything).
                    let slot = list
                        .subjects
                        .entry(sub.get_ref().as_str().into())
                        .or_insert(before);
                    *slot = match (*slot, before) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                _ => {
                    return Err(error(span, at(""), "set exactly one of jti or sub"));
                }
            }
        }
        Ok(list)
    }

    /// Refuses a verified token whose id is listed, or whose user is listed
    /// and was issued before the cut-off. A listed user's token without
    /// `iat` cannot show it is newer, so it is refused too.
    pub fn check(&self, verified: &Verified) -> Result<(), Revoked> {
        if !self.tokens.is_empty()
            && let Some(jti) = &verified.jti
            && self.tokens.contains(jti.as_str())
        {
            return Err(Revoked::Token);
        }
        if !self.subjects.is_empty()
            && let Some(user) = &verified.user
            && let Some(&before) = self.subjects.get(user.as_str())
        {
            return match (verified.iat, before) {
                (Some(iat), Some(before)) if iat >= before => Ok(()),
                (Some(_), _) => Err(Revoked::Subject { before }),
                (None, _) => Err(Revoked::SubjectWithoutIat { before }),
            };
        }
        Ok(())
    }

    /// Entries in force: revoked token ids plus revoked users.
    pub fn len(&self) -> usize {
        self.tokens.len() + self.subjects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parse_before(before: &toml::Value) -> Option<i64> {
    match before {
        toml::Value::String(text) => parse_rfc3339(text),
        toml::Value::Datetime(datetime) => parse_rfc3339(&datetime.to_string()),
        _ => None,
    }
}

/// RFC 3339 §5.6 `date-time` to Unix seconds (fractions dropped, leap
/// second 60 read as 59). A time zone is required: a local time would mean
/// something different on every replica.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().all(u8::is_ascii_digit).then_some(())?;
        part.iter().try_fold(0i64, |n, d| {
            n.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    // A cut-off inside a second covers all of that second: iat has whole
    // seconds, and a token issued at 12:00:00 may be later than 12:00:00.5.
    let mut round_up = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        round_up = i64::from(fraction[..n].iter().any(|&d| d != b'0'));
        rest = &fraction[n..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let (h, m) = (two(*h1, *h2)?, two(*m1, *m2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) + round_up - offset * 60)
}

/// Unix seconds as an RFC 3339 UTC date-time, e.g. `2026-11-28T12:00:00Z`.
pub fn format_rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // H. Hinnant's `civil_from_days`, the inverse of `days_from_civil`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Alg;

    fn token(user: &str, jti: Option<&str>, iat: Option<i64>) -> Verified {
        Verified {
            alg: Alg::HS256,
            provider: 0,
            user: Some(user.to_owned()),
            roles: crate::jwt::Roles::default(),
            exp: None,
            iat,
            jti: jti.map(str::to_owned),
            claims: Default::default(),
        }
    }

    fn list(text: &str) -> Revocations {
        Revocations::from_toml_str(text, "revoked.toml").unwrap()
    }

    fn error(text: &str) -> String {
        Revocations::from_toml_str(text, "revoked.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-28T12:00:00Z"), Some(1_795_867_200));
        // A cut-off within a second covers that whole second.
        assert_eq!(
            parse_rfc3339("2026-11-28t12:00:00.999z"),
            Some(1_795_867_201)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T11:59:59.001Z"),
            Some(1_795_867_200)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T12:00:00.000Z"),
            Some(1_795_867_200)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T13:30:00+01:30"),
            Some(1_795_867_200)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T10:00:00-02:00"),
            Some(1_795_867_200)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), Some(1_483_228_799));
    }

    #[test]
    fn rfc3339_formats_what_it_parses() {
        for unix in [
            0,
            -1,
            951_782_400,
            1_709_164_800,
            1_795_867_200,
            4_102_444_800,
        ] {
            assert_eq!(parse_rfc3339(&format_rfc3339(unix)), Some(unix), "{unix}");
        }
        assert_eq!(format_rfc3339(1_795_867_200), "2026-11-28T12:00:00Z");
    }

    #[test]
    fn rfc3339_refuses_anything_else() {
        for bad in [
            "",
            "2026-11-28",
            "2026-11-28T12:00:00",
            "2026-11-28T12:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T12:60:00Z",
            "2026-11-28T12:00:00.Z",
            "2026-11-28T12:00:00+0100",
            "2026-11-28T12:00:00+24:00",
            "+2026-11-28T12:00:00Z",
            "2026-11-28T12:00:00ZZ",
            "२०२६-11-28T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_listed_token_id_is_revoked_and_others_are_not() {
        let list = list("[[revoke]]\njti = \"t-1\"\n");
        assert_eq!(
            list.check(&token("42", Some("t-1"), None)),
            Err(Revoked::Token)
        );
        assert_eq!(list.check(&token("42", Some("t-2"), None)), Ok(()));
        assert_eq!(list.check(&token("42", None, None)), Ok(()));
    }

    #[test]
    fn a_subject_is_revoked_before_the_cut_off_only() {
        let list = list("[[revoke]]\nsub = \"42\"\nbefore = \"1970-01-01T00:01:40Z\"\n");
        assert_eq!(
            list.check(&token("42", None, Some(99))),
            Err(Revoked::Subject { before: Some(100) })
        );
        assert_eq!(list.check(&token("42", None, Some(100))), Ok(()));
        assert_eq!(list.check(&token("43", None, Some(1))), Ok(()));
        assert_eq!(
            list.check(&token("42", None, None)),
            Err(Revoked::SubjectWithoutIat { before: Some(100) })
        );
        assert_eq!(
            Revoked::Subject { before: Some(100) }.to_string(),
            "tokens of this user issued before 1970-01-01T00:01:40Z are revoked"
        );
    }

    #[test]
    fn a_subject_without_before_is_revoked_entirely_and_the_latest_cut_off_wins() {
        let list = list(
            "[[revoke]]\nsub = \"7\"\n[[revoke]]\nsub = \"8\"\nbefore = 1970-01-01T00:00:10Z\n\
             [[revoke]]\nsub = \"8\"\nbefore = \"1970-01-01T00:00:20Z\"\nnote = \"INC-1\"\n",
        );
        assert_eq!(
            list.check(&token("7", None, Some(i64::MAX - 1))),
            Err(Revoked::Subject { before: None })
        );
        assert_eq!(
            Revoked::Subject { before: None }.to_string(),
            "all tokens of this user are revoked"
        );
        assert!(list.check(&token("8", None, Some(15))).is_err());
        assert_eq!(list.check(&token("8", None, Some(20))), Ok(()));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn an_empty_file_revokes_nothing() {
        let list = list("# nothing revoked\n");
        assert!(list.is_empty());
        assert_eq!(list.check(&token("42", Some("x"), None)), Ok(()));
    }

    #[test]
    fn mistakes_name_the_file_line_and_entry() {
        assert_eq!(
            error("[[revoke]]\njti = \"a\"\n[[revoke]]\nsub = \"1\"\nbefore = \"yesterday\"\n"),
            "revoked.toml:5: revoke[1].before: is not an RFC 3339 date-time with a time zone, e.g. \"2026-11-28T12:00:00Z\""
        );
        assert!(
            error("[[revoke]]\njti = \"a\"\nsub = \"1\"\n")
                .starts_with("revoked.toml:1: revoke[0]: set exactly one of jti or sub")
        );
        assert!(error("[[revoke]]\n").contains("revoke[0]: set exactly one of jti or sub"));
        assert!(
            error("[[revoke]]\njti = \"a\"\nbefore = \"2026-11-28T12:00:00Z\"\n")
                .starts_with("revoked.toml:3: revoke[0].before: applies to sub entries only")
        );
        assert!(
            error("[[revoke]]\nsub = \"\"\n")
                .starts_with("revoked.toml:2: revoke[0].sub: is empty")
        );
        assert!(
            error("[[revoke]]\nuser = \"1\"\n")
                .starts_with("revoked.toml:2: revoke[0].user: unknown field")
        );
        assert!(error("[[revoke]\n").starts_with("revoked.toml:1:"));
        assert!(
            error("[[revoke]]\nsub = \"1\"\nbefore = 2026-11-28T12:00:00\n")
                .starts_with("revoked.toml:3: revoke[0].before: is not an RFC 3339")
        );
        assert!(
            error("[[revoke]]\nsub = \"1\"\nbefore = 1795867200\n")
                .starts_with("revoked.toml:3: revoke[0].before: is not an RFC 3339")
        );
        assert_eq!(
            error("[revoke]\njti = \"a\"\n"),
            "revoked.toml:1: revoke: invalid type: map, expected a sequence"
        );
    }
}
