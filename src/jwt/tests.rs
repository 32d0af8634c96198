//! Unit tests for [`verify`]: known answers, hostile headers and payloads, the
//! time window at its exact boundaries, and a fuzz-style property.
//!
//! Tokens are built by hand from exact bytes so that a test can say precisely
//! what an attacker would send; `now` is always injected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::claims::{
    MAX_NUMERIC_DATE, NOT_A_NUMERIC_DATE, NOT_A_STRING, NOT_A_USER_ID, NOT_STRINGS, parse_claims,
};
use super::*;
use crate::keys::{Key, KeySet};
use proptest::prelude::*;

/// The injected clock for every test that is not about a specific instant.
const NOW: i64 = 1_700_000_000;
const HOUR: i64 = 3600;

const SECRET_256: &[u8] = b"an HS256 secret of 32 bytes ....";
const SECRET_384: &[u8] = b"an HS384 secret of exactly forty-eight bytes ...";
const SECRET_512: &[u8] = b"an HS512 secret of exactly sixty-four bytes, padded to length ...";
const OTHER_256: &[u8] = b"another HS256 secret of 32 bytes";
const ATTACKER_256: &[u8] = b"the attacker's own 32-byte key!!";

const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

const BASE64URL_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// ---------------------------------------------------------------- helpers

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(kid: Option<&str>, alg: Alg, secret: &[u8]) -> Key {
    Key::hmac(kid.map(str::to_owned), alg, secret).unwrap()
}

/// The usual deployment: one HS256 key without a kid.
fn hs256_keys() -> KeySet {
    KeySet::new(vec![key(None, Alg::HS256, SECRET_256)])
}

