//! Config parsing and validation, as a user would write the file.

use super::*;
use approval_watch_core::remind::ReminderPolicy;

const MINIMAL: &str = r#"
[slack]
webhook_url = "https://hooks.slack.com/services/T0/B0/XSECRETX"
[[pipeline]]
name = "web-app"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: raw::Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: "test.toml".into(),
        message: toml_error::describe(&e, text),
    })?;
    validate(raw, None)
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn minimal_config_gets_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.poll_interval, Duration::from_secs(30));
    assert_eq!(config.state_path, PathBuf::from("./approval-watch.db"));
    assert_eq!(config.slack.reminders, ReminderPolicy::default());
    assert_eq!(config.pipelines.len(), 1);
    assert!(
        matches!(&config.slack.destination, Destination::Webhook { key, .. } if key == "slack.webhook_url")
    );
    assert!(config.slack.notify_resolved);
    assert!(config.routes.is_empty());
    assert_eq!(config.route_for("web-app").name, DEFAULT_ROUTE);
    assert_eq!(config.metrics, None);
}

#[test]
fn full_example_from_the_issue_parses() {
    let config = parse(
        r##"
poll_interval = "30s"
state_path = "/var/lib/approval-watch/state.db"
[aws]
region = "eu-west-1"
profile = "deploy"
[slack]
webhook_url_file = "/run/credentials/approval-watch.service/slack-webhook"
username = "CodePipeline"
icon_emoji = ":aws:"
channel = "#deployments"
[reminders]
after = "30m"
every = "1h"
max = 8
[[pipeline]]
name = "web-app"
[[pipeline]]
name = "api"
region = "us-east-1"
"##,
    )
    .unwrap();
    assert_eq!(config.region_of(&config.pipelines[0]), Some("eu-west-1"));
    assert_eq!(config.region_of(&config.pipelines[1]), Some("us-east-1"));
    assert_eq!(
        config.slack.destination,
        Destination::Webhook {
            source: SecretSource::File(
                "/run/credentials/approval-watch.service/slack-webhook".into()
            ),
            key: "slack.webhook_url_file".into(),
        }
    );
}

