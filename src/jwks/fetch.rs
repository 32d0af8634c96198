//! Fetching key sets over HTTPS: one GET with a size cap, the TLS trust a
//! source names, and OpenID Connect Discovery 1.0 (the provider metadata
//! document that names the JWKS).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::JwksError;

/// Largest JWKS or discovery document accepted; real ones are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// The roots a source trusts, and the TLS client built on them.
#[derive(Debug, Clone)]
pub struct Trust {
    pub tls: Arc<ClientConfig>,
    /// `ca_file`'s certificates; `None`: the Mozilla roots built in. Part of
    /// a source's identity: a reload that changes them is a new source.
    roots: Option<Vec<CertificateDer<'static>>>,
}

impl Trust {
    /// Trusts `roots`, or when `None` the Mozilla roots compiled in.
    pub fn new(roots: Option<Vec<CertificateDer<'static>>>) -> Result<Trust, String> {
        Ok(Trust {
            tls: client_config(roots.as_deref())?,
            roots,
        })
    }

    /// Whether both trust the same roots.
    pub fn same_roots(&self, other: &Trust) -> bool {
        self.roots == other.roots
    }

    pub(super) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.tls.clone())
    }
}

/// A TLS client config for fetching a JWKS, with ring as the provider,
/// trusting `roots`, or when `None` the Mozilla roots compiled in
/// (webpki-roots): the same on every host, whatever its CA bundle.
pub fn client_config(
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<ClientConfig>, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Some(roots) => {
            for root in roots {
                store.add(root.clone()).map_err(|e| e.to_string())?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery
/// 1.0 §4: the issuer without a trailing `/`, then the well-known path).
/// `None` unless the issuer is an https URL without query or fragment
/// (§3: "no query or fragment components").
pub fn discovery_url(issuer: &str) -> Option<Uri> {
    if issuer.contains(['?', '#']) {
        return None;
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let url: Uri = url.parse().ok()?;
    (url.scheme_str() == Some("https") && url.host().is_some()).then_some(url)
}

#[derive(Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// The `jwks_uri` of a discovery document, once its `issuer` is exactly
/// `issuer` (Discovery §4.3: "MUST be identical"; a document that names
/// another issuer could bind another provider's keys to this one).
pub fn jwks_uri(document: &[u8], issuer: &str) -> Result<Uri, JwksError> {
    let metadata: ProviderMetadata = serde_json::from_slice(document)
        .map_err(|e| JwksError::Discovery(format!("not a discovery document: {e}")))?;
    if metadata.issuer != issuer {
        return Err(JwksError::Discovery(format!(
            "the document's issuer {:?} is not {issuer:?}",
            metadata.issuer
        )));
    }
    metadata
        .jwks_uri
        .parse()
        .ok()
        .filter(|u: &Uri| u.scheme_str() == Some("https") && u.host().is_some())
        .ok_or_else(|| {
            JwksError::Discovery(format!(
                "jwks_uri {:?} is not an https:// URL",
                metadata.jwks_uri
            ))
        })
}

/// GET `url` over HTTPS; the body of a 200 answer, at most 1 MiB.
pub(super) async fn get(connector: &TlsConnector, url: &Uri) -> Result<Bytes, JwksError> {
    let fail = |what: &str, err: &dyn std::fmt::Display| JwksError::Fetch(format!("{what}: {err}"));
    let host = url
        .host()
        .ok_or_else(|| JwksError::Fetch("URL has no host".to_owned()))?;
    // An IPv6 literal is bracketed in a URL but not in a server name.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|e| fail("connect", &e))?;
    let name = ServerName::try_from(bare_host.to_owned()).map_err(|e| fail("server name", &e))?;
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        if unknown_issuer(&e) {
            JwksError::UntrustedCertificate(e.to_string())
        } else {
            fail("TLS", &e)
        }
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail("HTTP", &e))?;
    tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let authority = url.authority().map_or(host, |a| a.as_str());
    let request = Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail("HTTP", &e))?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Fetch(format!("status {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|e| fail("body", &e))?;
    Ok(body.to_bytes())
}

/// Whether a handshake failed because no trusted root vouches for the
/// server's certificate: a private CA the source does not name
/// (`UnknownIssuer`), or a trusted root of the same name with another key
/// (`BadSignature`: a `ca_file` holding the wrong CA).
fn unknown_issuer(err: &std::io::Error) -> bool {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|err| {
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn discovery_url_appends_the_well_known_path_to_the_issuer() {
        let url = |issuer| discovery_url(issuer).map(|u| u.to_string());
        assert_eq!(
            url("https://idp.example.com/realms/x").as_deref(),
            Some("https://idp.example.com/realms/x/.well-known/openid-configuration")
        );
        assert_eq!(
            url("https://idp.example.com/").as_deref(),
            Some("https://idp.example.com/.well-known/openid-configuration")
        );
        for refused in [
            "http://idp.example.com",
            "https://idp?x=1",
            "https://idp#f",
            "idp.example.com",
        ] {
            assert_eq!(url(refused), None, "{refused}");
        }
    }

    #[test]
    fn discovery_document_must_name_exactly_the_configured_issuer() {
        let doc = br#"{"issuer":"https://idp.test/realms/x","jwks_uri":"https://idp.test/certs","authorization_endpoint":"https://idp.test/auth"}"#;
        assert_eq!(
            jwks_uri(doc, "https://idp.test/realms/x")
                .unwrap()
                .to_string(),
            "https://idp.test/certs"
        );
        for other in [
            "https://idp.test/realms/x/",
            "https://idp.test/realms/y",
            "https://IDP.test/realms/x",
        ] {
            assert!(
                matches!(jwks_uri(doc, other), Err(JwksError::Discovery(_))),
                "{other}"
            );
        }
        let plain = br#"{"issuer":"https://idp.test","jwks_uri":"http://idp.test/certs"}"#;
        assert!(jwks_uri(plain, "https://idp.test").is_err());
        assert!(jwks_uri(br#"{"issuer":"https://idp.test"}"#, "https://idp.test").is_err());
    }
}
