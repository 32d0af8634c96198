//! Arbitrary header and payload bytes, correctly signed: the JSON and claim
//! checks behind the signature never panic, and the identity they yield is
//! forwarded header-safe once encoded.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwtgate::headers::encode_value;
use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";

fuzz_target!(|data: &[u8]| {
    // Header bytes, then 0xFF, then payload bytes; no 0xFF: a fixed header.
    let (header, payload) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&br#"{"alg":"HS256","kid":"k1"}"#[..], data),
    };
    let key = Key::hmac(Some("k1".to_owned()), Alg::HS256, SECRET).unwrap();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()))
    );
    let keys = KeySet::new(vec![key]);
    let validation = Validation {
        issuers: vec!["https://issuer".to_owned()],
        ..Validation::default()
    };
    if let Ok(verified) = jwt::verify(&token, &keys, &validation, 1_700_000_000) {
        let safe = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
        let user = verified.user.as_deref().map(|u| encode_value(u, false));
        assert!(user.as_deref().is_none_or(safe));
        for role in verified.roles.iter() {
            let role = encode_value(role, true);
            assert!(safe(&role) && !role.contains(','));
        }
        assert!(verified.exp.is_some(), "exp is required by default");
    }
});
