//! Route rules on claims (pure): which values a claim holds, and whether
//! they satisfy a rule. A failed rule is 403 `insufficient_scope`
//! (RFC 6750 §3.1); its `Display` is what the access log and `explain` say.

use std::borrow::Cow;
use std::fmt;

use serde_json::value::RawValue;

use crate::jwt::object::Text;
use crate::jwt::{ClaimPath, ClaimSet};

/// One rule on one claim: every check must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: ClaimPath,
    /// A string value is a space-separated list (OAuth `scope`, Entra `scp`).
    pub space_separated: bool,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// At least one value is one of these.
    AnyOf(Vec<String>),
    /// Every one of these is a value.
    AllOf(Vec<String>),
    /// One value is exactly this.
    Equals(String),
    /// One value matches this pattern; `*` stands for any run of characters.
    Glob(String),
}

impl ClaimRule {
    /// Whether the token's claims satisfy the rule. A missing claim, or one
    /// of another shape than a string, an array or a scalar, fails it.
    pub fn holds(&self, claims: &ClaimSet) -> bool {
        let Some(values) = claims.get(&self.claim.0).and_then(|raw| self.values(raw)) else {
            return false;
        };
        let has = |wanted: &String| values.iter().any(|value| value == wanted);
        self.checks.iter().all(|check| match check {
            Check::AnyOf(wanted) => wanted.iter().any(has),
            Check::AllOf(wanted) => wanted.iter().all(has),
            Check::Equals(wanted) => has(wanted),
            Check::Glob(pattern) => values.iter().any(|value| glob(pattern, value)),
        })
    }

    /// The values a claim's raw JSON holds for this rule.
    fn values<'v>(&self, raw: &'v str) -> Option<Vec<Cow<'v, str>>> {
        let values = claim_values(raw)?;
        if !self.space_separated {
            return Some(values);
        }
        let mut parts = Vec::new();
        for value in values {
            match value {
                Cow::Borrowed(text) => parts.extend(words(text).map(Cow::Borrowed)),
                Cow::Owned(text) => parts.extend(words(&text).map(|w| Cow::Owned(w.to_owned()))),
            }
        }
        Some(parts)
    }
}

/// The space-separated words of `text` (OAuth `scope`, RFC 6749 §3.3).
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|word| !word.is_empty())
}

/// The values a claim holds: a string is one value, an array its elements,
/// a number or a boolean its JSON text (`42`, `true`). `None` for `null`,
/// an object, or an array holding either.
pub fn claim_values(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    match raw.as_bytes().first()? {
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(raw).ok()?;
            items.into_iter().map(|item| scalar(item.get())).collect()
        }
        _ => Some(vec![scalar(raw)?]),
    }
}

