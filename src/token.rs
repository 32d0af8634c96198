//! Tokens for people: minting (CLI, demo, tests) and reading without a key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};

use crate::jwt::Alg;
use crate::keys::Key;

/// Something that can sign a token: an HMAC key, or a private key.
pub enum Signer {
    Hmac(Key),
    Private {
        kid: Option<String>,
        alg: Alg,
        key: PrivateKey,
    },
}

/// A ring private key, bound to the algorithm it was loaded for.
pub enum PrivateKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("this key cannot sign (a public key)")]
    CannotSign,
    #[error("cannot read the private key: {0}")]
    Key(String),
    #[error("signing failed")]
    Failed,
}

/// Why ring refused a private key, in words (its own text is a CamelCase
/// variant name such as `WrongAlgorithm`).
fn rejected(alg: Alg, err: &ring::error::KeyRejected) -> String {
    let why = match err.to_string().as_str() {
        "WrongAlgorithm" => "it is a key of another type or curve".to_owned(),
        "InvalidEncoding" => "its encoding is invalid".to_owned(),
        "InconsistentComponents" => "its components do not belong together".to_owned(),
        "TooSmall" => "it is too small".to_owned(),
        "TooLarge" => "it is too large".to_owned(),
        other => other.to_owned(),
    };
    format!("not a {alg} key: {why}")
}

impl Signer {
    /// Loads a PEM private key for `alg`: RSA (PKCS#8 or PKCS#1) for
    /// RS*/PS*, EC P-256/P-384 (PKCS#8) for ES256/ES384, Ed25519 (PKCS#8) for EdDSA.
    pub fn from_pem(kid: Option<String>, alg: Alg, pem: &[u8]) -> Result<Signer, SignError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| SignError::Key(e.to_string()))?;
        let bad = |e: &ring::error::KeyRejected| SignError::Key(rejected(alg, e));
        let key = match (alg, &der) {
            (Alg::HS256 | Alg::HS384 | Alg::HS512, _) => {
                return Err(SignError::Key(format!("{alg} signs with a secret")));
            }
            (Alg::ES256 | Alg::ES384, PrivateKeyDer::Pkcs8(der)) => {
                let algorithm = match alg {
                    Alg::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    _ => &ring_sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                };
                PrivateKey::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(
                        algorithm,
                        der.secret_pkcs8_der(),
                        &SystemRandom::new(),
                    )
                    .map_err(|e| bad(&e))?,
                )
            }
            (Alg::EdDSA, PrivateKeyDer::Pkcs8(der)) => PrivateKey::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
                    .map_err(|e| bad(&e))?,
            ),
            (_, PrivateKeyDer::Pkcs8(der))
                if !matches!(alg, Alg::ES256 | Alg::ES384 | Alg::EdDSA) =>
            {
                PrivateKey::Rsa(
                    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| bad(&e))?,
                )
            }
            (_, PrivateKeyDer::Pkcs1(der))
                if !matches!(alg, Alg::ES256 | Alg::ES384 | Alg::EdDSA) =>
            {
                PrivateKey::Rsa(RsaKeyPair::from_der(der.secret_pkcs1_der()).map_err(|e| bad(&e))?)
            }
            _ => {
                return Err(SignError::Key(format!(
                    "{alg} needs a PKCS#8 PEM key of its type (SEC1 EC keys: convert with `openssl pkcs8 -topk8 -nocrypt`)"
                )));
            }
        };
        Ok(Signer::Private { kid, alg, key })
    }

    pub fn alg(&self) -> Alg {
        match self {
            Signer::Hmac(key) => key.alg,
            Signer::Private { alg, .. } => *alg,
        }
    }

    pub fn kid(&self) -> Option<&str> {
        match self {
            Signer::Hmac(key) => key.kid.as_deref(),
            Signer::Private { kid, .. } => kid.as_deref(),
        }
    }

    /// The public key, raw (RSA: DER RSAPublicKey; EC: SEC1 point; Ed25519: 32 bytes).
    pub fn public_key(&self) -> Option<Vec<u8>> {
        match self {
            Signer::Hmac(_) => None,
            Signer::Private { key, .. } => Some(match key {
                PrivateKey::Rsa(k) => k.public().as_ref().to_vec(),
                PrivateKey::Ecdsa(k) => k.public_key().as_ref().to_vec(),
                PrivateKey::Ed25519(k) => k.public_key().as_ref().to_vec(),
            }),
        }
    }

    pub fn sign(&self, input: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match self {
            Signer::Hmac(key) => key.try_sign(input).ok_or(SignError::CannotSign),
            Signer::Private { alg, key, .. } => match key {
                PrivateKey::Rsa(pair) => {
                    let padding: &dyn ring_sig::RsaEncoding = match alg {
                        Alg::RS256 => &ring_sig::RSA_PKCS1_SHA256,
                        Alg::RS384 => &ring_sig::RSA_PKCS1_SHA384,
                        Alg::RS512 => &ring_sig::RSA_PKCS1_SHA512,
                        Alg::PS256 => &ring_sig::RSA_PSS_SHA256,
                        Alg::PS384 => &ring_sig::RSA_PSS_SHA384,
                        _ => &ring_sig::RSA_PSS_SHA512,
                    };
                    let mut signature = vec![0; pair.public().modulus_len()];
                    pair.sign(padding, &rng, input, &mut signature)
                        .map_err(|_| SignError::Failed)?;
                    Ok(signature)
                }
                PrivateKey::Ecdsa(pair) => pair
                    .sign(&rng, input)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SignError::Failed),
                PrivateKey::Ed25519(pair) => Ok(pair.sign(input).as_ref().to_vec()),
            },
        }
    }
}

