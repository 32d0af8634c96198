//! The client's TLS stream as hyper holds it. hyper drops its stream as soon
//! as it is done with a connection, and closing a socket with unread bytes
//! in it makes the kernel send a reset, which can destroy a response the
//! client has not read yet (a 431 to a client still sending its oversized
//! head). So the stream goes back to its connection task instead, which
//! closes it the way nginx does ("lingering close"); an upgraded tunnel
//! holds it until it ends, keeping the connection counted; and the end of
//! the shutdown grace cuts it wherever it is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

type Stream = TlsStream<TcpStream>;

/// After the last response: bytes the client may still send that are read
/// and dropped, the longest it may keep sending, and the longest pause
/// between two reads. A client that has read its answer closes at once on
/// the `close_notify`; these bound the one that never stops.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_PAUSE: Duration = Duration::from_secs(2);

/// The stream handed to hyper. Dropped, it returns the stream to its
/// connection task; once `cut`, every read and write fails.
pub(super) struct Socket {
    stream: Option<Stream>,
    back: Option<oneshot::Sender<Stream>>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    is_cut: CancellationToken,
}

impl Socket {
    /// The socket, and where its stream comes back once hyper (or a
    /// tunnel) lets go of it.
    pub(super) fn new(
        stream: Stream,
        cut: CancellationToken,
    ) -> (Socket, oneshot::Receiver<Stream>) {
        let (back, returned) = oneshot::channel();
        let socket = Socket {
            stream: Some(stream),
            back: Some(back),
            cut: Box::pin(cut.clone().cancelled_owned()),
            is_cut: cut,
        };
        (socket, returned)
    }

    /// Runs `op` on the stream, unless the connection has been cut. A task
    /// left waiting on the stream is woken by the cut too.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut Stream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.is_cut.is_cancelled() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let Some(stream) = &mut self.stream else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        match op(Pin::new(stream), cx) {
            Poll::Pending => match self.cut.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into())),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            // The task gone (the grace is over): the stream closes here.
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.guard(cx, |stream, cx| stream.poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.guard(cx, |stream, cx| stream.poll_shutdown(cx))
    }
}

/// Closes a connection so the client can read what it was sent: say
/// `close_notify` and half-close (nothing more will be written), then read
/// and drop whatever the client still sends — the rest of an oversized
/// head, a body nobody will read — until it closes too or a bound is hit.
/// Closing with those bytes unread would reset the connection.
pub(super) async fn linger(mut stream: Stream) {
    if tokio::time::timeout(LINGER_PAUSE, stream.shutdown())
        .await
        .is_err()
    {
        // The client reads nothing, not even the close: nothing to save.
        return;
    }
    let (mut tcp, _) = stream.into_inner();
    let deadline = tokio::time::Instant::now() + LINGER_TIME;
    let mut left = LINGER_BYTES;
    let mut sink = vec![0; 16 * 1024];
    while left > 0 {
        let pause_over = deadline.min(tokio::time::Instant::now() + LINGER_PAUSE);
        match tokio::time::timeout_at(pause_over, tcp.read(&mut sink)).await {
            Ok(Ok(read)) if read > 0 => left = left.saturating_sub(read),
            // Closed, failed, or quiet (or still sending) too long.
            _ => return,
        }
    }
}
