//! Errors that name the file, the line and the key path.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;

/// A configuration error: `file:line: key: message`.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error in `file` (whose contents are `text`) at byte `span`.
    pub(crate) fn at(
        file: &str,
        text: &str,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line: span.map(|span| line_of(text, span.start)),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A config file's text; errors name the file as `path` displays.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        message: format!("cannot read: {err}"),
    })
}

/// Parses TOML text, locating a parser error by line and key path.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| {
        let key = err
            .span()
            .map(|span| key_path_at(text, span.start))
            .unwrap_or_default();
        ConfigError::at(file, text, err.span(), key, err.message().trim())
    })
}

/// A validation error before the file name is known.
pub(super) struct Invalid {
    pub(super) span: Option<Range<usize>>,
    pub(super) key: String,
    pub(super) message: String,
}

pub(super) fn invalid<T>(
    span: &Spanned<T>,
    key: impl Into<String>,
    message: impl Into<String>,
) -> Invalid {
    Invalid {
        span: Some(span.span()),
        key: key.into(),
        message: message.into(),
    }
}

/// The dotted key path at `offset`, for errors the TOML parser reports
/// without one: the innermost table header above it (`[[route]]` counted
/// into `route[2]`) and the key the offset's line assigns, if any.
fn key_path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut line_start = 0;
    for line in text[..offset].split_inclusive('\n') {
        let trimmed = line.trim();
        if line_start + line.len() <= offset && line.ends_with('\n') {
            if let Some(name) = trimmed
                .strip_prefix("[[")
                .and_then(|t| t.split("]]").next())
            {
                let name = name.trim().to_owned();
                let n = match counts.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, count)) => {
                        *count += 1;
                        *count
                    }
                    None => {
                        counts.push((name.clone(), 0));
                        0
                    }
                };
                table = format!("{name}[{n}]");
            } else if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split(']').next()) {
                table = name.trim().to_owned();
            }
        }
        line_start += line.len();
    }
    let line = text[..offset].rsplit('\n').next().unwrap_or("");
    let rest = text[offset..].split('\n').next().unwrap_or("");
    let full_line = format!("{line}{rest}");
    // An error on a table header itself (`[revoke]` where `[[revoke]]` was
    // meant) is about that table.
    let header = full_line.trim();
    if header.starts_with('[') && !header.contains('=') {
        return header
            .trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned();
    }
    let key = full_line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(key)) => key.to_owned(),
        (false, Some(key)) => format!("{table}.{key}"),
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A certificate or key that `[server]` names and that failed to load, as
/// `file:line: key: error`: the line is found again in the config text
/// (`None` if that cannot be read any more; then `file: key: error`).
pub fn tls_error(config_path: &Path, err: &crate::tls::TlsError) -> String {
    #[derive(serde::Deserialize)]
    struct Doc {
        server: Server,
    }
    #[derive(serde::Deserialize)]
    struct Server {
        tls_cert: Option<toml::Spanned<String>>,
        tls_key: Option<toml::Spanned<String>>,
    }
    let key = err.config_key();
    let line = std::fs::read_to_string(config_path).ok().and_then(|text| {
        let server = toml::from_str::<Doc>(&text).ok()?.server;
        let value = match key {
            "server.tls_key" => server.tls_key,
            _ => server.tls_cert,
        }?;
        Some(line_of(&text, value.span().start))
    });
    let file = config_path.display();
    match line {
        Some(line) => format!("{file}:{line}: {key}: {err}"),
        None => format!("{file}: {key}: {err}"),
    }
}