impl From<Key> for Signer {
    fn from(key: Key) -> Signer {
        Signer::Hmac(key)
    }
}

/// Signs `claims` with an HMAC `key`; the header names its algorithm and kid.
pub fn mint(key: &Key, claims: &Map<String, Value>) -> String {
    let signing_input = signing_input(key.alg, key.kid.as_deref(), claims);
    // A public key yields an empty signature, which no verifier accepts.
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Signs `claims` with any signer.
pub fn mint_with(signer: &Signer, claims: &Map<String, Value>) -> Result<String, SignError> {
    let signing_input = signing_input(signer.alg(), signer.kid(), claims);
    let signature = URL_SAFE_NO_PAD.encode(signer.sign(signing_input.as_bytes())?);
    Ok(format!("{signing_input}.{signature}"))
}

fn signing_input(alg: Alg, kid: Option<&str>, claims: &Map<String, Value>) -> String {
    let mut header = json!({ "alg": alg.name(), "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = Value::from(kid);
    }
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    )
}

#[derive(Debug, thiserror::Error)]
#[error("not a readable JWS: {0}")]
pub struct UnreadableToken(&'static str);

/// Decodes header and claims *without verifying anything*: base64url is an
/// encoding, not encryption, so anyone holding a token can read it.
pub fn decode_unverified(token: &str) -> Result<(Value, Value), UnreadableToken> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(UnreadableToken("expected three dot-separated parts"));
    };
    let json = |segment: &str| -> Result<Value, UnreadableToken> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| UnreadableToken("a part is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| UnreadableToken("a part is not JSON"))
    };
    Ok((json(header)?, json(payload)?))
}

/// Member names that appear more than once at the top level of the header
/// or the claims: `serde_json::Value` (and so [`decode_unverified`]) keeps
/// the last copy silently, while the gateway refuses such a token.
pub fn duplicate_members(token: &str) -> Vec<String> {
    token
        .trim()
        .split('.')
        .take(2)
        .filter_map(|segment| URL_SAFE_NO_PAD.decode(segment).ok())
        .flat_map(|json| {
            let mut names = serde_json::from_slice::<MemberNames>(&json)
                .map(|m| m.0)
                .unwrap_or_default();
            names.sort();
            let mut dups: Vec<String> = names
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| w[0].clone())
                .collect();
            dups.dedup();
            dups
        })
        .collect()
}

/// Every top-level member name of a JSON object, duplicates kept.
struct MemberNames(Vec<String>);

impl<'de> serde::Deserialize<'de> for MemberNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = MemberNames;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<MemberNames, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    names.push(name);
                }
                Ok(MemberNames(names))
            }
        }
        d.deserialize_map(Names)
    }
}

/// Re-encodes `token` with its claims edited but its signature kept: what an
/// attacker who can read a token but not sign one is able to produce.
pub fn tamper(token: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> Option<String> {
    let (header_b64, rest) = token.split_once('.')?;
    let (payload_b64, signature) = rest.split_once('.')?;
    let mut claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    Some(format!("{header_b64}.{payload}.{signature}"))
}