fn scalar(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first()? {
        b'"' => serde_json::from_str::<Text<'_>>(raw)
            .ok()
            .map(|text| text.0),
        b'{' | b'[' | b'n' => None,
        _ => Some(Cow::Borrowed(raw)),
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else itself. Linear in
/// practice: on a mismatch only the last `*` is widened.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `["realm_access","roles"] any_of [admin, ops]`, for logs and `explain`.
impl fmt::Display for ClaimRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.claim)?;
        if self.space_separated {
            f.write_str(" (space-separated)")?;
        }
        for check in &self.checks {
            match check {
                Check::AnyOf(values) => write!(f, " any_of [{}]", values.join(", "))?,
                Check::AllOf(values) => write!(f, " all_of [{}]", values.join(", "))?,
                Check::Equals(value) => write!(f, " equals {value:?}")?,
                Check::Glob(pattern) => write!(f, " glob {pattern:?}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rule(claim: &[&str], space_separated: bool, checks: Vec<Check>) -> ClaimRule {
        ClaimRule {
            claim: ClaimPath(claim.iter().map(|s| (*s).to_owned()).collect()),
            space_separated,
            checks,
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn globs_match_runs_of_any_characters() {
        assert!(glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/api:ref:refs/heads/main"
        ));
        assert!(!glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:evil/x:ref:refs/heads/main"
        ));
        assert!(!glob(
            "repo:acme/*:ref:refs/heads/main",
            "repo:acme/api:ref:refs/heads/mainx"
        ));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exac"));
        assert!(glob("**x", "yyx"));
        // Worst cases stay quick: a pattern of many stars against a long text.
        let long = "a".repeat(20_000);
        assert!(!glob(&format!("{}b", "*a".repeat(20)), &long));
    }

    #[test]
    fn values_come_from_strings_arrays_and_scalars() {
        assert_eq!(claim_values(r#""a b""#).unwrap(), vec!["a b"]);
        assert_eq!(claim_values(r#"["a","b\u00e9"]"#).unwrap(), vec!["a", "bé"]);
        assert_eq!(claim_values("true").unwrap(), vec!["true"]);
        assert_eq!(claim_values("42").unwrap(), vec!["42"]);
        assert_eq!(claim_values(r#"[1,"x"]"#).unwrap(), vec!["1", "x"]);
        assert!(claim_values("null").is_none());
        assert!(claim_values(r#"{"a":1}"#).is_none());
        assert!(claim_values(r#"["a",{"b":1}]"#).is_none());
    }

    #[test]
    fn rules_hold_on_any_of_all_of_equals_and_glob() {
        let payload = r#"{"realm_access":{"roles":["admin","user"]},"scp":"read write",
            "repository":"acme/api","ref":"refs/heads/main","groups":["Développeurs","CN=Admins,OU=x"]}"#;
        let claims = ClaimSet::parse_for_tests(payload);
        let roles = ["realm_access", "roles"];
        assert!(
            rule(
                &roles,
                false,
                vec![Check::AnyOf(strings(&["ops", "admin"]))]
            )
            .holds(&claims)
        );
        assert!(!rule(&roles, false, vec![Check::AnyOf(strings(&["ops"]))]).holds(&claims));
        assert!(
            rule(
                &roles,
                false,
                vec![Check::AllOf(strings(&["admin", "user"]))]
            )
            .holds(&claims)
        );
        assert!(
            !rule(
                &roles,
                false,
                vec![Check::AllOf(strings(&["admin", "ops"]))]
            )
            .holds(&claims)
        );
        // Scopes: one string, split only when the rule says so.
        assert!(
            rule(
                &["scp"],
                true,
                vec![Check::AllOf(strings(&["read", "write"]))]
            )
            .holds(&claims)
        );
        assert!(!rule(&["scp"], false, vec![Check::Equals("read".into())]).holds(&claims));
        assert!(rule(&["scp"], false, vec![Check::Equals("read write".into())]).holds(&claims));
        // Several checks on one rule, and decoded values.
        let both = vec![
            Check::Equals("acme/api".into()),
            Check::Glob("acme/*".into()),
        ];
        assert!(rule(&["repository"], false, both).holds(&claims));
        assert!(
            rule(
                &["groups"],
                false,
                vec![Check::Equals("Développeurs".into())]
            )
            .holds(&claims)
        );
        assert!(
            rule(
                &["groups"],
                false,
                vec![Check::Equals("CN=Admins,OU=x".into())]
            )
            .holds(&claims)
        );
        assert!(!rule(&["groups"], false, vec![Check::Equals("CN=Admins".into())]).holds(&claims));
        // A missing claim or path fails.
        assert!(!rule(&["nope"], false, vec![Check::Glob("*".into())]).holds(&claims));
        assert!(!rule(&["realm_access"], false, vec![Check::Glob("*".into())]).holds(&claims));
    }

    #[test]
    fn a_rule_says_what_it_asks_for() {
        let r = rule(
            &["realm_access", "roles"],
            true,
            vec![Check::AnyOf(strings(&["a", "b"])), Check::Glob("x*".into())],
        );
        assert_eq!(
            r.to_string(),
            r#"["realm_access", "roles"] (space-separated) any_of [a, b] glob "x*""#
        );
    }
}
