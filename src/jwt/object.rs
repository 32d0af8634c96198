//! A JOSE header or claim set as a table of members (RFC 7515 §5.2,
//! RFC 7519 §7.2): parsed once by serde_json, each value kept as its raw
//! JSON text and read only when something asks for it.
//!
//! serde_json checks the grammar of every value, read or not. On top of it
//! this refuses what RFC 8259 leaves to the implementation and a token must
//! not leave open: text that is not UTF-8, a member name given twice (even
//! spelled once with escapes), a lone surrogate escape anywhere. Each of
//! those would let two parsers read one token two ways (RFC 8725 §3.2).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// An object's members, no name twice: in document order when there are
/// few (found by a scan), sorted by name when there are many (found by a
/// binary search).
#[derive(Debug, Default)]
pub struct Object<'a> {
    members: Vec<(Text<'a>, &'a RawValue)>,
    sorted: bool,
}

/// Up to this many members, names are compared pairwise: for the handful a
/// token holds, that beats sorting them.
pub const FEW: usize = 16;

/// `a == b`, deciding most unequal short names before comparing bytes.
#[inline]
pub fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

impl<'a> Object<'a> {
    /// Parses `json` as one object of at most `max_members` members. The
    /// cap stops parsing where it is reached, so refusing an object costs
    /// no more than reading `max_members` members.
    pub fn parse(json: &'a [u8], max_members: usize) -> Result<Object<'a>, String> {
        let text = std::str::from_utf8(json).map_err(|_| "not UTF-8".to_owned())?;
        Object::parse_str(text, max_members)
    }

    /// [`Object::parse`] of text already known to be UTF-8.
    pub fn parse_str(text: &'a str, max_members: usize) -> Result<Object<'a>, String> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut members = deserializer
            .deserialize_map(Members { max_members })
            .and_then(|members| deserializer.end().map(|()| members))
            .map_err(|err| err.to_string())?;
        if let Some(at) = lone_surrogate(text) {
            return Err(format!("lone surrogate escape at byte {at}"));
        }
        let duplicate = match members.len() <= FEW {
            true => (1..members.len()).find(|&i| {
                let name = &members[i].0.0;
                (members[..i].iter()).any(|(other, _)| same_name(&other.0, name))
            }),
            // Sorting keeps the check n log n whatever the names are.
            false => {
                members.sort_unstable_by(|(a, _), (b, _)| a.0.cmp(&b.0));
                (1..members.len()).find(|&i| members[i - 1].0 == members[i].0)
            }
        };
        if let Some(i) = duplicate {
            return Err(format!("duplicate member {:?}", members[i].0.0));
        }
        let sorted = members.len() > FEW;
        Ok(Object { members, sorted })
    }

    /// The raw value of the member `name`.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        let at = match self.sorted {
            true => (self.members)
                .binary_search_by(|(member, _)| (*member.0).cmp(name))
                .ok(),
            false => (self.members.iter()).position(|(member, _)| same_name(&member.0, name)),
        };
        at.map(|at| self.members[at].1)
    }

    /// Whether [`Object::members`] come sorted by name.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Every member, in document order or sorted (see [`Object::is_sorted`]).
    pub fn members(&self) -> impl Iterator<Item = (&Cow<'a, str>, &'a RawValue)> {
        self.members.iter().map(|(name, value)| (&name.0, *value))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The raw value of member `name` of the object `json`, read in one pass
/// without collecting the others (for a claim path's inner steps). `None`
/// when `json` is not an object, lacks the member, or names it twice.
pub fn find<'a>(json: &'a str, name: &str) -> Option<&'a RawValue> {
    struct Find<'n> {
        name: &'n str,
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Text<'de>>()? {
                if !same_name(&key.0, self.name) {
                    map.next_value::<de::IgnoredAny>()?;
                } else if found.is_some() {
                    return Err(de::Error::custom("duplicate member"));
                } else {
                    found = Some(map.next_value::<&'de RawValue>()?);
                }
            }
            Ok(found)
        }
    }
    if !json.starts_with('{') {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.deserialize_map(Find { name }).ok().flatten()
}

/// A JSON string, borrowed from the document unless it had escapes.
#[derive(Debug, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Expect;
        impl<'de> Visitor<'de> for Expect {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Expect)
    }
}