#[test]
fn state_directory_from_systemd_is_the_default() {
    let raw: raw::Config = toml::from_str(MINIMAL).unwrap();
    let config = validate(raw, Some("/var/lib/approval-watch:/var/lib/other".as_ref())).unwrap();
    assert_eq!(
        config.state_path,
        PathBuf::from("/var/lib/approval-watch/state.db")
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = error(&format!("pol_interval = \"1s\"\n{MINIMAL}"));
    assert!(e.contains("pol_interval"), "{e}");
    let e = error(&MINIMAL.replace("[slack]", "[slack]\nchanel = \"#x\""));
    assert!(e.contains("chanel"), "{e}");
    let e = error(&format!("{MINIMAL}regoin = \"x\""));
    assert!(e.contains("regoin"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        (
            format!("poll_interval = \"3 parsecs\"\n{MINIMAL}"),
            "poll_interval",
        ),
        (
            format!("poll_interval = \"500ms\"\n{MINIMAL}"),
            "poll_interval",
        ),
        (format!("poll_interval = 30\n{MINIMAL}"), "poll_interval"),
        (MINIMAL.replace("web-app", "web app"), "pipeline[0].name"),
        (
            MINIMAL.replace("web-app", &"x".repeat(101)),
            "pipeline[0].name",
        ),
        (MINIMAL.replace("web-app", ""), "pipeline[0].name"),
        (
            MINIMAL.replace("https://hooks", "http://hooks"),
            "slack.webhook_url",
        ),
        (
            MINIMAL.replace("https://hooks", "ftp://hooks"),
            "slack.webhook_url",
        ),
        (
            MINIMAL.replace("[[pipeline]]\nname = \"web-app\"", ""),
            "pipeline",
        ),
        (
            format!("{MINIMAL}[[pipeline]]\nname = \"web-app\""),
            "pipeline[1].name",
        ),
        (
            format!("[aws]\nregion = \"EU West\"\n{MINIMAL}"),
            "aws.region",
        ),
        (
            format!("[reminders]\nevery = \"1s\"\n{MINIMAL}"),
            "reminders.every",
        ),
        (format!("[reminders]\nmax = -1\n{MINIMAL}"), "max"),
        (
            MINIMAL.replace("[slack]", "[slack]\nicon_emoji = \"aws\""),
            "slack.icon_emoji",
        ),
        (
            MINIMAL.replace("[slack]", "[slack]\nwebhook_url_env = \"X\""),
            "exactly one of",
        ),
        (format!("state_path = \"\"\n{MINIMAL}"), "state_path"),
    ];
    for (text, key) in cases {
        let e = error(&text);
        assert!(e.contains(key), "error for {text:?} should name {key}: {e}");
        assert!(!e.contains("XSECRETX"), "error leaks the secret: {e}");
    }
}

#[test]
fn zero_reminders_need_no_intervals() {
    let config = parse(&format!("[reminders]\nmax = 0\nevery = \"1s\"\n{MINIMAL}")).unwrap();
    assert_eq!(config.slack.reminders.max, 0);
}

#[test]
fn http_is_allowed_to_loopback_only() {
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
    ] {
        assert!(SecretUrl::parse("k", url).is_ok(), "{url}");
    }
    for url in [
        "http://10.0.0.1/x",
        "http://example.com/x",
        "http://127.0.0.1.nip.io/x",
    ] {
        assert!(SecretUrl::parse("k", url).is_err(), "{url}");
    }
}

#[test]
fn secret_errors_never_repeat_the_url() {
    let e = SecretUrl::parse("k", "http://example.com/services/XSECRETX").unwrap_err();
    assert!(!e.to_string().contains("XSECRETX"), "{e}");
    let e = SecretUrl::parse("k", "not a url XSECRETX").unwrap_err();
    assert!(!e.to_string().contains("XSECRETX"), "{e}");
    let url = SecretUrl::parse("k", "https://hooks.slack.com/services/XSECRETX").unwrap();
    assert!(!format!("{url:?}").contains("XSECRETX"));
    let config = parse(MINIMAL).unwrap();
    assert!(!format!("{config:?}").contains("XSECRETX"));
}

#[test]
fn secret_sources_resolve_or_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook");
    std::fs::write(&file, "https://hooks.slack.com/services/T/B/XSECRETX\n").unwrap();
    let key = "slack.webhook_url_file";
    let url = SecretSource::File(file.clone()).resolve(key).unwrap();
    assert_eq!(url.expose().path(), "/services/T/B/XSECRETX");

    let e = SecretSource::File(dir.path().join("missing"))
        .resolve(key)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("slack.webhook_url_file: cannot read"),
        "{e}"
    );

    std::fs::write(&file, "http://example.com/XSECRETX").unwrap();
    let e = SecretSource::File(file).resolve(key).unwrap_err();
    assert!(e.to_string().contains("slack.webhook_url_file"), "{e}");
    assert!(!e.to_string().contains("XSECRETX"), "{e}");

    let e = SecretSource::Env("APPROVAL_WATCH_TEST_SURELY_UNSET".into())
        .resolve("slack.webhook_url_env")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("APPROVAL_WATCH_TEST_SURELY_UNSET is not set"),
        "{e}"
    );
}

const TEAM: &str = r##"
[slack]
webhook_url_env = "SLACK_WEBHOOK_URL"

[reminders]
after = "30m"
every = "1h"
max = 8
expire_warning = "2h"
escalate_after = 3
escalate_mention = "<!subteam^S0PLATFORM>"

[reminders.working_hours]
timezone = "Europe/London"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:00"
end = "18:00"

