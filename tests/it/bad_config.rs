//! Broken configs through the real binary, both `check-config` and `once`: wrong types,
//! unknown keys, bad durations, globs, mentions, working hours, secrets that cannot be read,
//! webhooks that are not https, empty values. Each exits 2 with a message naming the key,
//! touches neither AWS nor Slack, and never panics. (`cli.rs` has the first, smaller set.)

use crate::support;

use std::path::Path;

use support::{TestEnv, WEBHOOK_PATH, World};

/// One broken config.
struct Case {
    what: &'static str,
    toml: String,
    /// Environment changes: (key, Some(value)) sets, (key, None) removes.
    env: Vec<(&'static str, Option<String>)>,
    /// Prepares files in the test's directory.
    setup: Option<fn(&Path)>,
    /// What the error must name (the key, as written in the file).
    names: Vec<&'static str>,
}

const SLACK: &str = "webhook_url_env = \"SLACK_WEBHOOK_URL\"";
const PIPELINE: &str = "[[pipeline]]\nname = \"web-app\"\n";

/// A config that is fine except for what the parts put in: `top` (top-level keys), `aws`,
/// `slack` (lines inside those tables) and `tables` (more tables, before the pipeline).
fn config(top: &str, aws: &str, slack: &str, tables: &str) -> String {
    format!(
        "poll_interval = \"1s\"\nstate_path = \"{{state_path}}\"\n{top}\n\n[aws]\nregion = \"us-east-1\"\n{aws}\n\n[slack]\n{SLACK}\n{slack}\n\n{tables}\n\n{PIPELINE}"
    )
}

/// `config` with `[slack]`'s webhook source replaced by `source`.
fn with_source(source: &str, tables: &str) -> String {
    config("", "", "", tables).replace(SLACK, source)
}

fn route(body: &str) -> String {
    format!(
        "[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n{body}\n"
    )
}

fn hours(body: &str) -> String {
    format!(
        "[reminders]\nafter = \"30m\"\nevery = \"1h\"\nmax = 8\n\n[reminders.working_hours]\n{body}\n"
    )
}

const GOOD_HOURS: [&str; 4] = [
    "timezone = \"Europe/London\"",
    "days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
    "start = \"09:00\"",
    "end = \"18:00\"",
];

/// Working hours with one line replaced (`None` removes it).
fn hours_with(index: usize, line: Option<&str>) -> String {
    let lines: Vec<&str> = GOOD_HOURS
        .iter()
        .enumerate()
        .filter_map(|(i, l)| if i == index { line } else { Some(*l) })
        .collect();
    hours(&lines.join("\n"))
}

fn case(what: &'static str, toml: String, names: &[&'static str]) -> Case {
    Case {
        what,
        toml,
        env: vec![],
        setup: None,
        names: names.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Wrong types.
        case(
            "poll_interval as a number",
            config("", "", "", "").replace("poll_interval = \"1s\"", "poll_interval = 30"),
            &["poll_interval"],
        ),
        case(
            "state_path as a number",
            config("", "", "", "").replace("state_path = \"{state_path}\"", "state_path = 5"),
            &["state_path"],
        ),
        case(
            "region as a number",
            config("", "", "", "").replace("region = \"us-east-1\"", "region = 1"),
            &["region"],
        ),
        case(
            "pipeline name as a number",
            config("", "", "", "").replace("name = \"web-app\"", "name = 42"),
            &["name"],
        ),
        case(
            "pipeline as a string",
            config("", "", "", "").replace(PIPELINE, "").replace(
                "state_path = \"{state_path}\"\n",
                "state_path = \"{state_path}\"\npipeline = \"web-app\"\n",
            ),
            &["pipeline"],
        ),
        case(
            "negative max",
            config("", "", "", "[reminders]\nmax = -1"),
            &["max"],
        ),
        case(
            "max as a string",
            config("", "", "", "[reminders]\nmax = \"8\""),
            &["max"],
        ),
        case(
            "notify_resolved as a string",
            config("", "", "notify_resolved = \"yes\"", ""),
            &["notify_resolved"],
        ),
        case(
            "route pipelines as a string",
            config(
                "",
                "",
                "",
                "[[route]]\npipelines = \"payments-*\"\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"",
            ),
            &["pipelines"],
        ),
        case(
            "slack as a string",
            format!(
                "poll_interval = \"1s\"\nstate_path = \"{{state_path}}\"\nslack = \"https://hooks.slack.com/services/T0/B0/x\"\n\n{PIPELINE}"
            ),
            &["slack"],
        ),
        // Unknown keys.
        case(
            "unknown key in working_hours",
            config(
                "",
                "",
                "",
                &hours(&format!("{}\ntz = \"UTC\"", GOOD_HOURS.join("\n"))),
            ),
            &["unknown field `tz`"],
        ),
        case(
            "unknown key in a route",
            config("", "", "", &route("webhook = \"x\"")),
            &["unknown field `webhook`"],
        ),
        case(
            "unknown key in [aws]",
            config("", "endpoint = \"https://example.com\"", "", ""),
            &["unknown field `endpoint`"],
        ),
        // Durations.
        case(
            "duration without a unit",
            config("", "", "", "[reminders]\nafter = \"30\""),
            &["after"],
        ),
        case(
            "duration in fortnights",
            config("", "", "", "[reminders]\nevery = \"1 fortnight\""),
            &["every"],
        ),
        case(
            "expire_warning under a minute",
            config("", "", "", "[reminders]\nexpire_warning = \"30s\""),
            &["reminders.expire_warning"],
        ),
        case(
            "empty poll_interval",
            config("", "", "", "").replace("poll_interval = \"1s\"", "poll_interval = \"\""),
            &["poll_interval"],
        ),
        case(
            "negative poll_interval",
            config("", "", "", "").replace("poll_interval = \"1s\"", "poll_interval = \"-5s\""),
            &["poll_interval"],
        ),
        case(
            "first reminder after 10 s",
            config("", "", "", "[reminders]\nafter = \"10s\""),
            &["reminders.after"],
        ),
        case(
            "route reminder every 5 s",
            config(
                "",
                "",
                "",
                &format!("{}[route.reminders]\nevery = \"5s\"\n", route("")),
            ),
            &["route[0].reminders.every"],
        ),
        // Globs.
        case(
            "glob with a bracket",
            config(
                "",
                "",
                "",
                &route("").replace("[\"payments-*\"]", "[\"pay[ments\"]"),
            ),
            &["route[0].pipelines[0]", "pay[ments"],
        ),
        case(
            "empty glob",
            config("", "", "", &route("").replace("[\"payments-*\"]", "[\"\"]")),
            &["route[0].pipelines[0]"],
        ),
        case(
            "no globs",
            config("", "", "", &route("").replace("[\"payments-*\"]", "[]")),
            &["route[0].pipelines"],
        ),
        case(
            "glob with a slash",
            config(
                "",
                "",
                "",
                &route("").replace("[\"payments-*\"]", "[\"payments/*\"]"),
            ),
            &["route[0].pipelines[0]"],
        ),
        // Mentions.
        case(
            "@team mention",
            config("", "", "mention = \"@team\"", ""),
            &["slack.mention", "@team"],
        ),
        case(
            "subteam without an id",
            config("", "", "", &route("mention = \"<!subteam^>\"")),
            &["route[0].mention"],
        ),
        case(
            "@handle escalation",
            config(
                "",
                "",
                "",
                "[reminders]\nescalate_after = 3\nescalate_mention = \"@platform\"",
            ),
            &["reminders.escalate_mention"],
        ),
        case(
            "escalation without a mention",
            config("", "", "", "[reminders]\nescalate_after = 3"),
            &["reminders.escalate_mention"],
        ),
        case(
            "empty mention",
            config("", "", "mention = \"\"", ""),
            &["slack.mention"],
        ),
        case(
            "lower-case user id",
            config("", "", "mention = \"<@u123abc>\"", ""),
            &["slack.mention"],
        ),
        // Secrets that cannot be read.
        case(
            "webhook file that is a directory",
            with_source("webhook_url_file = \"{dir}\"", ""),
            &["slack.webhook_url_file"],
        ),
        case(
            "empty webhook file path",
            with_source("webhook_url_file = \"\"", ""),
            &["slack.webhook_url_file"],
        ),
        Case {
            setup: Some(|dir| std::fs::write(dir.join("hook"), "not a url\n").unwrap()),
            ..case(
                "webhook file holding no URL",
                with_source("webhook_url_file = \"{dir}/hook\"", ""),
                &["slack.webhook_url_file"],
            )
        },
        Case {
            setup: Some(|dir| std::fs::write(dir.join("hook"), "").unwrap()),
            ..case(
                "empty webhook file",
                with_source("webhook_url_file = \"{dir}/hook\"", ""),
                &["slack.webhook_url_file"],
            )
        },
        Case {
            setup: Some(|dir| std::fs::write(dir.join("hook"), [0xff, 0xfe, 0x00, 0x68]).unwrap()),
            ..case(
                "webhook file that is not UTF-8",
                with_source("webhook_url_file = \"{dir}/hook\"", ""),
                &["slack.webhook_url_file"],
            )
        },
        case(
            "webhook file that fails to read",
            with_source("webhook_url_file = \"/proc/self/mem\"", ""),
            &["slack.webhook_url_file"],
        ),
        case(
            "credential outside systemd",
            with_source("webhook_url_credential = \"slack-webhook\"", ""),
            &["slack.webhook_url_credential", "CREDENTIALS_DIRECTORY"],
        ),
        case(
            "route webhook file missing",
            config(
                "",
                "",
                "",
                &route("").replace(
                    "webhook_url_env = \"SLACK_WEBHOOK_URL\"",
                    "webhook_url_file = \"{dir}/missing\"",
                ),
            ),
            &["route[0].webhook_url_file"],
        ),
        case(
            "empty webhook env name",
            with_source("webhook_url_env = \"\"", ""),
            &["slack.webhook_url_env"],
        ),
        // Webhooks that are not https.
        case(
            "ftp webhook",
            with_source(
                &format!("webhook_url = \"ftp://hooks.slack.com{WEBHOOK_PATH}\""),
                "",
            ),
            &["slack.webhook_url"],
        ),
        case(
            "http webhook to a private address",
            with_source(
                &format!("webhook_url = \"http://10.0.0.1{WEBHOOK_PATH}\""),
                "",
            ),
            &["slack.webhook_url"],
        ),
        case(
            "https without a host",
            with_source("webhook_url = \"https://\"", ""),
            &["slack.webhook_url"],
        ),
        Case {
            env: vec![(
                "SLACK_PAYMENTS",
                Some(format!("http://hooks.slack.com{WEBHOOK_PATH}")),
            )],
            ..case(
                "route webhook over http",
                config(
                    "",
                    "",
                    "",
                    &route("").replace("\"SLACK_WEBHOOK_URL\"", "\"SLACK_PAYMENTS\""),
                ),
                &["route[0].webhook_url_env"],
            )
        },
        // Empty values.
        case(
            "empty region",
            config("", "", "", "").replace("region = \"us-east-1\"", "region = \"\""),
            &["aws.region"],
        ),
        case(
            "empty profile",
            config("", "profile = \"\"", "", ""),
            &["aws.profile"],
        ),
        case(
            "empty username",
            config("", "", "username = \"\"", ""),
            &["slack.username"],
        ),
        case(
            "blank channel",
            config("", "", "channel = \"  \"", ""),
            &["slack.channel"],
        ),
        case(
            "icon without colons",
            config("", "", "icon_emoji = \"rocket\"", ""),
            &["slack.icon_emoji"],
        ),
        case(
            "empty state_path",
            config("", "", "", "").replace("state_path = \"{state_path}\"", "state_path = \"\""),
            &["state_path"],
        ),
        case(
            "empty route name",
            config(
                "",
                "",
                "",
                &route("").replace("name = \"payments\"", "name = \"\""),
            ),
            &["route[0].name"],
        ),
        case(
            "route named like the default",
            config(
                "",
                "",
                "",
                &route("").replace("name = \"payments\"", "name = \"default\""),
            ),
            &["route[0].name"],
        ),
        // Working hours.
        case(
            "unknown time zone",
            config(
                "",
                "",
                "",
                &hours_with(0, Some("timezone = \"Mars/Olympus\"")),
            ),
            &["reminders.working_hours.timezone"],
        ),
        case(
            "unknown day",
            config("", "", "", &hours_with(1, Some("days = [\"funday\"]"))),
            &["reminders.working_hours.days"],
        ),
        case(
            "no days",
            config("", "", "", &hours_with(1, Some("days = []"))),
            &["reminders.working_hours.days"],
        ),
        case(
            "start in am/pm",
            config("", "", "", &hours_with(2, Some("start = \"9am\""))),
            &["reminders.working_hours.start"],
        ),
        case(
            "end past midnight",
            config("", "", "", &hours_with(3, Some("end = \"25:00\""))),
            &["reminders.working_hours.end"],
        ),
        case(
            "end before start",
            config("", "", "", &hours_with(3, Some("end = \"08:00\""))),
            &["reminders.working_hours.end"],
        ),
        case(
            "no end",
            config("", "", "", &hours_with(3, None)),
            &["missing field `end`"],
        ),
        // The rest.
        case(
            "endpoint that is not a URL",
            config("", "endpoint_url = \"not a url\"", "", ""),
            &["aws.endpoint_url"],
        ),
        case(
            "metrics without a port",
            config("", "", "", "[metrics]\nlisten = \"localhost\""),
            &["metrics.listen"],
        ),
        case(
            "upper-case region",
            config("", "", "", "").replace(
                PIPELINE,
                "[[pipeline]]\nname = \"web-app\"\nregion = \"EU-WEST-1\"\n",
            ),
            &["pipeline[0].region"],
        ),
        case(
            "pipeline listed twice",
            config("", "", "", "").replace(PIPELINE, &format!("{PIPELINE}\n{PIPELINE}")),
            &["pipeline[1].name"],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_configs_exit_2_naming_the_key_without_panicking() {
    let w = World::start(&["web-app"]).await;
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let mut env = TestEnv::new(&w.aws.endpoint(), &w.slack.url(), &["web-app"]);
        for (k, v) in &c.env {
            match v {
                Some(v) => env.set_env(k, v),
                None => env.remove_env(k),
            }
        }
        if let Some(setup) = c.setup {
            setup(env.dir.path());
        }
        env.write_raw_config(&c.toml);
        for args in [&["check-config"][..], &["once"]] {
            let out = env.run(args).await;
            let text = out.all_output();
            if text.contains("panicked") {
                failures.push(format!(
                    "{} ({args:?}): panicked\n{}",
                    c.what,
                    out.describe()
                ));
            } else if out.code != Some(2) {
                failures.push(format!(
                    "{} ({args:?}): exit {:?}, want 2\n{}",
                    c.what,
                    out.code,
                    out.describe()
                ));
            } else {
                for name in &c.names {
                    if !text.contains(name) {
                        failures.push(format!(
                            "{} ({args:?}): the error does not name {name:?}\n{}",
                            c.what,
                            out.describe()
                        ));
                    }
                }
            }
        }
        assert!(
            env.state_files().is_empty(),
            "{}: a state file was created",
            c.what
        );
    }
    assert!(w.aws.requests().is_empty(), "AWS was called");
    assert_eq!(w.slack.request_count(), 0, "Slack was called");
    assert!(
        failures.is_empty(),
        "{} of {} case(s) failed:\n\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_toml_error_on_the_webhook_line_does_not_echo_the_secret() {
    let w = World::start(&["web-app"]).await;
    let url = format!("https://hooks.slack.com{WEBHOOK_PATH}");
    for toml in [
        // A missing closing quote.
        format!("state_path = \"{{state_path}}\"\n[slack]\nwebhook_url = \"{url}\n{PIPELINE}"),
        // The right value under the wrong type.
        format!("state_path = \"{{state_path}}\"\n[slack]\nwebhook_url = [\"{url}\"]\n{PIPELINE}"),
        format!("state_path = \"{{state_path}}\"\nslack = \"{url}\"\n{PIPELINE}"),
    ] {
        let env = TestEnv::new(&w.aws.endpoint(), &w.slack.url(), &["web-app"]);
        env.write_raw_config(&toml);
        // The runner panics if the secret shows in any output.
        env.run(&["check-config"]).await.assert_code(2);
        env.run(&["once"]).await.assert_code(2);
    }
}
