//! Outside text made safe and short: Slack's answers, error texts from the HTTP and WebSocket
//! libraries and words from Socket Mode frames go into logs, `status` and the state database
//! only through [`clip`].

/// Appended when something was cut.
const CUT: char = '…';

/// At most `max` characters of `s` (cut on a character boundary, then "…" when something was
/// cut), with control characters shown as `?` so nothing breaks a line or drives a terminal.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push(CUT);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary_and_says_so() {
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("", 3), "");
        assert_eq!(clip("日本語テキスト", 2), "日本…");
        assert_eq!(clip("🎉🎉🎉🎉", 4), "🎉🎉🎉🎉");
        assert_eq!(clip("abc", 0), "…");
    }

    #[test]
    fn control_characters_become_question_marks() {
        assert_eq!(clip("a\nb", 10), "a?b");
        assert_eq!(clip("a\r\n\t\u{1b}[31mb\u{7f}", 20), "a????[31mb?");
        assert_eq!(clip("\n\n\n\n", 2), "??…");
    }
}
