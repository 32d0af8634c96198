//! TLS: PEM files → rustls `ServerConfig`, and development certificates.
//!
//! One crypto provider (ring) is used everywhere and passed explicitly, so
//! rustls never has to guess a process-wide default.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path} does not exist")]
    MissingCert { path: PathBuf },
    #[error("{path} does not exist")]
    MissingKey { path: PathBuf },
    #[error("cannot read certificate chain {path}: {source}")]
    Cert {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCert { path: PathBuf },
    #[error("cannot read private key {path} (PKCS#8, PKCS#1 or SEC1 PEM): {source}")]
    Key {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("certificate and key do not make a usable TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl TlsError {
    /// The config key(s) naming the file(s) at fault, for `file: key: message`.
    pub fn config_key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } | TlsError::NoCert { .. } | TlsError::MissingCert { .. } => {
                "server.tls_cert"
            }
            TlsError::Key { .. } | TlsError::MissingKey { .. } => "server.tls_key",
            _ => "server.tls_cert, server.tls_key",
        }
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's cipher suite preference: ring's suites, AES-128-GCM with
/// SHA-256 first. The server picks by this order, not the client's.
///
/// OpenSSL-based clients (curl, Python, `openssl s_client`) list
/// AES-256-GCM-SHA384 first. The SHA-384 key schedule of a full handshake
/// runs on ring's generic SHA-512 code on CPUs whose SHA extensions speed up
/// only SHA-256, so it costs several times the CPU of the SHA-256 one
/// (figures in docs/performance.md). The security level of the handshake is
/// 128 bits (X25519, P-256) either way; AES-128-GCM-SHA256 is TLS 1.3's
/// mandatory-to-implement suite and browsers' first choice. Clients that
/// offer only AES-256 or ChaCha20 still get them.
fn server_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(provider)
}

/// TLS 1.3 session tickets sent after each full handshake. rustls sends 2 by
/// default; each costs an HKDF expansion, 3 `getrandom` calls, an entry in
/// the session cache and ~100 bytes on the wire. One suffices for a client
/// that reconnects one connection at a time (each resumption issues a fresh
/// ticket); a client opening two connections at once resumes only one of them.
/// It also halves the entries per connection in rustls' 256-session cache,
/// so tickets stay resumable for twice as many recent connections.
const TLS13_TICKETS: usize = 1;

/// Builds the server config: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(server_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch,
            other => TlsError::Rustls(other),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.send_tls13_tickets = TLS13_TICKETS;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Reads a PEM certificate chain and private key. A file that is not there
/// is [`TlsError::MissingCert`] / [`TlsError::MissingKey`], never a reason
/// to make one up: generating a development certificate is the caller's
/// explicit choice ([`DevPki`]).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    if !cert.exists() {
        return Err(TlsError::MissingCert {
            path: cert.to_owned(),
        });
    }
    if !key.exists() {
        return Err(TlsError::MissingKey {
            path: key.to_owned(),
        });
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    server_config(chain, key)
}

/// A client config trusting exactly `roots`, offering `h2` and/or `http/1.1`.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The development CA's common name.
pub const DEV_CA_NAME: &str = "jwtgate development CA";
/// The development server certificate's common name and the names it is for.
pub const DEV_SERVER_NAME: &str = "jwtgate development server";
pub const DEV_SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A throwaway CA and a server certificate it signed for `localhost` and
/// `127.0.0.1`. The CA's key is dropped: it can sign nothing else.
pub struct DevPki {
    pub ca_cert: CertificateDer<'static>,
    pub ca_pem: String,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_chain_pem: String,
    pub server_key: PrivateKeyDer<'static>,
    pub server_key_pem: String,
}

