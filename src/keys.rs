//! The key set: each verification key is bound to exactly one algorithm.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

use crate::jwt::Alg;

/// A verification key, bound to one algorithm at construction.
///
/// The HMAC state is keyed once; each verification clones it, which saves
/// the two key-block compressions per request.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    mac: PreparedMac,
}

#[derive(Clone)]
enum PreparedMac {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// RFC 7518 §3.2: "A key of the same size as the hash output … or
    /// larger MUST be used with this algorithm."
    #[error("{alg} needs a secret of at least {min} bytes, this one has {len}")]
    SecretTooShort { alg: Alg, min: usize, len: usize },
}

impl Key {
    pub fn hmac(kid: Option<String>, alg: Alg, secret: &[u8]) -> Result<Key, KeyError> {
        let min = alg.signature_len();
        if secret.len() < min {
            return Err(KeyError::SecretTooShort {
                alg,
                min,
                len: secret.len(),
            });
        }
        // new_from_slice accepts keys of any length for HMAC; it cannot fail.
        let mac = match alg {
            Alg::HS256 => Hmac::<Sha256>::new_from_slice(secret).map(PreparedMac::Hs256),
            Alg::HS384 => Hmac::<Sha384>::new_from_slice(secret).map(PreparedMac::Hs384),
            Alg::HS512 => Hmac::<Sha512>::new_from_slice(secret).map(PreparedMac::Hs512),
        };
        let mac = mac.map_err(|_| KeyError::SecretTooShort {
            alg,
            min,
            len: secret.len(),
        })?;
        Ok(Key { kid, alg, mac })
    }

    /// Checks `signature` over `signing_input` in constant time.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        // `verify_slice` compares with `subtle`, in time independent of where
        // the first differing byte is.
        match self.mac.clone() {
            PreparedMac::Hs256(mac) => mac.chain_update(signing_input).verify_slice(signature),
            PreparedMac::Hs384(mac) => mac.chain_update(signing_input).verify_slice(signature),
            PreparedMac::Hs512(mac) => mac.chain_update(signing_input).verify_slice(signature),
        }
        .is_ok()
    }

    /// Signs `signing_input`; used to mint tokens.
    pub fn sign(&self, signing_input: &[u8]) -> Vec<u8> {
        match self.mac.clone() {
            PreparedMac::Hs256(mac) => mac
                .chain_update(signing_input)
                .finalize()
                .into_bytes()
                .to_vec(),
            PreparedMac::Hs384(mac) => mac
                .chain_update(signing_input)
                .finalize()
                .into_bytes()
                .to_vec(),
            PreparedMac::Hs512(mac) => mac
                .chain_update(signing_input)
                .finalize()
                .into_bytes()
                .to_vec(),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The configured keys. Lookups are linear: deployments hold a handful.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.kid.as_deref() == Some(kid))
    }

    pub fn by_alg(&self, alg: Alg) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |key| key.alg == alg)
    }

    pub fn first(&self) -> Option<&Key> {
        self.keys.first()
    }
}
