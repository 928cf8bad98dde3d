//! The `[metrics] listen` endpoint: a minimal HTTP/1.1 server for `GET /metrics` and
//! `GET /healthz`, one request per connection, bounded in connections, size and time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;
/// A client gets this long to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Request heads longer than this are refused.
const MAX_REQUEST_HEAD: usize = 8192;

/// Serves `/metrics` and `/healthz` from `metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: &'static Metrics, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => return,
        };
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
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, metrics)).await
            {
                tracing::debug!("metrics endpoint: client too slow: {e}");
            }
        });
    }
}

/// One request, one answer, then the connection is closed.
async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            let _ = respond(&mut stream, false, 431, "text/plain", "request too large\n").await;
            return;
        }
    }
    let request_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let request_line = String::from_utf8_lossy(request_line);
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(&mut stream, false, 405, "text/plain", "only GET and HEAD\n").await;
        return;
    }
    let _ = match path {
        "/metrics" => {
            respond(
                &mut stream,
                head_only,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &metrics.render(),
            )
            .await
        }
        "/healthz" => match metrics.health() {
            Ok(text) => {
                let body = format!("ok: {text}\n");
                respond(&mut stream, head_only, 200, "text/plain", &body).await
            }
            Err(text) => {
                let body = format!("unhealthy: {text}\n");
                respond(&mut stream, head_only, 503, "text/plain", &body).await
            }
        },
        "/" => {
            respond(
                &mut stream,
                head_only,
                200,
                "text/plain",
                "approval-watch: /metrics (Prometheus), /healthz\n",
            )
            .await
        }
        _ => respond(&mut stream, head_only, 404, "text/plain", "not found\n").await,
    };
}

async fn respond(
    stream: &mut TcpStream,
    head_only: bool,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