impl DevPki {
    pub fn generate() -> Result<DevPki, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, DEV_CA_NAME);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(DEV_SERVER_NAMES.map(str::to_owned).to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, DEV_SERVER_NAME);
        let server = params.signed_by(&server_key, &issuer)?;

        let key_der = PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        Ok(DevPki {
            ca_pem: ca.pem(),
            server_chain_pem: format!("{}{}", server.pem(), ca.pem()),
            server_chain: vec![server.der().clone(), ca.der().clone()],
            ca_cert: ca.der().clone(),
            server_key: key_der,
            server_key_pem: server_key.serialize_pem(),
        })
    }

    /// Writes the chain, the key (mode 0600) and the CA certificate (`ca.crt`
    /// beside the chain, for `curl --cacert`).
    pub fn write(&self, cert: &Path, key: &Path) -> Result<PathBuf, TlsError> {
        let write = |path: &Path, text: &str| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            std::fs::write(path, text).map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })
        };
        write(cert, &self.server_chain_pem)?;
        write(key, &self.server_key_pem)?;
        restrict_to_owner(key).map_err(|source| TlsError::Write {
            path: key.to_owned(),
            source,
        })?;
        let ca = cert.with_file_name("ca.crt");
        write(&ca, &self.ca_pem)?;
        Ok(ca)
    }
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rustls::{ClientConnection, ConnectionCommon, HandshakeKind, ServerConnection};

    /// Moves TLS records between the two ends in memory until neither has
    /// anything left to send.
    fn handshake<A, B>(client: &mut ConnectionCommon<A>, server: &mut ConnectionCommon<B>) {
        for _ in 0..10 {
            // `|`, not `||`: both directions every round.
            if !(send(client, server) | send(server, client)) {
                return;
            }
        }
        panic!("handshake did not settle");
    }

    /// Delivers what `from` has to send; whether there was anything.
    fn send<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) -> bool {
        let mut moved = false;
        while from.wants_write() {
            let mut buf = Vec::new();
            from.write_tls(&mut buf).unwrap();
            to.read_tls(&mut buf.as_slice()).unwrap();
            to.process_new_packets().unwrap();
            moved = true;
        }
        moved
    }

    fn pki() -> (DevPki, Arc<ServerConfig>) {
        let pki = DevPki::generate().unwrap();
        let server = server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
        (pki, server)
    }

    fn connect(
        client: &Arc<ClientConfig>,
        server: &Arc<ServerConfig>,
    ) -> (ClientConnection, ServerConnection) {
        let mut c = ClientConnection::new(client.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut s = ServerConnection::new(server.clone()).unwrap();
        handshake(&mut c, &mut s);
        assert!(!c.is_handshaking() && !s.is_handshaking());
        (c, s)
    }

    /// A client config offering `suites` in that order.
    fn client_offering(
        pki: &DevPki,
        suites: &[rustls::SupportedCipherSuite],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites.to_vec();
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_cert.clone()).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn the_server_prefers_aes128_gcm_sha256_and_serves_clients_without_it() {
        use rustls::CipherSuite as C;
        use rustls::crypto::ring::cipher_suite::*;
        let (pki, server) = pki();
        let v13 = &[&rustls::version::TLS13];
        let v12 = &[&rustls::version::TLS12];
        let cases: [(
            &[rustls::SupportedCipherSuite],
            &[&rustls::SupportedProtocolVersion],
            C,
        ); 5] = [
            // OpenSSL's order: AES-256 first.
            (
                &[
                    TLS13_AES_256_GCM_SHA384,
                    TLS13_CHACHA20_POLY1305_SHA256,
                    TLS13_AES_128_GCM_SHA256,
                ],
                v13,
                C::TLS13_AES_128_GCM_SHA256,
            ),
            (
                &[TLS13_AES_256_GCM_SHA384],
                v13,
                C::TLS13_AES_256_GCM_SHA384,
            ),
            (
                &[TLS13_CHACHA20_POLY1305_SHA256],
                v13,
                C::TLS13_CHACHA20_POLY1305_SHA256,
            ),
            (
                &[
                    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                ],
                v12,
                C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                &[TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256],
                v12,
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        for (offered, versions, expected) in cases {
            let client = client_offering(&pki, offered, versions);
            let (c, s) = connect(&client, &server);
            assert_eq!(
                c.negotiated_cipher_suite().map(|s| s.suite()),
                Some(expected)
            );
            assert_eq!(
                s.negotiated_cipher_suite().map(|s| s.suite()),
                Some(expected)
            );
        }
    }

    #[test]
    fn tls13_sessions_resume_with_the_single_ticket() {
        let (pki, server) = pki();
        let client = client_config(std::slice::from_ref(&pki.ca_cert), &[b"h2"]).unwrap();
        let (first, _) = connect(&client, &server);
        assert_eq!(
            first.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(first.handshake_kind(), Some(HandshakeKind::Full));
        // Serial reconnections keep resuming: each resumption brings a new ticket.
        for _ in 0..3 {
            let (again, s) = connect(&client, &server);
            assert_eq!(again.handshake_kind(), Some(HandshakeKind::Resumed));
            assert_eq!(s.handshake_kind(), Some(HandshakeKind::Resumed));
        }
    }
}
