//! `cargo bench --bench verify`: what verifying a token costs, with its
//! floor and its peer measured in the same run.
//!
//! - `jwtgate/HS256|HS384|HS512`: full `jwt::verify` (split, base64url,
//!   header, key lookup, HMAC, claims parse, exp/nbf/iat/iss/aud checks) of a
//!   realistic access token;
//! - `floor/hmac_sha256_prepared`: the bare HMAC-SHA256 of the same signing
//!   input with the key prepared once, by the `hmac` crate, which
//!   `jwt::verify` uses too: the floor of any HS256 verifier;
//! - `jsonwebtoken/HS256`: `jsonwebtoken::decode` with equivalent validation
//!   (iss, aud, exp required) into a typical owned claims struct;
//! - `jwtgate/HS256_bad_signature`: a forged token, to show a refusal costs
//!   no more than an acceptance;
//! - `jwtgate/hostile_header`: a header of ~790 members (~8 KiB), refused
//!   before any key is tried: what an unauthenticated client can make the
//!   gateway parse.
//!
//! - `jwtgate/HS256_keycloak` and `jwtgate/HS256_keycloak_two_rules`: a
//!   Keycloak-shaped token (roles at `realm_access.roles`, client roles and
//!   scopes beside them) verified with that role claim, and the same plus
//!   two route rules (a client role, a scope), as the gateway evaluates
//!   them after verification.
//!
//! Then the ratios the targets name (jsonwebtoken ÷ HS256, bad signature ÷
//! floor), HS256 ÷ floor and hostile header ÷ bad signature are measured
//! again in interleaved batches and printed as medians: see
//! [`paired_rounds`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};
use jwtgate::rules::{Check, ClaimRule};

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
    let floor = || {
        prepared
            .clone()
            .chain_update(black_box(signing_input.as_bytes()))
            .finalize()
            .into_bytes()
    };
    group.bench_function("floor/hmac_sha256_prepared", |b| b.iter(floor));

    use jsonwebtoken::{Algorithm, DecodingKey, Validation as PeerValidation, decode};
    let peer_key = DecodingKey::from_secret(SECRET).unwrap();
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
    assert!(decode::<PeerClaims>(&live, &peer_key, &peer).is_ok());
    let jsonwebtoken = || decode::<PeerClaims>(black_box(&live), &peer_key, &peer).is_ok();
    group.bench_function("jsonwebtoken/HS256", |b| b.iter(jsonwebtoken));

    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    // Flip the last signature character within the canonical alphabet
    // (its low bits are zero for a 32-byte MAC: use A/Q/g/w).
    forged.push(if last == 'A' { 'Q' } else { 'A' });
    assert_eq!(
        jwt::verify(&forged, &keys, &validation, NOW),
        Err(jwt::JwtError::BadSignature)
    );
    let bad_signature = || jwt::verify(black_box(&forged), &keys, &validation, NOW).is_err();
    group.bench_function("jwtgate/HS256_bad_signature", |b| b.iter(bad_signature));

    let members: String = (0..790).map(|i| format!(r#","{i:x}":0"#)).collect();
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256"{members}}}"#));
    let hostile = format!("{header}.e30.{}", &forged[forged.rfind('.').unwrap() + 1..]);
    assert!(matches!(
        jwt::verify(&hostile, &keys, &validation, NOW),
        Err(jwt::JwtError::Json { .. })
    ));
    let hostile_header = || jwt::verify(black_box(&hostile), &keys, &validation, NOW).is_err();
    group.bench_function("jwtgate/hostile_header", |b| b.iter(hostile_header));

    let keycloak = jwtgate::token::mint(
        &Key::hmac(None, Alg::HS256, SECRET).unwrap(),
        &keycloak_claims(),
    );
    let keycloak_validation = Validation {
        role_claim: jwt::ClaimPath(vec!["realm_access".into(), "roles".into()]),
        user_claim: "preferred_username".into(),
        ..validation.clone()
    };
    let rules = keycloak_rules();
    let verified = jwt::verify(&keycloak, &keys, &keycloak_validation, NOW).unwrap();
    assert!(rules.iter().all(|rule| rule.holds(&verified.claims)));
    let nested = || jwt::verify(black_box(&keycloak), &keys, &keycloak_validation, NOW).is_ok();
    let nested_rules = || {
        jwt::verify(black_box(&keycloak), &keys, &keycloak_validation, NOW)
            .is_ok_and(|verified| rules.iter().all(|rule| rule.holds(&verified.claims)))
    };
    group.bench_function("jwtgate/HS256_keycloak", |b| b.iter(nested));
    group.bench_function("jwtgate/HS256_keycloak_two_rules", |b| b.iter(nested_rules));
    group.finish();

    // `cargo bench` passes `--bench`; `cargo test --benches` runs each
    // benchmark once to check it and has no use for the rounds.
    if std::env::args().any(|arg| arg == "--bench") {
        let jwtgate = || jwt::verify(black_box(&token), &keys, &validation, NOW).is_ok();
        let times = paired_rounds(&mut [
            &mut |n| batch(jwtgate, n),
            &mut |n| batch(floor, n),
            &mut |n| batch(jsonwebtoken, n),
            &mut |n| batch(bad_signature, n),
            &mut |n| batch(hostile_header, n),
            &mut |n| batch(nested, n),
            &mut |n| batch(nested_rules, n),
        ]);
        let median = |a: usize, b: usize| {
            let mut ratios: Vec<f64> = times[a].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
            ratios.sort_by(f64::total_cmp);
            ratios[ROUNDS / 2]
        };
        let fastest: Vec<f64> = times
            .iter()
            .map(|t| t.iter().copied().fold(f64::MAX, f64::min))
            .collect();
        let [ours, bare, theirs, bad, hostile, kc, kc_rules] = fastest[..] else {
            unreachable!("seven contestants")
        };
        eprintln!(
            "paired, {ROUNDS} rounds of {BATCH}:\n  \
             jsonwebtoken ÷ jwtgate/HS256 (target ≥ 3): median {:.2}× (fastest batches {theirs:.1} ÷ {ours:.1} ns = {:.2}×)\n  \
             jwtgate/HS256_bad_signature ÷ floor (target ≤ 2): median {:.2}× (fastest {bad:.1} ÷ {bare:.1} ns = {:.2}×)\n  \
             jwtgate/HS256 ÷ floor: median {:.2}× (fastest {ours:.1} ÷ {bare:.1} ns = {:.2}×)\n  \
             jwtgate/hostile_header ÷ HS256_bad_signature: median {:.2}× (fastest {hostile:.1} ÷ {bad:.1} ns = {:.2}×)\n  \
             HS256_keycloak_two_rules ÷ HS256_keycloak (target ≤ 1.05): median {:.3}× (fastest {kc_rules:.1} ÷ {kc:.1} ns = {:.3}×)",
            median(2, 0),
            theirs / ours,
            median(3, 1),
            bad / bare,
            median(0, 1),
            ours / bare,
            median(4, 3),
            hostile / bad,
            median(6, 5),
            kc_rules / kc,
        );
    }
}

/// A Keycloak access token's claims (realm and client roles, scope).
fn keycloak_claims() -> Map<String, Value> {
    let claims = json!({
        "exp": NOW + 300, "iat": NOW - 60, "jti": "3f1c2a9e-5b7d-4e8a-9c0b-1d2e3f4a5b6c",
        "iss": ISSUER, "aud": AUDIENCE, "sub": "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "typ": "Bearer", "azp": "orders-web", "session_state": "a1b2c3d4",
        "realm_access": { "roles": ["offline_access", "uma_authorization", "user"] },
        "resource_access": {
            "orders": { "roles": ["orders.read", "orders.write"] },
            "account": { "roles": ["manage-account", "view-profile"] }
        },
        "scope": "openid email profile orders",
        "email_verified": true, "preferred_username": "alice", "email": "alice@example.com",
    });
    match claims {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A client role and a scope, as `[[route.claims]]` would say.
fn keycloak_rules() -> Vec<ClaimRule> {
    vec![
        ClaimRule {
            claim: jwt::ClaimPath(vec![
                "resource_access".into(),
                "orders".into(),
                "roles".into(),
            ]),
            space_separated: false,
            checks: vec![Check::AnyOf(vec!["orders.write".into()])],
        },
        ClaimRule {
            claim: "scope".into(),
            space_separated: true,
            checks: vec![Check::AllOf(vec!["orders".into()])],
        },
    ]
}

/// `n` calls of `f`: nanoseconds per call.
fn batch<T>(mut f: impl FnMut() -> T, n: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
}

/// Criterion measures one benchmark after another, and this host's speed
/// drifts between them by more than the differences sought (the same code
/// read 848 ns, then 939 ns, in runs minutes apart). So the ratios the
/// targets name are measured again in short batches that take turns, and
/// printed as the median of the per-round ratios, with each contestant's
/// fastest batch (interference only ever slows a batch down). Each
/// contestant runs [`BATCH`] calls when called; returned: each one's
/// nanoseconds per call, round by round.
fn paired_rounds(contestants: &mut [&mut dyn FnMut(u32) -> f64]) -> Vec<Vec<f64>> {
    // Every order in turn: each contestant runs first, last and right
    // after each of the others equally often (over whole cycles).
    let orders = permutations(contestants.len());
    let mut times = vec![Vec::with_capacity(ROUNDS); contestants.len()];
    for round in 0..ROUNDS {
        for &i in &orders[round % orders.len()] {
            times[i].push(contestants[i](BATCH));
        }
    }
    times
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(n - 1) {
        for at in 0..n {
            let mut order = shorter.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

/// A few seconds in all: batches of ~0.25 ms (the floor) to ~2 ms (jsonwebtoken).
const ROUNDS: usize = 301;
// Odd, so `ratios[ROUNDS / 2]` is the median.
const _: () = assert!(ROUNDS % 2 == 1);
const BATCH: u32 = 1000;

criterion_group!(verify, benches);
criterion_main!(verify);
