//! Picking an endpoint: round robin, or least outstanding requests by the
//! power of two choices (Mitzenmacher): two endpoints drawn at random, the
//! one with fewer requests in flight wins. Either way only endpoints in
//! rotation are picked.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::endpoint::Endpoint;
use crate::config::Balance;

/// An endpoint in rotation for the next request, other than `not`; `None`
/// when there is none.
pub(super) fn pick<'a>(
    endpoints: &'a [Arc<Endpoint>],
    balance: Balance,
    cursor: &AtomicUsize,
    not: Option<&Endpoint>,
) -> Option<&'a Arc<Endpoint>> {
    let usable = |e: &Endpoint| not.is_none_or(|n| !std::ptr::eq(n, e)) && e.available();
    let count = endpoints.len();
    if count == 1 {
        // The single-endpoint upstream: no shared cursor to bump.
        return endpoints.first().filter(|e| usable(e));
    }
    let turn = cursor.fetch_add(1, Ordering::Relaxed);
    if balance == Balance::LeastOutstanding && count > 1 {
        let draw = mix(turn as u64);
        let a = (draw % count as u64) as usize;
        // A second, different index.
        let b = (a + 1 + ((draw >> 32) % (count as u64 - 1)) as usize) % count;
        let (a, b) = (&endpoints[a], &endpoints[b]);
        match (usable(a), usable(b)) {
            (true, true) if b.outstanding() < a.outstanding() => return Some(b),
            (true, _) => return Some(a),
            (false, true) => return Some(b),
            // Both out of rotation: any other that is in.
            (false, false) => {}
        }
    }
    (0..count)
        .map(|i| &endpoints[(turn + i) % count])
        .find(|e| usable(e))
}

/// SplitMix64's finaliser: spreads consecutive turns over the range, a
/// random-enough draw without a generator per thread.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