[[route]]
name = "payments"
pipelines = ["payments-*", "ledger"]
webhook_url_env = "SLACK_PAYMENTS_WEBHOOK"
mention = "<!subteam^S0PAYMENTS>"
notify_resolved = false
[route.reminders]
every = "30m"

[[pipeline]]
name = "payments-api"
[[pipeline]]
name = "ledger"
[[pipeline]]
name = "web-app"

[metrics]
listen = "127.0.0.1:9714"
"##;

#[test]
fn routes_reminders_and_working_hours_as_a_team_writes_them() {
    let config = parse(TEAM).unwrap();
    assert_eq!(config.metrics, Some("127.0.0.1:9714".parse().unwrap()));
    let payments = config.route_for("payments-api");
    assert_eq!(payments.name, "payments");
    assert_eq!(config.route_for("ledger").name, "payments");
    assert_eq!(config.route_for("ledger-2").name, DEFAULT_ROUTE);
    assert_eq!(config.route_for("web-app").name, DEFAULT_ROUTE);
    assert!(!payments.notify_resolved);
    assert_eq!(
        payments.mention.as_ref().unwrap().as_str(),
        "<!subteam^S0PAYMENTS>"
    );
    assert!(
        matches!(&payments.destination, Destination::Webhook { key, .. } if key == "route[0].webhook_url_env")
    );
    // Overridden key by key: `every` from the route, the rest from [reminders].
    assert_eq!(payments.reminders.every, Duration::from_secs(30 * 60));
    assert_eq!(payments.reminders.after, Duration::from_secs(30 * 60));
    assert_eq!(payments.reminders.escalate_after, Some(3));
    assert_eq!(
        payments.reminders.expire_warning,
        Some(Duration::from_secs(2 * 3600))
    );
    let wh = payments.reminders.working_hours.as_ref().unwrap();
    assert_eq!(wh.timezone_name, "Europe/London");
    assert_eq!(wh.days, [true, true, true, true, true, false, false]);
    assert_eq!((wh.start_minute, wh.end_minute), (540, 1080));
    assert_eq!(config.slack.reminders.every, Duration::from_secs(3600));
    assert_eq!(config.all_routes().count(), 2);
}

#[test]
fn globs_match_pipeline_names() {
    let g = |p: &str| Glob::parse("k", p).unwrap();
    assert!(g("payments-*").matches("payments-api"));
    assert!(g("payments-*").matches("payments-"));
    assert!(!g("payments-*").matches("payment-api"));
    assert!(g("*-prod").matches("web-prod"));
    assert!(g("a*b*c").matches("axxbyyc"));
    assert!(!g("a*b*c").matches("axxbyy"));
    assert!(g("web-?pp").matches("web-app"));
    assert!(g("*").matches("anything"));
    assert!(g("ledger").matches("ledger") && !g("ledger").matches("ledger2"));
}

#[test]
fn issue_three_keys_name_themselves_when_wrong() {
    let with = |find: &str, replace: &str| TEAM.replacen(find, replace, 1);
    let cases = [
        (
            with("Europe/London", "Europe/Londn"),
            "reminders.working_hours.timezone",
        ),
        (with("\"fri\"]", "\"fry\"]"), "reminders.working_hours.days"),
        (
            with("\"09:00\"", "\"9am\""),
            "reminders.working_hours.start",
        ),
        (
            with("\"18:00\"", "\"08:00\""),
            "reminders.working_hours.end",
        ),
        (
            with("<!subteam^S0PLATFORM>", "@platform"),
            "reminders.escalate_mention",
        ),
        (
            with("<!subteam^S0PAYMENTS>", "@payments"),
            "route[0].mention",
        ),
        (
            with("[\"payments-*\", \"ledger\"]", "[\"payments-[a]\"]"),
            "route[0].pipelines[0]",
        ),
        (
            with("[\"payments-*\", \"ledger\"]", "[]"),
            "route[0].pipelines",
        ),
        (
            with("every = \"30m\"", "every = \"10s\""),
            "route[0].reminders.every",
        ),
        (with("every = \"30m\"", "evry = \"30m\""), "evry"),
        (
            with("webhook_url_env = \"SLACK_PAYMENTS_WEBHOOK\"", ""),
            "route[0]",
        ),
        (
            with("name = \"payments\"", "name = \"default\""),
            "route[0].name",
        ),
        (with("escalate_after = 3\n", ""), "reminders.escalate_after"),
        (with("127.0.0.1:9714", "localhost"), "metrics.listen"),
        (
            with(
                "webhook_url_env = \"SLACK_WEBHOOK_URL\"",
                "webhook_url_credential = \"../x\"",
            ),
            "slack.webhook_url_credential",
        ),
    ];
    for (text, key) in cases {
        let e = error(&text);
        assert!(e.contains(key), "error should name {key}: {e}");
    }
}

