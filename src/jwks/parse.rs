//! JWK and JWKS parsing (RFC 7517, RFC 7518 §6, RFC 8037 §2): each JWK of a
//! set becomes a verification key, is passed over as not meant for
//! signatures, or is skipped with a reason. A key this gateway cannot use
//! never costs the rest of the set (RFC 7517 §5: "ignore JWKs within a JWK
//! Set that use `kty` values that are not understood").

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::JwksError;
use crate::jwt::Alg;
use crate::keys::{Key, KeyError};

/// Why a JWK was skipped; the label of `jwtgate_jwks_keys_skipped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A `kty` this gateway does not know (`AKP`, …).
    UnsupportedKty,
    /// A known `kty` on a curve not supported here (P-521, secp256k1, Ed448).
    UnsupportedCurve,
    /// An `alg` that names a signature algorithm not supported here (ES512, …).
    UnsupportedAlg,
    /// An RSA key without `alg` where the source's `alg` is not an RSA algorithm.
    NoAlg,
    /// An `alg` the key's type or curve cannot serve (ES384 on P-256, …).
    AlgMismatch,
    /// Missing or malformed members, a point off its curve, an RSA modulus
    /// outside 2048..=8192 bits, a member of the wrong JSON type.
    InvalidKey,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::UnsupportedKty,
        SkipReason::UnsupportedCurve,
        SkipReason::UnsupportedAlg,
        SkipReason::NoAlg,
        SkipReason::AlgMismatch,
        SkipReason::InvalidKey,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SkipReason::UnsupportedKty => "unsupported_kty",
            SkipReason::UnsupportedCurve => "unsupported_curve",
            SkipReason::UnsupportedAlg => "unsupported_alg",
            SkipReason::NoAlg => "no_alg",
            SkipReason::AlgMismatch => "alg_mismatch",
            SkipReason::InvalidKey => "invalid_key",
        }
    }
}

/// One JWK of a set that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// Its position in the set's `keys` array.
    pub index: usize,
    pub kid: Option<String>,
    pub reason: SkipReason,
    pub detail: String,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kid = self.kid.as_deref().unwrap_or("-");
        write!(
            f,
            "key {} (kid {kid}): {} ({})",
            self.index,
            self.detail,
            self.reason.label()
        )
    }
}

/// The usable keys of a set and the JWKs skipped on the way.
#[derive(Debug)]
pub struct ParsedJwks {
    pub keys: Vec<Key>,
    pub skipped: Vec<SkippedKey>,
}

/// One warning per skipped JWK, naming the source it came from. The
/// caller counts them; this only writes the log.
pub fn log_skipped(source: &str, skipped: &[SkippedKey]) {
    for skipped in skipped {
        tracing::warn!(
            source,
            index = skipped.index,
            kid = skipped.kid.as_deref().unwrap_or("-"),
            reason = skipped.reason.label(),
            problem = %skipped.detail,
            "JWK skipped; the set's other keys are used"
        );
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

/// The members of a JWK this gateway reads (RFC 7517 §4, RFC 7518 §6,
/// RFC 8037 §2). Others (`x5c`, `x5t`, …) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// What one JWK turned out to be.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per JWK, moved straight into the key list"
)]
enum Parsed {
    Key(Key),
    /// An encryption or key-agreement key, or a shared secret: not ours to
    /// count or report.
    NotForSignatures,
    Skipped(SkipReason, String),
}

