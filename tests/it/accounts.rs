//! Several AWS accounts: the default chain, a named profile, and roles assumed with STS (from
//! the default chain and from a profile), each pipeline read with its account's credentials.
//! The test sets the process environment the SDK reads, so it runs alone in a child process.

use crate::support;

use approval_watch::config::Config;
use support::fake_sts::{FakeSts, issued_key};
use support::{FakeCodePipeline, FakeSlack, Fixture, GET_PIPELINE_STATE};

const PROD_ROLE: &str = "arn:aws:iam::222222222222:role/approval-watch-reader";
const STAGING_ROLE: &str = "arn:aws:iam::333333333333:role/approval-watch-reader";

const ALONE: &str = "accounts::each_account_reads_with_its_own_credentials";

#[test]
fn each_account_reads_with_its_own_credentials() {
    if !support::isolated::is_alone(ALONE) {
        return support::isolated::run_alone(ALONE);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(each_account_reads_with_its_own_credentials_alone());
}

async fn each_account_reads_with_its_own_credentials_alone() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "billing", "payments", "ledger"]).await;
    let sts = FakeSts::start().await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[ops]\naws_access_key_id = AKIDOPS\naws_secret_access_key = ops-secret\n",
    )
    .expect("credentials file");
    let config_file = dir.path().join("aws-config");
    std::fs::write(&config_file, "").expect("aws config file");
    // SAFETY: this process runs only this test (`support::isolated`); set before any SDK code.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDDEFAULT");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "default-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &credentials);
        std::env::set_var("AWS_CONFIG_FILE", &config_file);
        std::env::set_var("AWS_ENDPOINT_URL_STS", sts.endpoint());
    }
    let config = Config::parse(
        &format!(
            r#"
poll_interval = "30s"
state_path = "{state}"
[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
[slack]
webhook_url = "{slack}"
[[account]]
name = "ops"
profile = "ops"
[[account]]
name = "prod"
role_arn = "{PROD_ROLE}"
external_id = "approval-watch-xid"
regions = ["us-east-1"]
[[account]]
name = "staging"
profile = "ops"
role_arn = "{STAGING_ROLE}"
[[pipeline]]
name = "web-app"
[[pipeline]]
name = "billing"
account = "ops"
[[pipeline]]
name = "payments"
account = "prod"
[[pipeline]]
name = "ledger"
account = "staging"
"#,
            state = dir.path().join("state.db").display(),
            endpoint = aws.endpoint(),
            slack = slack.url(),
        ),
        "accounts.toml".as_ref(),
    )
    .expect("config");

    let (client, targets) = support::app::connect(&config).await;
    for target in &targets {
        client
            .read(target, &[], jiff::Timestamp::now())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let key_used = |pipeline: &str| {
        aws.requests()
            .iter()
            .filter(|r| {
                r.operation == GET_PIPELINE_STATE && r.pipeline.as_deref() == Some(pipeline)
            })
            .filter_map(|r| r.access_key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(key_used("web-app"), ["AKIDDEFAULT"]);
    assert_eq!(key_used("billing"), ["AKIDOPS"]);
    assert_eq!(key_used("payments"), [issued_key(PROD_ROLE)]);
    assert_eq!(key_used("ledger"), [issued_key(STAGING_ROLE)]);

    let calls = sts.calls();
    let prod = calls
        .iter()
        .find(|c| c.role_arn == PROD_ROLE)
        .expect("prod assumed");
    assert_eq!(prod.external_id.as_deref(), Some("approval-watch-xid"));
    assert_eq!(prod.session_name, "approval-watch");
    assert_eq!(prod.signed_with.as_deref(), Some("AKIDDEFAULT"));
    let staging = calls
        .iter()
        .find(|c| c.role_arn == STAGING_ROLE)
        .expect("staging assumed");
    assert_eq!(
        staging.signed_with.as_deref(),
        Some("AKIDOPS"),
        "role assumed from the profile"
    );
    assert_eq!(staging.external_id, None);
    // Sessions are cached: reading again assumes no role again.
    for target in &targets {
        client
            .read(target, &[], jiff::Timestamp::now())
            .await
            .expect("second read");
    }
    assert_eq!(sts.calls().len(), calls.len());

    // Messages name the account the approval belongs to.
    aws.set_state("payments", Fixture::Waiting);
    let mut watcher = support::app::open_watcher(&config).await;
    let report = support::app::cycle(&mut watcher).await;
    assert_eq!(report.new_approvals, 1);
    let delivered = slack.delivered();
    assert_eq!(delivered.len(), 1);
    let text = support::payload::all_text(&delivered[0]);
    assert!(text.contains("*Account:* prod"), "{text}");
    assert!(
        delivered[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("(prod, us-east-1)")
    );
    assert_eq!(support::app::waiting_pipelines(&watcher), ["payments"]);
    support::app::close(watcher);
}
