//! Strict unpadded base64url (RFC 7515 §2, RFC 4648 §5), decoding only.
//!
//! One token, one spelling: padding, whitespace, the `+` and `/` of plain
//! base64, a length of 4n+1 and non-zero trailing bits are all refused, so
//! no two strings decode to the same bytes.
//!
//! The verifier decodes a payload per request, so this uses `base64-simd`
//! (AVX2/SSE4.1/NEON, chosen at run time) in its strict mode: ~4× fewer
//! instructions than the `base64` crate's engine for a typical payload
//! (callgrind). The tests below hold it to that engine's verdict.

use std::mem::MaybeUninit;

/// Bytes `text` decodes to.
pub(super) const fn decoded_len(text: &[u8]) -> usize {
    text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1)
}

/// Decodes `text` into the front of `out`, which must hold
/// [`decoded_len`] bytes. `None`: not canonical unpadded base64url, or
/// `out` too short. `out` may be uninitialised: zeroing a 1 KiB stack
/// buffer per token cost more than decoding into it.
pub(super) fn decode<'o>(text: &[u8], out: &'o mut [MaybeUninit<u8>]) -> Option<&'o [u8]> {
    let out = out.get_mut(..decoded_len(text))?;
    match base64_simd::URL_SAFE_NO_PAD.decode(text, base64_simd::Out::from_uninit_slice(out)) {
        Ok(bytes) => Some(bytes),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    fn ours(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![MaybeUninit::uninit(); decoded_len(text)];
        decode(text, &mut out).map(<[u8]>::to_vec)
    }

    /// The `base64` crate's strict engine is the reference: same verdict,
    /// same bytes, for every input.
    fn reference(text: &[u8]) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(text).ok()
    }

    #[test]
    fn every_string_of_up_to_three_characters_matches_the_reference() {
        let bytes: Vec<u8> = (0..=255).collect();
        for a in &bytes {
            assert_eq!(ours(&[*a]), reference(&[*a]));
            for b in &bytes {
                assert_eq!(ours(&[*a, *b]), reference(&[*a, *b]), "{a} {b}");
            }
        }
        // Three characters: the alphabet plus every kind of refused byte.
        let some: Vec<u8> = b"AQgw_-9zZa+/=. \n\0\x80\xff".to_vec();
        for a in &some {
            for b in &some {
                for c in 0..=255u8 {
                    let text = [*a, *b, c];
                    assert_eq!(ours(&text), reference(&text), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        assert_eq!(ours(b"QQ"), Some(b"A".to_vec()));
        assert_eq!(ours(b"QR"), None);
        assert_eq!(ours(b"QUE"), Some(b"AA".to_vec()));
        assert_eq!(ours(b"QUF"), None);
        assert_eq!(ours(b"QUFB"), Some(b"AAA".to_vec()));
        assert_eq!(ours(b"QUFBQ"), None, "4n+1 characters");
        assert_eq!(ours(b"QQ=="), None, "padding");
    }

    #[test]
    fn a_short_buffer_is_refused_not_overrun() {
        let mut out = [MaybeUninit::uninit(); 2];
        assert_eq!(decode(b"QUFB", &mut out), None);
    }

    proptest! {
        #[test]
        fn round_trips_and_agrees_with_the_reference(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let text = URL_SAFE_NO_PAD.encode(&data);
            prop_assert_eq!(ours(text.as_bytes()), Some(data));
        }

        #[test]
        fn any_text_gets_the_reference_verdict(text in prop::collection::vec(
            prop::sample::select(b"ABCQgw_-09az+/= .".to_vec()), 0..40)) {
            prop_assert_eq!(ours(&text), reference(&text));
        }
    }
}
