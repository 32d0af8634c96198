//! Public-key verification cost, with and without the verified-token cache:
//! `cargo bench --bench verify_pk`. RS256 keys come from the `openssl`
//! command (ring cannot generate RSA keys), the others from ring; all are
//! generated at bench time.

use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use serde_json::{Map, Value, json};

use jwtgate::jwks::Keyring;
use jwtgate::jwt::{self, Alg, Validation};
use jwtgate::keys::{Key, KeySet};
use jwtgate::metrics::Readiness;
use jwtgate::token::{self, Signer};

const NOW: i64 = 1_700_000_000;

fn claims() -> Map<String, Value> {
    let claims = json!({ "sub": "42", "role": "user", "iat": NOW, "exp": NOW + 900 });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A Keycloak access token's claims (realm and client roles, scope).
fn keycloak_claims() -> Map<String, Value> {
    let claims = json!({
        "exp": NOW + 300, "iat": NOW - 60, "jti": "3f1c2a9e-5b7d-4e8a-9c0b-1d2e3f4a5b6c",
        "iss": "https://kc.example.com/realms/acme", "aud": "account",
        "sub": "f47ac10b-58cc-4372-a567-0e02b2c3d479", "typ": "Bearer", "azp": "orders-web",
        "realm_access": { "roles": ["offline_access", "uma_authorization", "user"] },
        "resource_access": { "orders": { "roles": ["orders.read", "orders.write"] } },
        "scope": "openid email profile orders", "preferred_username": "alice",
    });
    match claims {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Drives a future that never waits (a cache hit or a plain verification)
/// without a runtime, so the bench measures verification, not scheduling.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn pem_of(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// (signer, public key) pairs for each algorithm measured.
fn setups() -> Vec<(Alg, Signer, Key)> {
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("jwtgate-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ])
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("openssl")
            .args(["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        for alg in [Alg::RS256, Alg::PS256] {
            if let (Ok(signer), Ok(key)) = (
                Signer::from_pem(None, alg, &pem_of(&dir.join("rsa.key"))),
                Key::from_pem(None, alg, &pem_of(&dir.join("rsa.pub"))),
            ) {
                out.push((alg, signer, key));
            }
        }
    } else {
        eprintln!("openssl not found: RSA skipped");
    }
    let rng = SystemRandom::new();
    if let Ok(pkcs8) = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng) {
        let pem = pem(pkcs8.as_ref());
        if let Ok(signer) = Signer::from_pem(None, Alg::ES256, pem.as_bytes())
            && let Some(point) = signer.public_key()
            && let Ok(key) = Key::ec(None, Alg::ES256, &point[1..33], &point[33..])
        {
            out.push((Alg::ES256, signer, key));
        }
    }
    if let Ok(pkcs8) = Ed25519KeyPair::generate_pkcs8(&rng) {
        let pem = pem(pkcs8.as_ref());
        if let Ok(signer) = Signer::from_pem(None, Alg::EdDSA, pem.as_bytes())
            && let Some(x) = signer.public_key()
            && let Ok(key) = Key::ed25519(None, Alg::EdDSA, &x)
        {
            out.push((Alg::EdDSA, signer, key));
        }
    }
    out
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn bench(c: &mut Criterion) {
    let validation = Validation::default();
    let providers = [jwtgate::jwt::Provider {
        name: "jwt".to_owned(),
        validation: validation.clone(),
    }];
    let mut group = c.benchmark_group("verify_pk");
    for (alg, signer, key) in setups() {
        let Ok(token) = token::mint_with(&signer, &claims()) else {
            continue;
        };
        let keys = KeySet::new(vec![key]);
        assert!(
            jwt::verify(&token, &keys, &validation, NOW).is_ok(),
            "{alg}"
        );
        group.bench_function(format!("{alg}/no_cache"), |b| {
            b.iter(|| jwt::verify(&token, &keys, &validation, NOW))
        });
        let readiness = Readiness::default();
        let ring = Keyring::new(
            keys,
            &[],
            readiness.check("bench"),
            10_000,
            Default::default(),
        );
        group.bench_function(format!("{alg}/cache_hit"), |b| {
            b.iter(|| ready(ring.verify(&token, &providers, NOW, &mut None)))
        });
        if alg == Alg::RS256 {
            // A Keycloak access token, its roles nested, remembered once verified.
            let Ok(keycloak) = token::mint_with(&signer, &keycloak_claims()) else {
                continue;
            };
            let nested = [jwtgate::jwt::Provider {
                name: "keycloak".to_owned(),
                validation: Validation {
                    role_claim: jwt::ClaimPath(vec!["realm_access".into(), "roles".into()]),
                    ..validation.clone()
                },
            }];
            let verified = ready(ring.verify(&keycloak, &nested, NOW, &mut None));
            assert!(verified.is_ok_and(|v| v.roles.iter().any(|r| r == "user")));
            group.bench_function("RS256/keycloak_cache_hit", |b| {
                b.iter(|| ready(ring.verify(&keycloak, &nested, NOW, &mut None)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
