//! The key set: each verification key is bound to exactly one algorithm.
//!
//! HMAC comes from the `hmac` crate, keyed once per key and cloned per
//! token, its tag compared in constant time by `verify_slice` (`subtle`);
//! every public-key algorithm uses `ring`, the crypto provider rustls
//! already brings, so there is one crypto stack.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};
use rustls::pki_types::pem::{PemObject, SectionKind};

use crate::jwt::Alg;

pub mod der;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Smallest RSA modulus accepted (RFC 7518 §3.3: "2048 bits or larger MUST").
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted: ring verifies up to 8192 bits.
pub const MAX_RSA_BITS: usize = 8192;

/// A verification key, bound to one algorithm at construction.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    /// When set, only tokens whose `iss` equals this are accepted with this key.
    pub issuer: Option<String>,
    /// The index of the provider whose tokens this key verifies (0: `[jwt]`,
    /// or the only provider).
    pub provider: usize,
    material: Material,
}

/// The key material, in the form its verifier wants. The variant follows
/// from `alg` at construction, so an RSA key's bytes can never reach HMAC.
#[expect(
    clippy::large_enum_variant,
    reason = "a key is built once and shared; its HMAC state stays inline"
)]
enum Material {
    /// Keyed once: each token clones the state with its inner and outer
    /// pads already compressed, instead of hashing the key again.
    Hmac(PreparedMac),
    /// Big-endian modulus (no leading zeros) and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point: 0x04 || x || y.
    Ec(Vec<u8>),
    Ed25519([u8; 32]),
}

enum PreparedMac {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
}

impl PreparedMac {
    fn new(alg: Alg, secret: &[u8]) -> Option<PreparedMac> {
        // HMAC takes a key of any length, so `new_from_slice` cannot fail.
        Some(match alg {
            Alg::HS256 => PreparedMac::Hs256(Hmac::new_from_slice(secret).ok()?),
            Alg::HS384 => PreparedMac::Hs384(Hmac::new_from_slice(secret).ok()?),
            Alg::HS512 => PreparedMac::Hs512(Hmac::new_from_slice(secret).ok()?),
            _ => return None,
        })
    }

    /// Whether `tag` is the MAC of `input`, compared in constant time.
    fn verify(&self, input: &[u8], tag: &[u8]) -> bool {
        fn check<M: Mac + Clone>(key: &M, input: &[u8], tag: &[u8]) -> bool {
            let mut mac = key.clone();
            mac.update(input);
            mac.verify_slice(tag).is_ok()
        }
        match self {
            PreparedMac::Hs256(key) => check(key, input, tag),
            PreparedMac::Hs384(key) => check(key, input, tag),
            PreparedMac::Hs512(key) => check(key, input, tag),
        }
    }

