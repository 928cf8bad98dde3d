//! A bound on every CodePipeline answer before the SDK parses it: its size, and how deeply its
//! JSON nests. The SDK's JSON reader recurses once per level of nesting (even to skip a field it
//! does not know), so an answer nested 100,000 levels deep overflows the stack and aborts the
//! process. The guard wraps the response body as the SDK reads it into memory, and fails that
//! read as soon as the answer passes either bound; [`rejection`] finds the reason again in the
//! SDK's error so the call becomes a `MalformedResponse` of that one pipeline.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_codepipeline::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_codepipeline::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_codepipeline::error::BoxError;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The largest answer read. Real ones are far smaller: a `GetPipeline` of a pipeline at the
/// service's limits (50 stages of 50 actions, each with its full configuration) is well under
/// 1 MiB, a `ListPipelines` page of 1,000 pipelines about 200 KiB. Eight times the first leaves
/// room for AWS adding fields, and bounds the memory each of the concurrent reads can take.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// The deepest nesting read. Real answers nest under 10 levels (state → stages → actions →
/// execution → error details); the SDK's own bound for free-form documents is 256. At 64 the
/// parser's recursion stays a few kilobytes of stack.
pub const MAX_NESTING: usize = 64;

/// Why an answer was not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the answer is larger than {limit} bytes; not parsed")]
    TooLarge { limit: usize },
    #[error("the answer's JSON is nested more than {limit} levels deep; not parsed")]
    TooDeep { limit: usize },
}

/// The guard, registered on every CodePipeline client (see `connect::client`).
#[derive(Debug, Default)]
pub struct AnswerGuard;

impl Intercept for AnswerGuard {
    fn name(&self) -> &'static str {
        "AnswerGuard"
    }

    /// The hook runs before the SDK reads the body (it reads it whole, then parses); it cannot
    /// wait, so it swaps in a body that checks each chunk as the SDK reads it.
    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.response_mut().body_mut();
        let inner = std::mem::replace(body, SdkBody::taken());
        *body = SdkBody::from_body_1_x(Bounded::new(inner));
        Ok(())
    }
}

/// The reason a guard refused the answer, if it did, found in an SDK error's source chain.
pub fn rejection(err: &(dyn std::error::Error + 'static)) -> Option<Rejected> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(rejected) = e.downcast_ref::<Rejected>() {
            return Some(*rejected);
        }
        current = e.source();
    }
    None
}

/// A body that fails once more than [`MAX_ANSWER_BYTES`] have come, or the JSON in it has
/// nested deeper than [`MAX_NESTING`].
struct Bounded {
    inner: SdkBody,
    read: usize,
    nesting: Nesting,
    failed: bool,
}

impl Bounded {
    fn new(inner: SdkBody) -> Self {
        Self {
            inner,
            read: 0,
            nesting: Nesting::default(),
            failed: false,
        }
    }

    fn check(&mut self, chunk: &[u8]) -> Result<(), Rejected> {
        self.read = self.read.saturating_add(chunk.len());
        if self.read > MAX_ANSWER_BYTES {
            return Err(Rejected::TooLarge {
                limit: MAX_ANSWER_BYTES,
            });
        }
        self.nesting.feed(chunk, MAX_NESTING)
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        // A `Content-Length` over the bound is refused before a byte is read.
        if self.read == 0 && self.inner.size_hint().lower() > MAX_ANSWER_BYTES as u64 {
            self.failed = true;
            let limit = MAX_ANSWER_BYTES;
            return Poll::Ready(Some(Err(Rejected::TooLarge { limit }.into())));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref()
            && let Err(rejected) = self.check(data)
        {
            self.failed = true;
            return Poll::Ready(Some(Err(rejected.into())));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How deeply the JSON read so far nests: `[` and `{` outside strings, fed chunk by chunk
/// (a string or an escape may straddle two chunks). No recursion, constant memory. UTF-8
/// needs no decoding: no byte of a multi-byte character is ASCII.
#[derive(Debug, Default)]
struct Nesting {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Nesting {
    fn feed(&mut self, bytes: &[u8], limit: usize) -> Result<(), Rejected> {
        for &b in bytes {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'[' | b'{' => {
                    self.depth += 1;
                    if self.depth > limit {
                        return Err(Rejected::TooDeep { limit });
                    }
                }
                // Unbalanced closers are the parser's to refuse; they only lower the count.
                b']' | b'}' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deepest(chunks: &[&str], limit: usize) -> Result<(), Rejected> {
        let mut n = Nesting::default();
        chunks.iter().try_for_each(|c| n.feed(c.as_bytes(), limit))
    }

    #[test]
    fn counts_brackets_and_braces_outside_strings_only() {
        assert!(deepest(&[r#"{"a":[{"b":[1]}]}"#], 4).is_ok());
        assert_eq!(
            deepest(&[r#"{"a":[{"b":[[1]]}]}"#], 4),
            Err(Rejected::TooDeep { limit: 4 })
        );
        // Brackets in strings, escaped quotes, an escaped backslash before the closing quote.
        assert!(deepest(&[r#"{"a":"[[[[[\"[[[[","b":"\\","c":"{{{{{"}"#], 1).is_ok());
    }

    #[test]
    fn state_carries_across_chunks() {
        // The string and its escape are split between chunks.
        assert!(deepest(&[r#"{"a":"[[\"#, r#""[[[[","b":1}"#], 1).is_ok());
        assert_eq!(
            deepest(&["[[", "[[", "["], 4),
            Err(Rejected::TooDeep { limit: 4 })
        );
        let deep = "[".repeat(100_000);
        assert!(deepest(&[&deep], MAX_NESTING).is_err());
    }

    #[test]
    fn the_reason_is_found_through_the_error_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] BoxError);
        let inner: BoxError = Rejected::TooDeep { limit: 3 }.into();
        let outer = Outer(inner);
        assert_eq!(rejection(&outer), Some(Rejected::TooDeep { limit: 3 }));
        assert_eq!(rejection(&std::fmt::Error), None);
    }
}
