//! Hostile text from AWS, end to end: seeded random CustomData, links, commit messages,
//! reviewer names, comments and stage/action names, served by the fake CodePipeline, rendered
//! by the real binary, received by the fake Slack. Every payload Slack got must be JSON within
//! Slack's limits, and nothing from AWS may reach it as a ping (`<!channel>`, `<!here>`,
//! `<@…>`, `<!subteam^…>`) or as a link of its own (`<http…|…>`): the only links are the
//! console's and the approval's own ExternalEntityLink and revision URL.
//! (The core crate's `render` module has the pure, in-process property test.)

use crate::support;

use serde_json::{Value, json};
use support::fake_slack::{SlackRequest, summarize};
use support::fixtures::{APPROVAL_ACTION, APPROVAL_STAGE, StateBuilder, token_from_seed};
use support::payload::{assert_block_kit, strings};
use support::rng::Rng;
use support::{Fixture, World};

const NASTY: &[&str] = &[
    "<",
    ">",
    "&",
    "|",
    "!",
    "@",
    "^",
    "*",
    "_",
    "~",
    "`",
    "#",
    ":",
    " ",
    "\n",
    "\t",
    "\u{202e}",
    "é",
    "🎉",
    "&amp;",
    "&lt;",
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0123ABC>",
    "<#C0123>",
    "<!subteam^S0ABC>",
    "<http://evil.test|click>",
    "<https://evil.test>",
    "http://evil.test/",
    "<!date^1^{date}|x>",
    "*bold*",
    "> quote",
];

fn nasty(rng: &mut Rng, max_chars: usize) -> String {
    let target = match rng.index(3) {
        0 => rng.index(20),
        1 => rng.index(300),
        _ => rng.index(max_chars),
    };
    let mut s = String::new();
    while s.chars().count() < target.max(1) {
        s.push_str(NASTY[rng.index(NASTY.len())]);
    }
    s
}

/// Hosts the approval's own links point to; anything else linked is a forgery.
const LINK_HOST: &str = "links.example.test";
const GIT_HOST: &str = "git.example.test";
const CONSOLE: &str = "https://console.aws.amazon.com/";

/// Serves a new approval on `pipeline` full of hostile text (names too, when `rename`).
fn serve_waiting(w: &World, rng: &mut Rng, pipeline: &str, round: usize, rename: bool) -> String {
    let token = token_from_seed(&format!("hostile-{pipeline}-{round}"));
    let version = 10 + round as i64;
    let (stage, action) = names(pipeline, rename);
    let custom = nasty(rng, 5000);
    let link = format!("https://{LINK_HOST}/{}", nasty(rng, 200));
    w.aws.set_version(pipeline, version);
    w.aws
        .set_definition_json(pipeline, support::fixtures::definition(pipeline, version));
    w.aws.update_definition(pipeline, |d| {
        support::fixtures::set_definition_configuration(d, "CustomData", Some(&custom));
        support::fixtures::set_definition_configuration(d, "ExternalEntityLink", Some(&link));
        rename_definition(d, &stage, &action);
    });
    let summary = if rng.index(2) == 0 {
        json!({"ProviderType": "GitHub", "CommitMessage": nasty(rng, 2000)}).to_string()
    } else {
        nasty(rng, 2000)
    };
    let revision_url = format!("https://{GIT_HOST}/commit/{}", nasty(rng, 100));
    let revision_id = nasty(rng, 60);
    w.aws.set_execution_json(
        pipeline,
        json!({"pipelineExecution": {
            "pipelineName": pipeline,
            "pipelineVersion": version,
            "pipelineExecutionId": "896c834b-07aa-468c-9d3a-7fef9934e976",
            "status": "InProgress",
            "artifactRevisions": [{
                "name": "SourceArtifact",
                "revisionId": revision_id,
                "revisionSummary": summary,
                "revisionUrl": revision_url,
            }],
        }}),
    );
    let state = StateBuilder::fixture(Fixture::Waiting)
        .named(pipeline)
        .version(version)
        .token(&token)
        .last_status_change(support::fixtures::now_epoch() - 60.0)
        .build();
    w.aws
        .set_state_json(pipeline, rename_state(state, &stage, &action));
    token
}

/// Resolves the approval on `pipeline` with a hostile reviewer and comment.
fn serve_resolved(
    w: &World,
    rng: &mut Rng,
    pipeline: &str,
    token: &str,
    version: i64,
    rename: bool,
) {
    let (stage, action) = names(pipeline, rename);
    let reviewer = match rng.index(3) {
        0 => format!(
            "arn:aws:sts::123456789012:assumed-role/Deployer/{}",
            nasty(rng, 100)
        ),
        1 => format!("arn:aws:iam::123456789012:user/{}", nasty(rng, 100)),
        _ => nasty(rng, 300),
    };
    let fixture = if rng.index(2) == 0 {
        Fixture::Approved
    } else {
        Fixture::Rejected
    };
    let state = StateBuilder::fixture(fixture)
        .named(pipeline)
        .version(version)
        .token(token)
        .last_status_change(support::fixtures::now_epoch())
        .reviewer(Some(&reviewer))
        .summary(Some(&nasty(rng, 6000)))
        .build();
    w.aws
        .set_state_json(pipeline, rename_state(state, &stage, &action));
}

