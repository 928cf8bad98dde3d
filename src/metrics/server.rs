//! The `[metrics] listen` endpoint: `GET /metrics` and `GET /healthz` over HTTP/1.1 (hyper),
//! one request per connection, on a thread of its own.
//!
//! Its own thread because the daemon's loop runs on one thread and talks to SQLite
//! synchronously: while the database is locked by someone else, that thread waits in SQLite's
//! busy timeout, and an endpoint on the same thread could not answer at all, least of all say
//! "unhealthy". Here nothing waits on the loop: `/healthz` reads two atomics, `/metrics` a
//! mutex the loop only holds to bump a number.
//!
//! Hostile clients are bounded: a request head must arrive within [`HEADER_TIMEOUT`] and fit
//! in [`MAX_REQUEST_HEAD`]; past [`MAX_CONNECTIONS`] the oldest connection still waiting for its
//! request is dropped to make room (see [`Slots`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Metrics;
use super::slots::{Slot, Slots};

/// Connections open at once; enough for any number of scrapers and probes.
const MAX_CONNECTIONS: usize = 64;
/// A client gets this long to send its request head (hyper's own default is 30 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's whole life, request and answer: bounds a client that never reads.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Request heads longer than this are refused (431).
const MAX_REQUEST_HEAD: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("metrics.listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics.listen: cannot start the endpoint's thread: {0}")]
    Thread(std::io::Error),
}

/// Listens on `addr` and serves `/metrics` and `/healthz` from `metrics` on a thread of its own
/// until `shutdown`. Returns the address bound (`addr` with the port chosen, for port 0).
pub fn start(
    addr: SocketAddr,
    metrics: &'static Metrics,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServeError> {
    let listen = |source| ServeError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
    listener.set_nonblocking(true).map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    if !addr.ip().to_canonical().is_loopback() {
        let reach = if addr.ip().is_unspecified() {
            "every network interface of this host"
        } else {
            "that address"
        };
        tracing::warn!(
            "metrics.listen = {addr} is not a loopback address: anyone who can reach {reach} \
             can read /metrics and /healthz (no authentication); listen on 127.0.0.1 or firewall the port"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Thread)?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, metrics, shutdown).await,
                    Err(e) => tracing::error!("metrics endpoint: cannot listen: {e}"),
                }
            })
        })
        .map_err(ServeError::Thread)?;
    Ok(local)
}

async fn serve(listener: TcpListener, metrics: &'static Metrics, shutdown: CancellationToken) {
    let slots = Slots::new(MAX_CONNECTIONS);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics endpoint: cannot accept a connection: {e}");
                    // EMFILE and friends: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        match slots.admit() {
            Some(slot) => {
                tokio::spawn(connection(stream, slot, metrics));
            }
            None => {
                tokio::spawn(refuse(stream));
            }
        }
    }
}

/// One request, one answer, then the connection is closed.
async fn connection(stream: TcpStream, slot: Slot, metrics: &'static Metrics) {
    let busy = slot.busy.clone();
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        busy.store(true, Ordering::Release);
        let response = answer(&request, metrics);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_REQUEST_HEAD)
        .keep_alive(false);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = tokio::time::timeout(CONNECTION_TIMEOUT, served) => match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("metrics endpoint: connection dropped: {e}"),
            Err(_) => tracing::debug!("metrics endpoint: connection dropped: too slow"),
        },
        _ = slot.shed.cancelled() => {
            tracing::debug!("metrics endpoint: idle connection dropped to make room");
        }
    }
}

/// Every connection is busy answering: say so at once rather than keep the client waiting.
async fn refuse(mut stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
        Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await
    })
    .await;
}

fn answer<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => match metrics.health() {
            Ok(reason) => text(StatusCode::OK, format!("ok: {reason}\n")),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {reason}\n"),
            ),
        },
        "/" => text(
            StatusCode::OK,
            "approval-watch: /metrics (Prometheus), /healthz\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
