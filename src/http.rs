//! What every HTTP client here (Slack's webhooks and Web API, the heartbeat) does with an
//! answer from outside: read its body up to a bound ([`read_bounded`]), and put a failed
//! request into words without its URL ([`describe`]), since some URLs are secrets; and read a
//! `Retry-After` in seconds ([`retry_after`]).

use std::fmt;
use std::time::Duration;

/// Which way a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    TimedOut,
    Connect,
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TimedOut => "timed out",
            Self::Connect => "connection failed",
            Self::Other => "request failed",
        }
    }
}

/// A failed request in words. Shown as "kind: detail".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// reqwest's message and its causes ("Connection refused"), none of them naming a URL.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

/// A transport error without the URL reqwest would otherwise include: the message, then each
/// cause not already said and not naming a URL.
pub fn describe(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        FailureKind::TimedOut
    } else if e.is_connect() {
        FailureKind::Connect
    } else {
        FailureKind::Other
    };
    let e = e.without_url();
    let prefix = format!("{}: ", kind.as_str());
    let mut text = format!("{prefix}{e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !s.contains("://") && !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    Failure {
        kind,
        detail: text.split_off(prefix.len()),
    }
}

/// A body read up to a bound, and how the reading ended.
#[derive(Debug)]
pub struct Bounded {
    /// At most the bound's worth of bytes.
    pub bytes: Vec<u8>,
    pub end: BodyEnd,
}

#[derive(Debug)]
pub enum BodyEnd {
    /// The whole body, within the bound.
    Complete,
    /// The body is longer than the bound: `bytes` is its start, the rest was not read.
    TooLong,
    /// The connection failed part way: `bytes` is what came before.
    Failed(reqwest::Error),
}

/// Reads `response`'s body, keeping at most `max` bytes: a hostile or broken server's answer
/// costs that much memory at most, and the rest is dropped with the connection.
pub async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Bounded {
    let mut bytes = Vec::new();
    let end = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if !keep(&mut bytes, &chunk, max) {
                    break BodyEnd::TooLong;
                }
            }
            Ok(None) => break BodyEnd::Complete,
            Err(e) => break BodyEnd::Failed(e),
        }
    };
    Bounded { bytes, end }
}

/// The answer's `Retry-After` in whole seconds; `None` when absent or in another form.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Adds as much of `chunk` to `body` as `max` leaves room for; `false` if some did not fit.
fn keep(body: &mut Vec<u8>, chunk: &[u8], max: usize) -> bool {
    let room = max.saturating_sub(body.len());
    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    chunk.len() <= room
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body::Frame;

    /// A response whose body comes in these chunks, then `error` if given.
    fn response(chunks: &[&[u8]], error: bool) -> reqwest::Response {
        let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        if error {
            frames.push(Err(std::io::Error::other("reset by peer")));
        }
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        http::Response::new(reqwest::Body::wrap(body)).into()
    }

    #[test]
    fn keeps_up_to_the_bound_across_chunks() {
        let mut body = Vec::new();
        assert!(keep(&mut body, b"abc", 5));
        assert!(keep(&mut body, b"de", 5));
        assert!(keep(&mut body, b"", 5));
        assert!(!keep(&mut body, b"f", 5));
        assert_eq!(body, b"abcde");
        let mut body = Vec::new();
        assert!(!keep(&mut body, b"abcdefgh", 5));
        assert_eq!(body, b"abcde");
    }

    #[tokio::test]
    async fn a_body_within_the_bound_is_read_whole() {
        let mut r = response(&[b"hello ", b"world"], false);
        let read = read_bounded(&mut r, 11).await;
        assert_eq!(read.bytes, b"hello world");
        assert!(matches!(read.end, BodyEnd::Complete), "{:?}", read.end);
    }

    #[tokio::test]
    async fn a_body_over_the_bound_is_cut_and_said_to_be_too_long() {
        let mut r = response(&[b"hello ", b"world", b"!"], false);
        let read = read_bounded(&mut r, 8).await;
        assert_eq!(read.bytes, b"hello wo");
        assert!(matches!(read.end, BodyEnd::TooLong), "{:?}", read.end);
        let mut r = response(&[b"hello world"], false);
        let read = read_bounded(&mut r, 10).await;
        assert_eq!(read.bytes, b"hello worl");
        assert!(matches!(read.end, BodyEnd::TooLong), "{:?}", read.end);
    }

    #[tokio::test]
    async fn a_failure_part_way_keeps_what_came_before() {
        let mut r = response(&[b"hello"], true);
        let read = read_bounded(&mut r, 100).await;
        assert_eq!(read.bytes, b"hello");
        assert!(matches!(read.end, BodyEnd::Failed(_)), "{:?}", read.end);
    }

    #[tokio::test]
    async fn failures_are_told_by_kind_and_never_name_the_url() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        // Nothing listens on a port just freed: refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/secret-path");
        let e = client.get(&url).send().await.unwrap_err();
        let failure = describe(e);
        assert_eq!(failure.kind, FailureKind::Connect, "{failure}");
        let text = failure.to_string();
        assert!(text.starts_with("connection failed: "), "{text}");
        assert!(
            !text.contains("secret-path") && !text.contains("://"),
            "{text}"
        );

        // Listening but never answering: the request times out.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/secret-path", listener.local_addr().unwrap());
        let e = client.get(&url).send().await.unwrap_err();
        let failure = describe(e);
        assert_eq!(failure.kind, FailureKind::TimedOut, "{failure}");
        assert!(failure.to_string().starts_with("timed out: "), "{failure}");
        assert!(!failure.to_string().contains("secret-path"), "{failure}");
    }

    #[test]
    fn retry_after_reads_whole_seconds_only() {
        let with = |value: &str| {
            let mut r = http::Response::new(reqwest::Body::from(""));
            r.headers_mut()
                .insert(reqwest::header::RETRY_AFTER, value.parse().unwrap());
            retry_after(&r.into())
        };
        assert_eq!(with(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(with("-1"), None);
        let none: reqwest::Response = http::Response::new(reqwest::Body::from("")).into();
        assert_eq!(retry_after(&none), None);
    }
}
