//! gRPC end to end with a real gRPC client and server (tonic): the client
//! speaks HTTP/2 over TLS to the gateway, the gateway h2c (prior knowledge)
//! or HTTP/2 over TLS (ALPN) to the server. Messages are declared by hand with prost's derive, so
//! neither protoc nor a build script is needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::stream::{self, Iter};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{CONFIG, TestGateway, tls_connect, token};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tonic::client::Grpc;
use tonic::metadata::MetadataMap;
use tonic::server::{ServerStreamingService, UnaryService};
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;

use jwtgate::tls::{self, DevPki};

#[derive(Clone, PartialEq, prost::Message)]
struct Hello {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Greeting {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(string, tag = "2")]
    user: String,
    #[prost(string, tag = "3")]
    role: String,
}

const UNARY: &str = "/greet.Greeter/Hello";
const STREAMING: &str = "/greet.Greeter/Count";
const ADMIN: &str = "/greet.Admin/Hello";

/// The shared route table, with the upstream spoken to as h2c and one
/// gRPC service that needs the `admin` role.
fn config() -> String {
    let config = CONFIG.replace(
        "url = \"http://UPSTREAM\"",
        "url = \"http://UPSTREAM\"\nprotocol = \"h2\"",
    );
    format!(
        "{config}\n[[route]]\npath = \"/greet.Admin\"\nupstream = \"app\"\nroles = [\"admin\"]\n"
    )
}

/// What the server saw of each call's metadata.
type Seen = Arc<Mutex<Vec<MetadataMap>>>;

