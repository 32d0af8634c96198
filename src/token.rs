//! Tokens for people: minting (CLI, demo, tests) and reading without a key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::keys::Key;

/// Signs `claims` with `key`; the header names the key's algorithm and kid.
pub fn mint(key: &Key, claims: &Map<String, Value>) -> String {
    let mut header = json!({ "alg": key.alg.name(), "typ": "JWT" });
    if let Some(kid) = &key.kid {
        header["kid"] = Value::from(kid.as_str());
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
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
