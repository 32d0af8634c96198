//! The route table and the one path normalisation routing and forwarding share.
//!
//! Rule (also in docs/security.md): the request path is normalised once,
//! routed on, and forwarded as normalised, so the router and the upstream
//! never disagree.
//! 1. It must be origin-form (start with `/`).
//! 2. Percent-escapes of unreserved characters (RFC 3986 §2.3) are decoded;
//!    other escapes keep their bytes with upper-case hex. An escape that is not
//!    `%` + two hex digits, or that encodes `/`, `\`, `;` or a control byte,
//!    makes the request a 400: those decode differently in different backends.
//! 3. Literal `\` and `;` are refused (400) for the same reason, and so is
//!    a raw control byte or space (only route paths can have one).
//! 4. Empty segments are merged (`//a` → `/a`); `.` and `..` segments are
//!    resolved (RFC 3986 §5.2.4), never climbing above `/`.
//!
//! Route prefixes match whole segments (`/api` matches `/api` and `/api/x`,
//! never `/apix`) and case-sensitively; the longest prefix wins.

use std::borrow::Cow;

use http::Method;

/// Whether and how a route authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No token is checked; any Authorization header is still removed.
    None,
    /// No token: forwarded without identity. A bad token: 401.
    Optional,
    /// A valid token is required.
    Required,
}

#[derive(Clone, Debug)]
pub struct Route {
    /// Normalised prefix without a trailing slash (`/` for the root).
    pub prefix: String,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    /// Any one of these roles is enough. Empty: any valid token.
    pub roles: Vec<String>,
    /// Index into the gateway's upstream list.
    pub upstream: usize,
    /// The providers whose tokens the route accepts (indexes into the
    /// config's providers). Empty: any.
    pub providers: Vec<usize>,
    /// `aud` must also hold one of these. Empty: only the provider's check.
    pub audiences: Vec<String>,
    /// Rules on claims; every one must hold.
    pub rules: Vec<crate::rules::ClaimRule>,
    /// Claim headers of this route, after (and over) the provider's.
    pub headers: Vec<crate::headers::ClaimHeader>,
}

impl Route {
    /// HEAD is allowed wherever GET is (RFC 9110 §9.3.2).
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| {
            m.contains(method) || (*method == Method::HEAD && m.contains(&Method::GET))
        })
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("no route for this path")]
    NotFound,
    /// The longest matching prefix has routes, none for this method. The
    /// request does not fall through to a shorter prefix: that would let a
    /// method the rule did not name escape the rule.
    #[error("method not allowed on route {prefix}")]
    MethodNotAllowed {
        prefix: String,
        allowed: Vec<Method>,
    },
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// Longest prefix first; routes with equal prefixes stay adjacent.
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> RouteTable {
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.prefix.cmp(&b.prefix))
        });
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Finds the route for an already-normalised path.
    pub fn lookup(&self, method: &Method, path: &str) -> Result<&Route, RouteError> {
        let Some(first) = self
            .routes
            .iter()
            .position(|r| prefix_matches(&r.prefix, path))
        else {
            return Err(RouteError::NotFound);
        };
        let prefix = &self.routes[first].prefix;
        let same_prefix = self.routes[first..]
            .iter()
            .take_while(|r| r.prefix == *prefix);
        let mut allowed = Vec::new();
        for route in same_prefix {
            if route.allows(method) {
                return Ok(route);
            }
            allowed.extend(route.methods.iter().flatten().cloned());
        }
        // The `Allow` answer lists what is served: HEAD goes with GET.
        if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
            allowed.push(Method::HEAD);
        }
        Err(RouteError::MethodNotAllowed {
            prefix: prefix.clone(),
            allowed,
        })
    }
}

/// Whole-segment prefix match.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target is not an absolute path")]
    NotOriginForm,
    #[error("invalid percent-encoding")]
    BadEscape,
    #[error("path contains {0:?}, which backends decode inconsistently")]
    Ambiguous(&'static str),
}