fn greeting(text: String, metadata: &MetadataMap) -> Greeting {
    let value = |name| {
        metadata
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    Greeting {
        text,
        user: value("x-user-id"),
        role: value("x-role"),
    }
}

/// `Hello`: greets `name`; an empty name is the server's own error, and
/// the name `slow` is answered after two seconds.
#[derive(Clone)]
struct HelloService(Seen);

impl UnaryService<Hello> for HelloService {
    type Response = Greeting;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Greeting>, Status>> + Send>>;

    fn call(&mut self, request: Request<Hello>) -> Self::Future {
        self.0.lock().unwrap().push(request.metadata().clone());
        let name = request.get_ref().name.clone();
        if name.is_empty() {
            return Box::pin(ready(Err(Status::invalid_argument("name is required"))));
        }
        let reply = greeting(format!("hello {name}"), request.metadata());
        Box::pin(async move {
            if name == "slow" {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Ok(Response::new(reply))
        })
    }
}

/// `Count`: `count` greetings; for the name `abort`, the stream then ends
/// with the server's error status and a trailer of its own.
#[derive(Clone)]
struct CountService(Seen);

type Greetings = Iter<std::vec::IntoIter<Result<Greeting, Status>>>;

impl ServerStreamingService<Hello> for CountService {
    type Response = Greeting;
    type ResponseStream = Greetings;
    type Future = Ready<Result<Response<Greetings>, Status>>;

    fn call(&mut self, request: Request<Hello>) -> Self::Future {
        self.0.lock().unwrap().push(request.metadata().clone());
        let hello = request.get_ref();
        let mut items: Vec<_> = (1..=hello.count)
            .map(|i| Ok(greeting(format!("{} {i}", hello.name), request.metadata())))
            .collect();
        if hello.name == "abort" {
            let mut status = Status::aborted("stopped by the server");
            status
                .metadata_mut()
                .insert("x-reason", "asked to".parse().unwrap());
            items.push(Err(status));
        }
        ready(Ok(Response::new(stream::iter(items))))
    }
}

/// A tonic gRPC server speaking HTTP/2 only: in cleartext, or over TLS
/// with the dev PKI's `localhost` certificate when `tls` is given.
async fn grpc_upstream(tls: Option<&DevPki>) -> (SocketAddr, Seen) {
    let acceptor = tls.map(|pki| {
        let config =
            tls::server_config(pki.server_chain.clone(), pki.server_key.clone_key()).unwrap();
        TlsAcceptor::from(config)
    });
    let seen = Seen::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let calls = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (calls, acceptor) = (calls.clone(), acceptor.clone());
            let service = service_fn(move |request: http::Request<Incoming>| {
                let calls = calls.clone();
                async move {
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                    let response = match request.uri().path() {
                        UNARY | ADMIN => grpc.unary(HelloService(calls), request).await,
                        STREAMING => grpc.server_streaming(CountService(calls), request).await,
                        _ => Status::unimplemented("no such method").into_http::<Body>(),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                let _ = match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        builder.serve_connection(TokioIo::new(tls), service).await
                    }
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
    (addr, seen)
}

/// One HTTP/2 connection to the gateway as the `tower` service tonic's
/// low-level client drives.
struct Connection(SendRequest<Body>);

impl tower_service::Service<http::Request<Body>> for Connection {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// A tonic client over TLS (ALPN `h2`) to the gateway, trusting the test CA.
async fn grpc_client(gateway: &TestGateway) -> Grpc<Connection> {
    let tls = tls_connect(gateway.addr, &gateway.pki, b"h2").await;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let origin = format!("https://localhost:{}", gateway.addr.port());
    Grpc::with_origin(Connection(sender), origin.parse().unwrap())
}

fn request(name: &str, count: u32, token: Option<&str>) -> Request<Hello> {
    let mut request = Request::new(Hello {
        name: name.to_owned(),
        count,
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn unary(
    client: &mut Grpc<Connection>,
    path: &'static str,
    request: Request<Hello>,
) -> Result<Response<Greeting>, Status> {
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static(path);
    client.unary(request, path, ProstCodec::default()).await
}

/// Every message of a server-streaming call, then how the stream ended.
async fn count(
    client: &mut Grpc<Connection>,
    request: Request<Hello>,
) -> Result<(Vec<Greeting>, Result<Option<MetadataMap>, Status>), Status> {
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static(STREAMING);
    let mut stream = client
        .server_streaming(request, path, ProstCodec::default())
        .await?
        .into_inner();
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return Ok((messages, stream.trailers().await)),
            Err(status) => return Ok((messages, Err(status))),
        }
    }
}

#[tokio::test]
async fn a_unary_call_reaches_the_server_with_the_identity_as_metadata() {
    let (upstream, seen) = grpc_upstream(None).await;
    let gateway = TestGateway::start(&config(), upstream).await;
    let mut client = grpc_client(&gateway).await;

    let reply = unary(&mut client, UNARY, request("ada", 0, Some(&token("user"))))
        .await
        .unwrap();
    assert_eq!(
        reply.into_inner(),
        Greeting {
            text: "hello ada".into(),
            user: "42".into(),
            role: "user".into(),
        }
    );
    let metadata = seen.lock().unwrap().pop().unwrap();
    assert!(metadata.get("authorization").is_none(), "token forwarded");
    assert_eq!(metadata.get("te").unwrap(), "trailers");

    // The server's own error status (trailers-only) reaches the client as is.
    let status = unary(&mut client, UNARY, request("", 0, Some(&token("user"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "name is required");

    // The same connection keeps working for the admin service and its role.
    let reply = unary(
        &mut client,
        ADMIN,
        request("root", 0, Some(&token("admin"))),
    )
    .await
    .unwrap();
    assert_eq!(reply.get_ref().role, "admin");
}

#[tokio::test]
async fn a_server_streaming_call_delivers_every_message_and_the_servers_trailers() {
    let (upstream, _) = grpc_upstream(None).await;
    let gateway = TestGateway::start(&config(), upstream).await;
    let mut client = grpc_client(&gateway).await;

    let (messages, end) = count(&mut client, request("tick", 3, Some(&token("user"))))
        .await
        .unwrap();
    let texts: Vec<_> = messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["tick 1", "tick 2", "tick 3"]);
    assert!(messages.iter().all(|m| m.user == "42" && m.role == "user"));
    let trailers = end.unwrap().expect("trailers after the messages");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");

    // An error status sent after messages travels in real trailers.
    let (messages, end) = count(&mut client, request("abort", 2, Some(&token("user"))))
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(status.message(), "stopped by the server");
    assert_eq!(status.metadata().get("x-reason").unwrap(), "asked to");
}

#[tokio::test]
async fn a_grpc_server_behind_tls_is_reached_by_alpn_h2() {
    let pki = DevPki::generate().unwrap();
    let dir = std::env::temp_dir().join(format!("jwtgate-grpc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let (upstream, _) = grpc_upstream(Some(&pki)).await;
    let config = config().replace(
        "url = \"http://UPSTREAM\"",
        &format!(
            "url = \"https://localhost:{}\"\nca_file = {:?}",
            upstream.port(),
            dir.join("ca.pem")
        ),
    );
    let gateway = TestGateway::start(&config, upstream).await;
    let mut client = grpc_client(&gateway).await;

    let reply = unary(&mut client, UNARY, request("ada", 0, Some(&token("user"))))
        .await
        .unwrap();
    assert_eq!(reply.get_ref().user, "42");
    let (messages, end) = count(&mut client, request("tick", 2, Some(&token("user"))))
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(end.unwrap().unwrap().get("grpc-status").unwrap(), "0");
}

#[tokio::test]
async fn a_call_without_a_valid_token_is_unauthenticated() {
    let (upstream, seen) = grpc_upstream(None).await;
    let gateway = TestGateway::start(&config(), upstream).await;
    let mut client = grpc_client(&gateway).await;

    for token in [None, Some("not-a-token")] {
        let status = unary(&mut client, UNARY, request("ada", 0, token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
        assert!(!status.message().is_empty());

        let status = count(&mut client, request("tick", 3, token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token:?}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused call got through"
    );
}

#[tokio::test]
async fn a_call_with_the_wrong_role_is_permission_denied() {
    let (upstream, seen) = grpc_upstream(None).await;
    let gateway = TestGateway::start(&config(), upstream).await;
    let mut client = grpc_client(&gateway).await;

    let status = unary(&mut client, ADMIN, request("ada", 0, Some(&token("user"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(!status.message().is_empty());
    assert!(
        seen.lock().unwrap().is_empty(),
        "a refused call got through"
    );
}

#[tokio::test]
async fn a_call_to_a_down_upstream_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let gateway = TestGateway::start(&config(), closed).await;
    let mut client = grpc_client(&gateway).await;

    let status = unary(&mut client, UNARY, request("ada", 0, Some(&token("user"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    let status = count(&mut client, request("tick", 3, Some(&token("user"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_call_the_upstream_answers_too_late_is_deadline_exceeded() {
    let (upstream, _) = grpc_upstream(None).await;
    let config = config().replace("timeout = \"1s\"", "timeout = \"200ms\"");
    let gateway = TestGateway::start(&config, upstream).await;
    let mut client = grpc_client(&gateway).await;

    let status = unary(&mut client, UNARY, request("slow", 0, Some(&token("user"))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
}
