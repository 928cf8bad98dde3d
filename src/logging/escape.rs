//! Field formatting for the `text` and `journal` formats that keeps every event on one line
//! and keeps terminal control out: control characters in any message or field value (stage
//! names, AWS error messages, Slack's answers…) are written escaped, `\n` or `\u{1b}`. Done
//! here, once, so no call site has to remember it. (`json` needs nothing: JSON strings escape
//! control characters.)

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};

/// [`DefaultFields`], escaped.
#[derive(Debug)]
pub struct EscapedFields(DefaultFields);

impl Default for EscapedFields {
    fn default() -> Self {
        Self(DefaultFields::new())
    }
}

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = Escaping<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Escaping(self.0.make_visitor(target))
    }
}

/// `Visit` methods that hand the value to the inner visitor unchanged.
macro_rules! pass_on {
    ($($method:ident: $ty:ty),+ $(,)?) => {
        $(
            fn $method(&mut self, field: &Field, value: $ty) {
                self.0.$method(field, value);
            }
        )+
    };
}

/// Hands each value to the inner visitor with its control characters escaped.
pub struct Escaping<V>(V);

impl<V: Visit> Visit for Escaping<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.record_str(field, &escape(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(e) = source {
            let _ = write!(text, ": {e}");
            source = e.source();
        }
        self.0
            .record_debug(field, &format_args!("{}", escape(&text)));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Messages and `%`/`?` fields arrive here: formatted once, escaped, passed on as is.
        let text = format!("{value:?}");
        self.0
            .record_debug(field, &format_args!("{}", escape(&text)));
    }

    // Numbers and booleans carry no text to escape: the inner visitor writes them its own way.
    pass_on!(
        record_i64: i64,
        record_u64: u64,
        record_i128: i128,
        record_u128: u128,
        record_f64: f64,
        record_bool: bool,
    );
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Escaping<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Escaping<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// Characters that must not reach a log raw: C0 and C1 controls and DEL (line breaks,
/// terminal escapes), the Unicode line and paragraph separators, and the bidirectional
/// overrides that make a terminal show text in another order than it was written.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with each such character written as `\n`, `\r`, `\t` or `\u{…}`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape("a\nb\r\tc\u{1b}[31m\u{7f}\u{9b}"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7f}\\u{9b}"
        );
        assert_eq!(
            escape("x\u{2028}y\u{202e}z\u{2066}"),
            "x\\u{2028}y\\u{202e}z\\u{2066}"
        );
        assert!(matches!(escape("plain é 🎉 \\n"), Cow::Borrowed(_)));
    }
}