/// Normalises a request path (without its query) by the rule in the module docs.
/// Returns the input unchanged, without allocating, when it is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    // A trailing slash or trailing dot segment names a directory: keep it.
    let ends_as_dir = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    if normal.is_empty() || (ends_as_dir && !out.is_empty()) {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// The fast path: only visible ASCII, no escapes, no refused bytes, no
/// empty or dot segments.
fn is_normal(path: &str) -> bool {
    !path
        .bytes()
        .any(|b| matches!(b, b'%' | b'\\' | b';') || !b.is_ascii_graphic())
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Ambiguous("\\")),
            b';' => return Err(PathError::Ambiguous(";")),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
                let (Some(hi), Some(lo)) = (hex_value(hex[0]), hex_value(hex[1])) else {
                    return Err(PathError::BadEscape);
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' => return Err(PathError::Ambiguous("%2F")),
                    b'\\' => return Err(PathError::Ambiguous("%5C")),
                    b';' => return Err(PathError::Ambiguous("%3B")),
                    b'%' => return Err(PathError::Ambiguous("%25")),
                    0x00..=0x1f | 0x7f => return Err(PathError::Ambiguous("a control byte")),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        out.push(char::from(b));
                    }
                    b => push_escaped(&mut out, b),
                }
                i += 3;
            }
            // hyper passes raw UTF-8 through; it is escaped so that é and
            // %C3%A9 route and forward as the same path.
            b if b >= 0x80 => {
                push_escaped(&mut out, b);
                i += 1;
            }
            // A raw control byte or space (only route paths from the config
            // can carry one) would be copied as is and break idempotence
            // (found by fuzzing).
            b if !b.is_ascii_graphic() => {
                return Err(PathError::Ambiguous("a raw control byte or space"));
            }
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: Option<Vec<Method>>) -> Route {
        Route {
            providers: Vec::new(),
            audiences: Vec::new(),
            rules: Vec::new(),
            headers: Vec::new(),
            prefix: prefix.to_owned(),
            methods,
            auth: AuthMode::Required,
            roles: Vec::new(),
            upstream: 0,
        }
    }

    fn table() -> RouteTable {
        RouteTable::new(vec![
            route("/", None),
            route("/admin", Some(vec![Method::GET, Method::POST])),
            route("/public", None),
            route("/public/docs", None),
        ])
    }

    #[test]
    fn longest_prefix_wins_whatever_the_file_order() {
        let t = table();
        assert_eq!(
            t.lookup(&Method::GET, "/public/docs/a").map(|r| &*r.prefix),
            Ok("/public/docs")
        );
        assert_eq!(
            t.lookup(&Method::GET, "/public/x").map(|r| &*r.prefix),
            Ok("/public")
        );
        assert_eq!(
            t.lookup(&Method::GET, "/public").map(|r| &*r.prefix),
            Ok("/public")
        );
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let t = table();
        assert_eq!(
            t.lookup(&Method::GET, "/publicity").map(|r| &*r.prefix),
            Ok("/")
        );
        assert_eq!(
            t.lookup(&Method::GET, "/adminx").map(|r| &*r.prefix),
            Ok("/")
        );
    }

    #[test]
    fn routes_are_case_sensitive() {
        assert_eq!(
            table().lookup(&Method::GET, "/ADMIN").map(|r| &*r.prefix),
            Ok("/")
        );
    }

    #[test]
    fn unlisted_method_is_refused_not_passed_to_a_shorter_prefix() {
        let err = table().lookup(&Method::DELETE, "/admin/users").unwrap_err();
        assert_eq!(
            err,
            RouteError::MethodNotAllowed {
                prefix: "/admin".to_owned(),
                allowed: vec![Method::GET, Method::POST, Method::HEAD]
            }
        );
    }

    #[test]
    fn head_is_allowed_where_get_is() {
        assert!(table().lookup(&Method::HEAD, "/admin").is_ok());
        let t = RouteTable::new(vec![route("/w", Some(vec![Method::POST]))]);
        assert!(t.lookup(&Method::HEAD, "/w").is_err());
    }

    #[test]
    fn same_prefix_routes_split_by_method() {
        let t = RouteTable::new(vec![
            route("/orders", Some(vec![Method::GET])),
            Route {
                providers: Vec::new(),
                audiences: Vec::new(),
                rules: Vec::new(),
                headers: Vec::new(),
                auth: AuthMode::None,
                ..route("/orders", Some(vec![Method::POST]))
            },
        ]);
        assert_eq!(
            t.lookup(&Method::POST, "/orders").map(|r| r.auth),
            Ok(AuthMode::None)
        );
        assert_eq!(
            t.lookup(&Method::GET, "/orders").map(|r| r.auth),
            Ok(AuthMode::Required)
        );
    }

    #[test]
    fn no_matching_prefix_is_not_found() {
        let t = RouteTable::new(vec![route("/api", None)]);
        assert_eq!(
            t.lookup(&Method::GET, "/other").unwrap_err(),
            RouteError::NotFound
        );
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/~x"] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_are_resolved() {
        let cases = [
            ("/admin/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/a/b/../../admin/", "/admin/"),
            ("/../../admin", "/admin"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/%2e%2E/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a%7Eb", "/a~b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/caf%C3%A9"),
            ("/public/é%41", "/public/%C3%A9A"),
            ("/a%20b", "/a%20b"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for p in [
            "/admin%2fx",
            "/admin%2Fx",
            "/a\\b",
            "/a%5cb",
            "/admin;x=1",
            "/a%3bb",
            "/a%00",
            "/a%25",
            "/a%zz",
            "/a%4",
            "/a%",
        ] {
            assert!(normalize(p).is_err(), "{p}");
        }
        assert_eq!(normalize("*"), Err(PathError::NotOriginForm));
        assert_eq!(normalize("http://x/"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn raw_control_bytes_and_spaces_are_refused() {
        // From a fuzz finding ("/%A6\x141Z\u{d4}\u{9e}" was not idempotent
        // before non-ASCII bytes were escaped); raw control bytes are refused.
        for p in ["/%A6\u{14}1Z\u{d4}\u{9e}", "/a\tb", "/a b", "/a\u{7f}"] {
            assert_eq!(
                normalize(p),
                Err(PathError::Ambiguous("a raw control byte or space")),
                "{p:?}"
            );
        }
    }

    #[test]
    fn normalisation_is_idempotent() {
        for p in [
            "/a/../b//c/./d/",
            "/%61/%2e%2e/b",
            "/x/y/..",
            "//",
            "/caf%c3%a9/../q",
        ] {
            let once = normalize(p).map(Cow::into_owned);
            let twice = once
                .clone()
                .and_then(|o: String| normalize(&o).map(Cow::into_owned));
            assert_eq!(once, twice, "{p}");
        }
    }
}
