//! Header hygiene in both directions.
//!
//! - Hop-by-hop headers (RFC 9110 §7.6.1): `Connection`, the fields it names,
//!   and the fixed list below are removed before forwarding either way.
//! - Identity: the token and every client-sent copy of an identity header are
//!   removed, in any letter case and in the underscore spelling, which some
//!   frameworks (CGI/WSGI, nginx's underscores_in_headers) merge with the dash
//!   form; so are configured claim headers. The gateway's own values are
//!   added last, so nothing a client sends — `Connection: X-User-Id`
//!   included — can remove or replace them. Values are encoded by one rule
//!   ([`encode_value`]), so no claim can put CR, LF or a second list item
//!   into a header.
//! - Forwarding: `X-Forwarded-For/-Proto/-Host` are set by the gateway (the
//!   edge trusts no earlier hop), and `Forwarded` is dropped.
//! - Overrides: fields that backends read in place of the request's path or
//!   method are removed (both spellings), unless configured to pass: the
//!   gateway routed and authorised the request line, not those fields.
//!
//! Headers are edited in place, so repeated fields (`Set-Cookie`) survive.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::jwt::{ClaimPath, ClaimSet, Roles};

pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
pub const X_ROLE: HeaderName = HeaderName::from_static("x-role");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// RFC 9110 §7.6.1 plus the de-facto `Keep-Alive` and `Proxy-Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, including those named in `Connection`, and
/// `Upgrade` (an upgrade the gateway allows is put back by `keep_upgrade`).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present (a handful) finds which listed headers
    // are there, instead of a hashed lookup per listed name; most requests
    // carry none, most responses only `Connection`.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::UPGRADE {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // HOP_BY_HOP[0] is `Connection`. Its values are cloned (a reference
        // count, no copy) so the map can be edited while reading them; a
        // second `Connection` field is rare enough to be collected.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let more: Vec<HeaderValue> = values.cloned().collect();
        for value in first.iter().chain(&more) {
            let Ok(options) = value.to_str() else {
                continue;
            };
            for option in options.split(',') {
                // Looked up by `&str`: lower-cased on the stack, and a token
                // that is no header name matches nothing.
                headers.remove(option.trim());
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(header::UPGRADE);
    }
    // RFC 9112 §6.3: with Transfer-Encoding the body was framed by it, and a
    // Content-Length beside it MUST go before forwarding; kept, it would
    // frame the re-sent body wrongly (hyper drops it from requests itself,
    // not from an upstream's response).
    if present & (1 << TRANSFER_ENCODING_AT) != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// Where `Transfer-Encoding` is in [`HOP_BY_HOP`] (a test holds it there).
const TRANSFER_ENCODING_AT: usize = 7;

/// Whether `Transfer-Encoding` names a coding besides `chunked`.
pub fn names_other_transfer_coding(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|value| {
            let Ok(codings) = value.to_str() else {
                return true;
            };
            (codings.split(',')).any(|coding| !coding.trim().eq_ignore_ascii_case("chunked"))
        })
}

/// The protocol an HTTP/1.1 request asks to upgrade to (RFC 9110 §7.8):
/// an `Upgrade` header and `upgrade` among the `Connection` options.
/// HTTP/2 has no such mechanism.
///
/// An upgrade to HTTP itself (`h2c`, `HTTP/2.0`) is not passed on: the
/// connection would carry further requests straight to the upstream, past
/// routing and authentication ("h2c smuggling"). Such a request goes on as
/// a plain one; the server may ignore `Upgrade` (RFC 9110 §7.8).
pub fn requested_upgrade<B>(request: &http::Request<B>) -> Option<HeaderValue> {
    if request.version() != http::Version::HTTP_11 {
        return None;
    }
    let headers = request.headers();
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("upgrade"));
    let mut protocols = headers.get_all(header::UPGRADE).iter();
    match (connection_upgrade, protocols.next(), protocols.next()) {
        (true, Some(protocol), None) if !names_http(protocol) => Some(protocol.clone()),
        _ => None,
    }
}

/// Whether an `Upgrade` value lists HTTP (`HTTP/…`, `h2c`, `h2`, drafts
/// such as `h2c-14`) among its protocols; a value that is not text lists
/// nothing else usable either.
fn names_http(protocols: &HeaderValue) -> bool {
    let Ok(protocols) = protocols.to_str() else {
        return true;
    };
    protocols.split(',').any(|protocol| {
        let name = protocol.trim().split('/').next().unwrap_or_default();
        name.eq_ignore_ascii_case("http")
            || name.get(..2).is_some_and(|n| n.eq_ignore_ascii_case("h2"))
    })
}

