//! Text from outside made safe for Slack: mrkdwn escaped, on one line, cut at a char boundary
//! that never splits an entity or a link; plain_text without anything that reads like a
//! mention; readable reviewer names.

/// The budget for one name, so that an oversized one cannot push the rest of a section (the
/// links in particular) past the section limit. AWS names are at most 100 characters.
const NAME_MAX_CHARS: usize = 200;

const ELLIPSIS: char = '…';

/// Escapes the three characters Slack treats as control characters in mrkdwn.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A readable name for the principal CodePipeline reports as the reviewer: the session name of
/// an assumed role (usually the person's login) or an IAM user's name; any other input as is.
pub fn reviewer_name(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", _partition, service, _region, _account, resource] = parts[..] else {
        return arn.to_owned();
    };
    let name = match service {
        // assumed-role/ROLE/SESSION: neither part can contain '/'.
        "sts" => resource
            .strip_prefix("assumed-role/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_role, session)| session),
        // user/[PATH/]NAME
        "iam" => resource
            .strip_prefix("user/")
            .and_then(|path| path.rsplit('/').next()),
        _ => None,
    };
    name.filter(|n| !n.is_empty()).unwrap_or(arn).to_owned()
}

/// One AWS value as escaped single-line mrkdwn of at most `max` chars.
pub(super) fn mrkdwn_field(s: &str, max: usize) -> String {
    truncate_mrkdwn(&escape_mrkdwn(&one_line(s)), max)
}

pub(super) fn name(s: &str) -> String {
    mrkdwn_field(s, NAME_MAX_CHARS)
}

/// Multi-line AWS text as an escaped mrkdwn block quote. The section it goes into truncates it.
pub(super) fn quote(s: &str) -> String {
    s.lines()
        .map(|line| format!(">{}", escape_mrkdwn(&one_line(line))))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Control characters (newlines included) would break a line-oriented layout or a link.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text for a plain_text object: not parsed by Slack, but `<` and `>` are still replaced by
/// lookalikes so that no string in the payload reads like a mention, and controls by spaces.
pub(super) fn plain_text(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    match cut_point(&cleaned, max) {
        Some(end) => format!("{}{ELLIPSIS}", &cleaned[..end]),
        None => cleaned,
    }
}

pub(super) fn non_blank(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.trim().is_empty())
}