/// Parses a JWKS into keys, each bound to `issuer` when given.
///
/// Keys not meant for verifying signatures (`use` other than `sig`,
/// `key_ops` without `verify`, a JWE key-management `alg`, `kty: oct`,
/// X25519/X448) are passed over silently: identity providers publish
/// encryption keys in the same set. A signature key that cannot be used here
/// is skipped and listed in [`ParsedJwks::skipped`]; only a set left with
/// no usable key is an error ([`JwksError::Empty`]).
///
/// One JWK fails the whole set: a signature key holding a private part
/// (`d`). That is a leaked private key, not a key we cannot read; serving
/// the set's other keys would hide the leak from whoever published it.
///
/// A JWK without `alg` takes the one its key type implies (EC P-256 →
/// ES256, P-384 → ES384, Ed25519 → EdDSA). An RSA JWK without `alg` is
/// `default_alg` (the source's `alg`) when that is an RSA algorithm, RS256
/// when the source names none (Entra ID and Google publish such keys), and
/// skipped when the source names a non-RSA algorithm.
pub fn parse_jwks(
    text: &[u8],
    issuer: Option<&str>,
    default_alg: Option<Alg>,
) -> Result<ParsedJwks, JwksError> {
    let set: RawSet = serde_json::from_slice(text).map_err(|e| JwksError::Json(e.to_string()))?;
    let mut parsed = ParsedJwks {
        keys: Vec::new(),
        skipped: Vec::new(),
    };
    for (index, value) in set.keys.into_iter().enumerate() {
        let kid = value.get("kid").and_then(Value::as_str).map(str::to_owned);
        if holds_private_part(&value) {
            return Err(JwksError::PrivateKey { index, kid });
        }
        let outcome = match serde_json::from_value::<RawJwk>(value) {
            Ok(jwk) => parse_jwk(jwk, default_alg),
            Err(err) => Parsed::Skipped(SkipReason::InvalidKey, format!("not a JWK: {err}")),
        };
        match outcome {
            Parsed::Key(key) => parsed.keys.push(key.for_issuer(issuer.map(str::to_owned))),
            Parsed::NotForSignatures => {
                tracing::debug!(index, ?kid, "JWK passed over: not a signature key");
            }
            Parsed::Skipped(reason, detail) => parsed.skipped.push(SkippedKey {
                index,
                kid,
                reason,
                detail,
            }),
        }
    }
    if parsed.keys.is_empty() {
        return Err(JwksError::Empty {
            skipped: parsed.skipped,
        });
    }
    Ok(parsed)
}

/// Whether `jwk` is a signature key carrying a private member. Read from
/// the JSON value itself, so a JWK that is otherwise malformed (and would
/// be skipped) still fails its set when it leaks a private key.
fn holds_private_part(jwk: &Value) -> bool {
    let not_for_signatures = jwk
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
        || jwk
            .get("key_ops")
            .and_then(Value::as_array)
            .is_some_and(|ops| !ops.iter().any(|op| op.as_str() == Some("verify")));
    let is_secret = jwk.get("kty").and_then(Value::as_str) == Some("oct");
    !not_for_signatures && !is_secret && jwk.get("d").is_some()
}

/// RFC 7518 §4.1's key-management algorithms (and RFC 8037's ECDH on OKP):
/// their keys encrypt, they do not sign.
fn is_key_management_alg(name: &str) -> bool {
    matches!(
        name,
        "RSA1_5"
            | "RSA-OAEP"
            | "RSA-OAEP-256"
            | "RSA-OAEP-384"
            | "RSA-OAEP-512"
            | "A128KW"
            | "A192KW"
            | "A256KW"
            | "dir"
            | "ECDH-ES"
            | "ECDH-ES+A128KW"
            | "ECDH-ES+A192KW"
            | "ECDH-ES+A256KW"
            | "A128GCMKW"
            | "A192GCMKW"
            | "A256GCMKW"
            | "PBES2-HS256+A128KW"
            | "PBES2-HS384+A192KW"
            | "PBES2-HS512+A256KW"
    )
}

fn is_rsa(alg: Alg) -> bool {
    matches!(
        alg,
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
    )
}

/// `"P-521"`, or `(none)` for a JWK without `crv`.
fn curve_name(crv: Option<&str>) -> String {
    crv.map_or_else(|| "(none)".to_owned(), |crv| format!("{crv:?}"))
}

