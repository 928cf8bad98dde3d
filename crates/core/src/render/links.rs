//! Links in mrkdwn: the console's URLs for a pipeline and an approval, `<url|label>` with a
//! label that cannot end it early, and the only URLs allowed inside one ([`safe_url`]).

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::model::ApprovalKey;

use super::text::mrkdwn_field;

/// A label's budget, so that an oversized one cannot crowd the rest out of its section.
const LINK_LABEL_MAX_CHARS: usize = 200;
/// A longer URL is shown as text instead of linked: a URL cannot be shortened, and a huge one
/// would crowd everything else out of its section.
const URL_MAX_CHARS: usize = 1200;
/// Stands in for `|` in link labels, where `|` would end the label early.
const PIPE_LOOKALIKE: char = '¦';
const CONSOLE_PIPELINES: &str = "https://console.aws.amazon.com/codesuite/codepipeline/pipelines";

/// The pipeline's page in the CodePipeline console.
pub fn pipeline_url(region: &str, pipeline: &str) -> String {
    format!(
        "{CONSOLE_PIPELINES}/{}/view?region={}",
        percent_encode(pipeline),
        percent_encode(region),
    )
}

/// One execution's page in the console (its timeline): which run this is.
pub fn execution_url(region: &str, pipeline: &str, execution_id: &str) -> String {
    format!(
        "{CONSOLE_PIPELINES}/{}/executions/{}/timeline?region={}",
        percent_encode(pipeline),
        percent_encode(execution_id),
        percent_encode(region),
    )
}

/// The console's review dialog for one approval request; the token selects the request.
pub fn review_url(key: &ApprovalKey) -> String {
    format!(
        "{}#/{}/{}/approve/{}",
        pipeline_url(&key.region, &key.pipeline),
        percent_encode(&key.stage),
        percent_encode(&key.action),
        percent_encode(&key.token),
    )
}

/// `<url|label>` when `url` is usable, otherwise just the label.
pub(super) fn link(url: &str, label: &str) -> String {
    link_opt(Some(url), label)
}

pub(super) fn link_opt(url: Option<&str>, label: &str) -> String {
    let label = link_label(label);
    match url.and_then(safe_url) {
        Some(url) => format!("<{url}|{label}>"),
        None => label,
    }
}

/// An escaped one-line label without `|`, which would end the label inside `<url|label>`.
fn link_label(label: &str) -> String {
    let label = mrkdwn_field(label, LINK_LABEL_MAX_CHARS).replace('|', &PIPE_LOOKALIKE.to_string());
    if label.trim().is_empty() {
        "link".to_owned()
    } else {
        label
    }
}

/// The form of an http(s) URL that can go inside `<…|label>`, or `None` if it is not one.
///
/// The URL crate percent-encodes spaces, `<`, `>`, controls and non-ASCII characters; `|` it
/// leaves alone, so that is encoded here (and anything else the crate let through, defensively).
/// `&` is written as `&amp;` like everywhere else in mrkdwn; Slack decodes it in link targets.
pub(super) fn safe_url(raw: &str) -> Option<String> {
    let parsed = url::Url::parse(raw).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return None;
    }
    // Percent-encoding never writes `&`, so escaping it afterwards touches only the URL's own.
    let out = utf8_percent_encode(parsed.as_str(), NOT_IN_A_LINK)
        .to_string()
        .replace('&', "&amp;");
    (out.chars().count() <= URL_MAX_CHARS).then_some(out)
}

/// What [`safe_url`] encodes: all but ASCII's graphic characters (non-ASCII always is), and
/// `|`, `<` and `>`, which would end Slack's `<url|label>`.
const NOT_IN_A_LINK: &AsciiSet = &CONTROLS.add(b' ').add(b'|').add(b'<').add(b'>');

/// What [`percent_encode`] encodes: all but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters, for one path segment,
/// query value or fragment part.
pub(super) fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::render::tests::{CONSOLE_LINK, REVIEW_LINK, TOKEN, fixture_approval};

    #[test]
    fn urls_match_the_console_links_aws_sends() {
        let key = fixture_approval().key;
        assert_eq!(pipeline_url("us-east-1", "web-app"), CONSOLE_LINK);
        assert_eq!(review_url(&key), REVIEW_LINK);
        assert!(review_url(&key).contains(TOKEN));
        assert!(pipeline_url("eu-west-3", "p").ends_with("?region=eu-west-3"));
    }

    #[test]
    fn url_parts_are_percent_encoded() {
        let key = ApprovalKey {
            account: "default".into(),
            region: "r?x=1&y".into(),
            pipeline: "my@pipe".into(),
            stage: "a b/c|d".into(),
            action: "é".into(),
            token: "t#1>".into(),
        };
        assert_eq!(
            review_url(&key),
            "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/my%40pipe/view\
             ?region=r%3Fx%3D1%26y#/a%20b%2Fc%7Cd/%C3%A9/approve/t%231%3E"
        );
    }

    #[test]
    fn url_parts_encode_link_breakers_spaces_and_non_ascii() {
        assert_eq!(percent_encode("a|b<c>d e"), "a%7Cb%3Cc%3Ed%20e");
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
        assert_eq!(percent_encode("é日🎉"), "%C3%A9%E6%97%A5%F0%9F%8E%89");
        assert_eq!(percent_encode("\n\t\u{7f}%"), "%0A%09%7F%25");
        assert_eq!(
            pipeline_url("eu-west-1", "pipe |<x> é"),
            "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/\
             pipe%20%7C%3Cx%3E%20%C3%A9/view?region=eu-west-1"
        );
    }

    #[test]
    fn link_targets_are_hardened() {
        assert_eq!(
            safe_url("https://x.test/a|b<c> d?q=1&r=|#f|g").as_deref(),
            Some("https://x.test/a%7Cb%3Cc%3E%20d?q=1&amp;r=%7C#f%7Cg")
        );
        assert_eq!(
            safe_url("https://x.test/日本 é?q=<a>|b c#frag ment\u{7f}").as_deref(),
            Some("https://x.test/%E6%97%A5%E6%9C%AC%20%C3%A9?q=%3Ca%3E%7Cb%20c#frag%20ment%7F")
        );
        assert_eq!(safe_url("javascript:alert(1)"), None);
        assert_eq!(safe_url("mailto:a@example.com"), None);
        assert_eq!(safe_url("/relative"), None);
        assert_eq!(
            safe_url(&format!("https://x.test/{}", "a".repeat(5000))),
            None
        );
        assert_eq!(
            link("https://x.test/", "a|b <c>"),
            "<https://x.test/|a¦b &lt;c&gt;>"
        );
        assert_eq!(link("nope", "label"), "label");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        /// The encoder is RFC 3986's, byte for byte: unreserved ASCII kept, every other byte
        /// of the UTF-8 as `%XX` in upper case.
        #[test]
        fn url_parts_are_encoded_byte_by_byte(s in any::<String>()) {
            let want: String = s
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            prop_assert_eq!(percent_encode(&s), want);
        }
    }
}
