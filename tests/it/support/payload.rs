//! Looking into Slack payloads (Block Kit JSON) without depending on their exact layout.

use serde_json::Value;

/// Every string in the JSON value (keys excluded), in document order.
pub fn strings(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(v, &mut out);
    out
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect(x, out)),
        _ => {}
    }
}

/// All strings of the payload joined by newlines: what a reader could see.
pub fn all_text(v: &Value) -> String {
    strings(v).join("\n")
}

/// Whether any string in the payload contains `needle`.
pub fn mentions(v: &Value, needle: &str) -> bool {
    strings(v).iter().any(|s| s.contains(needle))
}

/// Case-insensitive `mentions`.
pub fn mentions_ci(v: &Value, needle: &str) -> bool {
    let needle = needle.to_lowercase();
    strings(v)
        .iter()
        .any(|s| s.to_lowercase().contains(&needle))
}

/// The payloads among `v` that mention `needle`.
pub fn mentioning<'a>(payloads: &'a [Value], needle: &str) -> Vec<&'a Value> {
    payloads.iter().filter(|p| mentions(p, needle)).collect()
}

/// Checks the shape Slack requires: a non-empty top-level `text`; at most 50 blocks; section text
/// at most 3000 characters; header text at most 150.
#[track_caller]
pub fn assert_block_kit(v: &Value) {
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("payload has no top-level text: {v:#}"));
    assert!(!text.trim().is_empty(), "top-level text is empty: {v:#}");
    if let Some(blocks) = v.get("blocks") {
        let blocks = blocks
            .as_array()
            .unwrap_or_else(|| panic!("blocks is not an array: {v:#}"));
        assert!(blocks.len() <= 50, "{} blocks", blocks.len());
        for b in blocks {
            let t = b
                .get("text")
                .and_then(|t| t.get("text"))
                .and_then(Value::as_str);
            match (b.get("type").and_then(Value::as_str), t) {
                (Some("section"), Some(t)) => {
                    assert!(t.chars().count() <= 3000, "section text too long")
                }
                (Some("header"), Some(t)) => {
                    assert!(t.chars().count() <= 150, "header text too long")
                }
                _ => {}
            }
        }
    }
}

/// Finds, inside any JSON value, the first object that looks like a Slack payload (has a string
/// `text` and a `blocks` array) — itself or nested (a dry-run line may wrap it).
pub fn find_payload(v: &Value) -> Option<&Value> {
    if v.get("text").is_some_and(Value::is_string) && v.get("blocks").is_some_and(Value::is_array) {
        return Some(v);
    }
    match v {
        Value::Array(a) => a.iter().find_map(find_payload),
        Value::Object(o) => o.values().find_map(find_payload),
        _ => None,
    }
}

/// Every object (at any depth) of a JSON value, itself included.
pub fn objects(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    let mut out = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
        match v {
            Value::Object(o) => {
                out.push(o);
                o.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Checks a waiting alert for `pipeline` with `token` says what the spec asks for at a glance:
/// pipeline, stage, action, region, the review link carrying the token, the pipeline link,
/// CustomData, ExternalEntityLink, the revision (short id, commit message, link), the expiry;
/// and that it is valid Block Kit with a `text` fallback.
#[track_caller]
pub fn assert_waiting_alert(p: &Value, pipeline: &str, token: &str) {
    use super::fixtures::*;
    assert_block_kit(p);
    let text = all_text(p);
    let expect = [
        ("pipeline name", pipeline.to_owned()),
        ("stage", APPROVAL_STAGE.to_owned()),
        ("action", APPROVAL_ACTION.to_owned()),
        ("region", REGION.to_owned()),
        ("review link with token", review_link(pipeline, token)),
        ("pipeline link", pipeline_link(pipeline)),
        ("CustomData", FIXTURE_CUSTOM_DATA.to_owned()),
        ("ExternalEntityLink", FIXTURE_EXTERNAL_LINK.to_owned()),
        ("short revision id", FIXTURE_REVISION_ID[..7].to_owned()),
        ("commit message", FIXTURE_COMMIT_MESSAGE.to_owned()),
        (
            "revision link",
            format!("https://github.com/example/web-app/commit/{FIXTURE_REVISION_ID}"),
        ),
    ];
    for (what, needle) in expect {
        assert!(
            text.contains(&needle),
            "alert lacks the {what} ({needle:?}):\n{p:#}"
        );
    }
    assert!(
        text.to_lowercase().contains("expire"),
        "alert does not say when it expires:\n{p:#}"
    );
}

/// The approval tokens named by review links (`…#/<stage>/<action>/approve/<token>`) in a
/// payload, deduplicated, in order of appearance.
pub fn review_tokens(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in strings(v) {
        let mut rest = s.as_str();
        while let Some(i) = rest.find("/approve/") {
            rest = &rest[i + "/approve/".len()..];
            let token: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !token.is_empty() && !out.contains(&token) {
                out.push(token);
            }
        }
    }
    out
}

/// Whether a payload is a waiting alert (as opposed to a reminder or a resolution).
pub fn is_alert(v: &Value) -> bool {
    v.get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains("Approval waiting"))
}
