//! Properties over generated input (proptest): the verifier and the path
//! normaliser hold their contracts for inputs nobody thought to write down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwtgate::headers::encode_value;
use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};
use jwtgate::routes::normalize;
use proptest::prelude::*;

const SECRET: &[u8] = b"property-secret-0123456789abcdef-0123";
const NOW: i64 = 1_700_000_000;

fn keys() -> KeySet {
    KeySet::new(vec![
        Key::hmac(Some("k1".to_owned()), Alg::HS256, SECRET).unwrap(),
    ])
}

fn lenient() -> Validation {
    Validation {
        required: Vec::new(),
        ..Validation::default()
    }
}

fn sign(key_secret: &[u8], header: &[u8], payload: &[u8]) -> String {
    let key = Key::hmac(Some("k1".to_owned()), Alg::HS256, key_secret).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()));
    format!("{input}.{signature}")
}

/// Three dot-separated runs of base64url-ish characters, the shape most
/// likely to get past the splitter, plus arbitrary strings.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_\\-=+/ .]{0,120}",
        "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,60}",
    ]
}

proptest! {
    // 1000 cases by default; PROPTEST_CASES=N for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_tokens_never_panic_and_never_verify(token in token_like()) {
        prop_assert!(jwt::verify(&token, &keys(), &lenient(), NOW).is_err());
    }

    #[test]
    fn arbitrary_bytes_as_a_token_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(jwt::verify(&token, &keys(), &lenient(), NOW).is_err());
    }

    #[test]
    fn tokens_signed_with_another_key_never_verify(
        secret in proptest::collection::vec(any::<u8>(), 32..64),
        sub in "[a-z0-9]{1,12}",
    ) {
        prop_assume!(secret != SECRET);
        let payload = format!(r#"{{"sub":"{sub}","exp":{}}}"#, NOW + 60);
        let token = sign(&secret, br#"{"alg":"HS256","kid":"k1"}"#, payload.as_bytes());
        prop_assert!(jwt::verify(&token, &keys(), &lenient(), NOW).is_err());
        // The same claims under the configured key do verify: the test can fail.
        let good = sign(SECRET, br#"{"alg":"HS256","kid":"k1"}"#, payload.as_bytes());
        prop_assert!(jwt::verify(&good, &keys(), &lenient(), NOW).is_ok());
    }

    #[test]
    fn any_single_byte_change_to_a_valid_token_is_refused(at in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let good = sign(SECRET, br#"{"alg":"HS256","kid":"k1"}"#, format!(r#"{{"sub":"1","exp":{}}}"#, NOW + 60).as_bytes());
        let mut bytes = good.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let token = String::from_utf8(bytes).unwrap();
        prop_assert!(jwt::verify(&token, &keys(), &lenient(), NOW).is_err(), "{token}");
    }

    #[test]
    fn signed_arbitrary_claims_never_panic_and_are_forwarded_header_safe(
        header in prop_oneof![Just(br#"{"alg":"HS256","kid":"k1"}"#.to_vec()), proptest::collection::vec(any::<u8>(), 0..60)],
        payload in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..120),
            "\\{(\"(sub|role|exp|nbf|iat|iss|aud)\":(-?[0-9]{1,20}(\\.[0-9]+)?|\"[^\"]{0,10}\"|\\[\\]|null|true|\\{\\}),?){0,6}\\}".prop_map(String::into_bytes),
        ],
    ) {
        let token = sign(SECRET, &header, &payload);
        // Any claim value verifies; what is forwarded is encoded (one rule,
        // `headers::encode_value`) into visible ASCII, list items without `,`.
        if let Ok(verified) = jwt::verify(&token, &keys(), &lenient(), NOW) {
            let safe = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
            let user = verified.user.as_deref().map(|u| encode_value(u, false));
            prop_assert!(user.as_deref().is_none_or(safe));
            for role in verified.roles.iter() {
                let role = encode_value(role, true);
                prop_assert!(safe(&role) && !role.contains(','));
            }
        }
    }

    #[test]
    fn normalisation_is_idempotent_and_leaves_no_dot_segments(
        path in prop_oneof![
            "/([a-zA-Z0-9._~;\\\\-]|%[0-9a-fA-F]{2}|%|/|\\.\\.|\\.){0,40}",
            // Any characters at all: the fuzzer found non-ASCII breaking idempotence.
            any::<String>().prop_map(|s| format!("/{s}")),
        ],
    ) {
        if let Ok(normal) = normalize(&path) {
            prop_assert!(normal.starts_with('/'));
            prop_assert!(!normal.contains("//"), "{path} -> {normal}");
            prop_assert!(!normal.split('/').any(|s| s == "." || s == ".."), "{path} -> {normal}");
            let again = normalize(&normal).map(|n| n.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(&*normal));
        }
    }

    #[test]
    fn dot_segments_never_climb_out_of_a_prefix(
        prefix in "(/[a-z]{1,6}){1,3}",
        rest in "(/(\\.\\.|\\.|%2[eE]%2[eE]|%2[eE]|[a-z]{1,4}|)){0,8}",
    ) {
        // A path under the prefix normalises to a path under the prefix,
        // unless it climbs with `..`: then the normal form must not claim
        // to be under it while having left it.
        let path = format!("{prefix}{rest}");
        if let Ok(normal) = normalize(&path) {
            let climbs = {
                let mut depth: i64 = 0;
                let mut min = 0;
                for seg in rest.split('/') {
                    match seg.to_ascii_lowercase().as_str() {
                        ".." | "%2e%2e" => depth -= 1,
                        "" | "." | "%2e" => {}
                        _ => depth += 1,
                    }
                    min = min.min(depth);
                }
                min < 0
            };
            let under = normal.as_ref() == prefix || normal.starts_with(&format!("{prefix}/"));
            if !climbs {
                prop_assert!(under, "{path} -> {normal}");
            }
            // Never above the root, whatever the climb.
            prop_assert!(normal.starts_with('/'));
        }
    }
}