fn names(pipeline: &str, rename: bool) -> (String, String) {
    if rename {
        (
            format!("Approve <!here> & <@U0123ABC> {pipeline}"),
            "<http://evil.test|Approve>".to_owned(),
        )
    } else {
        (APPROVAL_STAGE.to_owned(), APPROVAL_ACTION.to_owned())
    }
}

fn rename_definition(d: &mut Value, stage: &str, action: &str) {
    for s in d["pipeline"]["stages"].as_array_mut().unwrap() {
        if s["name"] == APPROVAL_STAGE {
            s["name"] = json!(stage);
            for a in s["actions"].as_array_mut().unwrap() {
                if a["name"] == APPROVAL_ACTION {
                    a["name"] = json!(action);
                }
            }
        }
    }
}

fn rename_state(mut state: Value, stage: &str, action: &str) -> Value {
    for s in state["stageStates"].as_array_mut().unwrap() {
        if s["stageName"] == APPROVAL_STAGE {
            s["stageName"] = json!(stage);
            for a in s["actionStates"].as_array_mut().unwrap() {
                if a["actionName"] == APPROVAL_ACTION {
                    a["actionName"] = json!(action);
                }
            }
        }
    }
    state
}

/// Every problem with one payload Slack received.
fn problems(r: &SlackRequest) -> Vec<String> {
    let mut out = Vec::new();
    let Some(payload) = r.payload.as_ref() else {
        return vec![format!("not JSON: {}", r.body)];
    };
    if let Err(e) = std::panic::catch_unwind(|| assert_block_kit(payload)) {
        out.push(format!("over Slack's limits: {e:?}"));
    }
    let text = payload["text"].as_str().unwrap_or_default();
    if text.chars().count() > 3000 {
        out.push(format!("text of {} characters", text.chars().count()));
    }
    for block in payload["blocks"].as_array().into_iter().flatten() {
        if block["type"] == "header" {
            let h = block["text"]["text"].as_str().unwrap_or_default();
            if h.contains(['<', '>']) {
                out.push(format!("header with angle brackets: {h:?}"));
            }
        }
        for e in block["elements"].as_array().into_iter().flatten() {
            if e["text"].as_str().is_some_and(|t| t.chars().count() > 3000) {
                out.push("context element over 3000 characters".into());
            }
        }
    }
    for s in strings(payload) {
        for ping in ["<!channel", "<!here", "<!everyone", "<@", "<#", "<!subteam"] {
            if s.contains(ping) {
                out.push(format!("{ping} reached Slack: {s:?}"));
            }
        }
        // Every `<` opens a date or a link this service built.
        let mut rest = s.as_str();
        while let Some(i) = rest.find('<') {
            rest = &rest[i..];
            let end = rest.find('>').unwrap_or(rest.len());
            let seq = &rest[..end];
            rest = &rest[end.min(rest.len())..];
            if seq.starts_with("<!date^") {
                continue;
            }
            let url = seq[1..].split('|').next().unwrap_or_default();
            let host = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned));
            let ours = url.starts_with(CONSOLE)
                || matches!(host.as_deref(), Some(LINK_HOST) | Some(GIT_HOST));
            if !ours || url.contains(char::is_whitespace) {
                out.push(format!("a link not built from our own URLs: {seq:?}"));
            }
            if seq
                .split('|')
                .nth(1)
                .is_some_and(|label| label.contains('<'))
            {
                out.push(format!("a link label with '<': {seq:?}"));
            }
        }
        // In mrkdwn, every `&` starts an entity.
        for (i, _) in s.match_indices('&') {
            let tail = &s[i..];
            if !["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| tail.starts_with(e))
            {
                out.push(format!(
                    "an unescaped '&': …{}…",
                    tail.chars().take(20).collect::<String>()
                ));
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_aws_text_never_pings_links_or_breaks_a_payload() {
    let pipelines = ["hostile-1", "hostile-2", "hostile-3"];
    let w = World::start(&pipelines).await;
    let mut rng = Rng::new(0x0057_11E5_7E57_0001);
    for round in 0..3 {
        let mut tokens = Vec::new();
        for (i, p) in pipelines.iter().enumerate() {
            // The last pipeline's stage and action carry hostile names too.
            let rename = i == pipelines.len() - 1;
            tokens.push(serve_waiting(&w, &mut rng, p, round, rename));
        }
        w.env.once().await.assert_code(0);
        for (i, p) in pipelines.iter().enumerate() {
            let rename = i == pipelines.len() - 1;
            serve_resolved(&w, &mut rng, p, &tokens[i], 10 + round as i64, rename);
        }
        w.env.once().await.assert_code(0);
    }
    let requests = w.slack.requests();
    assert_eq!(
        requests.len(),
        pipelines.len() * 2 * 3,
        "{:#?}",
        summarize(&requests)
    );
    let mut all = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        assert!(r.delivered(), "Slack refused message {i}: {}", r.body);
        for p in problems(r) {
            all.push(format!("message {i}: {p}"));
        }
    }
    assert!(
        all.is_empty(),
        "{} problem(s):\n{}",
        all.len(),
        all.join("\n")
    );
    // The hostile text did reach the messages, as harmless text.
    let bodies: String = requests.iter().map(|r| r.body.as_str()).collect();
    for escaped in [
        "&lt;!channel&gt;",
        "&lt;@U0123ABC&gt;",
        "evil.test",
        LINK_HOST,
        GIT_HOST,
    ] {
        assert!(bodies.contains(escaped), "no {escaped:?} in any message");
    }
}
