//! Key-level tests: RFC known answers, PEM/certificate loading, key-size
//! rules, and algorithm confusion. Keys are generated at test time (ring,
//! or the `openssl` command for RSA and PEM files); none is committed. The
//! RFC appendix keys are public test data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use super::*;
use crate::jwt::{self, JwtError, Segment, Validation};

fn b64d(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7515 A.1–A.3 share one payload, which expires at this instant.
const RFC_EXP: i64 = 1_300_819_380;

const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_E: &str = "AQAB";
const A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

/// RFC 8037 A.4: the payload is the text "Example of Ed25519 signing".
const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const ED_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn rfc_validation() -> Validation {
    Validation {
        issuers: vec!["joe".to_owned()],
        ..Validation::default()
    }
}

fn a2_key() -> Key {
    Key::rsa(None, Alg::RS256, &b64d(A2_N), &b64d(A2_E)).unwrap()
}

fn a3_key() -> Key {
    Key::ec(None, Alg::ES256, &b64d(A3_X), &b64d(A3_Y)).unwrap()
}

fn a3_key_with_kid(kid: &str) -> Key {
    Key::ec(Some(kid.into()), Alg::ES256, &b64d(A3_X), &b64d(A3_Y)).unwrap()
}

fn split_signature(token: &str) -> (&str, Vec<u8>) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    (input, b64d(sig))
}

#[test]
fn rfc7515_a2_rs256_token_verifies_before_exp_and_expires_after() {
    let keys = KeySet::new(vec![a2_key()]);
    let verified = jwt::verify(A2_TOKEN, &keys, &rfc_validation(), RFC_EXP - 1).unwrap();
    assert_eq!(verified.alg, Alg::RS256);
    assert!(matches!(
        jwt::verify(A2_TOKEN, &keys, &rfc_validation(), RFC_EXP + 31),
        Err(JwtError::Expired { .. })
    ));
}