    /// The MAC of `input`, as long as the algorithm's.
    fn sign(&self, input: &[u8]) -> Vec<u8> {
        fn mac<M: Mac + Clone>(key: &M, input: &[u8]) -> Vec<u8> {
            let mut mac = key.clone();
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            PreparedMac::Hs256(key) => mac(key, input),
            PreparedMac::Hs384(key) => mac(key, input),
            PreparedMac::Hs512(key) => mac(key, input),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// RFC 7518 §3.2: "A key of the same size as the hash output … or
    /// larger MUST be used with this algorithm."
    #[error("{alg} needs a secret of at least {min} bytes, this one has {len}")]
    SecretTooShort { alg: Alg, min: usize, len: usize },
    #[error("{alg} takes a public key, not a shared secret")]
    SecretForPublicKeyAlg { alg: Alg },
    #[error("{alg} takes a shared secret, not a public key")]
    PublicKeyForHmac { alg: Alg },
    #[error("RSA key of {bits} bits refused: at least {MIN_RSA_BITS} and at most {MAX_RSA_BITS}")]
    RsaSize { bits: usize },
    #[error("RSA public exponent is not acceptable")]
    RsaExponent,
    #[error("{alg} needs {wanted}, this is {found}")]
    WrongKeyType {
        alg: Alg,
        wanted: &'static str,
        found: &'static str,
    },
    #[error("{what} is malformed")]
    Malformed { what: &'static str },
    #[error("no PUBLIC KEY or CERTIFICATE found in the PEM file")]
    NoPem,
    #[error("cannot read PEM: {0}")]
    Pem(String),
}

/// How an HMAC secret is written where it is kept (`secret_encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretEncoding {
    /// The bytes as they are: an environment variable's value, a file's
    /// exact contents (a trailing newline included). The default.
    #[default]
    Raw,
    /// Base64 text (standard or URL-safe alphabet, padded or not; spaces and
    /// newlines around it ignored), decoded to the secret's bytes.
    Base64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the secret is not base64 ({0})")]
pub struct NotBase64(String);

impl SecretEncoding {
    /// `"raw"` or `"base64"`.
    pub fn from_name(name: &str) -> Option<SecretEncoding> {
        match name {
            "raw" => Some(SecretEncoding::Raw),
            "base64" => Some(SecretEncoding::Base64),
            _ => None,
        }
    }

    /// The secret's bytes from what was stored.
    pub fn decode(self, stored: Vec<u8>) -> Result<Vec<u8>, NotBase64> {
        use base64::Engine;
        use base64::engine::general_purpose::{
            STANDARD_NO_PAD_INDIFFERENT, URL_SAFE_NO_PAD_INDIFFERENT,
        };
        match self {
            SecretEncoding::Raw => Ok(stored),
            SecretEncoding::Base64 => {
                let text = stored.trim_ascii();
                // The alphabets differ in two symbols; a secret uses one.
                let engine = match text.iter().any(|&b| b == b'-' || b == b'_') {
                    true => URL_SAFE_NO_PAD_INDIFFERENT,
                    false => STANDARD_NO_PAD_INDIFFERENT,
                };
                engine
                    .decode(text)
                    .map_err(|err| NotBase64(err.to_string()))
            }
        }
    }
}

/// Whether an uncompressed EC point lies on the curve of `alg`. ring checks
/// this only when verifying (so a bad key would silently refuse every
/// token); its ECDH validates a peer's public point fully (RFC 8422 §5.11
/// / SP 800-56A partial validation), so one key agreement with a throwaway
/// private key answers the question at load time.
fn on_curve(alg: Alg, point: &[u8]) -> bool {
    use ring::agreement;
    let curve = match alg {
        Alg::ES256 => &agreement::ECDH_P256,
        Alg::ES384 => &agreement::ECDH_P384,
        _ => return false,
    };
    let rng = ring::rand::SystemRandom::new();
    let Ok(private) = agreement::EphemeralPrivateKey::generate(curve, &rng) else {
        return false;
    };
    let peer = agreement::UnparsedPublicKey::new(curve, point);
    agreement::agree_ephemeral(private, &peer, |_| ()).is_ok()
}

/// What key type an algorithm needs, for messages.
fn key_type_for(alg: Alg) -> &'static str {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => "a shared secret",
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => "an RSA key",
        Alg::ES256 => "an EC key on P-256",
        Alg::ES384 => "an EC key on P-384",
        Alg::EdDSA => "an Ed25519 key",
    }
}

impl Key {
    pub fn hmac(kid: Option<String>, alg: Alg, secret: &[u8]) -> Result<Key, KeyError> {
        let too_short = |min| KeyError::SecretTooShort {
            alg,
            min,
            len: secret.len(),
        };
        let min = alg
            .signature_len()
            .ok_or(KeyError::SecretForPublicKeyAlg { alg })?;
        if secret.len() < min {
            return Err(too_short(min));
        }
        let mac = PreparedMac::new(alg, secret).ok_or(KeyError::SecretForPublicKeyAlg { alg })?;
        Ok(Key::with(kid, alg, Material::Hmac(mac)))
    }

    fn with(kid: Option<String>, alg: Alg, material: Material) -> Key {
        Key {
            kid,
            alg,
            issuer: None,
            provider: 0,
            material,
        }
    }

    /// Binds the key to an issuer (see [`Key::issuer`]).
    pub fn for_issuer(mut self, issuer: Option<String>) -> Key {
        self.issuer = issuer;
        self
    }

    /// Gives the key to a provider (see [`Key::provider`]).
    pub fn for_provider(mut self, provider: usize) -> Key {
        self.provider = provider;
        self
    }