/// Signs already-encoded segments; lets a test put any bytes in them.
fn sign_segments(key: &Key, header_b64: &str, payload_b64: &str) -> String {
    let signing_input = format!("{header_b64}.{payload_b64}");
    let signature = b64(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Signs the exact header and payload bytes given.
fn sign_raw(key: &Key, header: &[u8], payload: &[u8]) -> String {
    sign_segments(key, &b64(header), &b64(payload))
}

fn sign(key: &Key, header: &str, payload: &str) -> String {
    sign_raw(key, header.as_bytes(), payload.as_bytes())
}

/// An HS256 token over `payload`, signed with the configured secret.
fn hs256(payload: &str) -> String {
    sign(&key(None, Alg::HS256, SECRET_256), HS256_HEADER, payload)
}

/// An HS256 token with this header, signed with the configured secret.
fn hs256_with_header(header: &str) -> String {
    sign(&key(None, Alg::HS256, SECRET_256), header, &claims(""))
}

/// Valid claims for `NOW`, plus `extra` (which starts with a comma).
fn claims(extra: &str) -> String {
    format!(r#"{{"exp":{},"sub":"alice"{extra}}}"#, NOW + HOUR)
}

/// Verifies with the usual deployment and the default validation.
fn check(token: &str) -> Result<Verified, JwtError> {
    verify(token, &hs256_keys(), &Validation::default(), NOW)
}

fn check_with(token: &str, validation: &Validation) -> Result<Verified, JwtError> {
    verify(token, &hs256_keys(), validation, NOW)
}

fn json_error(result: Result<Verified, JwtError>) -> (Segment, String) {
    match result {
        Err(JwtError::Json { segment, reason }) => (segment, reason),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}

fn invalid_claim(claim: &str, problem: &'static str) -> JwtError {
    JwtError::InvalidClaim {
        claim: claim.to_owned(),
        problem,
    }
}

fn replace_signature(token: &str, signature_b64: &str) -> String {
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    format!("{signing_input}.{signature_b64}")
}

// ----------------------------------------------- RFC 7515 Appendix A.1

/// The exact octets of RFC 7515 A.1, including the CR LF inside the JSON.
const A1_HEADER: &[u8] = b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
const A1_PAYLOAD: &[u8] =
    b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
const A1_HEADER_B64: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
const A1_PAYLOAD_B64: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A1_SIGNATURE_B64: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// The JWK `k` member: base64url of the 64-byte HMAC secret.
const A1_JWK_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_EXP: i64 = 1_300_819_380;

fn a1_token() -> String {
    format!("{A1_HEADER_B64}.{A1_PAYLOAD_B64}.{A1_SIGNATURE_B64}")
}

fn a1_keys() -> KeySet {
    let secret = URL_SAFE_NO_PAD.decode(A1_JWK_K).unwrap();
    assert_eq!(secret.len(), 64);
    KeySet::new(vec![key(None, Alg::HS256, &secret)])
}

fn a1_validation() -> Validation {
    Validation {
        leeway: 0,
        ..Validation::default()
    }
}

#[test]
fn rfc7515_a1_segments_and_signature_are_reproduced_from_the_exact_bytes() {
    assert_eq!(b64(A1_HEADER), A1_HEADER_B64);
    assert_eq!(b64(A1_PAYLOAD), A1_PAYLOAD_B64);
    let secret = URL_SAFE_NO_PAD.decode(A1_JWK_K).unwrap();
    assert_eq!(
        sign_raw(&key(None, Alg::HS256, &secret), A1_HEADER, A1_PAYLOAD),
        a1_token()
    );
}

#[test]
fn rfc7515_a1_token_is_accepted_one_second_before_exp() {
    let verified = verify(&a1_token(), &a1_keys(), &a1_validation(), A1_EXP - 1).unwrap();
    assert_eq!(
        verified.claims.top("http://example.com/is_root"),
        Some("true")
    );
    assert_eq!(
        Verified {
            claims: ClaimSet::default(),
            ..verified
        },
        Verified {
            alg: Alg::HS256,
            provider: 0,
            user: None,
            roles: Roles::default(),
            exp: Some(A1_EXP),
            iat: None,
            jti: None,
            claims: ClaimSet::default(),
        }
    );
}

#[test]
fn rfc7515_a1_token_is_expired_from_exp_on() {
    for now in [A1_EXP, A1_EXP + 1, A1_EXP + 10 * 365 * 24 * HOUR] {
        assert_eq!(
            verify(&a1_token(), &a1_keys(), &a1_validation(), now),
            Err(JwtError::Expired {
                exp: A1_EXP,
                now,
                leeway: 0
            })
        );
    }
}

#[test]
fn rfc7515_a1_token_is_accepted_within_default_leeway_after_exp() {
    let validation = Validation::default();
    assert!(verify(&a1_token(), &a1_keys(), &validation, A1_EXP + 29).is_ok());
    assert_eq!(
        verify(&a1_token(), &a1_keys(), &validation, A1_EXP + 30),
        Err(JwtError::Expired {
            exp: A1_EXP,
            now: A1_EXP + 30,
            leeway: 30
        })
    );
}

// ------------------------------------------------------------- accepted

#[test]
fn hs256_token_is_accepted_and_carries_its_identity() {
    let token = hs256(&claims(r#","role":"admin""#));
    let verified = check(&token).unwrap();
    assert_eq!(verified.claims.top("role"), Some(r#""admin""#));
    assert_eq!(
        Verified {
            claims: ClaimSet::default(),
            ..verified
        },
        Verified {
            alg: Alg::HS256,
            provider: 0,
            user: Some("alice".to_owned()),
            roles: Roles::of(&["admin"]),
            exp: Some(NOW + HOUR),
            iat: None,
            jti: None,
            claims: ClaimSet::default(),
        }
    );
}

#[test]
fn hs384_token_is_accepted() {
    let keys = KeySet::new(vec![key(None, Alg::HS384, SECRET_384)]);
    let token = sign(
        &key(None, Alg::HS384, SECRET_384),
        r#"{"alg":"HS384"}"#,
        &claims(""),
    );
    let verified = verify(&token, &keys, &Validation::default(), NOW).unwrap();
    assert_eq!(verified.alg, Alg::HS384);
    assert_eq!(verified.user.as_deref(), Some("alice"));
}

#[test]
fn hs512_token_is_accepted() {
    let keys = KeySet::new(vec![key(None, Alg::HS512, SECRET_512)]);
    let token = sign(
        &key(None, Alg::HS512, SECRET_512),
        r#"{"alg":"HS512"}"#,
        &claims(""),
    );
    let verified = verify(&token, &keys, &Validation::default(), NOW).unwrap();
    assert_eq!(verified.alg, Alg::HS512);
    assert_eq!(verified.user.as_deref(), Some("alice"));
}

fn two_kid_keys() -> KeySet {
    KeySet::new(vec![
        key(Some("a"), Alg::HS256, SECRET_256),
        key(Some("b"), Alg::HS256, OTHER_256),
        key(Some("big"), Alg::HS512, SECRET_512),
    ])
}

#[test]
fn kid_selects_that_key() {
    let token = sign(
        &key(None, Alg::HS256, OTHER_256),
        r#"{"alg":"HS256","kid":"b"}"#,
        &claims(""),
    );
    // Only b's secret verifies it.
    assert!(verify(&token, &two_kid_keys(), &Validation::default(), NOW).is_ok());
}

#[test]
fn kid_selects_only_that_key_and_never_falls_back_to_others() {
    // Signed with b's secret but naming a: b would verify, a must be the only one tried.
    let token = sign(
        &key(None, Alg::HS256, OTHER_256),
        r#"{"alg":"HS256","kid":"a"}"#,
        &claims(""),
    );
    assert_eq!(
        verify(&token, &two_kid_keys(), &Validation::default(), NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn token_without_kid_is_accepted_by_the_second_key_of_its_alg() {
    let keys = KeySet::new(vec![
        key(Some("old"), Alg::HS256, SECRET_256),
        key(Some("new"), Alg::HS256, OTHER_256),
    ]);
    let token = sign(&key(None, Alg::HS256, OTHER_256), HS256_HEADER, &claims(""));
    // Only the second key's secret verifies it.
    assert!(verify(&token, &keys, &Validation::default(), NOW).is_ok());
}

/// RFC 7515 §4.1.4: a kid is a string; `null` is not a way to say "none".
#[test]
fn kid_null_is_a_header_json_error() {
    let token = hs256_with_header(r#"{"alg":"HS256","kid":null}"#);
    assert!(matches!(
        check(&token),
        Err(JwtError::Json {
            segment: Segment::Header,
            ..
        })
    ));
}

#[test]
fn duplicate_unknown_header_member_is_a_header_json_error() {
    let token = hs256_with_header(r#"{"alg":"HS256","typ":"JWT","typ":"x"}"#);
    assert!(matches!(
        check(&token),
        Err(JwtError::Json {
            segment: Segment::Header,
            ..
        })
    ));
}

#[test]
fn integer_sub_becomes_the_user_id_string() {
    let token = hs256(&format!(r#"{{"exp":{},"sub":42}}"#, NOW + HOUR));
    assert_eq!(check(&token).unwrap().user.as_deref(), Some("42"));
    let token = hs256(&format!(r#"{{"exp":{},"sub":-7}}"#, NOW + HOUR));
    assert_eq!(check(&token).unwrap().user.as_deref(), Some("-7"));
    let token = hs256(&format!(
        r#"{{"exp":{},"sub":18446744073709551615}}"#,
        NOW + HOUR
    ));
    assert_eq!(
        check(&token).unwrap().user.as_deref(),
        Some("18446744073709551615")
    );
}

#[test]
fn role_array_becomes_the_roles() {
    let token = hs256(&claims(r#","role":["reader","writer"]"#));
    assert_eq!(
        check(&token).unwrap().roles,
        Roles::of(&["reader", "writer"])
    );
    let token = hs256(&claims(r#","role":[]"#));
    assert!(check(&token).unwrap().roles.is_empty());
}

#[test]
fn user_ids_and_role_lists_of_any_length_come_out_whole() {
    for len in [1, 22, 23, 24, 200] {
        let user = "u".repeat(len);
        let roles: Vec<String> = (0..len).map(|i| format!("r{i}")).collect();
        let listed = roles.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>();
        let token = hs256(&format!(
            r#"{{"exp":{},"sub":"{user}","role":[{}]}}"#,
            NOW + HOUR,
            listed.join(",")
        ));
        let verified = check(&token).unwrap();
        assert_eq!(verified.user.as_deref(), Some(user.as_str()));
        assert!(verified.roles.iter().eq(roles.iter().map(String::as_str)));
        let token = hs256(&claims(&format!(r#","role":"{user}""#)));
        assert!(check(&token).unwrap().roles.iter().eq([user.as_str()]));
    }
}

#[test]
fn escaped_role_is_decoded_before_it_is_checked() {
    let token = hs256(&claims(r#","role":"\u0061dmin""#));
    assert_eq!(check(&token).unwrap().roles, Roles::of(&["admin"]));
}

#[test]
fn configured_user_and_role_claims_are_read_instead_of_sub_and_role() {
    let validation = Validation {
        user_claim: "email".into(),
        role_claim: "groups".into(),
        ..Validation::default()
    };
    let token = hs256(&claims(
        r#","email":"a@example.com","groups":["ops"],"role":"ignored""#,
    ));
    let verified = check_with(&token, &validation).unwrap();
    assert_eq!(verified.user.as_deref(), Some("a@example.com"));
    assert_eq!(verified.roles, Roles::of(&["ops"]));
}

#[test]
fn fractional_exp_is_rounded_down_to_its_second() {
    let validation = Validation {
        leeway: 0,
        ..Validation::default()
    };
    let token = hs256(&format!(r#"{{"exp":{}.999}}"#, NOW + 1));
    let verified = verify(&token, &hs256_keys(), &validation, NOW).unwrap();
    assert_eq!(verified.exp, Some(NOW + 1));
    assert_eq!(
        verify(&token, &hs256_keys(), &validation, NOW + 1),
        Err(JwtError::Expired {
            exp: NOW + 1,
            now: NOW + 1,
            leeway: 0
        })
    );
}

#[test]
fn fractional_nbf_is_rounded_up_to_its_next_second() {
    let validation = Validation {
        leeway: 0,
        ..Validation::default()
    };
    let token = hs256(&format!(r#"{{"exp":{},"nbf":{}.001}}"#, NOW + 900, NOW - 1));
    assert_eq!(
        verify(&token, &hs256_keys(), &validation, NOW - 1),
        Err(JwtError::NotYetValid {
            nbf: NOW,
            now: NOW - 1,
            leeway: 0
        })
    );
    assert!(verify(&token, &hs256_keys(), &validation, NOW).is_ok());
}

#[test]
fn exp_may_be_absent_when_not_required() {
    let validation = Validation {
        required: Vec::new(),
        ..Validation::default()
    };
    let verified = check_with(&hs256(r#"{"sub":"svc"}"#), &validation).unwrap();
    assert_eq!(verified.exp, None);
    assert_eq!(verified.user.as_deref(), Some("svc"));
}

#[test]
fn exp_at_the_numeric_date_limits_is_accepted() {
    let token = hs256(&format!(r#"{{"exp":{}}}"#, 1_i64 << 53));
    assert_eq!(check(&token).unwrap().exp, Some(1 << 53));
    let token = hs256(&format!(
        r#"{{"exp":{},"nbf":{}}}"#,
        NOW + HOUR,
        -(1_i64 << 53)
    ));
    assert!(check(&token).is_ok());
}

#[test]
fn ignored_header_members_and_b64_true_are_accepted() {
    let token = hs256_with_header(r#"{"alg":"HS256","typ":"JWT","cty":"x","b64":true}"#);
    assert!(check(&token).is_ok());
}

// ------------------------------------------------------ algorithm choice

#[test]
fn alg_none_is_rejected_in_every_spelling() {
    for alg in ["none", "None", "NONE", " none", "none ", "nOnE", ""] {
        let header = format!(r#"{{"alg":"{alg}"}}"#);
        let unsigned = format!("{}.{}.", b64(&header), b64(claims("")));
        let signed = hs256_with_header(&header);
        for token in [unsigned, signed] {
            assert_eq!(
                check(&token),
                Err(JwtError::UnsupportedAlg {
                    alg: alg.to_owned()
                }),
                "alg {alg:?}"
            );
        }
    }
}

#[test]
fn alg_names_are_case_and_space_sensitive() {
    for alg in [
        "hs256",
        "Hs256",
        "HS256 ",
        " HS256",
        "HS256\u{0}",
        "rs256",
        "ES512",
        "Ed25519",
        "EDDSA",
    ] {
        let header = serde_json::json!({ "alg": alg }).to_string();
        assert_eq!(
            check(&hs256_with_header(&header)),
            Err(JwtError::UnsupportedAlg {
                alg: alg.to_owned()
            }),
            "alg {alg:?}"
        );
    }
}

#[test]
fn public_key_alg_is_not_allowed_when_only_hmac_keys_are_configured() {
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        let header = serde_json::json!({ "alg": alg }).to_string();
        let err = check(&hs256_with_header(&header)).unwrap_err();
        assert!(
            matches!(err, JwtError::AlgNotAllowed { .. } | JwtError::BadSignature),
            "alg {alg:?}: {err:?}"
        );
    }
}

#[test]
fn missing_or_non_string_alg_is_a_header_json_error() {
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":256}"#,
        r#"{"alg":["HS256"]}"#,
    ] {
        let (segment, _) = json_error(check(&hs256_with_header(header)));
        assert_eq!(segment, Segment::Header, "{header}");
    }
}

#[test]
fn hs256_token_is_not_allowed_when_the_only_key_is_hs512() {
    // The classic confusion: HS256 computed with the HS512 key's own secret.
    let keys = KeySet::new(vec![key(None, Alg::HS512, SECRET_512)]);
    let token = sign(
        &key(None, Alg::HS256, SECRET_512),
        HS256_HEADER,
        &claims(""),
    );
    assert_eq!(
        verify(&token, &keys, &Validation::default(), NOW),
        Err(JwtError::AlgNotAllowed { alg: Alg::HS256 })
    );
}

#[test]
fn kid_of_an_hs512_key_with_header_alg_hs256_is_an_alg_mismatch() {
    let token = sign(
        &key(None, Alg::HS256, SECRET_512),
        r#"{"alg":"HS256","kid":"big"}"#,
        &claims(""),
    );
    assert_eq!(
        verify(&token, &two_kid_keys(), &Validation::default(), NOW),
        Err(JwtError::AlgMismatch {
            kid: "big".to_owned(),
            key_alg: Alg::HS512,
            alg: Alg::HS256,
        })
    );
}

#[test]
fn kid_of_an_hs256_key_with_header_alg_hs512_is_an_alg_mismatch() {
    // A correct HS512 signature made with the HS256 key's secret.
    let token = sign(
        &key(None, Alg::HS512, &[SECRET_256, SECRET_256].concat()),
        r#"{"alg":"HS512","kid":"a"}"#,
        &claims(""),
    );
    assert_eq!(
        verify(&token, &two_kid_keys(), &Validation::default(), NOW),
        Err(JwtError::AlgMismatch {
            kid: "a".to_owned(),
            key_alg: Alg::HS256,
            alg: Alg::HS512,
        })
    );
}

#[test]
fn unknown_kid_is_rejected() {
    for kid in [
        "c",
        "A",
        "",
        "a ",
        "../../etc/passwd",
        "' OR 1=1 --",
        "a\u{0}",
    ] {
        let header = serde_json::json!({ "alg": "HS256", "kid": kid }).to_string();
        let token = sign(&key(None, Alg::HS256, SECRET_256), &header, &claims(""));
        assert_eq!(
            verify(&token, &two_kid_keys(), &Validation::default(), NOW),
            Err(JwtError::UnknownKid {
                kid: kid.to_owned()
            }),
            "kid {kid:?}"
        );
    }
}

#[test]
fn non_string_kid_is_a_header_json_error() {
    for header in [
        r#"{"alg":"HS256","kid":1}"#,
        r#"{"alg":"HS256","kid":["a"]}"#,
    ] {
        let (segment, _) = json_error(check(&hs256_with_header(header)));
        assert_eq!(segment, Segment::Header, "{header}");
    }
}

#[test]
fn crit_is_rejected_whatever_its_value() {
    for crit in [
        r#"["exp"]"#,
        r#"["b64"]"#,
        "[]",
        "null",
        "{}",
        "false",
        r#""""#,
    ] {
        let header = format!(r#"{{"alg":"HS256","crit":{crit}}}"#);
        assert_eq!(
            check(&hs256_with_header(&header)),
            Err(JwtError::Crit),
            "{header}"
        );
    }
}

#[test]
fn crit_is_rejected_before_the_algorithm_is_considered() {
    let header = r#"{"alg":"none","crit":["exp"]}"#;
    assert_eq!(check(&hs256_with_header(header)), Err(JwtError::Crit));
}

#[test]
fn unencoded_payload_b64_false_is_rejected() {
    for header in [
        r#"{"alg":"HS256","b64":false}"#,
        r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#,
    ] {
        assert_eq!(
            check(&hs256_with_header(header)),
            Err(JwtError::Crit),
            "{header}"
        );
    }
}

#[test]
fn embedded_keys_in_the_header_never_choose_the_key() {
    let attacker = key(None, Alg::HS256, ATTACKER_256);
    let k = b64(ATTACKER_256);
    for member in [
        format!(r#""jwk":{{"kty":"oct","k":"{k}"}}"#),
        r#""jku":"https://attacker.example/jwks.json""#.to_owned(),
        r#""x5u":"https://attacker.example/cert.pem""#.to_owned(),
        r#""x5c":["MIIBszCCAVmgAwIBAgIUXYZ"]"#.to_owned(),
    ] {
        let header = format!(r#"{{"alg":"HS256",{member}}}"#);
        let forged = sign(&attacker, &header, &claims(r#","role":"admin""#));
        assert_eq!(check(&forged), Err(JwtError::BadSignature), "{member}");
        // The members are ignored, not refused: a real token carrying them passes.
        assert!(check(&hs256_with_header(&header)).is_ok(), "{member}");
    }
}

// -------------------------------------------------------------- shape

#[test]
fn five_part_token_is_refused_as_encrypted() {
    assert_eq!(check("a.b.c.d.e"), Err(JwtError::Encrypted));
    assert_eq!(check("...."), Err(JwtError::Encrypted));
}

#[test]
fn two_and_four_part_tokens_are_refused_by_part_count() {
    let token = hs256(&claims(""));
    let (header_payload, _) = token.rsplit_once('.').unwrap();
    assert_eq!(check(header_payload), Err(JwtError::PartCount { parts: 2 }));
    assert_eq!(
        check(&format!("{token}.")),
        Err(JwtError::PartCount { parts: 4 })
    );
    assert_eq!(check(""), Err(JwtError::PartCount { parts: 1 }));
    assert_eq!(check("abc"), Err(JwtError::PartCount { parts: 1 }));
    assert_eq!(check("a.b.c.d.e.f"), Err(JwtError::PartCount { parts: 6 }));
}

#[test]
fn token_over_8_kib_is_too_long() {
    let pad = "x".repeat(9 * 1024);
    let token = hs256(&claims(&format!(r#","pad":"{pad}""#)));
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(check(&token), Err(JwtError::TooLong));
    assert_eq!(check(&".".repeat(9 * 1024)), Err(JwtError::TooLong));
}

#[test]
fn token_of_exactly_8_kib_is_not_too_long() {
    // base64url lengths skip some values, so vary both header and payload padding.
    let signer = key(None, Alg::HS256, SECRET_256);
    let token = (0..4)
        .flat_map(|header_pad| (5_000..7_000).map(move |pad| (header_pad, pad)))
        .map(|(header_pad, pad)| {
            let header = format!(r#"{{"alg":"HS256","x":"{}"}}"#, "h".repeat(header_pad));
            let payload = claims(&format!(r#","pad":"{}""#, "x".repeat(pad)));
            sign(&signer, &header, &payload)
        })
        .find(|token| token.len() == MAX_TOKEN_LEN)
        .unwrap();
    assert!(check(&token).is_ok());
    assert_eq!(check(&format!("{token}A")), Err(JwtError::TooLong));
}

// ----------------------------------------------------------- signature

#[test]
fn empty_signature_is_a_bad_signature() {
    let token = replace_signature(&hs256(&claims("")), "");
    assert_eq!(check(&token), Err(JwtError::BadSignature));
}

#[test]
fn truncated_signature_is_a_bad_signature() {
    let token = hs256(&claims(""));
    let (_, signature_b64) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
    for len in [1, 16, 31] {
        let truncated = replace_signature(&token, &b64(&signature[..len]));
        assert_eq!(
            check(&truncated),
            Err(JwtError::BadSignature),
            "{len} bytes"
        );
    }
}

#[test]
fn extended_signature_is_a_bad_signature() {
    let token = hs256(&claims(""));
    let (_, signature_b64) = token.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
    signature.push(0);
    let extended = replace_signature(&token, &b64(&signature));
    assert_eq!(check(&extended), Err(JwtError::BadSignature));
}

#[test]
fn signature_longer_than_any_algorithm_is_rejected_without_panic() {
    let token = hs256(&claims(""));
    for len in [65, 96] {
        let long = replace_signature(&token, &b64(vec![7u8; len]));
        assert_eq!(check(&long), Err(JwtError::BadSignature), "{len} bytes");
    }
    // Beyond the largest fixed-length signature too: the length is
    // checked before any key is tried.
    for len in [97, 100, 1000, 2000] {
        let long = replace_signature(&token, &b64(vec![7u8; len]));
        assert_eq!(check(&long), Err(JwtError::BadSignature), "{len} bytes");
    }
}

#[test]
fn hs512_sized_signature_on_an_hs256_token_is_a_bad_signature() {
    let token = hs256(&claims(""));
    let long = replace_signature(&token, &b64([0u8; 64]));
    assert_eq!(check(&long), Err(JwtError::BadSignature));
}

#[test]
fn padded_signature_is_not_canonical() {
    let token = hs256(&claims(""));
    for pad in ["=", "==", "%3D"] {
        assert_eq!(
            check(&format!("{token}{pad}")),
            Err(JwtError::Base64 {
                segment: Segment::Signature
            }),
            "{pad}"
        );
    }
}

#[test]
fn padded_header_is_not_canonical() {
    // 28 header bytes encode to 37 characters plus one '=' of padding.
    let header = r#"{"alg":"HS256","typ":"JWT" }"#;
    let padded = format!("{}=", b64(header));
    let token = sign_segments(
        &key(None, Alg::HS256, SECRET_256),
        &padded,
        &b64(claims("")),
    );
    assert_eq!(
        check(&token),
        Err(JwtError::Base64 {
            segment: Segment::Header
        })
    );
}

#[test]
fn standard_base64_signature_is_not_base64url() {
    // Find a token whose signature needs '-' or '_', then spell it with '+' '/'.
    let (token, standard) = (0..1000)
        .map(|i| hs256(&claims(&format!(r#","n":{i}"#))))
        .find_map(|token| {
            let (_, signature_b64) = token.rsplit_once('.').unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(signature_b64).unwrap();
            let standard = STANDARD_NO_PAD.encode(bytes);
            (standard != signature_b64).then_some((token, standard))
        })
        .unwrap();
    assert!(check(&token).is_ok());
    assert_eq!(
        check(&replace_signature(&token, &standard)),
        Err(JwtError::Base64 {
            segment: Segment::Signature
        })
    );
}

#[test]
fn signature_with_non_zero_trailing_bits_is_not_canonical() {
    // 32 bytes take 43 characters; the last one carries 2 unused bits.
    let token = hs256(&claims(""));
    let last = *token.as_bytes().last().unwrap();
    let index = BASE64URL_ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(
        index & 0b11,
        0,
        "a canonical encoding has zero trailing bits"
    );
    for bits in 1..4 {
        let mut mutated = token.clone().into_bytes();
        *mutated.last_mut().unwrap() = BASE64URL_ALPHABET[index | bits];
        let mutated = String::from_utf8(mutated).unwrap();
        assert_eq!(
            check(&mutated),
            Err(JwtError::Base64 {
                segment: Segment::Signature
            }),
            "{mutated}"
        );
    }
}

#[test]
fn whitespace_or_control_char_anywhere_is_rejected() {
    let signer = key(None, Alg::HS256, SECRET_256);
    let header_b64 = b64(HS256_HEADER);
    let payload_b64 = b64(claims(""));
    let token = sign_segments(&signer, &header_b64, &payload_b64);
    let (_, signature_b64) = token.rsplit_once('.').unwrap();
    for ch in [
        ' ', '\t', '\n', '\r', '\0', '\u{b}', '\u{c}', '\u{7f}', '\u{a0}', '\u{2028}',
    ] {
        let insert = |segment: &str, at: usize| {
            let mut s = segment.to_owned();
            s.insert(at, ch);
            s
        };
        for at in 0..=header_b64.len() {
            // Re-signed, so the only fault is the character itself.
            let token = sign_segments(&signer, &insert(&header_b64, at), &payload_b64);
            assert_eq!(
                check(&token),
                Err(JwtError::Base64 {
                    segment: Segment::Header
                }),
                "{ch:?} at header {at}"
            );
        }
        for at in 0..=payload_b64.len() {
            let token = sign_segments(&signer, &header_b64, &insert(&payload_b64, at));
            assert_eq!(
                check(&token),
                Err(JwtError::Base64 {
                    segment: Segment::Payload
                }),
                "{ch:?} at payload {at}"
            );
            // Unsigned, the same token fails on its signature first.
            let token = format!("{header_b64}.{}.{signature_b64}", insert(&payload_b64, at));
            assert_eq!(check(&token), Err(JwtError::BadSignature), "{ch:?} at {at}");
        }
        for at in 0..=signature_b64.len() {
            let token = format!("{header_b64}.{payload_b64}.{}", insert(signature_b64, at));
            assert_eq!(
                check(&token),
                Err(JwtError::Base64 {
                    segment: Segment::Signature
                }),
                "{ch:?} at signature {at}"
            );
        }
    }
}

#[test]
fn tampered_payload_with_the_original_signature_is_a_bad_signature() {
    let token = hs256(&claims(r#","role":"reader""#));
    let (header_b64, rest) = token.split_once('.').unwrap();
    let (_, signature_b64) = rest.split_once('.').unwrap();
    let forged = format!(
        "{header_b64}.{}.{signature_b64}",
        b64(claims(r#","role":"admin""#))
    );
    assert_eq!(check(&forged), Err(JwtError::BadSignature));
}

#[test]
fn tampered_header_with_the_original_signature_is_a_bad_signature() {
    let token = hs256(&claims(""));
    let (_, rest) = token.split_once('.').unwrap();
    let forged = format!("{}.{rest}", b64(r#"{"alg":"HS256","typ":"jwt"}"#));
    assert_eq!(check(&forged), Err(JwtError::BadSignature));
}

#[test]
fn signature_made_with_a_different_secret_is_a_bad_signature() {
    let token = sign(&key(None, Alg::HS256, OTHER_256), HS256_HEADER, &claims(""));
    assert_eq!(check(&token), Err(JwtError::BadSignature));
}

#[test]
fn claims_are_not_read_before_the_signature_verifies() {
    // A payload that is not even JSON, under a forged signature: the signature wins.
    let forged = sign(&key(None, Alg::HS256, OTHER_256), HS256_HEADER, "not json");
    assert_eq!(check(&forged), Err(JwtError::BadSignature));
    let expired = sign(
        &key(None, Alg::HS256, OTHER_256),
        HS256_HEADER,
        r#"{"exp":1}"#,
    );
    assert_eq!(check(&expired), Err(JwtError::BadSignature));
}

// --------------------------------------------------------------- JSON

#[test]
fn header_that_is_not_an_object_is_rejected() {
    for header in [
        r#"["HS256"]"#,
        r#" ["HS256", null, null, null]"#,
        r#""HS256""#,
        "256",
        "null",
        "",
    ] {
        let (segment, reason) = json_error(check(&hs256_with_header(header)));
        assert_eq!(segment, Segment::Header, "{header:?}");
        assert!(
            reason.contains("expected a JSON object") || reason.contains("EOF"),
            "{header:?}: {reason}"
        );
    }
}

#[test]
fn header_with_trailing_data_is_rejected() {
    let header = r#"{"alg":"HS256"}{"alg":"none"}"#;
    let (segment, _) = json_error(check(&hs256_with_header(header)));
    assert_eq!(segment, Segment::Header);
}

#[test]
fn payload_that_is_not_an_object_is_rejected() {
    for payload in [
        format!("[{}]", NOW + HOUR),
        format!(r#"[{},"alice"]"#, NOW + HOUR),
        r#""claims""#.to_owned(),
        "null".to_owned(),
        String::new(),
        format!("{}{}", claims(""), claims("")),
    ] {
        let (segment, _) = json_error(check(&hs256(&payload)));
        assert_eq!(segment, Segment::Payload, "{payload:?}");
    }
}

#[test]
fn duplicate_exp_is_a_payload_json_error() {
    let payload = format!(r#"{{"exp":{},"exp":{}}}"#, NOW + HOUR, NOW - HOUR);
    let (segment, reason) = json_error(check(&hs256(&payload)));
    assert_eq!(segment, Segment::Payload);
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn duplicate_sub_is_a_payload_json_error() {
    let payload = claims(r#","sub":"admin""#);
    let (segment, reason) = json_error(check(&hs256(&payload)));
    assert_eq!(segment, Segment::Payload);
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn duplicate_claim_spelled_with_an_escape_is_a_payload_json_error() {
    let payload = format!(r#"{{"exp":{},"e\u0078p":{}}}"#, NOW + HOUR, NOW - HOUR);
    let (segment, reason) = json_error(check(&hs256(&payload)));
    assert_eq!(segment, Segment::Payload);
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn duplicate_ignored_claim_is_a_payload_json_error() {
    let payload = claims(r#","jti":"1","jti":"2""#);
    let (segment, reason) = json_error(check(&hs256(&payload)));
    assert_eq!(segment, Segment::Payload);
    assert!(reason.contains("duplicate"), "{reason}");
}

#[test]
fn duplicate_alg_in_header_is_a_header_json_error() {
    for header in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
    ] {
        let (segment, reason) = json_error(check(&hs256_with_header(header)));
        assert_eq!(segment, Segment::Header, "{header}");
        assert!(reason.contains("duplicate"), "{header}: {reason}");
    }
}

#[test]
fn non_utf8_payload_is_a_payload_json_error() {
    let exp = NOW + HOUR;
    for payload in [
        [
            format!("{{\"exp\":{exp},\"sub\":\"al").as_bytes(),
            b"\xff",
            b"ice\"}",
        ]
        .concat(),
        // In a claim the verifier does not otherwise read.
        [
            format!("{{\"exp\":{exp},\"note\":\"").as_bytes(),
            b"\xc3\x28",
            b"\"}",
        ]
        .concat(),
        // An encoded surrogate (CESU-8), also not UTF-8.
        [
            format!("{{\"exp\":{exp},\"note\":\"").as_bytes(),
            b"\xed\xa0\x80",
            b"\"}",
        ]
        .concat(),
        [format!("{{\"exp\":{exp},\"").as_bytes(), b"\xff", b"\":1}"].concat(),
    ] {
        let token = sign_raw(
            &key(None, Alg::HS256, SECRET_256),
            HS256_HEADER.as_bytes(),
            &payload,
        );
        assert_eq!(
            check(&token),
            Err(JwtError::Json {
                segment: Segment::Payload,
                reason: "not UTF-8".to_owned()
            }),
            "{payload:?}"
        );
    }
}

#[test]
fn non_utf8_header_is_a_header_json_error() {
    let token = sign_raw(
        &key(None, Alg::HS256, SECRET_256),
        b"{\"alg\":\"HS256\",\"typ\":\"\xff\"}",
        claims("").as_bytes(),
    );
    assert_eq!(
        check(&token),
        Err(JwtError::Json {
            segment: Segment::Header,
            reason: "not UTF-8".to_owned()
        })
    );
}

#[test]
fn raw_control_character_inside_a_claim_string_is_a_payload_json_error() {
    for payload in [
        format!("{{\"exp\":{},\"sub\":\"al\u{0}ice\"}}", NOW + HOUR),
        format!("{{\"exp\":{},\"note\":\"a\nb\"}}", NOW + HOUR),
    ] {
        let (segment, _) = json_error(check(&hs256(&payload)));
        assert_eq!(segment, Segment::Payload, "{payload:?}");
    }
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn deeply_nested_ignored_claim_is_skipped_without_panic() {
    // Ignored values are skipped iteratively with bounded work (the token is at
    // most 8 KiB), so depth costs nothing and the token stands.
    for depth in [200, 1000] {
        let token = hs256(&claims(&format!(r#","x":{}"#, nested(depth))));
        assert!(check(&token).is_ok(), "depth {depth}");
        let objects = format!(r#"{}1{}"#, r#"{"a":"#.repeat(depth), "}".repeat(depth));
        let token = hs256(&claims(&format!(r#","x":{objects}"#)));
        assert!(check(&token).is_ok(), "depth {depth}");
    }
}

#[test]
fn deeply_nested_read_claim_is_an_invalid_claim_not_a_panic() {
    for depth in [200, 3000] {
        let token = hs256(&claims(&format!(r#","role":{}"#, nested(depth))));
        assert_eq!(check(&token), Err(invalid_claim("role", NOT_STRINGS)));
    }
}

#[test]
fn deeply_nested_header_member_is_skipped_and_deep_crit_is_still_refused() {
    // As deep as the header's size cap allows.
    let header = format!(r#"{{"alg":"HS256","x":{}}}"#, nested(400));
    assert!(check(&hs256_with_header(&header)).is_ok());
    let header = format!(r#"{{"alg":"HS256","crit":{}}}"#, nested(400));
    assert_eq!(check(&hs256_with_header(&header)), Err(JwtError::Crit));
}

/// The header is read before the signature is checked: a header of many
/// members is refused by its size before it is decoded, and one within
/// the size by its member count as soon as the count is passed.
#[test]
fn oversized_headers_are_refused_in_bounded_work() {
    let members = |count: usize| -> String {
        let extra: String = (0..count).map(|i| format!(r#","{i:x}":0"#)).collect();
        format!(r#"{{"alg":"HS256"{extra}}}"#)
    };
    // The header found from outside: ~790 members, ~8 100 bytes.
    let (segment, reason) = json_error(check(&hs256_with_header(&members(790))));
    assert_eq!(segment, Segment::Header);
    assert_eq!(reason, format!("longer than {MAX_HEADER_LEN} bytes"));

    let within_size = members(120);
    assert!(within_size.len() <= MAX_HEADER_LEN, "{}", within_size.len());
    let (segment, reason) = json_error(check(&hs256_with_header(&within_size)));
    assert_eq!(segment, Segment::Header);
    // serde_json names the column where parsing stopped: at the member
    // past the cap, not at the end of the header.
    let column: usize = reason.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        reason.starts_with(&format!("more than {MAX_HEADER_MEMBERS} members")),
        "{reason}"
    );
    assert!(column < members(MAX_HEADER_MEMBERS + 1).len(), "{reason}");

    // Real headers fit with room to spare.
    let real = r#"{"alg":"HS256","typ":"at+jwt","kid":"2024-rotation-key-0001","cty":"JWT","x5t":"dGhpcyBpcyBhIFNIQTEgdGh1bWJwcmludA","x5t#S256":"dGhpcyBpcyBhIFNIQTI1NiB0aHVtYnByaW50IG9mIDMyIGJ5dGVz","jku":"https://issuer.example.com/.well-known/jwks.json","x5u":"https://issuer.example.com/certs/signing.pem","zip":"DEF","b64":true}"#;
    let signer = key(Some("2024-rotation-key-0001"), Alg::HS256, SECRET_256);
    let token = sign(&signer, real, &claims(""));
    let keys = KeySet::new(vec![signer]);
    assert!(verify(&token, &keys, &Validation::default(), NOW).is_ok());
}

// -------------------------------------------------------- NumericDate

#[test]
fn numeric_date_of_the_wrong_type_is_an_invalid_claim_never_absent() {
    let exp = NOW + HOUR;
    for claim in ["exp", "nbf", "iat"] {
        for value in [
            format!(r#""{NOW}""#),
            "true".to_owned(),
            "false".to_owned(),
            "null".to_owned(),
            format!("[{exp}]"),
            "[]".to_owned(),
            format!(r#"{{"t":{exp}}}"#),
            "-9007199254740993".to_owned(),
            "-1e300".to_owned(),
            "-1.0e16".to_owned(),
            "9007199254740993".to_owned(),
            "9223372036854775808".to_owned(),
            "18446744073709551616".to_owned(),
            "1e20".to_owned(),
            "1e300".to_owned(),
        ] {
            // exp stays valid unless it is the claim under test.
            let payload = match claim {
                "exp" => format!(r#"{{"exp":{value}}}"#),
                _ => format!(r#"{{"exp":{exp},"{claim}":{value}}}"#),
            };
            assert_eq!(
                check(&hs256(&payload)),
                Err(invalid_claim(claim, NOT_A_NUMERIC_DATE)),
                "{payload}"
            );
        }
    }
}

#[test]
fn numeric_date_overflowing_f64_is_an_invalid_claim() {
    // Read from its decimal text, 1e400 is simply beyond 2^53.
    for claim in ["exp", "nbf", "iat"] {
        for value in ["1e400", "-1e400"] {
            let payload = match claim {
                "exp" => format!(r#"{{"exp":{value}}}"#),
                _ => format!(r#"{{"exp":{},"{claim}":{value}}}"#, NOW + HOUR),
            };
            assert_eq!(
                check(&hs256(&payload)),
                Err(invalid_claim(claim, NOT_A_NUMERIC_DATE)),
                "{payload}"
            );
        }
    }
}

#[test]
fn missing_exp_is_rejected_when_required() {
    assert_eq!(
        check(&hs256(r#"{"sub":"alice"}"#)),
        Err(JwtError::MissingClaim {
            claim: "exp".to_owned()
        })
    );
    assert_eq!(
        check(&hs256("{}")),
        Err(JwtError::MissingClaim {
            claim: "exp".to_owned()
        })
    );
}

#[test]
fn every_required_claim_must_be_present() {
    let validation = Validation {
        required: vec!["exp".to_owned(), "jti".to_owned(), "sub".to_owned()],
        ..Validation::default()
    };
    assert_eq!(
        check_with(&hs256(&claims("")), &validation),
        Err(JwtError::MissingClaim {
            claim: "jti".to_owned()
        })
    );
    assert!(check_with(&hs256(&claims(r#","jti":"x""#)), &validation).is_ok());
}

#[test]
fn required_claims_of_any_name_are_found_and_the_first_missing_is_named() {
    // Registered claims, the configured user and role claims (here `uid`
    // and `iss`: a slot name reused), and names the verifier never reads,
    // short and long.
    let validation = Validation {
        required: ["exp", "uid", "iss", "tenant", "organization_id", "nbf"]
            .map(str::to_owned)
            .to_vec(),
        user_claim: "uid".into(),
        role_claim: "iss".into(),
        ..Validation::default()
    };
    let all = r#","uid":"7","iss":"admin","tenant":"t","organization_id":1,"nbf":0"#;
    let verified = check_with(&hs256(&claims(all)), &validation).unwrap();
    assert_eq!(verified.user.as_deref(), Some("7"));
    assert_eq!(verified.roles, Roles::of(&["admin"]));
    for (missing, without) in [
        (
            "uid",
            r#","iss":"admin","tenant":"t","organization_id":1,"nbf":0"#,
        ),
        ("tenant", r#","uid":"7","iss":"admin","organization_id":1"#),
        (
            "organization_id",
            r#","uid":"7","iss":"admin","tenant":"t","nbf":0"#,
        ),
        (
            "nbf",
            r#","uid":"7","iss":"admin","tenant":"t","organization_id":1"#,
        ),
    ] {
        assert_eq!(
            check_with(&hs256(&claims(without)), &validation),
            Err(JwtError::MissingClaim {
                claim: missing.to_owned()
            }),
            "{without}"
        );
    }
    // Present with the wrong type is present: refused as invalid, not missing.
    let bad_nbf = r#","uid":"7","iss":"admin","tenant":"t","organization_id":1,"nbf":"0""#;
    assert!(matches!(
        check_with(&hs256(&claims(bad_nbf)), &validation),
        Err(JwtError::InvalidClaim { claim, .. }) if claim == "nbf"
    ));
}

#[test]
fn expired_token_is_rejected_after_leeway() {
    let exp = NOW - 31;
    assert_eq!(
        check(&hs256(&format!(r#"{{"exp":{exp}}}"#))),
        Err(JwtError::Expired {
            exp,
            now: NOW,
            leeway: 30
        })
    );
}

#[test]
fn token_is_rejected_exactly_at_exp_plus_leeway() {
    let exp = NOW - 30;
    assert_eq!(
        check(&hs256(&format!(r#"{{"exp":{exp}}}"#))),
        Err(JwtError::Expired {
            exp,
            now: NOW,
            leeway: 30
        })
    );
}

#[test]
fn token_is_accepted_one_second_before_exp_plus_leeway() {
    let exp = NOW - 29;
    assert_eq!(
        check(&hs256(&format!(r#"{{"exp":{exp}}}"#))).unwrap().exp,
        Some(exp)
    );
}

#[test]
fn huge_leeway_does_not_overflow() {
    let validation = Validation {
        leeway: i64::MAX,
        ..Validation::default()
    };
    let token = hs256(&format!(
        r#"{{"exp":{},"nbf":{},"iat":{}}}"#,
        NOW - HOUR,
        NOW + HOUR,
        NOW + HOUR
    ));
    assert!(check_with(&token, &validation).is_ok());
}

#[test]
fn nbf_beyond_leeway_is_not_yet_valid() {
    let nbf = NOW + 31;
    assert_eq!(
        check(&hs256(&claims(&format!(r#","nbf":{nbf}"#)))),
        Err(JwtError::NotYetValid {
            nbf,
            now: NOW,
            leeway: 30
        })
    );
}

#[test]
fn nbf_exactly_at_leeway_is_accepted() {
    assert!(check(&hs256(&claims(&format!(r#","nbf":{}"#, NOW + 30)))).is_ok());
    assert!(check(&hs256(&claims(&format!(r#","nbf":{}"#, NOW - HOUR)))).is_ok());
}

#[test]
fn iat_in_the_future_beyond_leeway_is_rejected() {
    let iat = NOW + 31;
    assert_eq!(
        check(&hs256(&claims(&format!(r#","iat":{iat}"#)))),
        Err(JwtError::IssuedInFuture {
            iat,
            now: NOW,
            leeway: 30
        })
    );
}

#[test]
fn iat_within_leeway_or_in_the_past_is_accepted() {
    for iat in [NOW + 30, NOW, NOW - HOUR] {
        assert!(
            check(&hs256(&claims(&format!(r#","iat":{iat}"#)))).is_ok(),
            "{iat}"
        );
    }
}

// ------------------------------------------------------ issuer, audience

fn with_issuers() -> Validation {
    Validation {
        issuers: vec!["https://idp.example".to_owned(), "other".to_owned()],
        ..Validation::default()
    }
}

fn with_audiences() -> Validation {
    Validation {
        audiences: vec!["api".to_owned(), "admin-api".to_owned()],
        ..Validation::default()
    }
}

#[test]
fn configured_issuer_is_accepted() {
    let token = hs256(&claims(r#","iss":"other""#));
    assert!(check_with(&token, &with_issuers()).is_ok());
}

#[test]
fn issuer_mismatch_is_rejected() {
    for iss in [
        r#""https://evil.example""#,
        r#""HTTPS://IDP.EXAMPLE""#,
        r#""""#,
        r#""other ""#,
    ] {
        let token = hs256(&claims(&format!(r#","iss":{iss}"#)));
        assert_eq!(
            check_with(&token, &with_issuers()),
            Err(JwtError::BadIssuer),
            "{iss}"
        );
    }
}

#[test]
fn issuer_of_the_wrong_type_is_an_invalid_claim() {
    for iss in ["1", "null", "true", r#"["other"]"#, r#"{"iss":"other"}"#] {
        let token = hs256(&claims(&format!(r#","iss":{iss}"#)));
        assert_eq!(
            check_with(&token, &with_issuers()),
            Err(invalid_claim("iss", NOT_A_STRING)),
            "{iss}"
        );
    }
}

#[test]
fn missing_issuer_is_rejected_when_issuers_are_configured() {
    assert_eq!(
        check_with(&hs256(&claims("")), &with_issuers()),
        Err(JwtError::MissingClaim {
            claim: "iss".to_owned()
        })
    );
}

#[test]
fn audience_string_matching_a_configured_audience_is_accepted() {
    let token = hs256(&claims(r#","aud":"admin-api""#));
    assert!(check_with(&token, &with_audiences()).is_ok());
}

#[test]
fn audience_array_containing_a_configured_audience_is_accepted() {
    let token = hs256(&claims(r#","aud":["billing","api"]"#));
    assert!(check_with(&token, &with_audiences()).is_ok());
}

#[test]
fn audience_mismatch_is_rejected() {
    for aud in [
        r#""billing""#,
        r#"["billing","API"]"#,
        "[]",
        r#""api,admin-api""#,
    ] {
        let token = hs256(&claims(&format!(r#","aud":{aud}"#)));
        assert_eq!(
            check_with(&token, &with_audiences()),
            Err(JwtError::BadAudience),
            "{aud}"
        );
    }
}

#[test]
fn audience_of_the_wrong_type_is_an_invalid_claim() {
    for aud in [
        "5",
        r#"["api",5]"#,
        r#"[["api"]]"#,
        "null",
        r#"{"api":true}"#,
    ] {
        let token = hs256(&claims(&format!(r#","aud":{aud}"#)));
        assert_eq!(
            check_with(&token, &with_audiences()),
            Err(invalid_claim("aud", NOT_STRINGS)),
            "{aud}"
        );
    }
}

#[test]
fn missing_audience_is_rejected_when_audiences_are_configured() {
    assert_eq!(
        check_with(&hs256(&claims("")), &with_audiences()),
        Err(JwtError::MissingClaim {
            claim: "aud".to_owned()
        })
    );
}

// ----------------------------------------------------- forwarded values

fn with_sub(sub: &str) -> String {
    hs256(&format!(r#"{{"exp":{},"sub":{sub}}}"#, NOW + HOUR))
}

/// Any string is a user: what is not header-safe is percent-encoded when
/// forwarded (`headers::encode_value`), never a reason to refuse the token.
#[test]
fn user_that_is_not_header_safe_is_carried_decoded() {
    for (sub, user) in [
        (r#""alice\r\nX-Admin: true""#, "alice\r\nX-Admin: true"),
        (r#""al\u0000ice""#, "al\0ice"),
        (r#""älice""#, "älice"),
        (r#""al\u00e9ce""#, "alœce".replace('œ', "é").as_str()),
        (r#"" alice ""#, " alice "),
        (r#""""#, ""),
    ] {
        assert_eq!(
            check(&with_sub(sub)).unwrap().user.as_deref(),
            Some(user),
            "{sub}"
        );
    }
}

#[test]
fn user_that_is_not_a_string_or_integer_is_an_invalid_claim() {
    for sub in [
        r#"{"id":"alice"}"#,
        r#"["alice"]"#,
        "4.2",
        "1e3",
        "true",
        "null",
    ] {
        assert_eq!(
            check(&with_sub(sub)),
            Err(invalid_claim("sub", NOT_A_USER_ID)),
            "{sub}"
        );
    }
}

/// Okta groups such as `Développeurs` or `CN=Admins,OU=…` are roles like
/// any other: decoded here, encoded one way in `X-Role`.
#[test]
fn role_that_is_not_header_safe_is_carried_decoded() {
    for (role, roles) in [
        (r#""admin,user""#, &["admin,user"][..]),
        (
            r#"["reader","CN=Admins,OU=x"]"#,
            &["reader", "CN=Admins,OU=x"],
        ),
        (
            r#"["reader","admin\r\nX: y"]"#,
            &["reader", "admin\r\nX: y"],
        ),
        (r#""Développeurs""#, &["Développeurs"]),
        (r#"[" admin",""]"#, &[" admin", ""]),
    ] {
        let token = hs256(&claims(&format!(r#","role":{role}"#)));
        assert_eq!(check(&token).unwrap().roles, Roles::of(roles), "{role}");
    }
}

#[test]
fn role_that_is_not_a_string_or_strings_is_an_invalid_claim() {
    for role in [
        "1",
        r#"["admin",1]"#,
        r#"{"admin":true}"#,
        "null",
        r#"[["admin"]]"#,
    ] {
        let token = hs256(&claims(&format!(r#","role":{role}"#)));
        assert_eq!(
            check(&token),
            Err(invalid_claim("role", NOT_STRINGS)),
            "{role}"
        );
    }
}

// ----------------------------------------------------------- property

/// xorshift64*: deterministic, so a failure names its seed and iteration.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Characters that reach deep into the verifier: the base64url alphabet, the
/// dot, and the usual troublemakers.
const TOKEN_CHARS: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_......=+/ \t\r\n\0";

fn random_string(rng: &mut Rng) -> String {
    let len = rng.below(200);
    match rng.below(3) {
        // Arbitrary bytes, made into a str the way a header value would be.
        0 => {
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        // Printable ASCII.
        1 => (0..len)
            .map(|_| char::from(0x20 + rng.below(0x5f) as u8))
            .collect(),
        // Token-shaped noise.
        _ => (0..len)
            .map(|_| char::from(rng.pick(TOKEN_CHARS)))
            .collect(),
    }
}

fn mutate(rng: &mut Rng, token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        let ch = match rng.below(4) {
            0 => rng.pick(TOKEN_CHARS),
            _ => rng.pick(BASE64URL_ALPHABET),
        };
        match rng.below(3) {
            0 if at < bytes.len() => bytes[at] = ch,
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, ch),
        }
    }
    // Every byte written is ASCII, so the result is still UTF-8.
    String::from_utf8(bytes).unwrap()
}

#[test]
fn random_and_mutated_tokens_never_panic_and_never_verify() {
    let valid = hs256(&claims(r#","role":["reader","writer"],"iat":1699999000"#));
    assert!(check(&valid).is_ok());
    let keys = hs256_keys();
    let validation = Validation::default();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..20_000 {
        let candidate = match i % 2 {
            0 => random_string(&mut rng),
            _ => mutate(&mut rng, &valid),
        };
        let result = verify(&candidate, &keys, &validation, NOW);
        assert!(
            result.is_err() || candidate == valid,
            "iteration {i}: {candidate:?} verified as {result:?}"
        );
    }
}

#[test]
fn signed_random_payloads_never_panic_and_only_yield_header_safe_identities() {
    // Correctly signed noise reaches the claims parser; whatever it accepts
    // must still satisfy the forwarding invariants.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"exp\"",
        "\"nbf\"",
        "\"iat\"",
        "\"sub\"",
        "\"role\"",
        "\"iss\"",
        "\"aud\"",
        "\"x\"",
        "\"a,b\"",
        "\"\\n\"",
        "\"\\u0000\"",
        "\"ok\"",
        "1",
        "-1",
        "1.5",
        "1e400",
        "9007199254740993",
        "1800000000",
        "null",
        "true",
        " ",
    ];
    let signer = key(None, Alg::HS256, SECRET_256);
    let keys = hs256_keys();
    let validation = Validation::default();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut accepted = 0;
    for _ in 0..5_000 {
        let mut payload = String::from("{\"exp\":1800000000");
        for _ in 0..rng.below(16) {
            payload.push_str(rng.pick(PIECES));
        }
        if rng.below(2) == 0 {
            payload.push('}');
        }
        let token = sign(&signer, HS256_HEADER, &payload);
        if let Ok(verified) = verify(&token, &keys, &validation, NOW) {
            accepted += 1;
            // Whatever the claims hold, the forwarded values are valid
            // header values and list items split back exactly.
            let encode = |value: &str, item| crate::headers::encode_value(value, item).into_owned();
            if let Some(user) = &verified.user {
                assert!(
                    http::HeaderValue::from_str(&encode(user, false)).is_ok(),
                    "{payload}"
                );
            }
            for role in verified.roles.iter() {
                assert!(!encode(role, true).contains(','), "{payload}");
                assert!(
                    http::HeaderValue::from_str(&encode(role, true)).is_ok(),
                    "{payload}"
                );
            }
        }
    }
    assert!(
        accepted > 0,
        "the generator should reach the accepting path"
    );
}

#[test]
fn duplicate_after_many_members_is_still_a_payload_json_error() {
    // The first 16 names are remembered on the stack, later ones on the heap;
    // a duplicate is found on either side of that line.
    let many: String = (0..40).map(|i| format!(r#","c{i}":{i}"#)).collect();
    for dup in ["c3", "c30"] {
        let payload = claims(&format!(r#"{many},"{dup}":0"#));
        let (segment, reason) = json_error(check(&hs256(&payload)));
        assert_eq!(segment, Segment::Payload);
        assert!(reason.contains("duplicate"), "{dup}: {reason}");
    }
    assert!(check(&hs256(&claims(&many))).is_ok());
}

#[test]
fn large_payload_beyond_the_stack_buffer_verifies() {
    let filler = "x".repeat(3000);
    let payload = claims(&format!(r#","blob":"{filler}""#));
    assert!(check(&hs256(&payload)).is_ok());
    let payload = format!(r#"{{"exp":{},"blob":"{filler}","exp":1}}"#, NOW + HOUR);
    let (segment, _) = json_error(check(&hs256(&payload)));
    assert_eq!(segment, Segment::Payload);
}

#[test]
fn a_remembered_header_does_not_excuse_a_different_one() {
    // The last accepted header segment is remembered per thread; a token with
    // another header must be parsed and checked in full.
    assert!(check(&hs256(&claims(""))).is_ok());
    let crit = hs256_with_header(r#"{"alg":"HS256","crit":["exp"]}"#);
    assert_eq!(check(&crit), Err(JwtError::Crit));
    let none = hs256_with_header(r#"{"alg":"none"}"#);
    assert!(matches!(check(&none), Err(JwtError::UnsupportedAlg { .. })));
    assert!(check(&hs256(&claims(""))).is_ok());
    assert!(check(&hs256(&claims(""))).is_ok());
}

#[test]
fn jti_and_iat_are_carried_for_revocation_checks() {
    let token = hs256(&claims(&format!(r#","jti":"t-1","iat":{}"#, NOW - 60)));
    let verified = check(&token).unwrap();
    assert_eq!(verified.jti.as_deref(), Some("t-1"));
    assert_eq!(verified.iat, Some(NOW - 60));
    let numeric_jti = hs256(&claims(r#","jti":7"#));
    assert_eq!(
        check(&numeric_jti),
        Err(JwtError::InvalidClaim {
            claim: "jti".to_owned(),
            problem: "is not a string"
        })
    );
}

/// Claim sets as issuers print them: each claim the verifier reads (with
/// `uid` and `x` as configured user and role claims) is mostly of its
/// type, sometimes of another shape, other members come and go, in any
/// order, printed compactly or pretty.
fn claim_sets() -> impl Strategy<Value = String> {
    use serde_json::{Value, json};
    let text = || "[a-zA-Z0-9 ,./:_é-]{0,10}".prop_map(Value::String);
    let texts = || prop::collection::vec(text(), 0..4).prop_map(Value::Array);
    let any_shape = || {
        prop_oneof![
            text(),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e10f64..1e10).prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            texts(),
            Just(json!([1, "a"])),
            Just(json!({"a": 1})),
        ]
    };
    let date = || {
        prop_oneof![
            24 => (0i64..4_000_000_000).prop_map(Value::from),
            2 => (MAX_NUMERIC_DATE - 1..=MAX_NUMERIC_DATE + 1).prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any_shape(),
        ]
        .boxed()
    };
    let string = || prop_oneof![24 => text(), 1 => any_shape()].boxed();
    let strings = || prop_oneof![12 => text(), 12 => texts(), 1 => any_shape()].boxed();
    let user = || {
        let id = prop_oneof![(0u64..1_000_000), any::<u64>(), Just(u64::MAX)];
        prop_oneof![12 => text(), 12 => id.prop_map(Value::from), 1 => any_shape()].boxed()
    };
    let members: Vec<(&str, BoxedStrategy<Value>)> = vec![
        ("exp", date()),
        ("nbf", date()),
        ("iat", date()),
        ("iss", string()),
        ("jti", string()),
        ("aud", strings()),
        ("sub", user()),
        ("uid", user()),
        ("role", strings()),
        ("x", strings()),
        ("preferred_username", string()),
    ];
    let members: Vec<_> = members
        .into_iter()
        .map(|(name, value)| prop::option::weighted(0.6, value.prop_map(move |v| (name, v))))
        .collect();
    let members = members.prop_map(|members| members.into_iter().flatten().collect::<Vec<_>>());
    (members.prop_shuffle(), any::<bool>()).prop_map(|(members, pretty)| {
        let object: serde_json::Map<String, Value> = (members.into_iter())
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        match pretty {
            true => serde_json::to_string_pretty(&object).unwrap(),
            false => serde_json::to_string(&object).unwrap(),
        }
    })
}

/// What the verifier's reading of a claim set should be, modelled on a
/// `serde_json::Value` (the generated numbers are exact as `f64` too).
type Reading = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<Vec<String>>,
    Option<String>,
    Vec<String>,
    Option<String>,
);

fn reference_reading(json: &str, validation: &Validation) -> Result<Reading, JwtError> {
    use serde_json::Value;
    let object: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
    if let Some(claim) = (validation.required.iter()).find(|c| !object.contains_key(*c)) {
        return Err(JwtError::MissingClaim {
            claim: claim.clone(),
        });
    }
    fn read<T>(
        object: &serde_json::Map<String, Value>,
        claim: &str,
        convert: impl Fn(&Value) -> Option<T>,
        problem: &'static str,
    ) -> Result<Option<T>, JwtError> {
        match object.get(claim) {
            None => Ok(None),
            Some(value) => convert(value)
                .map(Some)
                .ok_or_else(|| invalid_claim(claim, problem)),
        }
    }
    let date = |round: fn(f64) -> f64| {
        move |value: &Value| {
            let seconds = match value {
                Value::Number(n) if n.is_f64() => Some(round(n.as_f64()?) as i64),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            seconds.filter(|s| s.abs() <= MAX_NUMERIC_DATE)
        }
    };
    let string = |value: &Value| value.as_str().map(str::to_owned);
    let strings = |value: &Value| match value {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(all) => all.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    };
    let exp = read(&object, "exp", date(f64::floor), NOT_A_NUMERIC_DATE)?;
    let nbf = read(&object, "nbf", date(f64::ceil), NOT_A_NUMERIC_DATE)?;
    let iat = read(&object, "iat", date(f64::floor), NOT_A_NUMERIC_DATE)?;
    let iss = read(&object, "iss", string, NOT_A_STRING)?;
    let aud = read(&object, "aud", strings, NOT_STRINGS)?;
    let user_claim = &validation.user_claim.to_string();
    let user = match object.get(user_claim) {
        None => None,
        Some(Value::String(user)) => Some(user.clone()),
        Some(Value::Number(n)) if !n.is_f64() => Some(n.to_string()),
        Some(_) => return Err(invalid_claim(user_claim, NOT_A_USER_ID)),
    };
    let role_claim = &validation.role_claim.to_string();
    let roles = read(&object, role_claim, strings, NOT_STRINGS)?.unwrap_or_default();
    let jti = read(&object, "jti", string, NOT_A_STRING)?;
    Ok((exp, nbf, iat, iss, aud, user, roles, jti))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// The verifier's reading and a `serde_json::Value` model of it give
    /// the same claims, or the same refusal, for any claim set and any
    /// claim configuration.
    #[test]
    fn claims_are_read_as_a_serde_json_value_model_reads_them(
        json in claim_sets(),
        config in 0..5,
    ) {
        let validation = match config {
            0 => Validation::default(),
            1 => Validation { required: vec![], ..Validation::default() },
            2 => Validation {
                required: vec!["exp".into(), "iss".into(), "preferred_username".into()],
                user_claim: "uid".into(),
                role_claim: "x".into(),
                ..Validation::default()
            },
            // Configured claims that are registered ones too.
            3 => Validation {
                user_claim: "iss".into(),
                role_claim: "aud".into(),
                ..Validation::default()
            },
            _ => Validation {
                user_claim: "jti".into(),
                role_claim: "sub".into(),
                ..Validation::default()
            },
        };
        let ours = parse_claims(&json, &validation).map(|claims| {
            let aud = (claims.aud).map(|aud| aud.into_iter().map(|a| a.0.into_owned()).collect());
            let iss = claims.iss.map(|iss| iss.into_owned());
            let (exp, nbf, iat, user, jti) = (claims.exp, claims.nbf, claims.iat, claims.user, claims.jti);
            (exp, nbf, iat, iss, aud, user, claims.roles.iter().map(str::to_owned).collect(), jti)
        });
        prop_assert_eq!(ours, reference_reading(&json, &validation), "{}", json);
    }
}

// ------------------------------------------------------------ claim set

#[test]
fn any_claim_is_found_at_its_path_whatever_its_name_holds() {
    let payload = r#"{"exp":1800000000,"realm_access":{"roles":["admin","user"]},
        "resource_access":{"api":{"roles":["reader"]},"web":{"roles":[]}},
        "https://example.com/roles":["ops"],"cognito:groups":["g"],
        "kubernetes.io":{"namespace":"prod"},"kubernetes.io.namespace":"decoy",
        "\u0065sc":"escaped name","nested":{"a":{"a":1,"a":2}},"sub":"alice"}"#;
    let claims = check(&hs256(payload)).unwrap().claims;
    assert_eq!(
        claims.get(&["realm_access", "roles"]),
        Some(r#"["admin","user"]"#)
    );
    assert_eq!(
        claims.get(&["resource_access", "api", "roles"]),
        Some(r#"["reader"]"#)
    );
    assert_eq!(
        claims.get(&["https://example.com/roles"]),
        Some(r#"["ops"]"#)
    );
    assert_eq!(claims.get(&["cognito:groups"]), Some(r#"["g"]"#));
    assert_eq!(
        claims.get(&["kubernetes.io", "namespace"]),
        Some(r#""prod""#)
    );
    assert_eq!(claims.get(&["kubernetes.io.namespace"]), Some(r#""decoy""#));
    assert_eq!(claims.get(&["esc"]), Some(r#""escaped name""#));
    assert_eq!(claims.get(&["sub"]), Some(r#""alice""#));
    assert_eq!(
        claims.get(&["realm_access", "roles", "0"]),
        None,
        "not an object"
    );
    assert_eq!(claims.get(&["resource_access", "nope", "roles"]), None);
    assert_eq!(
        claims.get(&["nested", "a", "a"]),
        None,
        "a repeated nested name"
    );
    assert_eq!(claims.get::<&str>(&[]), None);
}