#[test]
fn a_credential_is_read_from_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slack-webhook"),
        "https://hooks.slack.com/services/XSECRETX",
    )
    .unwrap();
    // Resolution reads the variable at call time; test the path it builds via a file source.
    let e = SecretSource::Credential("slack-webhook".into())
        .resolve("slack.webhook_url_credential")
        .map(|_| ())
        .err();
    if std::env::var_os("CREDENTIALS_DIRECTORY").is_none() {
        let e = e.expect("no CREDENTIALS_DIRECTORY").to_string();
        assert!(e.contains("CREDENTIALS_DIRECTORY is not set"), "{e}");
        assert!(e.contains("LoadCredential=slack-webhook"), "{e}");
    }
    let url = SecretSource::File(dir.path().join("slack-webhook"))
        .resolve("slack.webhook_url_credential")
        .unwrap();
    assert_eq!(url.expose().host_str(), Some("hooks.slack.com"));
}

#[test]
fn the_shipped_example_is_valid() {
    let config = parse(include_str!("../../config.example.toml")).unwrap();
    assert_eq!(
        config.slack.destination,
        Destination::Webhook {
            source: SecretSource::Credential("slack-webhook".into()),
            key: "slack.webhook_url_credential".into(),
        }
    );
    assert_eq!(config.pipelines.len(), 2);
    assert_eq!(
        config.state_path,
        PathBuf::from("/var/lib/approval-watch/state.db")
    );
}

const FLEET: &str = r##"
poll_interval = "30s"
idle_poll_interval = "2m"
discover_interval = "5m"
[aws]
region = "eu-west-1"
max_requests_per_second = 10
max_concurrency = 8
[slack]
webhook_url_env = "SLACK_WEBHOOK_URL"
[[account]]
name = "prod"
role_arn = "arn:aws:iam::222222222222:role/approval-watch-reader"
external_id = "approval-watch"
regions = ["eu-west-1", "us-east-1"]
max_requests_per_second = 20
[[account]]
name = "ops"
profile = "ops"
regions = ["us-east-1"]
[[discover]]
account = "prod"
include = ["*"]
exclude = ["sandbox-*"]
[[discover]]
region = "eu-central-1"
[[pipeline]]
name = "billing"
account = "ops"
"##;

#[test]
fn accounts_discovery_and_budgets() {
    let config = parse(FLEET).unwrap();
    assert_eq!(config.idle_poll_interval, Duration::from_secs(120));
    assert_eq!(config.discover_interval, Duration::from_secs(300));
    let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["default", "prod", "ops"]);
    let prod = config.account("prod").unwrap();
    assert_eq!(
        prod.credentials,
        Credentials::AssumeRole {
            role_arn: "arn:aws:iam::222222222222:role/approval-watch-reader".into(),
            external_id: Some("approval-watch".into()),
            profile: None,
        }
    );
    assert_eq!(
        prod.limits,
        Limits {
            requests_per_second: 20.0,
            max_concurrency: 8
        }
    );
    assert_eq!(
        config.account("ops").unwrap().credentials,
        Credentials::Profile("ops".into())
    );
    assert_eq!(
        config.account("default").unwrap().credentials,
        Credentials::DefaultChain
    );
    // A pipeline in an account with one region reads there, not in [aws] region.
    assert_eq!(config.region_of(&config.pipelines[0]), Some("us-east-1"));
    let d = &config.discover[0];
    assert!(d.selects("web-app") && !d.selects("sandbox-1"));
    assert_eq!(config.discover[1].account, "default");
    assert!(config.discover[1].selects("anything"));
}

