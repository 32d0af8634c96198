//! The reader held to serde_json's verdict: on edge cases, on generated
//! documents and on random mutations of them, whatever serde_json refuses
//! the reader refuses; whatever it accepts the reader accepts with the same
//! values, unless a name repeats (refused here on purpose).

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// Every top-level member as [`Reader::value`] reads it.
fn read(text: &[u8]) -> Result<Vec<(String, Json<'_>)>, JwtError> {
    let mut members = Vec::new();
    Reader::new(text, Segment::Payload)?.object(|reader, name| {
        members.push((name.as_str().to_owned(), reader.value()?));
        Ok(())
    })?;
    Ok(members)
}

/// The same document with every value skipped unread.
fn skim(text: &[u8]) -> Result<(), JwtError> {
    Reader::new(text, Segment::Payload)?.object(|reader, _| reader.skip())
}

/// Every top-level member as [`Compact`] reads it; `None` where it stops.
fn read_compact(text: &[u8]) -> Option<Vec<(String, Json<'_>)>> {
    let text = std::str::from_utf8(text).ok()?;
    let mut members = Vec::new();
    Compact::object(text, |compact, name| {
        members.push((name.as_str().to_owned(), compact.value()?));
        Some(())
    })?;
    Some(members)
}

/// Whatever [`Compact`] accepts, [`Reader`] accepts with the same values;
/// skipping every value stops exactly where reading them does.
fn compact_agrees(text: &[u8]) -> Result<(), String> {
    let skimmed = std::str::from_utf8(text)
        .ok()
        .and_then(|text| Compact::object(text, |compact, _| compact.skip()));
    if skimmed.is_some() != read_compact(text).is_some() {
        return Err(format!(
            "compact read and skip disagree on {:?}",
            String::from_utf8_lossy(text)
        ));
    }
    match (read_compact(text), read(text)) {
        (None, _) => Ok(()),
        (Some(fast), Ok(strict)) if fast == strict => Ok(()),
        (Some(fast), strict) => Err(format!(
            "compact read {fast:?}, the reader {strict:?}, in {:?}",
            String::from_utf8_lossy(text)
        )),
    }
}

/// How the reader should classify what serde_json read.
fn expected(value: &Value) -> Json<'static> {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Json::UInt(u),
            (None, Some(i), _) => Json::Int(i),
            (None, None, Some(f)) => Json::Float(f),
            _ => Json::Other,
        },
        Value::String(s) => Json::Str(Cow::Owned(s.clone())),
        Value::Array(items) if items.iter().all(Value::is_string) => Json::Strings(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| Cow::Owned(s.to_owned()))
                .collect(),
        ),
        Value::Null | Value::Array(_) | Value::Object(_) => Json::Other,
    }
}

/// Top-level member names repeat (serde_json keeps the last; we refuse).
fn repeats_a_name(text: &[u8]) -> bool {
    struct CountMembers;
    impl<'de> serde::de::Visitor<'de> for CountMembers {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut members = 0;
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {
                members += 1;
            }
            Ok(members)
        }
    }
    let members = serde::Deserializer::deserialize_map(
        &mut serde_json::Deserializer::from_slice(text),
        CountMembers,
    );
    match (serde_json::from_slice::<Value>(text), members) {
        (Ok(Value::Object(map)), Ok(members)) => members > map.len(),
        _ => false,
    }
}

fn same(a: &Json<'_>, b: &Json<'_>) -> bool {
    match (a, b) {
        // serde_json's default float parser may round the last bit differently.
        (Json::Float(x), Json::Float(y)) => x == y || (x - y).abs() <= x.abs() * 1e-15,
        _ => a == b,
    }
}

