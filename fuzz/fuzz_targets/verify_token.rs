//! Arbitrary bytes as a token: never a panic, and never accepted unless the
//! signature is the configured key's over the exact `header.payload` bytes.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef-0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let key = Key::hmac(Some("k1".to_owned()), Alg::HS256, SECRET).unwrap();
    let keys = KeySet::new(vec![
        Key::hmac(Some("k1".to_owned()), Alg::HS256, SECRET).unwrap(),
    ]);
    let validation = Validation {
        required: Vec::new(),
        ..Validation::default()
    };
    if jwt::verify(token, &keys, &validation, 1_700_000_000).is_ok() {
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            signature,
            URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes())),
            "accepted a token the key did not sign"
        );
    }
});
