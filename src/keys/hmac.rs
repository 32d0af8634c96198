//! HMAC (RFC 2104) over `sha2`'s compression functions, keyed once.
//!
//! The `hmac` crate computes the same thing (the tests below hold us to it,
//! and `benches/verify` measures its floor), but through its buffered
//! streaming API: cloning the keyed state with its block buffer, copying the
//! message's tail through it, padding in a second pass. For a token's
//! signing input, which arrives whole, that was 54–75 ns of a 260–300 ns
//! HMAC-SHA256 on the machine of `README.md` "Performance". Here each call
//! copies two 32- or 64-byte states, compresses the whole blocks of the
//! message in place, and pads only the tail.

use std::hint::black_box;

use sha2::Digest;

/// A SHA-2 compression function and what HMAC needs to know about it.
pub trait Sha2 {
    /// The eight working words.
    type State: Copy;
    /// FIPS 180-4 §5.3: the initial hash value.
    const IV: Self::State;
    /// Bytes per block.
    const BLOCK: usize;
    /// Two zeroed blocks: room for a message's last bytes and its padding.
    type Tail: AsMut<[u8]>;
    const TAIL: Self::Tail;
    /// Bytes of the message length at the end of the padding.
    const LENGTH: usize;
    /// Bytes of digest (SHA-384 keeps six of SHA-512's eight words).
    const OUT: usize;
    /// Compresses `blocks`, whose length is a multiple of [`Sha2::BLOCK`].
    fn compress(state: &mut Self::State, blocks: &[u8]);
    /// The first `out.len()` bytes of the state, big-endian, in whole words.
    fn digest(state: &Self::State, out: &mut [u8]);
    /// The whole hash, for a key longer than a block (RFC 2104 §2).
    type Hash: Digest;
}

pub enum Sha256 {}
pub enum Sha384 {}
pub enum Sha512 {}

impl Sha2 for Sha256 {
    type Hash = sha2::Sha256;
    type State = [u32; 8];
    const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    const BLOCK: usize = 64;
    type Tail = [u8; 128];
    const TAIL: [u8; 128] = [0; 128];
    const LENGTH: usize = 8;
    const OUT: usize = 32;

    fn compress(state: &mut [u32; 8], blocks: &[u8]) {
        let (whole, partial) = blocks.as_chunks();
        debug_assert!(partial.is_empty(), "only whole blocks are compressed");
        sha2::block_api::compress256(state, whole);
    }

    fn digest(state: &[u32; 8], out: &mut [u8]) {
        for (word, bytes) in state.iter().zip(out.chunks_exact_mut(4)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
    }
}

impl Sha2 for Sha384 {
    type Hash = sha2::Sha384;
    type State = [u64; 8];
    const IV: [u64; 8] = [
        0xcbbb9d5dc1059ed8,
        0x629a292a367cd507,
        0x9159015a3070dd17,
        0x152fecd8f70e5939,
        0x67332667ffc00b31,
        0x8eb44a8768581511,
        0xdb0c2e0d64f98fa7,
        0x47b5481dbefa4fa4,
    ];
    const BLOCK: usize = 128;
    type Tail = [u8; 256];
    const TAIL: [u8; 256] = [0; 256];
    const LENGTH: usize = 16;
    const OUT: usize = 48;

    fn compress(state: &mut [u64; 8], blocks: &[u8]) {
        Sha512::compress(state, blocks);
    }

    fn digest(state: &[u64; 8], out: &mut [u8]) {
        Sha512::digest(state, out);
    }
}

impl Sha2 for Sha512 {
    type Hash = sha2::Sha512;
    type State = [u64; 8];
    const IV: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    const BLOCK: usize = 128;
    type Tail = [u8; 256];
    const TAIL: [u8; 256] = [0; 256];
    const LENGTH: usize = 16;
    const OUT: usize = 64;

    fn compress(state: &mut [u64; 8], blocks: &[u8]) {
        let (whole, partial) = blocks.as_chunks();
        debug_assert!(partial.is_empty(), "only whole blocks are compressed");
        sha2::block_api::compress512(state, whole);
    }

    fn digest(state: &[u64; 8], out: &mut [u8]) {
        for (word, bytes) in state.iter().zip(out.chunks_exact_mut(8)) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
    }
}

/// The largest block and digest, for buffers on the stack.
const MAX_BLOCK: usize = 128;
pub const MAX_OUT: usize = 64;

/// A key's inner and outer states: the key blocks XORed with ipad and opad,
/// compressed once, so each MAC compresses only the message and the digest.
pub struct Prepared<H: Sha2> {
    inner: H::State,
    outer: H::State,
}

impl<H: Sha2> Prepared<H> {
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; MAX_BLOCK];
        if key.len() > H::BLOCK {
            block[..H::OUT].copy_from_slice(&H::Hash::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let keyed = |pad: u8| {
            let mut padded = [0u8; MAX_BLOCK];
            for (p, k) in padded.iter_mut().zip(&block).take(H::BLOCK) {
                *p = k ^ pad;
            }
            let mut state = H::IV;
            H::compress(&mut state, &padded[..H::BLOCK]);
            state
        };
        Prepared {
            inner: keyed(0x36),
            outer: keyed(0x5c),
        }
    }

    /// Whether `tag` is the MAC of `message`, compared in time independent
    /// of where the first differing byte is: every byte pair is XORed and
    /// ORed together, and only the total is looked at, through
    /// `black_box` so the compiler cannot turn the loop into an early exit
    /// (`black_box` is a best effort, not a guarantee: the release build's
    /// loop was read in assembly on 2026-11-29, branch-free). `subtle`'s
    /// slice comparison puts a barrier on every byte instead, which cost
    /// ~30 ns of the ~250 here. A tag of the wrong length is refused
    /// whatever its bytes: the algorithm, which is public, fixes the length.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut out = [0; MAX_OUT];
        let mac = self.mac(message, &mut out);
        let differences = mac.iter().zip(tag).fold(0, |d, (a, b)| d | (a ^ b));
        mac.len() == tag.len() && black_box(differences) == 0
    }

