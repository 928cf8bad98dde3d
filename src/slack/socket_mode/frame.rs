//! What a Socket Mode text frame says: `hello`, `disconnect` with its reason, or an envelope to
//! acknowledge. Pure; outside input, so nothing here panics and nothing is trusted beyond its
//! shape (serde_json's recursion limit bounds the nesting; the frame size is bounded before).

use serde_json::Value;

use crate::slack::clip::clip;

/// Envelope ids and type words are short; anything longer is cut for the log.
pub(super) const MAX_WORD_CHARS: usize = 64;

/// One text frame, understood.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Frame {
    /// The connection is ready (`num_connections` is informational).
    Hello,
    /// Slack will close this connection (or has turned Socket Mode off).
    Disconnect(Disconnect),
    /// An envelope: acknowledge it with `{"envelope_id": …}`.
    Envelope(Envelope),
    /// JSON with a `type` this daemon does not use (clipped for the log).
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disconnect {
    /// `refresh_requested`, `warning`, or a reason not known yet: the connection will end soon;
    /// open the next one first.
    Refresh,
    /// `link_disabled`: Socket Mode was turned off for the app.
    LinkDisabled,
    /// `too_many_websockets`: the app has more sockets open than Slack allows (10), so
    /// something else holds them; another attempt soon would be refused too.
    TooManyWebsockets,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Envelope {
    pub envelope_id: String,
    /// `interactive`, `events_api`, `slash_commands`, … (clipped).
    pub kind: String,
    pub payload: Value,
    pub retry_attempt: u32,
}

/// Why a text frame was not understood (for a short log line; never the frame itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum FrameError {
    #[error("not JSON")]
    NotJson,
    #[error("not a JSON object")]
    NotObject,
    #[error("an envelope without a usable envelope_id")]
    NoEnvelopeId,
}

/// Reads one text frame.
pub(super) fn parse(text: &str) -> Result<Frame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let Value::Object(mut object) = value else {
        return Err(FrameError::NotObject);
    };
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "hello" => return Ok(Frame::Hello),
        "disconnect" => {
            let reason = object.get("reason").and_then(Value::as_str);
            return Ok(Frame::Disconnect(match reason {
                Some("link_disabled") => Disconnect::LinkDisabled,
                Some("too_many_websockets") => Disconnect::TooManyWebsockets,
                _ => Disconnect::Refresh,
            }));
        }
        _ => {}
    }
    let kind = clip(kind, MAX_WORD_CHARS);
    let Some(id) = object.get("envelope_id") else {
        return Ok(Frame::Other(kind));
    };
    let envelope_id = match id.as_str() {
        Some(id) if !id.is_empty() && id.len() <= 256 => id.to_owned(),
        _ => return Err(FrameError::NoEnvelopeId),
    };
    let retry_attempt = object
        .get("retry_attempt")
        .and_then(Value::as_u64)
        .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let payload = object.remove("payload").unwrap_or(Value::Null);
    Ok(Frame::Envelope(Envelope {
        envelope_id,
        kind,
        payload,
        retry_attempt,
    }))
}

/// The acknowledgement Slack expects for an envelope.
pub(super) fn ack(envelope_id: &str) -> String {
    serde_json::json!({ "envelope_id": envelope_id }).to_string()
}

/// An acknowledgement carrying an answer (a modal's `response_action`), which Slack takes
/// only here.
pub(super) fn ack_with(envelope_id: &str, payload: &serde_json::Value) -> String {
    serde_json::json!({ "envelope_id": envelope_id, "payload": payload }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hello_disconnect_and_envelopes_are_told_apart() {
        assert_eq!(
            parse(r#"{"type":"hello","num_connections":1,"debug_info":{}}"#),
            Ok(Frame::Hello)
        );
        for (reason, want) in [
            ("refresh_requested", Disconnect::Refresh),
            ("warning", Disconnect::Refresh),
            ("something_new", Disconnect::Refresh),
            ("link_disabled", Disconnect::LinkDisabled),
            ("too_many_websockets", Disconnect::TooManyWebsockets),
        ] {
            let text = json!({"type": "disconnect", "reason": reason}).to_string();
            assert_eq!(parse(&text), Ok(Frame::Disconnect(want)), "{reason}");
        }
        let text = json!({
            "envelope_id": "e-1", "type": "interactive", "accepts_response_payload": false,
            "retry_attempt": 2, "retry_reason": "timeout",
            "payload": {"type": "block_actions", "user": {"id": "U1"}}
        })
        .to_string();
        assert_eq!(
            parse(&text),
            Ok(Frame::Envelope(Envelope {
                envelope_id: "e-1".into(),
                kind: "interactive".into(),
                payload: json!({"type": "block_actions", "user": {"id": "U1"}}),
                retry_attempt: 2,
            }))
        );
        assert_eq!(
            parse(r#"{"type":"events_api","envelope_id":"e-2"}"#),
            Ok(Frame::Envelope(Envelope {
                envelope_id: "e-2".into(),
                kind: "events_api".into(),
                payload: Value::Null,
                retry_attempt: 0,
            }))
        );
        assert_eq!(
            parse(r#"{"type":"mystery"}"#),
            Ok(Frame::Other("mystery".into()))
        );
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        assert_eq!(parse("not json"), Err(FrameError::NotJson));
        assert_eq!(parse("[1,2]"), Err(FrameError::NotObject));
        assert_eq!(parse("\"hello\""), Err(FrameError::NotObject));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep), Err(FrameError::NotJson));
        let deep_object = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep_object), Err(FrameError::NotJson));
        for id in [json!(7), json!(""), json!("x".repeat(300)), json!(null)] {
            let text = json!({"type": "interactive", "envelope_id": id}).to_string();
            assert_eq!(parse(&text), Err(FrameError::NoEnvelopeId), "{id}");
        }
        let text = json!({"type": 5, "envelope_id": "e", "retry_attempt": -1}).to_string();
        let Ok(Frame::Envelope(e)) = parse(&text) else {
            panic!("an envelope");
        };
        assert_eq!((e.kind.as_str(), e.retry_attempt), ("", 0));
        let text = json!({"type": "x\u{1b}[31m".repeat(40), "envelope_id": "e"}).to_string();
        let Ok(Frame::Envelope(e)) = parse(&text) else {
            panic!("an envelope");
        };
        assert!(!e.kind.contains('\u{1b}') && e.kind.chars().count() <= 65);
    }

    #[test]
    fn the_ack_names_the_envelope() {
        assert_eq!(ack("a\"b"), r#"{"envelope_id":"a\"b"}"#);
        assert_eq!(
            ack_with("e1", &json!({"response_action": "errors"})),
            r#"{"envelope_id":"e1","payload":{"response_action":"errors"}}"#
        );
    }
}