/// Why the host a request addressed cannot be told.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("more than one Host header")]
    Repeated,
    #[error("HTTP/1.1 request without Host")]
    Missing,
    #[error(":authority and Host disagree")]
    Conflicting,
    #[error("the host is not a host[:port]")]
    Invalid,
}

/// The host the client addressed, for `X-Forwarded-Host`. RFC 9112 §3.2:
/// an HTTP/1.1 request needs exactly one `Host`, and an absolute-form
/// target's authority wins over it; RFC 9113 §8.3.1: an HTTP/2 `Host` that
/// differs from `:authority` makes the request malformed.
pub fn client_host<B>(request: &http::Request<B>) -> Result<Option<HeaderValue>, HostError> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let (host, repeated) = (hosts.next(), hosts.next().is_some());
    if repeated {
        return Err(HostError::Repeated);
    }
    let authority = request.uri().authority().map(|a| a.as_str());
    let addressed = match (request.version(), authority, host) {
        (http::Version::HTTP_2, Some(authority), Some(host))
            if !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes()) =>
        {
            return Err(HostError::Conflicting);
        }
        (_, Some(authority), _) => HeaderValue::from_str(authority).ok(),
        (http::Version::HTTP_11, None, None) => return Err(HostError::Missing),
        (_, None, host) => host.cloned(),
    };
    match &addressed {
        // RFC 9112 §3.2: an empty Host when the target has no authority.
        Some(host) if host.is_empty() => Ok(None),
        Some(host) if !is_host(host.as_bytes()) => Err(HostError::Invalid),
        _ => Ok(addressed),
    }
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2–3): a bracketed IPv6 address
/// (with an optional `%25` zone), or a name or IPv4 address of letters,
/// digits, `-`, `.` and `_`; then optionally `:` and digits. RFC 9112 §3.2
/// wants a 400 for anything else — userinfo (`a@b`), a path, a space, a
/// list (`a,b`) — which upstreams would read each their own way.
fn is_host(value: &[u8]) -> bool {
    let (host_ok, port) = match value.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => (is_ipv6_literal(&rest[..end]), &rest[end + 1..]),
            None => return false,
        },
        None => {
            let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
            let name = &value[..end];
            let ok = |b: &u8| b.is_ascii_alphanumeric() || b"-._".contains(b);
            (!name.is_empty() && name.iter().all(ok), &value[end..])
        }
    };
    host_ok
        && match port.split_first() {
            None => true,
            Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
            Some(_) => false,
        }
}