    /// The MAC of `message`: the first [`Sha2::OUT`] bytes of `out`.
    pub fn mac<'o>(&self, message: &[u8], out: &'o mut [u8; MAX_OUT]) -> &'o [u8] {
        let whole = message.len() - message.len() % H::BLOCK;
        let (blocks, rest) = message.split_at(whole);
        let mut inner = self.inner;
        H::compress(&mut inner, blocks);
        let mut tail = H::TAIL;
        let tail = tail.as_mut();
        tail[..rest.len()].copy_from_slice(rest);
        let end = pad::<H>(tail, rest.len(), message.len());
        H::compress(&mut inner, &tail[..end]);
        // The outer message, the inner digest, always fits one block with
        // its padding: written in place, over the tail's first block.
        tail[..H::BLOCK].fill(0);
        H::digest(&inner, &mut tail[..H::OUT]);
        pad::<H>(tail, H::OUT, H::OUT);
        let mut outer = self.outer;
        H::compress(&mut outer, &tail[..H::BLOCK]);
        let out = &mut out[..H::OUT];
        H::digest(&outer, out);
        out
    }
}

/// Pads a message's last `rest` bytes, at the start of `tail` (zeroed after
/// them), for a message of `len` bytes after the key block (FIPS 180-4
/// §5.1): returns where the last block ends.
fn pad<H: Sha2>(tail: &mut [u8], rest: usize, len: usize) -> usize {
    tail[rest] = 0x80;
    let end = match rest + 1 + H::LENGTH <= H::BLOCK {
        true => H::BLOCK,
        false => 2 * H::BLOCK,
    };
    // A slice is at most isize::MAX bytes: its length in bits fits a u128.
    let bits = ((H::BLOCK + len) as u128) << 3;
    tail[end - H::LENGTH..end].copy_from_slice(&bits.to_be_bytes()[16 - H::LENGTH..]);
    end
}

#[cfg(test)]
mod tests {
    use ::hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;

    use super::*;

    fn theirs<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }

    fn ours<H: Sha2>(key: &[u8], message: &[u8]) -> Vec<u8> {
        Prepared::<H>::new(key)
            .mac(message, &mut [0; MAX_OUT])
            .to_vec()
    }

    fn agree(key: &[u8], message: &[u8]) {
        assert_eq!(
            ours::<Sha256>(key, message),
            theirs::<Hmac<sha2::Sha256>>(key, message)
        );
        assert_eq!(
            ours::<Sha384>(key, message),
            theirs::<Hmac<sha2::Sha384>>(key, message)
        );
        assert_eq!(
            ours::<Sha512>(key, message),
            theirs::<Hmac<sha2::Sha512>>(key, message)
        );
    }

    /// RFC 4231 §4.2, §4.3 and §4.7: test cases 1 (a 20-byte key), 2 (a
    /// key shorter than the output) and 6 (a key longer than a block,
    /// hashed first), for all three hashes.
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
        for (key, data, [hs256, hs384, hs512]) in cases {
            assert_eq!(hex(ours::<Sha256>(key, data)), hs256);
            assert_eq!(hex(ours::<Sha384>(key, data)), hs384);
            assert_eq!(hex(ours::<Sha512>(key, data)), hs512);
        }
    }

    /// Every message length across two blocks of each hash, so every way
    /// the padding can fall (within the block, exactly filling it, spilling
    /// into a second) is checked, with keys shorter than, as long as and
    /// longer than a block.
    #[test]
    fn agrees_with_the_hmac_crate_at_every_length_around_the_blocks() {
        let message: Vec<u8> = (0..=300u16).map(|i| (i * 7 + 3) as u8).collect();
        for key_len in [0, 1, 32, 63, 64, 65, 127, 128, 129, 300] {
            let key: Vec<u8> = (0..key_len).map(|i| (i * 13 + 1) as u8).collect();
            for len in 0..=message.len() {
                agree(&key, &message[..len]);
            }
        }
    }

    #[test]
    fn verify_accepts_the_mac_and_nothing_else() {
        let key = Prepared::<Sha256>::new(b"0123456789abcdef0123456789abcdef");
        let message = b"eyJhbGciOiJIUzI1NiJ9.e30";
        let tag = key.mac(message, &mut [0; MAX_OUT]).to_vec();
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

    proptest! {
        #[test]
        fn agrees_with_the_hmac_crate(
            key in proptest::collection::vec(any::<u8>(), 0..300),
            message in proptest::collection::vec(any::<u8>(), 0..1000),
        ) {
            agree(&key, &message);
        }
    }
}
