//! TOML errors retold without the source text. `toml`'s own message quotes the offending
//! line, and that line can be an inline `webhook_url`: the secret would reach the log.

/// "line L, column C, key K: message", with URLs in the message redacted.
pub fn describe(error: &toml::de::Error, text: &str) -> String {
    let message = redact_urls(error.message().trim());
    let Some(span) = error.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    match key_at(text, line_start) {
        Some(key) => format!("line {line}, column {column}, key {key}: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The dotted key assigned on the line starting at `line_start`, prefixed by the table
/// header above it. Only key-shaped text is returned, never a value.
fn key_at(text: &str, line_start: usize) -> Option<String> {
    let rest = text.get(line_start..)?;
    let line = rest.lines().next().unwrap_or_default();
    let key = line.split_once('=')?.0.trim();
    if !is_key(key) {
        return None;
    }
    let table = text
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim())
        .filter(|h| is_key(h));
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
}

/// Replaces every `scheme://…` run (up to whitespace or a quote) with `<URL>`.
fn redact_urls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let scheme_start = rest
            .get(..i)
            .and_then(|s| s.rfind(|c: char| !c.is_ascii_alphanumeric()))
            .map_or(0, |j| j + 1);
        let end = rest
            .get(i..)
            .and_then(|s| s.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`')))
            .map_or(rest.len(), |j| i + j);
        out.push_str(rest.get(..scheme_start).unwrap_or_default());
        out.push_str("<URL>");
        rest = rest.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "/services/T000/B000/XXXXSECRET";

    fn error(text: &str) -> String {
        let e = toml::from_str::<crate::config::raw::Config>(text).expect_err("should not parse");
        describe(&e, text)
    }

    #[test]
    fn names_line_column_and_key_without_the_value() {
        let text = format!(
            "poll_interval = \"30s\"\n[slack]\nwebhook_url = [\"https://hooks.slack.com{SECRET}\"]\n"
        );
        let message = error(&text);
        assert!(!message.contains(SECRET), "{message}");
        assert!(message.starts_with("line 3, column "), "{message}");
        assert!(message.contains("key slack.webhook_url"), "{message}");
    }

    #[test]
    fn a_url_quoted_in_the_message_is_redacted() {
        let text = format!("slack = \"https://hooks.slack.com{SECRET}\"\n");
        let message = error(&text);
        assert!(!message.contains(SECRET), "{message}");
        assert!(message.contains("key slack"), "{message}");
        assert_eq!(
            redact_urls("invalid type: string \"https://h.example/a/b\", expected x"),
            "invalid type: string \"<URL>\", expected x"
        );
    }

    #[test]
    fn an_unterminated_string_is_located_not_quoted() {
        let text = format!("[slack]\nwebhook_url = \"https://hooks.slack.com{SECRET}\n");
        let message = error(&text);
        assert!(!message.contains(SECRET), "{message}");
        assert!(message.starts_with("line 2, "), "{message}");
    }
}
