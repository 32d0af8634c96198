//! The verified-token cache: public-key verification costs tens of
//! microseconds (RSA) to a hundred (ECDSA), HMAC well under one, so a token
//! presented again within its lifetime is answered from here.
//!
//! Keyed by SHA-256 of the whole token, so an entry can only be hit by the
//! exact token that verified. Entries die at the token's `exp` (plus the
//! leeway the verifier allows) and when the key set changes (its generation
//! differs), so a key removed by a JWKS refresh stops vouching at once.
//! Bounded: when full, dead entries are dropped, and if none were dead the
//! whole cache is cleared (simple, and the cost is one verification each).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::jwt::Verified;

/// Entries held at most by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct Entry {
    verified: Verified,
    /// First instant (Unix seconds) at which the verifier would refuse it.
    dies_at: i64,
    generation: u64,
}

/// Counters for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity `key`'s token verified to, if it still holds at `now`
    /// under key-set `generation`. Counts a hit; a miss is counted by the
    /// caller with [`TokenCache::count_miss`] once it knows the token was a
    /// public-key one (HMAC and malformed tokens are never cached, so their
    /// lookups would only dilute the hit ratio).
    pub fn get(&self, key: &[u8; 32], generation: u64, now: i64) -> Option<Verified> {
        let found = self
            .entries
            .lock()
            .ok()
            .and_then(|mut entries| match entries.get(key) {
                Some(e) if e.generation == generation && now < e.dies_at => {
                    Some(e.verified.clone())
                }
                Some(_) => {
                    entries.remove(key);
                    None
                }
                None => None,
            });
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// One public-key token looked up and not found.
    pub fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers a verified token until `dies_at`.
    pub fn insert(
        &self,
        key: [u8; 32],
        verified: Verified,
        dies_at: i64,
        generation: u64,
        now: i64,
    ) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.generation == generation && now < e.dies_at);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                verified,
                dies_at,
                generation,
            },
        );
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.entries.lock().map_or(0, |e| e.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Alg;

    fn verified() -> Verified {
        Verified {
            alg: Alg::ES256,
            provider: 0,
            user: Some("42".into()),
            roles: crate::jwt::Roles::default(),
            exp: Some(100),
            iat: None,
            jti: None,
            claims: Default::default(),
        }
    }

    #[test]
    fn entry_is_hit_until_it_dies_and_counts_hits_and_misses() {
        let cache = TokenCache::new(4);
        let key = TokenCache::key("a.b.c");
        assert_eq!(cache.get(&key, 1, 10), None);
        cache.count_miss();
        cache.insert(key, verified(), 130, 1, 10);
        assert_eq!(cache.get(&key, 1, 129), Some(verified()));
        assert_eq!(cache.get(&key, 1, 130), None);
        assert_eq!(
            cache.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 0
            }
        );
    }

    #[test]
    fn entry_dies_when_the_key_set_changes() {
        let cache = TokenCache::new(4);
        let key = TokenCache::key("a.b.c");
        cache.insert(key, verified(), 130, 1, 10);
        assert_eq!(cache.get(&key, 2, 11), None);
        assert_eq!(cache.get(&key, 1, 11), None, "dropped, not kept for later");
    }

    #[test]
    fn cache_never_grows_past_its_capacity() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(TokenCache::key(&i.to_string()), verified(), 1000, 1, 0);
            assert!(cache.stats().entries <= 3);
        }
    }
}