#[test]
fn rfc7515_a2_signature_with_one_bit_flipped_is_refused() {
    let (input, mut sig) = split_signature(A2_TOKEN);
    assert!(a2_key().verify(input.as_bytes(), &sig));
    sig[10] ^= 1;
    assert!(!a2_key().verify(input.as_bytes(), &sig));
    let keys = KeySet::new(vec![a2_key()]);
    let token = format!("{input}.{}", b64(&sig));
    assert_eq!(
        jwt::verify(&token, &keys, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn rfc7515_a3_es256_token_verifies() {
    let keys = KeySet::new(vec![a3_key()]);
    let verified = jwt::verify(A3_TOKEN, &keys, &rfc_validation(), RFC_EXP - 1).unwrap();
    assert_eq!(verified.alg, Alg::ES256);
}

#[test]
fn ecdsa_signature_with_zero_or_out_of_range_r_or_s_is_refused() {
    let (input, sig) = split_signature(A3_TOKEN);
    let key = a3_key();
    // P-256 group order n.
    let order: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let (r, s) = sig.split_at(32);
    for (r, s) in [
        (&[0u8; 32][..], s),
        (r, &[0u8; 32][..]),
        (&order[..], s),
        (r, &order[..]),
        (&[0xffu8; 32][..], s),
    ] {
        let forged = [r, s].concat();
        assert!(!key.verify(input.as_bytes(), &forged));
    }
    // The ASN.1 DER form is not the JOSE form and is refused by length.
    let keys = KeySet::new(vec![a3_key()]);
    let der_like = format!(
        "{input}.{}",
        b64([&[0x30, 0x44, 0x02, 0x20][..], r, &[0x02, 0x20], s].concat())
    );
    assert_eq!(
        jwt::verify(&der_like, &keys, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn rfc8037_a4_ed25519_signature_verifies() {
    let key = Key::ed25519(None, Alg::EdDSA, &b64d(ED_X)).unwrap();
    let (input, sig) = split_signature(ED_TOKEN);
    assert!(key.verify(input.as_bytes(), &sig));
    // Through the verifier: the signature passes, then the payload (plain
    // text in the RFC, not claims) is refused as JSON.
    let keys = KeySet::new(vec![key]);
    assert!(matches!(
        jwt::verify(ED_TOKEN, &keys, &Validation::default(), 0),
        Err(JwtError::Json {
            segment: Segment::Payload,
            ..
        })
    ));
}

// ------------------------------------------------------- independent signers

fn now() -> i64 {
    1_700_000_000
}

fn claims() -> String {
    format!(r#"{{"sub":"42","exp":{}}}"#, now() + 600)
}

fn sign_with(alg: Alg, header_kid: Option<&str>, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = match header_kid {
        Some(kid) => format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#),
        None => format!(r#"{{"alg":"{alg}"}}"#),
    };
    let input = format!("{}.{}", b64(header), b64(claims()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(sig))
}

#[test]
fn es256_token_from_a_generated_key_verifies_and_a_tampered_one_does_not() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let key = Key::ec(Some("e".into()), Alg::ES256, &point[1..33], &point[33..]).unwrap();
    let keys = KeySet::new(vec![key]);
    let token = sign_with(Alg::ES256, Some("e"), |m| {
        pair.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    assert!(jwt::verify(&token, &keys, &Validation::default(), now()).is_ok());
    let tampered = crate::token::tamper(&token, |c| {
        c.insert("sub".into(), "43".into());
    })
    .unwrap();
    assert_eq!(
        jwt::verify(&tampered, &keys, &Validation::default(), now()),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn eddsa_token_from_a_generated_key_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = Key::ed25519(None, Alg::EdDSA, pair.public_key().as_ref()).unwrap();
    let keys = KeySet::new(vec![key]);
    let token = sign_with(Alg::EdDSA, None, |m| pair.sign(m).as_ref().to_vec());
    assert!(jwt::verify(&token, &keys, &Validation::default(), now()).is_ok());
}

/// A scratch directory for generated key files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jwtgate-keys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command generates test keys");
    assert!(status.success(), "openssl {args:?}");
}

/// Generates an RSA key of `bits`; returns (private PKCS#8 PEM, public SPKI PEM).
fn rsa_pem(dir: &std::path::Path, bits: u32) -> (Vec<u8>, Vec<u8>) {
    let bits_opt = format!("rsa_keygen_bits:{bits}");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            &bits_opt,
            "-out",
            "rsa.key",
        ],
    );
    openssl(
        dir,
        &["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"],
    );
    (
        std::fs::read(dir.join("rsa.key")).unwrap(),
        std::fs::read(dir.join("rsa.pub")).unwrap(),
    )
}

#[test]
fn rsa_pem_public_key_verifies_rs_and_ps_tokens_signed_by_its_private_key() {
    let dir = scratch("rsa");
    let (private, public) = rsa_pem(&dir, 2048);
    for alg in [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ] {
        let signer = crate::token::Signer::from_pem(None, alg, &private).unwrap();
        let key = Key::from_pem(None, alg, &public).unwrap();
        let keys = KeySet::new(vec![key]);
        let token = sign_with(alg, None, |m| signer.sign(m).unwrap());
        assert!(
            jwt::verify(&token, &keys, &Validation::default(), now()).is_ok(),
            "{alg}"
        );
        // Same key, other padding or hash: refused.
        let other = if alg == Alg::RS256 {
            Alg::PS256
        } else {
            Alg::RS256
        };
        let other_keys = KeySet::new(vec![Key::from_pem(None, other, &public).unwrap()]);
        assert!(jwt::verify(&token, &other_keys, &Validation::default(), now()).is_err());
    }
}

#[test]
fn rsa_key_under_2048_bits_is_refused() {
    let dir = scratch("rsa1024");
    let (_, public) = rsa_pem(&dir, 1024);
    assert_eq!(
        Key::from_pem(None, Alg::RS256, &public).unwrap_err(),
        KeyError::RsaSize { bits: 1024 }
    );
    assert!(matches!(
        Key::rsa(None, Alg::RS256, &[0xff; 255], &[1, 0, 1]),
        Err(KeyError::RsaSize { bits: 2040 })
    ));
}

#[test]
fn certificate_pem_yields_its_subject_key() {
    let dir = scratch("cert");
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.key",
        ],
    );
    openssl(
        &dir,
        &[
            "req", "-x509", "-new", "-key", "ec.key", "-subj", "/CN=idp", "-days", "1", "-out",
            "ec.crt",
        ],
    );
    openssl(
        &dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ec.key", "-out", "ec.p8",
        ],
    );
    let cert = std::fs::read(dir.join("ec.crt")).unwrap();
    let key = Key::from_pem(Some("c".into()), Alg::ES256, &cert).unwrap();
    let signer = crate::token::Signer::from_pem(
        None,
        Alg::ES256,
        &std::fs::read(dir.join("ec.p8")).unwrap(),
    )
    .unwrap();
    let token = sign_with(Alg::ES256, None, |m| signer.sign(m).unwrap());
    let keys = KeySet::new(vec![key]);
    assert!(jwt::verify(&token, &keys, &Validation::default(), now()).is_ok());
    // The key type must fit the configured algorithm.
    assert!(matches!(
        Key::from_pem(None, Alg::ES384, &cert),
        Err(KeyError::WrongKeyType { .. })
    ));
    assert!(matches!(
        Key::from_pem(None, Alg::RS256, &cert),
        Err(KeyError::WrongKeyType { .. })
    ));
}

#[test]
fn ed25519_pem_public_key_is_read() {
    let dir = scratch("ed");
    openssl(
        &dir,
        &["genpkey", "-algorithm", "ED25519", "-out", "ed.key"],
    );
    openssl(
        &dir,
        &["pkey", "-in", "ed.key", "-pubout", "-out", "ed.pub"],
    );
    let signer = crate::token::Signer::from_pem(
        None,
        Alg::EdDSA,
        &std::fs::read(dir.join("ed.key")).unwrap(),
    )
    .unwrap();
    let key = Key::from_pem(
        None,
        Alg::EdDSA,
        &std::fs::read(dir.join("ed.pub")).unwrap(),
    )
    .unwrap();
    let token = sign_with(Alg::EdDSA, None, |m| signer.sign(m).unwrap());
    assert!(
        jwt::verify(
            &token,
            &KeySet::new(vec![key]),
            &Validation::default(),
            now()
        )
        .is_ok()
    );
}

// ------------------------------------------------------- algorithm confusion

/// The classic attack: the verifier holds an RSA public key; the attacker
/// signs an HS256 token using that public key's bytes as the HMAC secret.
#[test]
fn hs256_token_signed_with_the_public_key_bytes_is_refused() {
    let dir = scratch("confusion");
    let (_, public_pem) = rsa_pem(&dir, 2048);
    let public_der = {
        use rustls::pki_types::SubjectPublicKeyInfoDer;
        SubjectPublicKeyInfoDer::from_pem_slice(&public_pem)
            .unwrap()
            .to_vec()
    };
    let key = Key::from_pem(Some("rsa".into()), Alg::RS256, &public_pem).unwrap();
    let keys = KeySet::new(vec![key]);
    let jwk_json = format!(r#"{{"kty":"RSA","n":"{A2_N}","e":"AQAB"}}"#);
    for secret in [&public_pem[..], &public_der[..], jwk_json.as_bytes()] {
        let forger = Key::hmac(None, Alg::HS256, secret).unwrap();
        for kid in [Some("rsa"), None] {
            let token = sign_with(Alg::HS256, kid, |m| forger.sign(m));
            let err = jwt::verify(&token, &keys, &Validation::default(), now()).unwrap_err();
            assert!(
                matches!(
                    err,
                    JwtError::AlgMismatch { .. } | JwtError::AlgNotAllowed { .. }
                ),
                "{err:?}"
            );
        }
    }
    // And a public key cannot be configured for an HMAC algorithm at all.
    assert_eq!(
        Key::from_pem(None, Alg::HS256, &public_pem).unwrap_err(),
        KeyError::PublicKeyForHmac { alg: Alg::HS256 }
    );
    assert_eq!(
        Key::hmac(None, Alg::RS256, &public_pem).unwrap_err(),
        KeyError::SecretForPublicKeyAlg { alg: Alg::RS256 }
    );
}

#[test]
fn rs256_token_is_refused_by_an_ecdsa_key_with_the_same_kid() {
    let keys = KeySet::new(vec![
        Key::ec(Some("k".into()), Alg::ES256, &b64d(A3_X), &b64d(A3_Y)).unwrap(),
    ]);
    let token = A2_TOKEN.replacen(
        "eyJhbGciOiJSUzI1NiJ9",
        &b64(r#"{"alg":"RS256","kid":"k"}"#),
        1,
    );
    assert!(matches!(
        jwt::verify(&token, &keys, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::AlgMismatch { .. })
    ));
}

#[test]
fn key_bound_to_an_issuer_refuses_tokens_of_another_issuer() {
    let keys = KeySet::new(vec![a3_key().for_issuer(Some("someone-else".into()))]);
    assert!(matches!(
        jwt::verify(A3_TOKEN, &keys, &Validation::default(), RFC_EXP - 1),
        Err(JwtError::IssuerNotBound { .. })
    ));
    let keys = KeySet::new(vec![a3_key().for_issuer(Some("joe".into()))]);
    assert!(jwt::verify(A3_TOKEN, &keys, &Validation::default(), RFC_EXP - 1).is_ok());
}

/// One key set under two issuers (Google's two spellings, two Entra
/// tenants on the shared keys): the token of the second issuer is checked
/// against that issuer's copy of the key, not refused by the first's.
#[test]
fn issuers_sharing_a_key_each_get_their_own_tokens_accepted() {
    let keys = KeySet::new(vec![
        a3_key().for_issuer(Some("accounts.example".into())),
        a3_key().for_issuer(Some("joe".into())),
    ]);
    let verified = jwt::verify(A3_TOKEN, &keys, &Validation::default(), RFC_EXP - 1);
    assert!(verified.is_ok(), "{verified:?}");
    // Still refused when no key is bound to the token's issuer.
    let keys = KeySet::new(vec![
        a3_key().for_issuer(Some("accounts.example".into())),
        a3_key().for_issuer(Some("https://accounts.example".into())),
    ]);
    assert!(matches!(
        jwt::verify(A3_TOKEN, &keys, &Validation::default(), RFC_EXP - 1),
        Err(JwtError::IssuerNotBound { .. })
    ));
}

#[test]
fn unknown_kid_while_a_source_is_pending_is_unavailable_not_invalid() {
    let keys = KeySet::from_shared(vec![Arc::new(a3_key())], 1, 0);
    let token = A3_TOKEN.replacen(
        "eyJhbGciOiJFUzI1NiJ9",
        &b64(r#"{"alg":"ES256","kid":"new"}"#),
        1,
    );
    assert_eq!(
        jwt::verify(&token, &keys, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::KeysUnavailable { pending: 1 })
    );
    // The RFC token (no kid) still verifies with the loaded key.
    assert!(jwt::verify(A3_TOKEN, &keys, &rfc_validation(), RFC_EXP - 1).is_ok());
}

#[test]
fn known_kid_that_fails_while_a_source_is_pending_is_unavailable_not_invalid() {
    // A loaded source reuses kid "k" for another key; the pending source may
    // hold the real one, so neither a wrong signature nor a wrong algorithm
    // under that kid may decide the token yet.
    let other = Key::hmac(
        Some("k".into()),
        Alg::HS256,
        b"an HS256 secret of 32 bytes ....",
    )
    .unwrap();
    let keys = KeySet::from_shared(vec![Arc::new(a3_key_with_kid("k")), Arc::new(other)], 1, 0);
    let header = b64(r#"{"alg":"ES256","kid":"k"}"#);
    let token = A3_TOKEN.replacen("eyJhbGciOiJFUzI1NiJ9", &header, 1);
    assert_eq!(
        jwt::verify(&token, &keys, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::KeysUnavailable { pending: 1 })
    );
    let loaded = KeySet::from_shared(vec![Arc::new(a3_key_with_kid("k"))], 0, 0);
    assert_eq!(
        jwt::verify(&token, &loaded, &rfc_validation(), RFC_EXP - 1),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn hmac_token_is_never_unavailable_because_jwks_hold_no_secrets() {
    let secret = b"an HS256 secret of 32 bytes ....";
    let keys = KeySet::from_shared(
        vec![Arc::new(
            Key::hmac(Some("h".into()), Alg::HS256, secret).unwrap(),
        )],
        1,
        0,
    );
    let forger = Key::hmac(None, Alg::HS256, b"the attacker's own 32-byte key!!").unwrap();
    let forged = sign_with(Alg::HS256, None, |m| forger.sign(m));
    assert_eq!(
        jwt::verify(&forged, &keys, &Validation::default(), now()),
        Err(JwtError::BadSignature)
    );
    let unknown = sign_with(Alg::HS256, Some("nope"), |m| forger.sign(m));
    assert!(matches!(
        jwt::verify(&unknown, &keys, &Validation::default(), now()),
        Err(JwtError::UnknownKid { .. })
    ));
}

#[test]
fn ec_point_off_the_curve_is_refused_at_load() {
    let (x, y) = (b64d(A3_X), b64d(A3_Y));
    assert!(Key::ec(None, Alg::ES256, &x, &y).is_ok());
    let mut bent = y.clone();
    bent[31] ^= 1;
    assert!(matches!(
        Key::ec(None, Alg::ES256, &x, &bent),
        Err(KeyError::Malformed {
            what: "EC public point (not on the curve)"
        })
    ));
    // The point at infinity's stand-in and a P-256 point read as P-384.
    assert!(Key::ec(None, Alg::ES256, &[0; 32], &[0; 32]).is_err());
    let long = |v: &[u8]| [&[0u8; 16][..], v].concat();
    assert!(Key::ec(None, Alg::ES384, &long(&x), &long(&y)).is_err());
}

#[test]
fn a_private_key_of_the_wrong_curve_is_refused_in_words() {
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let err = crate::token::Signer::from_pem(None, Alg::ES256, p384.serialize_pem().as_bytes())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "cannot read the private key: not a ES256 key: it is a key of another type or curve"
    );
}

/// RFC 4231 §4.2, §4.3 and §4.7: test cases 1 (a 20-byte key), 2 (a key
/// shorter than the output) and 6 (a key longer than a block, hashed
/// first), for all three hashes. `Key::hmac` refuses secrets shorter than
/// the hash (RFC 7518 §3.2), so the short keys go through `PreparedMac`.
#[test]
fn rfc_4231_test_cases_1_2_and_6() {
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let cases: [(&[u8], &[u8], [&str; 3]); 3] = [
        (
            &[0x0b; 20],
            b"Hi There",
            [
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ],
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            [
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                 8e2240ca5e69e2c78b3239ecfab21649",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ],
        ),
        (
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            [
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                 0c2ef6ab4030fe8296248df163f44952",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ],
        ),
    ];
    for (secret, data, expected) in cases {
        for (alg, mac) in [Alg::HS256, Alg::HS384, Alg::HS512]
            .into_iter()
            .zip(expected)
        {
            let key = PreparedMac::new(alg, secret).unwrap();
            assert_eq!(hex(key.sign(data)), mac, "{alg}");
            assert!(key.verify(data, &key.sign(data)));
        }
    }
}

#[test]
fn hmac_verify_accepts_the_mac_and_nothing_else() {
    let key = Key::hmac(None, Alg::HS256, b"0123456789abcdef0123456789abcdef").unwrap();
    let message = b"eyJhbGciOiJIUzI1NiJ9.e30";
    let tag = key.sign(message);
    assert!(key.verify(message, &tag));
    for byte in 0..tag.len() {
        for bit in 0..8 {
            let mut forged = tag.clone();
            forged[byte] ^= 1 << bit;
            assert!(!key.verify(message, &forged), "byte {byte} bit {bit}");
        }
    }
    assert!(!key.verify(message, &tag[..31]));
    assert!(!key.verify(message, &[tag.as_slice(), &[0]].concat()));
    assert!(!key.verify(message, &[]));
    assert!(!key.verify(b"eyJhbGciOiJIUzI1NiJ9.e31", &tag));
}