#[test]
fn discovery_alone_is_enough() {
    let text = FLEET.replace("[[pipeline]]\nname = \"billing\"\naccount = \"ops\"\n", "");
    assert!(parse(&text).unwrap().pipelines.is_empty());
}

#[test]
fn fleet_keys_name_themselves_when_wrong() {
    let with = |find: &str, replace: &str| FLEET.replacen(find, replace, 1);
    let cases = [
        (
            with("account = \"ops\"", "account = \"opps\""),
            "pipeline[0].account",
        ),
        (
            with(
                "account = \"prod\"\ninclude",
                "account = \"staging\"\ninclude",
            ),
            "discover[0].account",
        ),
        (
            with("\"sandbox-*\"", "\"sandbox-[0-9]\""),
            "discover[0].exclude[0]",
        ),
        (
            with(
                "role_arn = \"arn:aws:iam::222222222222:role/approval-watch-reader\"",
                "role_arn = \"approval-watch-reader\"",
            ),
            "account[0].role_arn",
        ),
        (
            with("name = \"ops\"\nprofile = \"ops\"", "name = \"ops\""),
            "account[1]",
        ),
        (with("name = \"ops\"", "name = \"prod\""), "account[1].name"),
        (
            with("name = \"ops\"", "name = \"default\""),
            "account[1].name",
        ),
        (
            with(
                "max_requests_per_second = 10",
                "max_requests_per_second = 0",
            ),
            "aws.max_requests_per_second",
        ),
        (
            with("max_concurrency = 8", "max_concurrency = 0"),
            "aws.max_concurrency",
        ),
        (
            with(
                "max_requests_per_second = 20",
                "max_requests_per_second = -1",
            ),
            "account[0].max_requests_per_second",
        ),
        (
            with(
                "idle_poll_interval = \"2m\"",
                "idle_poll_interval = \"10s\"",
            ),
            "idle_poll_interval",
        ),
        (
            with("discover_interval = \"5m\"", "discover_interval = \"1s\""),
            "discover_interval",
        ),
        (
            with("regions = [\"us-east-1\"]", "regions = [\"US East\"]"),
            "account[1].regions[0]",
        ),
        (
            with("external_id = \"approval-watch\"", "external_idd = \"x\""),
            "external_idd",
        ),
    ];
    for (text, key) in cases {
        let e = error(&text);
        assert!(e.contains(key), "error should name {key}: {e}");
    }
}

const APP: &str = r##"
[slack]
bot_token = "xoxb-1234-5678-abcdef"
channel = "C0123456789"
[[route]]
pipelines = ["payments-*"]
channel = "C0PAYMENTS1"
[[route]]
name = "legacy"
pipelines = ["old-*"]
webhook_url = "https://hooks.slack.com/services/T0/B0/XSECRETX"
channel = "#legacy"
[[pipeline]]
name = "payments-api"
"##;

#[test]
fn app_mode_routes_post_with_the_bot_token_or_keep_their_webhook() {
    let config = parse(APP).unwrap();
    let app = config.app.as_ref().expect("app mode");
    assert_eq!(app.token_key, "slack.bot_token");
    assert_eq!(app.api_url.as_str(), "https://slack.com/api/");
    assert_eq!(
        app.resolve_token().unwrap().expose(),
        "xoxb-1234-5678-abcdef"
    );
    assert_eq!(config.slack.channel(), Some("C0123456789"));
    assert_eq!(config.routes[0].channel(), Some("C0PAYMENTS1"));
    // A route with a webhook keeps `channel` as the legacy-webhook override.
    assert_eq!(config.routes[1].channel(), None);
    assert_eq!(
        config.routes[1].overrides.channel.as_deref(),
        Some("#legacy")
    );
    assert!(
        !format!("{config:?}").contains("xoxb-1234"),
        "token in Debug"
    );
}