/// The contract, for any bytes.
fn agrees_with_serde_json(text: &[u8]) -> Result<(), String> {
    let theirs = serde_json::from_slice::<Value>(text);
    let (ours, skimmed) = (read(text), skim(text));
    let show = || String::from_utf8_lossy(text).into_owned();
    compact_agrees(text)?;
    if ours.is_ok() != skimmed.is_ok() {
        return Err(format!("read and skip disagree on {:?}", show()));
    }
    match (&theirs, &ours) {
        (Ok(Value::Object(map)), Ok(members)) => {
            if members.len() != map.len() {
                return Err(format!("member count differs on {:?}", show()));
            }
            for (name, value) in members {
                let Some(want) = map.get(name) else {
                    return Err(format!(
                        "{name:?} not in serde_json's reading of {:?}",
                        show()
                    ));
                };
                if !same(value, &expected(want)) {
                    return Err(format!("{name:?}: {value:?} vs {want:?} in {:?}", show()));
                }
            }
            Ok(())
        }
        (Ok(Value::Object(_)), Err(_)) if repeats_a_name(text) => Ok(()),
        (Ok(Value::Object(_)), Err(err)) => Err(format!(
            "refused {:?} that serde_json accepts: {err}",
            show()
        )),
        (_, Ok(_)) => Err(format!("accepted {:?} that serde_json refuses", show())),
        (_, Err(_)) => Ok(()),
    }
}