    /// An RSA key (for RS*/PS*) from its modulus and exponent, big-endian.
    pub fn rsa(kid: Option<String>, alg: Alg, n: &[u8], e: &[u8]) -> Result<Key, KeyError> {
        if !matches!(
            alg,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
        ) {
            return Err(wrong_type(alg, "an RSA key"));
        }
        let n = der_strip(n);
        let e = der_strip(e);
        let bits = match n.first() {
            Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        };
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(KeyError::RsaSize { bits });
        }
        // ring accepts odd exponents from 3 up to 2^33 - 1; checking here
        // refuses a useless key at start-up instead of at every request.
        let exponent = e.iter().try_fold(0u64, |acc, &b| {
            (acc < 1 << 56).then_some((acc << 8) | u64::from(b))
        });
        match exponent {
            Some(v) if v >= 3 && v % 2 == 1 && v < 1 << 33 => {}
            _ => return Err(KeyError::RsaExponent),
        }
        Ok(Key::with(
            kid,
            alg,
            Material::Rsa {
                n: n.to_vec(),
                e: e.to_vec(),
            },
        ))
    }

    /// An EC key (ES256 on P-256, ES384 on P-384) from its affine coordinates.
    pub fn ec(kid: Option<String>, alg: Alg, x: &[u8], y: &[u8]) -> Result<Key, KeyError> {
        let size = match alg {
            Alg::ES256 => 32,
            Alg::ES384 => 48,
            _ => return Err(wrong_type(alg, "an EC key")),
        };
        if x.len() != size || y.len() != size {
            return Err(KeyError::Malformed {
                what: "EC point coordinate",
            });
        }
        let mut point = Vec::with_capacity(1 + 2 * size);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Key::ec_point(kid, alg, &point)
    }

    fn ec_point(kid: Option<String>, alg: Alg, point: &[u8]) -> Result<Key, KeyError> {
        let size = match alg {
            Alg::ES256 => 32,
            Alg::ES384 => 48,
            _ => return Err(wrong_type(alg, "an EC key")),
        };
        // Only the uncompressed form.
        if point.len() != 1 + 2 * size || point[0] != 0x04 {
            return Err(KeyError::Malformed {
                what: "EC public point (uncompressed form expected)",
            });
        }
        if !on_curve(alg, point) {
            return Err(KeyError::Malformed {
                what: "EC public point (not on the curve)",
            });
        }
        Ok(Key::with(kid, alg, Material::Ec(point.to_vec())))
    }

    /// An Ed25519 key (EdDSA) from its 32 bytes (RFC 8037 §2).
    pub fn ed25519(kid: Option<String>, alg: Alg, x: &[u8]) -> Result<Key, KeyError> {
        if alg != Alg::EdDSA {
            return Err(wrong_type(alg, "an Ed25519 key"));
        }
        let x: [u8; 32] = x.try_into().map_err(|_| KeyError::Malformed {
            what: "Ed25519 public key",
        })?;
        Ok(Key::with(kid, alg, Material::Ed25519(x)))
    }

