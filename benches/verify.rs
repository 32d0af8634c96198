//! `cargo bench --bench verify`: what verifying a token costs, with its
//! floor and its peer measured in the same run.
//!
//! - `jwtgate/HS256|HS384|HS512`: full `jwt::verify` (split, base64url,
//!   header, key lookup, HMAC, claims parse, exp/nbf/iat/iss/aud checks) of a
//!   realistic access token;
//! - `floor/hmac_sha256_prepared`: the bare HMAC-SHA256 of the same signing
//!   input with the key prepared once (what no verifier can beat);
//! - `jsonwebtoken/HS256`: `jsonwebtoken::decode` with equivalent validation
//!   (iss, aud, exp required) into a typical owned claims struct;
//! - `jwtgate/HS256_bad_signature`: a forged token, to show a refusal costs
//!   no more than an acceptance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789abcdef-0123456789abcdef!!";
const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://auth.example.com/";
const AUDIENCE: &str = "api.example.com";

fn claims() -> Map<String, Value> {
    let claims = json!({
        "iss": ISSUER,
        "sub": "42",
        "aud": AUDIENCE,
        "role": "user",
        "iat": NOW - 60,
        "exp": NOW + 900,
    });
    match claims {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn validation() -> Validation {
    Validation {
        issuers: vec![ISSUER.to_owned()],
        audiences: vec![AUDIENCE.to_owned()],
        ..Validation::default()
    }
}

/// The claims a typical jsonwebtoken user deserialises into.
#[allow(dead_code)]
#[derive(Deserialize)]
struct PeerClaims {
    sub: String,
    role: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

fn benches(c: &mut Criterion) {
    let validation = validation();
    let mut group = c.benchmark_group("verify");

    for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
        let key = Key::hmac(None, alg, SECRET).unwrap();
        let token = jwtgate::token::mint(&key, &claims());
        let keys = KeySet::new(vec![key]);
        assert!(jwt::verify(&token, &keys, &validation, NOW).is_ok());
        group.bench_function(format!("jwtgate/{alg}"), |b| {
            b.iter(|| jwt::verify(black_box(&token), &keys, &validation, NOW))
        });
    }

    let key = Key::hmac(None, Alg::HS256, SECRET).unwrap();
    let token = jwtgate::token::mint(&key, &claims());
    let keys = KeySet::new(vec![key]);
    eprintln!(
        "HS256 token: {} bytes, signing input {} bytes",
        token.len(),
        token.rfind('.').unwrap()
    );

    let signing_input = &token[..token.rfind('.').unwrap()];
    let prepared = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    group.bench_function("floor/hmac_sha256_prepared", |b| {
        b.iter(|| {
            prepared
                .clone()
                .chain_update(black_box(signing_input.as_bytes()))
                .finalize()
                .into_bytes()
        })
    });

    {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation as PeerValidation, decode};
        let key = DecodingKey::from_secret(SECRET).unwrap();
        let mut peer = PeerValidation::new(Algorithm::HS256);
        peer.set_issuer(&[ISSUER]);
        peer.set_audience(&[AUDIENCE]);
        peer.set_required_spec_claims(&["exp"]);
        peer.leeway = 30;
        // jsonwebtoken reads the clock itself; the token's window covers both.
        let live = {
            let now = jwtgate::gateway::unix_now();
            let mut c = claims();
            c.insert("iat".into(), json!(now - 60));
            c.insert("exp".into(), json!(now + 3600));
            jwtgate::token::mint(&Key::hmac(None, Alg::HS256, SECRET).unwrap(), &c)
        };
        assert!(decode::<PeerClaims>(&live, &key, &peer).is_ok());
        group.bench_function("jsonwebtoken/HS256", |b| {
            b.iter(|| decode::<PeerClaims>(black_box(&live), &key, &peer))
        });
    }

    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    // Flip the last signature character within the canonical alphabet
    // (its low bits are zero for a 32-byte MAC: use A/Q/g/w).
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    assert_eq!(
        jwt::verify(&forged, &keys, &validation, NOW),
        Err(jwt::JwtError::BadSignature)
    );
    group.bench_function("jwtgate/HS256_bad_signature", |b| {
        b.iter(|| jwt::verify(black_box(&forged), &keys, &validation, NOW))
    });
    group.finish();
}

criterion_group!(verify, benches);
criterion_main!(verify);
