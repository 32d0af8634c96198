//! Durations written as strings with a unit: "500ms", "30s", "15m", "1h", "1d".

use std::time::Duration;

use toml::Spanned;

use super::error::{Invalid, invalid};

pub(super) const SECOND: Duration = Duration::from_secs(1);
pub(super) const MILLISECOND: Duration = Duration::from_millis(1);

/// [`duration_or`], refusing values below `min`.
pub(super) fn duration_at_least(
    raw: Option<Spanned<String>>,
    key: &str,
    default_secs: u64,
    min: Duration,
) -> Result<Duration, Invalid> {
    let span = raw.as_ref().map(Spanned::span);
    let value = duration_or(raw, key, default_secs)?;
    if value < min {
        return Err(Invalid {
            span,
            key: key.to_owned(),
            message: format!("must be at least {}", humanize(min)),
        });
    }
    Ok(value)
}

pub(super) fn humanize(duration: Duration) -> String {
    match duration.subsec_millis() {
        0 => format!("{}s", duration.as_secs()),
        _ => format!("{}ms", duration.as_millis()),
    }
}

pub(super) fn duration_or(
    raw: Option<Spanned<String>>,
    key: &str,
    default_secs: u64,
) -> Result<Duration, Invalid> {
    match raw {
        None => Ok(Duration::from_secs(default_secs)),
        Some(text) => parse_duration(text.get_ref()).ok_or_else(|| {
            invalid(
                &text,
                key,
                format!(
                    "{:?} is not a duration like \"500ms\", \"30s\", \"15m\", \"1h\"",
                    text.get_ref()
                ),
            )
        }),
    }
}

/// Parses `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => None,
    }
}
