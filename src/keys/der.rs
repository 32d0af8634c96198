//! Just enough DER (ITU-T X.690) to find a public key: the
//! SubjectPublicKeyInfo of RFC 5280 §4.1.2.7, alone or inside a certificate,
//! and the RSAPublicKey of RFC 8017 §A.1.1. Definite lengths only, as DER
//! requires; anything else is refused, never guessed at.

/// One tag-length-value element.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Reads the element at the start of `input`; returns it and what follows.
fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High-tag-number form (low five bits all set) never occurs in the
    // structures read here.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        // 0x80 is BER's indefinite length; more than 4 length bytes would
        // describe more than 4 GiB.
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        // DER: the shortest form, so no leading zero byte and no long form below 128.
        if bytes[0] == 0 || len < 0x80 {
            return None;
        }
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// Reads an element that must have `tag`.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version` at the start of a TBSCertificate.
const VERSION: u8 = 0xa0;

/// A SubjectPublicKeyInfo, taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct Spki<'a> {
    /// The algorithm OID's content octets.
    pub algorithm: &'a [u8],
    /// The parameters OID's content octets, when the parameters are an OID
    /// (the named curve of an EC key).
    pub curve: Option<&'a [u8]>,
    /// The subjectPublicKey bits (whole bytes: DER keys always are).
    pub key: &'a [u8],
}

/// Content octets of the OIDs used here.
pub mod oid {
    /// 1.2.840.113549.1.1.1 rsaEncryption
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.10045.2.1 id-ecPublicKey
    pub const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 prime256v1 (P-256)
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 secp384r1 (P-384)
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// 1.3.101.112 id-Ed25519 (RFC 8410)
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
}

/// Parses a whole SubjectPublicKeyInfo (nothing may follow it).
pub fn spki(der: &[u8]) -> Option<Spki<'_>> {
    let (body, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    spki_body(body)
}

fn spki_body(body: &[u8]) -> Option<Spki<'_>> {
    let (algorithm_id, rest) = expect(body, SEQUENCE)?;
    let (bits, rest) = expect(rest, BIT_STRING)?;
    if !rest.is_empty() {
        return None;
    }
    let (algorithm, params) = expect(algorithm_id, OID)?;
    let curve = match read(params) {
        Some((tlv, tail)) if tlv.tag == OID && tail.is_empty() => Some(tlv.value),
        _ => None,
    };
    // The first content byte of a BIT STRING counts the unused bits.
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    Some(Spki {
        algorithm,
        curve,
        key,
    })
}

/// Finds the SubjectPublicKeyInfo inside an X.509 certificate (RFC 5280
/// §4.1). The certificate's own signature is not checked: the operator
/// named this file as the key, so only the key inside it matters.
pub fn certificate_spki(der: &[u8]) -> Option<Spki<'_>> {
    let (certificate, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    let mut fields = tbs;
    if let Some((tlv, rest)) = read(fields)
        && tlv.tag == VERSION
    {
        fields = rest;
    }
    // serialNumber, signature, issuer, validity, subject, then the key.
    let (_, fields) = expect(fields, INTEGER)?;
    let (_, fields) = expect(fields, SEQUENCE)?;
    let (_, fields) = expect(fields, SEQUENCE)?;
    let (_, fields) = expect(fields, SEQUENCE)?;
    let (_, fields) = expect(fields, SEQUENCE)?;
    let (key, _) = expect(fields, SEQUENCE)?;
    spki_body(key)
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER },
/// returned as unsigned big-endian bytes without leading zeros.
pub fn rsa_public_key(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (body, rest) = expect(der, SEQUENCE)?;
    if !rest.is_empty() {
        return None;
    }
    let (n, rest) = expect(body, INTEGER)?;
    let (e, rest) = expect(rest, INTEGER)?;
    if !rest.is_empty() {
        return None;
    }
    Some((strip_zeros(n), strip_zeros(e)))
}

fn strip_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indefinite_and_non_minimal_lengths_are_refused() {
        assert!(read(&[0x30, 0x80, 0x00, 0x00]).is_none());
        assert!(read(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_none());
        assert!(read(&[0x04, 0x82, 0x00, 0x81]).is_none());
        assert!(read(&[0x04, 0x03, 1, 2]).is_none(), "truncated value");
    }

    #[test]
    fn ed25519_spki_from_rfc8410_is_read() {
        // RFC 8410 §10.1 example public key.
        let der = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, 0x19, 0xbf,
            0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc, 0x3b, 0x96,
            0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad, 0x70, 0x31,
            0x66, 0xe1,
        ];
        let spki = spki(&der).unwrap();
        assert_eq!(spki.algorithm, oid::ED25519);
        assert_eq!(spki.curve, None);
        assert_eq!(spki.key.len(), 32);
        assert!(super::spki(&der[..der.len() - 1]).is_none());
    }

    #[test]
    fn rsa_public_key_integers_lose_their_sign_byte() {
        let der = [0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x03];
        assert_eq!(rsa_public_key(&der), Some((&[0x80, 0x01][..], &[0x03][..])));
    }
}