#[test]
fn app_mode_config_errors_name_the_key_and_never_the_token() {
    let both = APP.replace(
        "channel = \"C0123456789\"",
        "channel = \"C0123456789\"\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/X\"",
    );
    assert!(
        error(&both).starts_with("slack: has both"),
        "{}",
        error(&both)
    );
    let no_channel = APP.replace("channel = \"C0123456789\"\n", "");
    assert!(error(&no_channel).starts_with("slack.channel: is missing"));
    let bad = APP.replace("xoxb-1234-5678-abcdef", "xoxp-1234-5678-abcdef");
    let e = error(&bad);
    assert!(e.starts_with("slack.bot_token: is not a bot token"), "{e}");
    assert!(!e.contains("1234"), "{e}");
    let name = APP.replace("C0PAYMENTS1", "#payments");
    assert!(error(&name).starts_with("route[0].channel: \"#payments\" is not a channel ID"));
    let plain = APP.replace(
        "[[route]]\npipelines = [\"payments-*\"]",
        "api_url = \"http://slack.example.com/api\"\n[[route]]\npipelines = [\"payments-*\"]",
    );
    assert!(
        error(&plain).starts_with("slack.api_url:"),
        "{}",
        error(&plain)
    );
    let two = APP.replace(
        "bot_token = ",
        "bot_token_env = \"SLACK_BOT_TOKEN\"\nbot_token = ",
    );
    assert!(
        error(&two).starts_with("slack: expected exactly one"),
        "{}",
        error(&two)
    );
}

#[test]
fn a_route_channel_without_a_webhook_needs_a_bot_token() {
    let e = error(&format!(
        "{MINIMAL}[[route]]\npipelines = [\"payments-*\"]\nchannel = \"C0PAYMENTS1\"\n"
    ));
    assert!(
        e.starts_with("route[0].channel: without a webhook source needs a bot token"),
        "{e}"
    );
}

#[test]
fn a_bot_token_from_a_file_is_read_and_checked_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "xoxb-from-file-1\n").unwrap();
    let text = APP.replace(
        "bot_token = \"xoxb-1234-5678-abcdef\"",
        &format!("bot_token_file = {:?}", file.display().to_string()),
    );
    let config = parse(&text).unwrap();
    let app = config.app.as_ref().unwrap();
    assert_eq!(app.token_key, "slack.bot_token_file");
    assert_eq!(app.resolve_token().unwrap().expose(), "xoxb-from-file-1");
    std::fs::write(&file, "not-a-token-secretvalue").unwrap();
    let e = app.resolve_token().unwrap_err().to_string();
    assert!(e.starts_with("slack.bot_token_file ("), "{e}");
    assert!(!e.contains("secretvalue"), "{e}");
}

const APPROVALS: &str = r##"
[slack]
bot_token = "xoxb-1234-5678-abcdef"
channel = "C0123456789"
[slack.approvals]
app_token = "xapp-1-A0-123-XAPPSECRETX"
allow_users = ["U0123ABCD", "W0ENTERPRISE1", "U0123ABCD"]
allow_groups = ["S0PLATFORM"]
[[route]]
pipelines = ["payments-*"]
channel = "C0PAYMENTS1"
[route.approvals]
allow_users = ["U0PAYLEAD"]
[[route]]
name = "open"
pipelines = ["ops-*"]
channel = "C0OPSOPS01"
[[route]]
name = "nobody"
pipelines = ["locked-*"]
channel = "C0LOCKED01"
[route.approvals]
[[route]]
name = "legacy"
pipelines = ["old-*"]
webhook_url = "https://hooks.slack.com/services/T0/B0/XSECRETX"
[[pipeline]]
name = "payments-api"
"##;