/// Shortens mrkdwn to at most `max` chars, ending in "…" when something was cut. The cut never
/// falls inside an entity (`&amp;`) or one of our `<…>` sequences: that would leave a dangling
/// `&am` or an unclosed link for Slack to misread. All `&` and `<` in our mrkdwn start one of
/// those, because AWS text is escaped.
pub(super) fn truncate_mrkdwn(s: &str, max: usize) -> String {
    let Some(mut end) = cut_point(s, max) else {
        return s.to_owned();
    };
    loop {
        let kept = &s[..end];
        let open_entity = kept.rfind('&').filter(|&i| !kept[i..].contains(';'));
        let open_angle = kept.rfind('<').filter(|&i| !kept[i..].contains('>'));
        match open_entity.into_iter().chain(open_angle).min() {
            Some(i) => end = i,
            None => break,
        }
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

/// The byte index to cut `s` at so that the kept part plus "…" is at most `max` chars, or
/// `None` if `s` fits as it is.
fn cut_point(s: &str, max: usize) -> Option<usize> {
    s.char_indices().nth(max)?;
    Some(
        s.char_indices()
            .nth(max.saturating_sub(1))
            .map_or(0, |(i, _)| i),
    )
}

#[cfg(test)]
pub(super) mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::render::time::slack_date;

    /// Slack's limits for section text and for a header (`blocks.rs`), the sizes truncation
    /// is used with; `blocks.rs` cannot be imported here, it builds on this file.
    const TEXT_MAX_CHARS: usize = 3000;
    const HEADER_MAX_CHARS: usize = 150;

    /// Every `&` starts an entity, and every `<` starts one of our own sequences: a date, or an
    /// http(s) link whose URL has no `|`, `<`, `>`, whitespace or controls and whose label has
    /// no `|` or `<`.
    pub(in crate::render) fn assert_safe_mrkdwn(s: &str) {
        for (i, _) in s.match_indices('&') {
            let rest = &s[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "dangling entity at {i} in {s:?}"
            );
        }
        let mut rest = s;
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let end = after
                .find('>')
                .unwrap_or_else(|| panic!("unclosed < in {s:?}"));
            let inner = &after[..end];
            let (target, label) = inner
                .split_once('|')
                .unwrap_or_else(|| panic!("<{inner}> is not ours"));
            assert!(
                !label.is_empty() && !label.contains(['|', '<']),
                "label {label:?}"
            );
            if let Some(date) = target.strip_prefix("!date^") {
                let (epoch, format) = date.split_once('^').unwrap();
                assert!(epoch.parse::<i64>().is_ok(), "date {inner:?}");
                assert_eq!(format, "{date_short_pretty} {time}");
            } else {
                assert!(
                    target.starts_with("https://") || target.starts_with("http://"),
                    "link target {target:?}"
                );
                assert!(
                    !target
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || "<>|".contains(c)),
                    "link target {target:?}"
                );
            }
            rest = &after[end + 1..];
        }
    }

    #[test]
    fn escape_mrkdwn_escapes_the_three_control_characters() {
        assert_eq!(
            escape_mrkdwn("a & b <!channel> <@U123> <http://x|y> *ok*"),
            "a &amp; b &lt;!channel&gt; &lt;@U123&gt; &lt;http://x|y&gt; *ok*"
        );
        assert_eq!(escape_mrkdwn("&amp;"), "&amp;amp;");
    }

    #[test]
    fn reviewer_names() {
        assert_eq!(
            reviewer_name("arn:aws:sts::1:assumed-role/Deployer/alice@example.com"),
            "alice@example.com"
        );
        assert_eq!(reviewer_name("arn:aws:iam::1:user/bob"), "bob");
        assert_eq!(reviewer_name("arn:aws:iam::1:user/team/carol"), "carol");
        for other in [
            "arn:aws:iam::1:root",
            "arn:aws:iam::1:user/",
            "arn:aws:sts::1:assumed-role/OnlyRole",
            "arn:aws:sts::1:federated-user/dave",
            "bob",
            "",
        ] {
            assert_eq!(reviewer_name(other), other);
        }
    }

    #[test]
    fn truncation_counts_chars_and_respects_multibyte() {
        let fits = "日".repeat(TEXT_MAX_CHARS);
        assert_eq!(truncate_mrkdwn(&fits, TEXT_MAX_CHARS), fits);

        let cut = truncate_mrkdwn(&"日".repeat(5000), TEXT_MAX_CHARS);
        assert_eq!(cut.chars().count(), TEXT_MAX_CHARS);
        assert!(cut.ends_with("日…"));

        let header = plain_text(&"🎉".repeat(500), HEADER_MAX_CHARS);
        assert_eq!(header.chars().count(), HEADER_MAX_CHARS);
        assert!(header.ends_with('…'));
    }

    #[test]
    fn truncation_never_splits_an_entity_or_a_link() {
        // 2999 kept chars would end in "&amp": the partial entity must go.
        let cut = truncate_mrkdwn(&"&amp;".repeat(1000), TEXT_MAX_CHARS);
        assert_eq!(cut, format!("{}…", "&amp;".repeat(599)));

        for offset in 0..6 {
            let s = format!("{}{}", "x".repeat(2990 + offset), "&lt;".repeat(10));
            let cut = truncate_mrkdwn(&s, TEXT_MAX_CHARS);
            assert!(cut.chars().count() <= TEXT_MAX_CHARS);
            assert_safe_mrkdwn(cut.trim_end_matches('…'));
        }

        let s = format!(
            "{}<https://example.com/?a=1&amp;b=2|label> tail",
            "x".repeat(2980)
        );
        assert_eq!(
            truncate_mrkdwn(&s, TEXT_MAX_CHARS),
            format!("{}…", "x".repeat(2980))
        );

        let s = format!(
            "{}{}",
            "y".repeat(2970),
            slack_date(Timestamp::from_second(1_764_753_192).unwrap())
        );
        assert_eq!(
            truncate_mrkdwn(&s, TEXT_MAX_CHARS),
            format!("{}…", "y".repeat(2970))
        );
    }
}