/// The inside of `[…]`: hex digits, `:` and `.` (an embedded IPv4), then
/// optionally a zone, `%25` and unreserved characters (RFC 6874).
fn is_ipv6_literal(text: &[u8]) -> bool {
    let (address, zone) = match text.windows(3).position(|w| w == b"%25") {
        Some(at) => (&text[..at], Some(&text[at + 3..])),
        None => (text, None),
    };
    address.contains(&b':')
        && address
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && zone.is_none_or(|zone| {
            !zone.is_empty()
                && zone
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

/// HTTP/2 clients may split `Cookie` into one field per cookie; HTTP/1.1
/// allows one field, so they are joined with "; " (RFC 9113 §8.2.3).
pub fn merge_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    if cookies.next().is_none() || cookies.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// Puts back the two headers an upgrade needs after `remove_hop_by_hop`.
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Whether `name` is `canonical` (lower case, with dashes) or its underscore
/// spelling, which CGI-style frameworks merge with the dash form.
fn spelled_as(name: &HeaderName, canonical: &str) -> bool {
    // HeaderName is already lower case; compare with '_' read as '-'.
    name.as_str().len() == canonical.len()
        && name
            .as_str()
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Whether `name` is, or would be merged by a backend into, an identity
/// header: `X-User-Id`, `X-Role` or a configured claim header.
fn is_identity_header(name: &HeaderName, claim_names: &[HeaderName]) -> bool {
    spelled_as(name, "x-user-id")
        || spelled_as(name, "x-role")
        || claim_names
            .iter()
            .any(|claim| spelled_as(name, claim.as_str()))
}

/// A header the upstream gets from a claim of the verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimHeader {
    pub name: HeaderName,
    pub carries: Carries,
}

/// What a claim header carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carries {
    /// One claim's value, encoded by [`encode_value`].
    Claim(ClaimPath),
    /// The whole verified claim set, base64url-encoded (unpadded), as
    /// Envoy's `forward_payload_header` sends it.
    Payload,
}

/// Request fields that backends read in place of the request line:
/// `X-Original-URL` and `X-Rewrite-URL` replace the path (IIS URL Rewrite,
/// Symfony, Laminas), the other three the method (the "method override"
/// of many web frameworks). A backend honouring them would serve `/admin`
/// or `DELETE` to a request routed and authorised as `GET /public`.
pub const OVERRIDE_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Removes every field of [`OVERRIDE_HEADERS`], in any letter case and the
/// underscore spelling, except the dash spelling of those in `kept` (an
/// operator's choice, from `[server] forward_override_headers`).
pub fn remove_override_headers(headers: &mut HeaderMap, kept: &[HeaderName]) {
    let is_override = |name: &HeaderName| {
        OVERRIDE_HEADERS
            .iter()
            .any(|o| spelled_as(name, o.as_str()) && !(name == o && kept.contains(o)))
    };
    // Only requests that carry one pay for the list.
    if !headers.keys().any(is_override) {
        return;
    }
    let found: Vec<HeaderName> = headers.keys().filter(|n| is_override(n)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

/// The identity forwarded for a request.
pub struct Identity<'a> {
    pub user: Option<&'a str>,
    pub roles: &'a Roles,
    /// The token's claims, and the claim headers to send from them (a later
    /// header of the same name replaces an earlier one).
    pub claims: &'a ClaimSet,
    pub claim_headers: &'a [&'a [ClaimHeader]],
}

impl Identity<'_> {
    /// The `X-User-Id` and `X-Role` values, `None` where empty.
    fn header_values(&self) -> (Option<HeaderValue>, Option<HeaderValue>) {
        let user = self.user.filter(|user| !user.is_empty());
        let user = user.and_then(|user| encoded(encode_value(user, false).into_owned()));
        let roles = match self.roles.is_empty() {
            true => None,
            false => encoded(encode_list(self.roles.iter())),
        };
        (user, roles)
    }
}

/// The one rule for every identity value sent upstream (`X-User-Id`,
/// `X-Role`, claim headers): percent-encoding (RFC 3986 §2.1, upper-case
/// hex) of every byte outside visible ASCII and of `%` itself, so control
/// characters (CR and LF among them) and non-ASCII text arrive as
/// `%XX` of their UTF-8 bytes, and a value decodes back exactly. Inner
/// spaces stay; a space at either end is encoded. In a list (`X-Role`, an
/// array claim) items are joined by `,`, so a `,` inside an item is encoded
/// too. Plain values (nearly all) are returned as they are.
pub fn encode_value(value: &str, list_item: bool) -> Cow<'_, str> {
    let last = value.len().saturating_sub(1);
    let plain = |(i, b): (usize, u8)| match b {
        b' ' => i != 0 && i != last,
        b'%' => false,
        b',' => !list_item,
        b => (0x21..0x7f).contains(&b),
    };
    if value.bytes().enumerate().all(plain) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, b) in value.bytes().enumerate() {
        match plain((i, b)) {
            true => out.push(char::from(b)),
            false => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    Cow::Owned(out)
}

/// Items encoded by [`encode_value`] and joined by `,`.
pub fn encode_list<'v>(items: impl Iterator<Item = &'v str>) -> String {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&encode_value(item, true));
    }
    out
}

/// A claim's raw JSON as a header value: a string encoded, an array's
/// items as a list, a number or boolean as its text, an object as its
/// compact JSON text encoded. `None` for `null`.
pub fn claim_header_value(raw: &str) -> Option<HeaderValue> {
    if let Some(values) = crate::rules::claim_values(raw) {
        let text = match raw.as_bytes().first() {
            Some(b'[') => encode_list(values.iter().map(|v| &**v)),
            _ => values
                .first()
                .map(|v| encode_value(v, false).into_owned())?,
        };
        return encoded(text);
    }
    match serde_json::from_str::<serde_json::Value>(raw).ok()? {
        serde_json::Value::Null => None,
        value => encoded(encode_value(&value.to_string(), false).into_owned()),
    }
}

/// An encoded value is visible ASCII, so this cannot fail; were it to, the
/// header is left out (the safe side), never sent broken.
fn encoded(text: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
}