#[test]
fn approvals_lists_are_per_route_or_the_default_and_deny_by_default() {
    let config = parse(APPROVALS).unwrap();
    let approvals = config.approvals.as_ref().expect("approvals on");
    assert_eq!(approvals.token_key, "slack.approvals.app_token");
    assert_eq!(
        approvals.resolve_token().unwrap().expose(),
        "xapp-1-A0-123-XAPPSECRETX"
    );
    // Listed once, in the order written.
    let default = Approvers {
        users: vec!["U0123ABCD".into(), "W0ENTERPRISE1".into()],
        groups: vec!["S0PLATFORM".into()],
    };
    assert_eq!(approvals.default, default);
    // [route.approvals] replaces the default lists; a missing key is an empty list.
    let payments = config.approvers_for("payments-api").unwrap();
    assert_eq!(payments.users, ["U0PAYLEAD"]);
    assert!(payments.groups.is_empty());
    // No [route.approvals]: the default lists; [slack] too.
    assert_eq!(config.approvers_for("ops-deploy"), Some(&default));
    assert_eq!(config.approvers_for("web-app"), Some(&default));
    // An empty [route.approvals]: no one, no buttons.
    let nobody = config.approvers_for("locked-vault").unwrap();
    assert!(nobody.is_empty());
    // A webhook route has no buttons at all.
    assert_eq!(config.approvers_for("old-thing"), None);
    assert_eq!(
        config.approval_groups(),
        std::collections::BTreeSet::from(["S0PLATFORM".to_owned()])
    );
    assert!(
        !format!("{config:?}").contains("XAPPSECRETX"),
        "token in Debug"
    );
}

#[test]
fn without_slack_approvals_no_pipeline_has_approvers() {
    let config = parse(APP).unwrap();
    assert!(config.approvals.is_none());
    assert_eq!(config.approvers_for("payments-api"), None);
    assert_eq!(config.approvers_for("web-app"), None);
    assert!(config.approval_groups().is_empty());
    // Groups from routes and the default, once each.
    let text = APPROVALS.replace(
        "allow_users = [\"U0PAYLEAD\"]",
        "allow_groups = [\"S0PAYMENTS1\", \"S0PLATFORM\"]",
    );
    let groups: Vec<String> = parse(&text)
        .unwrap()
        .approval_groups()
        .into_iter()
        .collect();
    assert_eq!(groups, ["S0PAYMENTS1", "S0PLATFORM"]);
}

