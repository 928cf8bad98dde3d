//! SDK configuration per account: the default chain, a named profile, or a role assumed with
//! STS. Loaded once at start; STS sessions are refreshed by the SDK's identity cache before
//! they expire.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_codepipeline::config::{
    Region, SharedCredentialsProvider, StalledStreamProtectionConfig,
};

use crate::config::{AccountConfig, AwsConfig, Credentials};

/// How long one call may take in all, and one attempt of it, so a hung endpoint cannot stall a cycle.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The role session name CloudTrail shows for our calls.
const SESSION_NAME: &str = "approval-watch";

fn loader(aws: &AwsConfig, profile: Option<&str>) -> ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        // Retries are ours (see `CodePipeline::call`): each attempt goes through the budget,
        // and throttling slows the budget down instead of being retried blindly.
        .retry_config(RetryConfig::disabled());
    if let Some(profile) = profile {
        // The profile's credentials, not whatever the environment holds: the default chain
        // would take AWS_ACCESS_KEY_ID first, and a named account must never use another's keys.
        let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_name(profile)
            .build();
        loader = loader
            .profile_name(profile)
            .credentials_provider(credentials);
    }
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    // `[aws] endpoint_url` is for CodePipeline only (see `client`): STS, for assumed roles,
    // keeps its own endpoint (`AWS_ENDPOINT_URL_STS` still applies).
    loader
}

/// The SDK config an account's clients are built from.
pub async fn sdk_config(aws: &AwsConfig, account: &AccountConfig) -> SdkConfig {
    match &account.credentials {
        Credentials::DefaultChain => loader(aws, None).load().await,
        Credentials::Profile(profile) => loader(aws, Some(profile)).load().await,
        Credentials::AssumeRole {
            role_arn,
            external_id,
            profile,
        } => {
            let source = loader(aws, profile.as_deref()).load().await;
            let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
                .session_name(SESSION_NAME)
                .configure(&source);
            if let Some(id) = external_id {
                role = role.external_id(id.clone());
            }
            let provider = role.build().await;
            source
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build()
        }
    }
}

/// A CodePipeline client for one region of an account.
pub fn client(aws: &AwsConfig, shared: &SdkConfig, region: &str) -> aws_sdk_codepipeline::Client {
    let mut conf = aws_sdk_codepipeline::config::Builder::from(shared)
        .region(Region::new(region.to_owned()))
        // Answers are a few kilobytes and the attempt timeout bounds a stalled one; the
        // throughput watch costs a timer per call (a few percent of a cycle's CPU).
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        // Size and nesting bounds on every answer, before the SDK parses it.
        .interceptor(super::guard::AnswerGuard);
    if let Some(endpoint) = &aws.endpoint_url {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_codepipeline::Client::from_conf(conf.build())
}