/// Collects an object's members, refusing more than `max_members`.
struct Members {
    max_members: usize,
}

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(Text<'de>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(self.max_members));
        while let Some(name) = map.next_key::<Text<'de>>()? {
            if members.len() == self.max_members {
                return Err(de::Error::custom(format_args!(
                    "more than {} members",
                    self.max_members
                )));
            }
            members.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(members)
    }
}

/// The byte offset of a `\u` escape that is half of a surrogate pair, in
/// text serde_json has accepted. serde_json refuses one in a string it
/// decodes but passes it in values it only skips, such as the raw values
/// kept here: a value read later must not decode differently, or not at all.
fn lone_surrogate(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let hex = std::str::from_utf8(bytes.get(at + 2..at + 6)?).ok()?;
        match bytes.get(at + 1) {
            Some(b'u') => u16::from_str_radix(hex, 16).ok(),
            _ => None,
        }
    };
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'\\', bytes.get(from..)?) {
        let at = from + found;
        from = match unit(at) {
            Some(0xD800..=0xDBFF) => match unit(at + 6) {
                Some(0xDC00..=0xDFFF) => at + 12,
                _ => return Some(at),
            },
            Some(0xDC00..=0xDFFF) => return Some(at),
            Some(_) => at + 6,
            // `\\`, `\"`, `\n`…: the escaped character is not a backslash
            // that starts another escape.
            None => at + 2,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn members_are_found_by_name_whatever_their_order() {
        let object = Object::parse(br#"{"b":1,"a":"x","c":{"d":[]}}"#, 8).unwrap();
        assert_eq!(object.get("a").unwrap().get(), r#""x""#);
        assert_eq!(object.get("c").unwrap().get(), r#"{"d":[]}"#);
        assert!(object.get("d").is_none());
        assert_eq!(object.len(), 3);
    }

    #[test]
    fn a_name_given_twice_is_refused_even_when_spelled_with_an_escape() {
        for json in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"x":1,"a":1,"y":2,"a":[]}"#,
        ] {
            let err = Object::parse(json.as_bytes(), 8).unwrap_err();
            assert!(err.contains("duplicate member \"a\""), "{json}: {err}");
        }
        // A name repeated inside a nested value is that value's business.
        assert!(Object::parse(br#"{"a":{"b":1,"b":2}}"#, 8).is_ok());
    }

    #[test]
    fn lone_surrogates_are_refused_where_nothing_reads_them() {
        for json in [
            r#"{"x":"\ud800"}"#,
            r#"{"x":["\udc00"]}"#,
            r#"{"x":{"y":"a\ud800\u0041"}}"#,
            r#"{"x":"\ud800\ud800"}"#,
        ] {
            let err = Object::parse(json.as_bytes(), 8).unwrap_err();
            assert!(err.contains("lone surrogate"), "{json}: {err}");
        }
        for json in [
            r#"{"x":"\ud83d\ude00"}"#,
            r#"{"x":"\\ud800"}"#,
            r#"{"x":"\\\ud83d\ude00\u00e9\n"}"#,
        ] {
            assert!(Object::parse(json.as_bytes(), 8).is_ok(), "{json}");
        }
    }

    #[test]
    fn parsing_stops_at_the_member_cap() {
        let json = format!(
            "{{{}}}",
            (0..1000)
                .map(|i| format!(r#""m{i}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let err = Object::parse(json.as_bytes(), 32).unwrap_err();
        // Raised at the 33rd name: nothing after it was read.
        let column: usize = err.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(err.starts_with("more than 32 members"), "{err}");
        assert!(column < 33 * r#""m99":0,"#.len(), "{err}");
        assert_eq!(Object::parse(json.as_bytes(), 1000).unwrap().len(), 1000);
    }

    #[test]
    fn anything_but_one_utf8_object_is_refused() {
        for json in [
            &b"[]"[..],
            b"1",
            b"\"a\"",
            b"{} {}",
            b"{",
            b"{\"a\":1,}",
            b"{\"a\":\"\xff\"}",
            b"",
        ] {
            assert!(
                Object::parse(json, 8).is_err(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
        assert!(Object::parse(b" {\"a\" : 1 } \n", 8).is_ok());
    }
}
