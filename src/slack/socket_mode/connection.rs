//! One Socket Mode WebSocket: `apps.connections.open` → connect (rustls; bounded frames and
//! messages) → wait for `hello`. The URL carries a one-time ticket: errors name its host only.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::frame::{self, Disconnect, Frame};
use super::{ConnectError, Timing};
use crate::slack::clip::clip;
use crate::slack::web_api::ConnectionOpener;

/// Slack's envelopes are a few KiB; a frame or message above this ends the connection (and a
/// reconnect follows) rather than filling memory.
pub(super) const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Writes waiting for the peer to read are bounded too (tungstenite's default is unbounded):
/// a peer that floods pings and reads no pongs would otherwise fill memory. Acks and pings are
/// tiny; above this a write fails and the connection is replaced.
const MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// Above this much unwritten data a write goes to the socket at once (below the bound).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// An acknowledgement or a ping that cannot be written in this long means the link is gone
/// (Slack wants the ack within 3 s).
const SEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Closing politely is worth this much; then the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Error texts from the WebSocket library are cut to this for the log and the state.
pub(super) const MAX_ERROR_CHARS: usize = 200;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open connection that has said `hello`.
pub(super) struct Connection {
    pub(super) ws: Socket,
    pub(super) opened: Instant,
    /// For logs: the URL's host (never its query, which holds the ticket).
    pub(super) host: String,
}

impl Connection {
    /// Sends one text frame, bounded in time.
    pub(super) async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.send(Message::text(text)).await
    }

    pub(super) async fn ping(&mut self) -> Result<(), String> {
        self.send(Message::Ping(Default::default())).await
    }

    /// Writes what is queued (the library's pongs), bounded in time like a send.
    pub(super) async fn flush(&mut self) -> Result<(), String> {
        match timeout(SEND_TIMEOUT, self.ws.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(clip(&e.to_string(), MAX_ERROR_CHARS)),
            Err(_) => Err(format!(
                "Slack sends faster than it reads: a pong waited {} s to be written",
                SEND_TIMEOUT.as_secs()
            )),
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), String> {
        match timeout(SEND_TIMEOUT, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(clip(&e.to_string(), MAX_ERROR_CHARS)),
            Err(_) => Err(format!(
                "a write to Slack took longer than {} s",
                SEND_TIMEOUT.as_secs()
            )),
        }
    }

    /// A close frame if the link still takes one, then the socket is dropped.
    pub(super) async fn close(mut self) {
        let _ = timeout(CLOSE_TIMEOUT, self.ws.close(None)).await;
    }
}

/// Opens a connection and waits for its `hello` (each step bounded by the connect timeout).
pub(super) async fn open(
    opener: &ConnectionOpener,
    timing: &Timing,
) -> Result<Connection, ConnectError> {
    let url = opener.open().await.map_err(ConnectError::Open)?;
    let host = url
        .host_str()
        .map(|h| clip(h, frame::MAX_WORD_CHARS))
        .unwrap_or_default();
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
    let connecting = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
    let (mut ws, _response) = match timeout(timing.connect_timeout, connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => {
            let reason = redact(&e.to_string(), &url);
            return Err(ConnectError::Connect { host, reason });
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                host,
                what: "connecting",
                after: timing.connect_timeout,
            });
        }
    };
    match timeout(timing.connect_timeout, hello(&mut ws)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
            return Err(e);
        }
        Err(_) => {
            return Err(ConnectError::Timeout {
                host,
                what: "waiting for hello",
                after: timing.connect_timeout,
            });
        }
    }
    tracing::debug!(host = %host, "Socket Mode connection open");
    Ok(Connection {
        ws,
        opened: Instant::now(),
        host,
    })
}

/// Reads until `hello`. Slack sends nothing before it but a `disconnect`; anything else is
/// ignored (an envelope left unacknowledged is delivered again).
async fn hello(ws: &mut Socket) -> Result<(), ConnectError> {
    loop {
        let message = match ws.next().await {
            None => return Err(ConnectError::NoHello("closed before hello".to_owned())),
            Some(Err(e)) => {
                return Err(ConnectError::NoHello(clip(&e.to_string(), MAX_ERROR_CHARS)));
            }
            Some(Ok(message)) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => {
                return Err(ConnectError::NoHello("closed before hello".to_owned()));
            }
            _ => continue,
        };
        match frame::parse(&text) {
            Ok(Frame::Hello) => return Ok(()),
            Ok(Frame::Disconnect(Disconnect::LinkDisabled)) => {
                return Err(ConnectError::LinkDisabled);
            }
            Ok(Frame::Disconnect(Disconnect::TooManyWebsockets)) => {
                return Err(ConnectError::TooManyWebsockets);
            }
            Ok(Frame::Disconnect(Disconnect::Refresh)) => {
                return Err(ConnectError::NoHello("disconnect before hello".to_owned()));
            }
            Ok(_) => tracing::debug!("ignored a Socket Mode frame before hello"),
            Err(e) => tracing::debug!(
                bytes = text.len(),
                "ignored a Socket Mode frame before hello: {e}"
            ),
        }
    }
}

/// An error text with the URL and its ticket taken out, cut for the log.
fn redact(text: &str, url: &url::Url) -> String {
    let mut text = text.replace(url.as_str(), "<socket url>");
    if let Some(query) = url.query().filter(|q| !q.is_empty()) {
        text = text.replace(query, "<ticket>");
    }
    clip(&text, MAX_ERROR_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_carry_the_ticket() {
        let url = url::Url::parse("wss://wss.example/link/?ticket=SECRET123&app_id=A").unwrap();
        let text = redact(
            &format!("failed: {url} and ticket=SECRET123&app_id=A\n"),
            &url,
        );
        assert!(!text.contains("SECRET123"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