    /// A public key from PEM text: a `PUBLIC KEY` (SubjectPublicKeyInfo) or
    /// the first `CERTIFICATE` (its subject's key).
    pub fn from_pem(kid: Option<String>, alg: Alg, pem_text: &[u8]) -> Result<Key, KeyError> {
        if alg.is_hmac() {
            return Err(KeyError::PublicKeyForHmac { alg });
        }
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_text) {
            let (kind, der_bytes) = section.map_err(|err| KeyError::Pem(err.to_string()))?;
            let spki = match kind {
                SectionKind::PublicKey => der::spki(&der_bytes),
                SectionKind::Certificate => der::certificate_spki(&der_bytes),
                _ => continue,
            };
            let spki = spki.ok_or(KeyError::Malformed {
                what: "DER public key",
            })?;
            return Key::from_spki(kid, alg, &spki);
        }
        Err(KeyError::NoPem)
    }

    /// Reads [`Key::from_pem`] from a file.
    pub fn from_pem_file(kid: Option<String>, alg: Alg, path: &Path) -> Result<Key, KeyError> {
        let text = std::fs::read(path).map_err(|err| KeyError::Pem(err.to_string()))?;
        Key::from_pem(kid, alg, &text)
    }

    fn from_spki(kid: Option<String>, alg: Alg, spki: &der::Spki<'_>) -> Result<Key, KeyError> {
        let found = match (spki.algorithm, spki.curve) {
            (a, _) if a == der::oid::RSA => {
                let (n, e) = der::rsa_public_key(spki.key).ok_or(KeyError::Malformed {
                    what: "RSA public key",
                })?;
                return match key_type_for(alg) {
                    "an RSA key" => Key::rsa(kid, alg, n, e),
                    _ => Err(wrong_type(alg, "an RSA key")),
                };
            }
            (a, Some(c)) if a == der::oid::EC && c == der::oid::P256 => "an EC key on P-256",
            (a, Some(c)) if a == der::oid::EC && c == der::oid::P384 => "an EC key on P-384",
            (a, _) if a == der::oid::EC => "an EC key on an unsupported curve",
            (a, _) if a == der::oid::ED25519 => "an Ed25519 key",
            _ => "a key of an unsupported type",
        };
        if found != key_type_for(alg) {
            return Err(wrong_type(alg, found));
        }
        match alg {
            Alg::EdDSA => Key::ed25519(kid, alg, spki.key),
            _ => Key::ec_point(kid, alg, spki.key),
        }
    }

    /// Checks `signature` over `signing_input`. The HMAC compare is
    /// constant-time; ring's public-key verifiers do not branch on secrets
    /// (there are none) and reject ECDSA r or s that are zero or ≥ the order.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Hmac(mac) => mac.verify(signing_input, signature),
            Material::Rsa { n, e } => {
                let params: &ring_sig::RsaParameters = match self.alg {
                    Alg::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, signing_input, signature)
                    .is_ok()
            }
            Material::Ec(point) => {
                // *_FIXED: the JOSE r || s form (RFC 7518 §3.4), not ASN.1.
                let algorithm: &ring_sig::EcdsaVerificationAlgorithm = match self.alg {
                    Alg::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
                    Alg::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(algorithm, point)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            Material::Ed25519(x) => UnparsedPublicKey::new(&ring_sig::ED25519, x)
                .verify(signing_input, signature)
                .is_ok(),
        }
    }

    /// Signs `signing_input`; used to mint tokens. A public key cannot
    /// sign: the result is empty, a signature no verifier accepts (see
    /// [`Key::try_sign`]).
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        self.try_sign(signing_input).unwrap_or_default()
    }

    /// Signs with an HMAC key; `None` for a public key.
    pub fn try_sign(&self, signing_input: &[u8]) -> Option<Vec<u8>> {
        let Material::Hmac(mac) = &self.material else {
            return None;
        };
        Some(mac.sign(signing_input))
    }
}

fn wrong_type(alg: Alg, found: &'static str) -> KeyError {
    KeyError::WrongKeyType {
        alg,
        wanted: key_type_for(alg),
        found,
    }
}

fn der_strip(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let material = match self.material {
            Material::Hmac(_) => "<redacted secret>",
            Material::Rsa { .. } => "<RSA public key>",
            Material::Ec(_) => "<EC public key>",
            Material::Ed25519(_) => "<Ed25519 public key>",
        };
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("issuer", &self.issuer)
            .field("material", &material)
            .finish()
    }
}

/// The keys in force at one moment. Lookups are linear: deployments hold a
/// handful. Immutable once built; a JWKS refresh builds a new one and swaps
/// it in (see `jwks`).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<Key>>,
    /// Key sources that have never loaded; while any is pending, a token no
    /// key decides on is "unavailable", not "invalid".
    pending: usize,
    /// Changes whenever the set does; the verified-token cache keys on it.
    generation: u64,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet::from_shared(keys.into_iter().map(Arc::new).collect(), 0, 0)
    }

    pub fn from_shared(keys: Vec<Arc<Key>>, pending: usize, generation: u64) -> KeySet {
        KeySet {
            keys,
            pending,
            generation,
        }
    }

    pub fn by_kid<'s, 'k>(&'s self, kid: &'k str) -> impl Iterator<Item = &'s Key> + use<'s, 'k> {
        self.keys
            .iter()
            .map(|key| &**key)
            .filter(move |key| key.kid.as_deref() == Some(kid))
    }

    pub fn by_alg(&self, alg: Alg) -> impl Iterator<Item = &Key> {
        self.keys
            .iter()
            .map(|key| &**key)
            .filter(move |key| key.alg == alg)
    }

    pub fn first(&self) -> Option<&Key> {
        self.keys.first().map(|key| &**key)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.keys.iter()
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether any key is a public key (whose verification is costly enough
    /// for the verified-token cache to pay).
    pub fn has_public_keys(&self) -> bool {
        self.keys.iter().any(|key| !key.alg.is_hmac())
    }
}

#[cfg(test)]
mod tests;
