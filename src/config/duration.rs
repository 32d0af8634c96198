//! Durations written as strings with units: "500ms", "30s", "1m30s", "15m",
//! "1h", "1d", read by the `humantime` crate.

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
        Some(text) => humantime::parse_duration(text.get_ref()).map_err(|err| {
            invalid(
                &text,
                key,
                format!(
                    "{:?} is not a duration like \"500ms\", \"30s\", \"1m30s\", \"15m\", \"1h\" ({err})",
                    text.get_ref()
                ),
            )
        }),
    }
}

/// Parses a duration with units: `"500ms"`, `"30s"`, `"1m30s"`, `"15m"`,
/// `"1h"`, `"1d"` (and humantime's other spellings, such as `"1m 30s"` or
/// `"2hours"`). A bare number has no unit and is refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok()
}