/// Prepares request headers for the upstream. Call after `remove_hop_by_hop`.
/// `claim_names` are every configured claim header's name: client copies of
/// them are removed on every route, like `X-User-Id` and `X-Role`.
pub fn prepare_request(
    headers: &mut HeaderMap,
    identity: Option<Identity<'_>>,
    claim_names: &[HeaderName],
    client_ip: IpAddr,
    host: Option<HeaderValue>,
) {
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::FORWARDED);
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_identity_header(n, claim_names))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }

    if let Some(identity) = identity {
        let (user, roles) = identity.header_values();
        if let Some(user) = user {
            headers.insert(X_USER_ID, user);
        }
        if let Some(roles) = roles {
            headers.insert(X_ROLE, roles);
        }
        for claim_header in identity.claim_headers.iter().flat_map(|list| list.iter()) {
            let value = match &claim_header.carries {
                Carries::Claim(claim) => identity.claims.get(&claim.0).and_then(claim_header_value),
                Carries::Payload => {
                    use base64::Engine;
                    let payload = identity.claims.text();
                    encoded(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload))
                }
            };
            match value {
                Some(value) => headers.insert(claim_header.name.clone(), value),
                None => headers.remove(&claim_header.name),
            };
        }
    }

    headers.insert(X_FORWARDED_FOR, ip_value(client_ip));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// Makes request ids: a random per-process prefix and a counter, so ids are