#[test]
fn approvals_errors_name_their_key_and_never_the_token() {
    let webhook_slack = APPROVALS.replace(
        "bot_token = \"xoxb-1234-5678-abcdef\"\nchannel = \"C0123456789\"",
        "webhook_url = \"https://hooks.slack.com/services/T0/B0/XSECRETX\"",
    );
    let cases = [
        // [slack.approvals] without a bot token (no app mode).
        (
            webhook_slack
                .split("[[route]]")
                .next()
                .unwrap()
                .to_owned()
                + "[[pipeline]]\nname = \"x\"\n",
            "slack.approvals: needs Slack app mode",
        ),
        // No token source, two sources.
        (
            APPROVALS.replace("app_token = \"xapp-1-A0-123-XAPPSECRETX\"\n", ""),
            "slack.approvals: expected exactly one of app_token_credential",
        ),
        (
            APPROVALS.replace("app_token = ", "app_token_env = \"SLACK_APP_TOKEN\"\napp_token = "),
            "slack.approvals: expected exactly one of app_token_credential",
        ),
        // Not an app-level token (a bot token pasted in the wrong place).
        (
            APPROVALS.replace("xapp-1-A0-123-XAPPSECRETX", "xoxb-1-A0-123-XAPPSECRETX"),
            "slack.approvals.app_token: is not an app-level token",
        ),
        (
            APPROVALS.replace("app_token = ", "app_token_credential = \"a/b\"\n#"),
            "slack.approvals.app_token_credential:",
        ),
        // IDs of the wrong kind or form.
        (
            APPROVALS.replace("\"W0ENTERPRISE1\"", "\"@alice\""),
            "slack.approvals.allow_users[1]: \"@alice\" is not a Slack user ID",
        ),
        (
            APPROVALS.replace("\"W0ENTERPRISE1\"", "\"U012\""),
            "slack.approvals.allow_users[1]",
        ),
        (
            APPROVALS.replace("\"W0ENTERPRISE1\"", "\"u0123abcd\""),
            "slack.approvals.allow_users[1]",
        ),
        (
            APPROVALS.replace("\"S0PLATFORM\"", "\"U0123ABCD\""),
            "slack.approvals.allow_groups[0]: \"U0123ABCD\" is not a Slack user-group ID",
        ),
        (
            APPROVALS.replace("\"U0PAYLEAD\"", "\"S0PLATFORM\""),
            "route[0].approvals.allow_users[0]",
        ),
        // [route.approvals] on a webhook route.
        (
            APPROVALS.replace(
                "channel = \"C0PAYMENTS1\"",
                "webhook_url = \"https://hooks.slack.com/services/T0/B0/XSECRETX\"",
            ),
            "route[0].approvals: applies to a route the bot token posts to",
        ),
        // [route.approvals] without [slack.approvals].
        (
            APPROVALS.replace(
                "[slack.approvals]\napp_token = \"xapp-1-A0-123-XAPPSECRETX\"\nallow_users = [\"U0123ABCD\", \"W0ENTERPRISE1\", \"U0123ABCD\"]\nallow_groups = [\"S0PLATFORM\"]\n",
                "",
            ),
            "route[0].approvals: needs [slack.approvals]",
        ),
        // Unknown keys in both tables.
        (
            APPROVALS.replace("allow_groups = [\"S0PLATFORM\"]", "allow_group = [\"S0PLATFORM\"]"),
            "allow_group",
        ),
        (
            APPROVALS.replace("allow_users = [\"U0PAYLEAD\"]", "allowed_users = [\"U0PAYLEAD\"]"),
            "allowed_users",
        ),
        (
            APPROVALS.replace("allow_users = [\"U0PAYLEAD\"]", "allow_users = \"U0PAYLEAD\""),
            "allow_users",
        ),
    ];
    for (text, expected) in cases {
        let e = error(&text);
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
        assert!(!e.contains("XAPPSECRETX"), "error leaks the app token: {e}");
    }
}

#[test]
fn an_app_token_from_a_file_is_read_and_checked_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app-token");
    std::fs::write(&file, "xapp-1-from-file\n").unwrap();
    let text = APPROVALS.replace(
        "app_token = \"xapp-1-A0-123-XAPPSECRETX\"",
        &format!("app_token_file = {:?}", file.display().to_string()),
    );
    let config = parse(&text).unwrap();
    let approvals = config.approvals.as_ref().unwrap();
    assert_eq!(approvals.token_key, "slack.approvals.app_token_file");
    assert_eq!(
        approvals.resolve_token().unwrap().expose(),
        "xapp-1-from-file"
    );
    std::fs::write(&file, "xoxb-not-an-app-XAPPSECRETX").unwrap();
    let e = approvals.resolve_token().unwrap_err().to_string();
    assert!(e.starts_with("slack.approvals.app_token_file ("), "{e}");
    assert!(!e.contains("XAPPSECRETX"), "{e}");
    std::fs::remove_file(&file).unwrap();
    let e = approvals.resolve_token().unwrap_err().to_string();
    assert!(e.starts_with("slack.approvals.app_token_file"), "{e}");
}