fn parse_jwk(jwk: RawJwk, default_alg: Option<Alg>) -> Parsed {
    use SkipReason::*;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Parsed::NotForSignatures;
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Parsed::NotForSignatures;
    }
    // RFC 7517 §5: a `kty` not understood is ignored, whatever its `alg`.
    if !matches!(jwk.kty.as_str(), "RSA" | "EC" | "OKP" | "oct") {
        return Parsed::Skipped(
            UnsupportedKty,
            format!("kty {:?} is not supported", jwk.kty),
        );
    }
    let alg = match jwk.alg.as_deref() {
        Some(name) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            None if is_key_management_alg(name) => return Parsed::NotForSignatures,
            None => {
                return Parsed::Skipped(UnsupportedAlg, format!("alg {name:?} is not supported"));
            }
        },
        None => None,
    };
    let b64 = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
        let value = value.as_deref().ok_or(format!("missing \"{name}\""))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let kid = jwk.kid.clone();
    let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => {
            let alg = match (alg, default_alg) {
                (Some(alg), _) => alg,
                (None, Some(default)) if is_rsa(default) => default,
                (None, Some(default)) => {
                    return Parsed::Skipped(
                        NoAlg,
                        format!(
                            "RSA key without \"alg\", and the source's alg {default} is not an RSA algorithm"
                        ),
                    );
                }
                (None, None) => Alg::RS256,
            };
            match (b64("n", &jwk.n), b64("e", &jwk.e)) {
                (Ok(n), Ok(e)) => Key::rsa(kid, alg, &n, &e),
                (Err(problem), _) | (_, Err(problem)) => {
                    return Parsed::Skipped(InvalidKey, problem);
                }
            }
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let implied = if crv == "P-256" {
                Alg::ES256
            } else {
                Alg::ES384
            };
            let alg = alg.unwrap_or(implied);
            if alg != implied {
                return Parsed::Skipped(
                    AlgMismatch,
                    format!("alg {alg} does not match curve {crv}"),
                );
            }
            match (b64("x", &jwk.x), b64("y", &jwk.y)) {
                (Ok(x), Ok(y)) => Key::ec(kid, alg, &x, &y),
                (Err(problem), _) | (_, Err(problem)) => {
                    return Parsed::Skipped(InvalidKey, problem);
                }
            }
        }
        ("EC", crv) => {
            return Parsed::Skipped(
                UnsupportedCurve,
                format!("EC curve {} is not supported", curve_name(crv)),
            );
        }
        ("OKP", Some("Ed25519")) => match b64("x", &jwk.x) {
            Ok(x) => Key::ed25519(kid, alg.unwrap_or(Alg::EdDSA), &x),
            Err(problem) => return Parsed::Skipped(InvalidKey, problem),
        },
        // X25519/X448 are key-agreement keys.
        ("OKP", Some("X25519" | "X448")) => return Parsed::NotForSignatures,
        ("OKP", crv) => {
            return Parsed::Skipped(
                UnsupportedCurve,
                format!("OKP curve {} is not supported", curve_name(crv)),
            );
        }
        // A shared secret has no business in a key set fetched or stored
        // beside public keys; configure it as a [[jwt.keys]] secret.
        ("oct", _) => return Parsed::NotForSignatures,
        (kty, _) => {
            return Parsed::Skipped(UnsupportedKty, format!("kty {kty:?} is not supported"));
        }
    };
    match key {
        Ok(key) => Parsed::Key(key),
        Err(err @ KeyError::WrongKeyType { .. }) => Parsed::Skipped(AlgMismatch, err.to_string()),
        Err(err) => Parsed::Skipped(InvalidKey, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const A3: &str = r#""kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0""#;
    const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

    fn parse(keys: &str, default_alg: Option<Alg>) -> Result<ParsedJwks, JwksError> {
        parse_jwks(
            format!(r#"{{"keys":[{keys}]}}"#).as_bytes(),
            None,
            default_alg,
        )
    }

    /// The reasons a set with one usable key (A.3's) skipped the others.
    fn skipped_beside_a3(jwks: &str) -> Vec<SkipReason> {
        let parsed = parse(&format!(r#"{jwks},{{"kid":"ok",{A3}}}"#), None).unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.keys[0].kid.as_deref(), Some("ok"));
        parsed.skipped.iter().map(|s| s.reason).collect()
    }

    #[test]
    fn ec_jwk_without_alg_takes_the_algorithm_its_curve_implies() {
        let keys = parse(&format!(r#"{{"kid":"a",{A3}}}"#), None).unwrap().keys;
        assert_eq!(keys[0].alg, Alg::ES256);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
    }

    #[test]
    fn rsa_jwk_without_alg_is_rs256_or_the_sources_rsa_alg() {
        let jwk = format!(r#"{{"kty":"RSA","kid":"r","n":"{A2_N}","e":"AQAB"}}"#);
        assert_eq!(parse(&jwk, None).unwrap().keys[0].alg, Alg::RS256);
        assert_eq!(
            parse(&jwk, Some(Alg::PS256)).unwrap().keys[0].alg,
            Alg::PS256
        );
        // The source says its keys without alg are ES256: an RSA key cannot be.
        let parsed = parse(&format!(r#"{jwk},{{{A3}}}"#), Some(Alg::ES256)).unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert_eq!(parsed.skipped[0].reason, SkipReason::NoAlg);
    }

    #[test]
    fn unusable_signature_keys_are_skipped_one_by_one_with_their_reason() {
        let p521 = r#"{"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"}"#;
        let ed448 = r#"{"kty":"OKP","crv":"Ed448","kid":"ed448","x":"AA"}"#;
        let akp = r#"{"kty":"AKP","alg":"ML-DSA-44","kid":"pq","pub":"AA"}"#;
        let es512 = r#"{"kty":"EC","crv":"P-521","alg":"ES512","x":"AA","y":"AA"}"#;
        let bad_n = r#"{"kty":"RSA","alg":"RS256","n":"!!","e":"AQAB"}"#;
        let n_number = r#"{"kty":"RSA","alg":"RS256","n":5,"e":"AQAB"}"#;
        let no_kty = r#"{"kid":"x"}"#;
        let off_curve = format!(r#"{{"alg":"ES384",{A3}}}"#);
        let mismatched = format!(r#"{{"alg":"RS256",{A3}}}"#);
        let short = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let short = format!(r#"{{"kty":"RSA","alg":"RS256","n":"{short}","e":"AQAB"}}"#);
        use SkipReason::*;
        assert_eq!(
            skipped_beside_a3(&[p521, ed448, akp, es512, bad_n, n_number, no_kty].join(",")),
            [
                UnsupportedCurve,
                UnsupportedCurve,
                UnsupportedKty,
                UnsupportedAlg,
                InvalidKey,
                InvalidKey,
                InvalidKey
            ]
        );
        assert_eq!(
            skipped_beside_a3(&[off_curve, mismatched, short].join(",")),
            [AlgMismatch, AlgMismatch, InvalidKey]
        );
        assert_eq!(skipped_beside_a3("1").as_slice(), [InvalidKey]);
    }

    #[test]
    fn skipped_key_names_its_index_kid_and_problem() {
        let parsed = parse(
            &format!(r#"{{"kty":"EC","crv":"P-521","kid":"p521"}},{{{A3}}}"#),
            None,
        )
        .unwrap();
        assert_eq!(
            parsed.skipped[0].to_string(),
            r#"key 0 (kid p521): EC curve "P-521" is not supported (unsupported_curve)"#
        );
    }

    #[test]
    fn encryption_keys_are_passed_over_without_being_counted_as_skipped() {
        let jwks = format!(
            r#"{{"use":"enc",{A3}}},{{"key_ops":["encrypt"],{A3}}},{{"alg":"RSA-OAEP","kty":"RSA","n":"{A2_N}","e":"AQAB"}},{{"kty":"oct","k":"c2VjcmV0"}},{{"kty":"OKP","crv":"X25519","x":"AA"}},{{"use":"sig","alg":"ES256",{A3}}}"#
        );
        let parsed = parse(&jwks, None).unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
    }

    #[test]
    fn set_whose_only_key_is_unusable_is_an_error_that_says_why() {
        let err = parse(&format!(r#"{{"alg":"HS256",{A3}}}"#), None).unwrap_err();
        assert!(
            matches!(&err, JwksError::Empty { skipped } if skipped.len() == 1),
            "{err}"
        );
        let short = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let jwk = format!(r#"{{"kty":"RSA","alg":"RS256","n":"{short}","e":"AQAB"}}"#);
        let err = parse(&jwk, None).unwrap_err().to_string();
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[test]
    fn signature_jwk_with_private_parts_fails_the_whole_set() {
        let leaked =
            format!(r#"{{"kid":"leak","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",{A3}}}"#);
        let err = parse(&format!(r#"{{"kid":"ok",{A3}}},{leaked}"#), None).unwrap_err();
        assert!(
            matches!(&err, JwksError::PrivateKey { index: 1, kid: Some(kid) } if kid == "leak"),
            "{err}"
        );
        // Even when the rest of that JWK is unreadable.
        let broken = r#"{"kty":"EC","crv":"P-521","d":"AA"}"#;
        assert!(matches!(
            parse(&format!(r#"{{{A3}}},{broken}"#), None),
            Err(JwksError::PrivateKey { index: 1, .. })
        ));
    }

    #[test]
    fn every_skip_reason_has_its_metrics_label() {
        let labels: Vec<&str> = SkipReason::ALL.iter().map(|r| r.label()).collect();
        let mut counted = crate::metrics::JWKS_SKIP_REASONS.to_vec();
        assert_eq!(counted.pop(), Some("other"));
        assert_eq!(labels, counted);
    }

    #[test]
    fn set_without_any_signature_key_is_an_error() {
        assert!(matches!(parse("", None), Err(JwksError::Empty { .. })));
        assert!(matches!(
            parse_jwks(b"[1,2]", None, None),
            Err(JwksError::Json(_))
        ));
    }
}