/// unique across replicas without a syscall or a lock per request.
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        // Without randomness the prefix falls back to the clock and pid:
        // still distinct between processes in practice.
        if crate::tls::provider()
            .secure_random
            .fill(&mut seed)
            .is_err()
        {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            seed = (u64::from(nanos) << 32 | u64::from(std::process::id())).to_le_bytes();
        }
        RequestIds {
            prefix: u64::from_le_bytes(seed),
            next: AtomicU64::new(0),
        }
    }

    fn generate(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // 32 lower-case hex digits, written by hand: `format!` cost more
        // than everything else here together.
        let mut id = [0u8; 32];
        for (i, digit) in id.iter_mut().enumerate() {
            let (word, shift) = match i {
                0..16 => (self.prefix, 60 - 4 * i),
                _ => (n, 60 - 4 * (i - 16)),
            };
            *digit = HEX[((word >> shift) & 0xf) as usize];
        }
        // Hex digits are always a valid header value.
        HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

/// The request's `X-Request-Id` when it is one plausible id (1–128 of
/// `A-Z a-z 0-9 - _ . : /`), else a new one: a client cannot inject log
/// syntax or a megabyte of text through it.
pub fn request_id(headers: &HeaderMap, ids: &RequestIds) -> HeaderValue {
    let mut sent = headers.get_all(X_REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(id), None)
            if (1..=128).contains(&id.len())
                && id
                    .as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(b)) =>
        {
            id.clone()
        }
        _ => ids.generate(),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn ip_value(ip: IpAddr) -> HeaderValue {
    let value = match ip.to_canonical() {
        // The common case, written on the stack: `to_string` goes through
        // the formatting machinery and a heap buffer on every request.
        IpAddr::V4(v4) => {
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = match octet {
                    0..10 => 2,
                    10..100 => 1,
                    _ => 0,
                };
                for digit in &digits[skip..] {
                    text[len] = b'0' + digit;
                    len += 1;
                }
            }
            HeaderValue::from_bytes(&text[..len])
        }
        ip => HeaderValue::from_str(&ip.to_string()),
    };
    // An IP address's text is always a valid header value.
    value.unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn override_headers_are_removed_in_every_spelling_unless_kept() {
        let sent = [
            ("X-Original-URL", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X_HTTP_Method", "DELETE"),
            ("x-method-override", "PUT"),
            ("x-method-override", "PATCH"),
            ("x_http_method_override", "DELETE"),
            ("X-Original-URLs", "kept: another name"),
        ];
        let mut h = map(&sent);
        remove_override_headers(&mut h, &[]);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-original-urls"]);

        let mut h = map(&sent);
        remove_override_headers(&mut h, std::slice::from_ref(&OVERRIDE_HEADERS[2]));
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-http-method-override", "x-original-urls"]);
    }

    #[test]
    fn client_identity_headers_are_removed_in_every_spelling() {
        let mut h = map(&[
            ("X-User-Id", "evil"),
            ("x-role", "admin"),
            ("X_User_Id", "evil"),
            ("x_ROLE", "admin"),
            ("x-user-identity", "kept"),
        ]);
        prepare_request(&mut h, None, &[], IP, None);
        assert!(h.get("x-user-id").is_none());
        assert!(h.get("x-role").is_none());
        assert!(h.get("x_user_id").is_none());
        assert!(h.get("x_role").is_none());
        assert_eq!(h.get("x-user-identity").unwrap(), "kept");
    }

    #[test]
    fn verified_identity_replaces_client_copies() {
        let mut h = map(&[("x-user-id", "evil"), ("authorization", "Bearer t")]);
        let roles = Roles::of(&["user", "ops"]);
        prepare_request(
            &mut h,
            Some(Identity {
                user: Some("42"),
                roles: &roles,
                claims: &ClaimSet::default(),
                claim_headers: &[],
            }),
            &[],
            IP,
            None,
        );
        assert_eq!(h.get_all("x-user-id").iter().collect::<Vec<_>>(), ["42"]);
        assert_eq!(h.get("x-role").unwrap(), "user,ops");
        assert!(h.get("authorization").is_none());
    }

    #[test]
    fn identity_headers_are_set_only_for_what_the_token_has() {
        let none = Roles::default();
        let ops = Roles::of(&["ops"]);
        let several = Roles::of(&["reader", "writer", "ops"]);
        let long = "a-much-longer-user-id@example.com";
        for (user, roles, want_user, want_roles) in [
            (Some("42"), &none, Some("42"), None),
            (None, &ops, None, Some("ops")),
            (None, &none, None, None),
            (Some("42"), &ops, Some("42"), Some("ops")),
            (Some(long), &several, Some(long), Some("reader,writer,ops")),
        ] {
            let mut h = map(&[
                ("x-user-id", "evil"),
                ("x-role", "admin"),
                ("X_User_Id", "evil"),
                ("x_role", "admin"),
            ]);
            let identity = Identity {
                user,
                roles,
                claims: &ClaimSet::default(),
                claim_headers: &[],
            };
            prepare_request(&mut h, Some(identity), &[], IP, None);
            let copy = h.clone();
            drop(h);
            let values = |name: &str| -> Vec<String> {
                copy.get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(values("x-user-id"), Vec::from_iter(want_user));
            assert_eq!(values("x-role"), Vec::from_iter(want_roles));
            assert!(values("x_user_id").is_empty() && values("x_role").is_empty());
        }
    }

    #[test]
    fn connection_cannot_nominate_the_gateways_own_headers() {
        let mut h = map(&[
            ("connection", "X-User-Id, x-role, keep-alive"),
            ("keep-alive", "5"),
        ]);
        remove_hop_by_hop(&mut h);
        let roles = Roles::of(&["user"]);
        prepare_request(
            &mut h,
            Some(Identity {
                user: Some("42"),
                roles: &roles,
                claims: &ClaimSet::default(),
                claim_headers: &[],
            }),
            &[],
            IP,
            None,
        );
        assert_eq!(h.get("x-user-id").unwrap(), "42");
        assert_eq!(h.get("x-role").unwrap(), "user");
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_are_dropped_repeated_ones_kept() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        remove_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["set-cookie"]);
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }

    fn request(version: http::Version, uri: &str, hosts: &[&str]) -> http::Request<()> {
        let mut builder = http::Request::get(uri).version(version);
        for host in hosts {
            builder = builder.header("host", *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_addressed_host_is_unambiguous_or_refused() {
        use http::Version;
        let host = |r: &http::Request<()>| {
            client_host(r).map(|h| h.map(|v| v.to_str().unwrap().to_owned()))
        };
        assert_eq!(
            host(&request(Version::HTTP_11, "/", &["a.example"])),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            host(&request(Version::HTTP_11, "/", &["a", "b"])),
            Err(HostError::Repeated)
        );
        assert_eq!(
            host(&request(Version::HTTP_11, "/", &[])),
            Err(HostError::Missing)
        );
        assert_eq!(host(&request(Version::HTTP_10, "/", &[])), Ok(None));
        // Absolute-form: the target's authority wins over Host.
        assert_eq!(
            host(&request(Version::HTTP_11, "http://b.example/x", &["a"])),
            Ok(Some("b.example".into()))
        );
        assert_eq!(
            host(&request(
                Version::HTTP_2,
                "https://a.example/",
                &["A.example"]
            )),
            Ok(Some("a.example".into()))
        );
        assert_eq!(
            host(&request(Version::HTTP_2, "https://a.example/", &["evil"])),
            Err(HostError::Conflicting)
        );
        assert_eq!(host(&request(Version::HTTP_11, "/", &[""])), Ok(None));
        for bad in [
            "x/y",
            "a b",
            "evil.example@good.example",
            "a\\b",
            "a?b",
            "a,b",
            "a:b:c",
            "]x[",
            "a'b",
            "x;y=z",
            "a%41",
            "a:99999x",
            "[::1",
            "[zz::1]",
            "[fe80::1%25]",
            "bücher.example",
        ] {
            let r = request(Version::HTTP_11, "/", &[bad]);
            assert_eq!(host(&r), Err(HostError::Invalid), "{bad:?}");
        }
        let r = request(Version::HTTP_2, "https://evil.example@good.example/", &[]);
        assert_eq!(host(&r), Err(HostError::Invalid));
        for good in [
            "a.example:8443",
            "[2001:db8::1]:443",
            "192.0.2.7",
            "xn--bcher-kva.example",
            "[::ffff:192.0.2.7]",
            "[fe80::1%25eth0]:80",
            "under_score.local:",
        ] {
            let r = request(Version::HTTP_11, "/", &[good]);
            assert_eq!(host(&r), Ok(Some(good.into())), "{good:?}");
        }
    }

    #[test]
    fn transfer_encoding_is_where_remove_hop_by_hop_looks_for_it() {
        assert_eq!(HOP_BY_HOP[TRANSFER_ENCODING_AT], header::TRANSFER_ENCODING);
    }

    #[test]
    fn upgrades_to_http_itself_are_not_passed_on() {
        let upgrade = |protocol: &str| {
            let request = http::Request::get("/")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", protocol)
                .body(())
                .unwrap();
            requested_upgrade(&request).map(|p| p.to_str().unwrap().to_owned())
        };
        assert_eq!(upgrade("websocket").as_deref(), Some("websocket"));
        assert_eq!(upgrade("spdy/3.1").as_deref(), Some("spdy/3.1"));
        for http in [
            "h2c",
            "H2C",
            "HTTP/2.0",
            "http/1.1",
            "websocket, h2c",
            " h2c ",
        ] {
            assert_eq!(upgrade(http), None, "{http}");
        }
    }

    #[test]
    fn split_cookies_are_joined_into_one_field() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        merge_cookies(&mut h);
        assert_eq!(
            h.get_all("cookie").iter().collect::<Vec<_>>(),
            ["a=1; b=2; c=3"]
        );
    }

    #[test]
    fn plausible_request_ids_are_kept_others_replaced() {
        let ids = RequestIds::new();
        assert_eq!(
            request_id(&map(&[("x-request-id", "abc-123")]), &ids),
            "abc-123"
        );
        for bad in ["", "a b", "x\"y", &"a".repeat(129)] {
            let id = request_id(&map(&[("x-request-id", bad)]), &ids);
            assert_eq!(id.len(), 32, "{bad:?}");
        }
        let twice = map(&[("x-request-id", "a"), ("x-request-id", "b")]);
        assert_eq!(request_id(&twice, &ids).len(), 32);
        assert_ne!(request_id(&map(&[]), &ids), request_id(&map(&[]), &ids));
    }

    #[test]
    fn client_addresses_are_written_as_std_writes_them() {
        let v4 = [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "192.0.2.7",
            "10.0.0.1",
        ];
        for ip in v4 {
            assert_eq!(ip_value(ip.parse().unwrap()), ip);
        }
        assert_eq!(ip_value("2001:db8::1".parse().unwrap()), "2001:db8::1");
        // An IPv4-mapped IPv6 peer (a dual-stack listener) is shown as IPv4.
        assert_eq!(ip_value("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
    }

    #[test]
    fn generated_request_ids_are_the_prefix_and_counter_in_hex() {
        let ids = RequestIds {
            prefix: 0x0123_4567_89ab_cdef,
            next: AtomicU64::new(0xfe),
        };
        assert_eq!(ids.generate(), "0123456789abcdef00000000000000fe");
        assert_eq!(ids.generate(), "0123456789abcdef00000000000000ff");
    }

    #[test]
    fn connection_options_are_matched_in_any_case_and_junk_ignored() {
        let mut h = map(&[
            ("connection", " X-Secret ,, not a name, KEEP-ALIVE"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("x-kept", "1"),
        ]);
        remove_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn forwarded_headers_are_set_by_the_gateway_not_the_client() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-proto", "http"),
        ]);
        prepare_request(
            &mut h,
            None,
            &[],
            IP,
            Some(HeaderValue::from_static("api.example.com")),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "api.example.com");
        assert!(h.get("forwarded").is_none());
    }

    #[test]
    fn identity_values_are_percent_encoded_by_one_rule() {
        assert_eq!(encode_value("alice", false), "alice");
        assert_eq!(encode_value("Jane Doe", false), "Jane Doe");
        assert_eq!(encode_value("Développeurs", false), "D%C3%A9veloppeurs");
        assert_eq!(
            encode_value("a\r\nX-Role: admin", false),
            "a%0D%0AX-Role: admin"
        );
        assert_eq!(encode_value("100%", false), "100%25");
        assert_eq!(encode_value(" padded ", false), "%20padded%20");
        assert_eq!(encode_value("CN=Admins,OU=x", false), "CN=Admins,OU=x");
        assert_eq!(encode_value("CN=Admins,OU=x", true), "CN=Admins%2COU=x");
        assert_eq!(encode_list(["a", "b,c", "é"].into_iter()), "a,b%2Cc,%C3%A9");
        // Every value makes a valid header value, whatever its bytes.
        let every: String = (0u32..0x800).filter_map(char::from_u32).collect();
        assert!(HeaderValue::from_str(&encode_value(&every, true)).is_ok());
    }

    #[test]
    fn claim_headers_carry_claims_and_client_copies_never_pass() {
        let claims = ClaimSet::parse_for_tests(
            r#"{"email":"a@example.com","groups":["Développeurs","CN=Admins,OU=x"],
                "kubernetes.io":{"namespace":"prod"},"n":42,"obj":{"a":[1,2]},"nul":null}"#,
        );
        let header = |name: &str, claim: &[&str]| ClaimHeader {
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            carries: match claim {
                [] => Carries::Payload,
                _ => Carries::Claim(ClaimPath(claim.iter().map(|s| (*s).to_owned()).collect())),
            },
        };
        let provider = [
            header("x-email", &["email"]),
            header("x-groups", &["groups"]),
            header("x-ns", &["kubernetes.io", "namespace"]),
            header("x-n", &["n"]),
        ];
        let route = [
            header("x-obj", &["obj"]),
            header("x-email", &["n"]),
            header("x-nul", &["nul"]),
            header("x-absent", &["nope"]),
            header("x-payload", &[]),
        ];
        let names: Vec<HeaderName> = provider
            .iter()
            .chain(&route)
            .map(|h| h.name.clone())
            .collect();
        let mut h = map(&[
            ("x-email", "spoof"),
            ("X_Groups", "admin"),
            ("x-absent", "spoof"),
            ("x-nul", "spoof"),
        ]);
        let roles = Roles::default();
        let identity = Identity {
            user: Some("42"),
            roles: &roles,
            claims: &claims,
            claim_headers: &[&provider, &route],
        };
        prepare_request(&mut h, Some(identity), &names, IP, None);
        assert_eq!(
            h.get_all("x-email").iter().collect::<Vec<_>>(),
            ["42"],
            "the route's wins"
        );
        assert_eq!(
            h.get("x-groups").unwrap(),
            "D%C3%A9veloppeurs,CN=Admins%2COU=x"
        );
        assert!(h.get("x_groups").is_none());
        assert_eq!(h.get("x-ns").unwrap(), "prod");
        assert_eq!(h.get("x-n").unwrap(), "42");
        assert_eq!(h.get("x-obj").unwrap(), r#"{"a":[1,2]}"#);
        assert!(h.get("x-nul").is_none() && h.get("x-absent").is_none());
        let payload = h.get("x-payload").unwrap().as_bytes();
        use base64::Engine;
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        assert_eq!(decoded, claims.text().as_bytes());

        // Without a token (a public route) the client's copies still go.
        let mut h = map(&[("x-email", "spoof"), ("x-ns", "spoof"), ("x-other", "kept")]);
        prepare_request(&mut h, None, &names, IP, None);
        assert!(h.get("x-email").is_none() && h.get("x-ns").is_none());
        assert_eq!(h.get("x-other").unwrap(), "kept");
    }
}