#[test]
fn edge_cases_get_serde_json_s_verdict() {
    let values = [
        "0",
        "-0",
        "01",
        "-01",
        "1.",
        ".5",
        "1.5",
        "-1.5e3",
        "1e",
        "1e+",
        "1e-2",
        "1E2",
        "+1",
        "0x1",
        "1e400",
        "-1e400",
        "1e-400",
        "NaN",
        "Infinity",
        "-",
        "--1",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1.0",
        "true",
        "false",
        "null",
        "tru",
        "nul",
        "True",
        r#""""#,
        r#""a\"b""#,
        r#""\\""#,
        r#""\/""#,
        r#""\b\f\n\r\t""#,
        r#""\x""#,
        r#""\u12""#,
        r#""\u0041""#,
        r#""\u00e9""#,
        r#""\uD83D\uDE00""#,
        r#""\uD800""#,
        r#""\uDC00""#,
        r#""\uD800\u0041""#,
        r#""\uD800x""#,
        r#""\u0000""#,
        "\"a\tb\"",
        "\"a\u{1}b\"",
        "\"caf\u{e9} \u{1F600}\"",
        r#""a"#,
        "[]",
        "[1]",
        "[1,]",
        "[,1]",
        r#"["a","b"]"#,
        r#"["a",1]"#,
        r#"[["a"]]"#,
        "{}",
        r#"{"a":1}"#,
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        "{,}",
        r#"{"a":}"#,
        r#"{1:2}"#,
        "[1 2]",
        "[",
        "]",
    ];
    for value in values {
        for text in [
            format!(r#"{{"v":{value}}}"#),
            format!("{{ \"v\" :\n\t{value} \r}}"),
            format!(r#"{{"v":[{value}],"w":{{"x":{value}}}}}"#),
        ] {
            agrees_with_serde_json(text.as_bytes()).unwrap();
        }
    }
    let documents: [&[u8]; 14] = [
        b"",
        b" ",
        b"[]",
        b"1",
        b"\"x\"",
        b"{} x",
        b"{}{}",
        b"  {}  ",
        b"{\"a\":1}\n",
        b"\xef\xbb\xbf{}",
        b"{\"a\":\"\xff\"}",
        b"{\"\xc3\x28\":1}",
        b"{\"a\":1,\"a\":2}",
        b"{\"a\":1,\"\\u0061\":2}",
    ];
    for text in documents {
        agrees_with_serde_json(text).unwrap();
    }
}

#[test]
fn a_lone_surrogate_is_refused_even_where_nothing_reads_it() {
    for text in [
        r#"{"a":"\uD800"}"#,
        r#"{"a":{"b":"\uDC00"}}"#,
        r#"{"\uD800":1}"#,
    ] {
        assert!(read(text.as_bytes()).is_err(), "{text}");
        assert!(skim(text.as_bytes()).is_err(), "{text}");
    }
}

#[test]
fn escaped_and_plain_spellings_of_a_name_are_one_name() {
    let err = read(br#"{"exp":1,"\u0065xp":2}"#).unwrap_err();
    assert!(
        err.to_string().contains("duplicate member \"exp\""),
        "{err}"
    );
    // Long names (no packed key) and more names than the inline table holds.
    let long = r#"{"preferred_username":1,"preferred_usernam\u0065":2}"#;
    assert!(read(long.as_bytes()).is_err());
    let many: Vec<String> = (0..40).map(|i| format!(r#""n{i}":{i}"#)).collect();
    let text = format!("{{{},\"n39\":0}}", many.join(","));
    assert!(read(text.as_bytes()).is_err());
    let text = format!("{{{}}}", many.join(","));
    assert_eq!(read(text.as_bytes()).unwrap().len(), 40);
}

#[test]
fn a_name_s_key_is_packed_alike_at_run_time_and_compile_time() {
    // Every length up to past the packed limit, ASCII and multi-byte.
    for text in [
        "",
        "a",
        "ab",
        "abc",
        "sub",
        "abcd",
        "é",
        "aé",
        "abcde",
        "abcdef",
        "€uro",
        "abcdefg",
        "abcdefgh",
        "preferred_username",
    ] {
        assert_eq!(Name::new(text).key(), Name::key_of(text), "{text:?}");
    }
    const EXP: u64 = Name::key_of("exp");
    assert_eq!(Name::new("exp").key(), EXP);
}

#[test]
fn digit_runs_stop_at_the_first_non_digit() {
    for len in 0..20 {
        for end in (0..=255u8).filter(|b| !b.is_ascii_digit()) {
            let mut bytes: Vec<u8> = (0..len).map(|i| b'0' + (i % 10) as u8).collect();
            bytes.push(end);
            bytes.extend_from_slice(b"12345678\xff/:");
            assert_eq!(digit_run(&bytes), len, "{len} {end}");
        }
        let digits = vec![b'9'; len];
        assert_eq!(digit_run(&digits), len);
    }
}

#[test]
fn a_name_packed_from_its_document_has_its_own_key() {
    for name in [
        "",
        "a",
        "sub",
        "abcd",
        "é",
        "€uro",
        "abcdefg",
        "abcdefgh",
        "preferred_username",
    ] {
        // Followed by a whole member, by a short tail, and by nothing.
        for tail in ["\":1,\"x\":2}", "\"}", ""] {
            let text = format!("{{\"{name}{tail}");
            let got = Name::within(&text, 2, 2 + name.len()).unwrap();
            assert_eq!(got.as_str(), name);
            assert_eq!(got.key(), Name::key_of(name), "{text:?}");
        }
    }
    assert!(
        Name::within("{\"é\"", 2, 3).is_none(),
        "not a character boundary"
    );
}

#[test]
fn decimals_of_every_length_are_exact() {
    for text in [
        "0",
        "7",
        "12345678",
        "123456789",
        "1800000000",
        "9999999999999999999",
        "18446744073709551615",
    ] {
        assert_eq!(decimal(text.as_bytes()), text.parse().ok(), "{text}");
    }
    assert_eq!(decimal(b"18446744073709551616"), None, "2^64");
    assert_eq!(decimal(b"99999999999999999999"), None);
    assert_eq!(decimal(b"100000000000000000000"), None, "21 digits");
}

proptest! {
    #[test]
    fn decimals_agree_with_the_standard_parser(text in "[0-9]{1,20}") {
        prop_assert_eq!(decimal(text.as_bytes()), text.parse::<u64>().ok());
    }
}

proptest! {
    #[test]
    fn names_are_equal_exactly_when_their_text_is(
        a in prop::collection::vec(prop::sample::select(vec!['a', 'b', '\0', 'é']), 0..10),
        b in prop::collection::vec(prop::sample::select(vec!['a', 'b', '\0', 'é']), 0..10),
    ) {
        let (a, b): (String, String) = (a.into_iter().collect(), b.into_iter().collect());
        prop_assert_eq!(Name::new(&a).key(), Name::key_of(&a));
        prop_assert_eq!(Name::new(&a).is(&Name::new(&b)), a == b);
    }
}

#[test]
fn errors_name_the_position() {
    let err = read(br#"{"a":tru}"#).unwrap_err();
    assert_eq!(
        err,
        JwtError::Json {
            segment: Segment::Payload,
            reason: "true at byte 5".to_owned()
        }
    );
}

#[test]
fn plain_runs_stop_at_the_first_quote_backslash_or_control_character() {
    for len in 0..40 {
        for end in [b'"', b'\\', 0x00, 0x1f] {
            let mut bytes = vec![b'a'; len];
            bytes.push(end);
            bytes.extend_from_slice(b"\"\\\x01zzzzzzzzz");
            assert_eq!(plain_run(&bytes), len, "{len} {end}");
        }
        // Bytes just above the stop set, and UTF-8 above 0x7f, are plain.
        let plain: Vec<u8> = [b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff]
            .into_iter()
            .cycle()
            .take(len)
            .collect();
        assert_eq!(plain_run(&plain), len);
    }
}

/// A JSON value of the shapes tokens hold, with strings that need escapes.
fn value() -> impl Strategy<Value = Value> {
    let text = prop::collection::vec(
        prop::sample::select(vec![
            'a',
            'Z',
            '0',
            ' ',
            '"',
            '\\',
            '/',
            '\n',
            '\t',
            '\u{1}',
            '\u{1f}',
            '\u{7f}',
            'é',
            '€',
            '\u{1F600}',
            '\u{FFFF}',
        ]),
        0..12,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (0u64..2_000_000_000).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(text.clone().prop_map(Value::String), 0..4)
                .prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A claim set of the shapes [`Compact`] reads: plain strings, integers
/// that fit, literals and arrays of plain strings, printed compactly.
fn compact_document() -> impl Strategy<Value = String> {
    let plain = "[a-zA-Z0-9 ./:_é€-]{0,12}";
    let value = prop_oneof![
        plain.prop_map(Value::String),
        any::<u64>().prop_map(Value::from),
        (0u64..2_000_000_000).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        prop::collection::vec(plain.prop_map(Value::String), 0..4).prop_map(Value::Array),
    ];
    prop::collection::btree_map("[a-z]{1,3}|preferred_username|[a-z]{8,12}", value, 1..10)
        .prop_map(|members| Value::Object(members.into_iter().collect()).to_string())
}

/// An object of such values, compact or pretty-printed.
fn document() -> impl Strategy<Value = String> {
    let names = "[a-z]{1,3}|preferred_username";
    let members = prop::collection::btree_map(names, value(), 0..8);
    (members, any::<bool>()).prop_map(|(members, pretty)| {
        let object = Value::Object(members.into_iter().collect());
        match pretty {
            true => serde_json::to_string_pretty(&object).unwrap(),
            false => object.to_string(),
        }
    })
}

/// `documents` with at least one and fewer than `max_edits` bytes inserted, removed or
/// replaced by ones that matter to a JSON reader.
fn mutated(
    documents: impl Strategy<Value = String>,
    max_edits: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let byte =
        prop::sample::select(b"{}[]\":,\\ 0123456789eE.+-tfnulrsaxD\x01\x7f\xc3\xa9".to_vec());
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, byte), 1..max_edits);
    (documents, edits).prop_map(|(text, edits)| {
        let mut bytes = text.into_bytes();
        for (at, kind, byte) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn generated_documents_get_serde_json_s_verdict(text in document()) {
        prop_assert_eq!(agrees_with_serde_json(text.as_bytes()), Ok(()));
    }

    #[test]
    fn compact_documents_read_the_same_both_ways(text in compact_document()) {
        prop_assert!(read_compact(text.as_bytes()).is_some(), "compact refused {text:?}");
        prop_assert_eq!(compact_agrees(text.as_bytes()), Ok(()));
    }

    #[test]
    fn mutated_compact_documents_get_serde_json_s_verdict(bytes in mutated(compact_document(), 3)) {
        prop_assert_eq!(agrees_with_serde_json(&bytes), Ok(()));
    }

    #[test]
    fn mutated_documents_get_serde_json_s_verdict(bytes in mutated(document(), 4)) {
        prop_assert_eq!(agrees_with_serde_json(&bytes), Ok(()));
    }
}
