//! What a passive observer would capture of one request: its bytes as they
//! would cross a plaintext connection, and the TLS records that really
//! crossed the socket when the same request was sent to the gateway.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Sends `GET path` with `token` (if any) to the gateway at `gateway` over
/// a fresh TLS connection, recording every byte written to the socket.
pub(super) async fn capture(
    connector: &TlsConnector,
    gateway: SocketAddr,
    path: &str,
    token: &str,
) -> std::io::Result<Value> {
    let mut plaintext = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    if !token.is_empty() {
        plaintext.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    plaintext.push_str("Connection: close\r\n\r\n");

    let exchange = async {
        let tcp = TcpStream::connect(gateway).await?;
        let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
        let mut tls = connector.connect(name, Recorder::new(tcp)).await?;
        tls.write_all(plaintext.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut tls).take(64 * 1024).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>((tls.into_inner().0.sent, answer))
    };
    let (sent, answer) = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::other("no answer within 5 s"))??;
    let status = answer
        .get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse::<u16>().ok());
    let token = token.as_bytes();
    let found_in = |bytes: &[u8]| !token.is_empty() && memchr::memmem::find(bytes, token).is_some();
    Ok(json!({
        "plaintext": plaintext,
        "token_in_plaintext": found_in(plaintext.as_bytes()),
        "records": records(&sent),
        "sent_bytes": sent.len(),
        "token_in_records": found_in(&sent),
        "status": status,
    }))
}

/// The TLS records in `sent` (RFC 8446 §5.1): type, length, first bytes.
fn records(sent: &[u8]) -> Vec<Value> {
    let mut records = Vec::new();
    let mut rest = sent;
    while let [kind, major, minor, high, low, body @ ..] = rest {
        let length = usize::from(*high) << 8 | usize::from(*low);
        let (fragment, next) = body.split_at(length.min(body.len()));
        let kind_name = match kind {
            20 => "change_cipher_spec",
            21 => "alert",
            22 => "handshake",
            23 => "application_data",
            _ => "unknown",
        };
        let head: String = fragment
            .iter()
            .take(48)
            .map(|b| format!("{b:02x}"))
            .collect();
        records.push(json!({
            "type": kind_name,
            "header": format!("{kind:02x} {major:02x}{minor:02x} {high:02x}{low:02x}"),
            "length": length,
            "head": head,
        }));
        rest = next;
    }
    records
}

/// A TCP stream that keeps a copy of every byte written to it.
struct Recorder {
    tcp: TcpStream,
    sent: Vec<u8>,
}

impl Recorder {
    fn new(tcp: TcpStream) -> Recorder {
        Recorder {
            tcp,
            sent: Vec::new(),
        }
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.sent.extend_from_slice(&buf[..n]);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_split_by_their_length_fields() {
        let sent = [22, 3, 1, 0, 2, 0xaa, 0xbb, 23, 3, 3, 0, 1, 0xcc];
        let records = records(&sent);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["type"], "handshake");
        assert_eq!(records[0]["length"], 2);
        assert_eq!(records[0]["head"], "aabb");
        assert_eq!(records[1]["type"], "application_data");
        assert_eq!(records[1]["header"], "17 0303 0001");
    }

    #[test]
    fn a_truncated_record_is_shown_as_far_as_it_goes() {
        let records = records(&[23, 3, 3, 1, 0, 0xcc]);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["length"], 256);
        assert_eq!(records[0]["head"], "cc");
    }
}
