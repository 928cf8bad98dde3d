//! `[aws]` and `[[account]]`: credentials, regions and the request budget per account.

use serde::Deserialize;

use super::{ConfigError, check_region, invalid, raw};
use approval_watch_core::model::DEFAULT_ACCOUNT;

/// The request budget per (account, region) (`requests_per_second`, `max_concurrency`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub requests_per_second: f64,
    pub max_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_second: 10.0,
            max_concurrency: 8,
        }
    }
}

/// `[aws]`: used as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Default region for pipelines that name none; `None` → the SDK's own chain.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Another CodePipeline endpoint (tests, VPC endpoints). `AWS_ENDPOINT_URL` works too.
    pub endpoint_url: Option<String>,
    /// The request budget per (account, region), shared by all operations (default 10).
    pub max_requests_per_second: Option<f64>,
    /// Calls in flight per (account, region) (default 8).
    pub max_concurrency: Option<usize>,
    /// The share of the request budget idle pipelines may use (default 0.2).
    pub idle_budget_share: Option<f64>,
}

/// Idle pipelines may use this share of `max_requests_per_second` unless configured.
pub const DEFAULT_IDLE_BUDGET_SHARE: f64 = 0.2;

fn idle_share(table: &str, share: Option<f64>, fallback: f64) -> Result<f64, ConfigError> {
    let share = share.unwrap_or(fallback);
    if !(share.is_finite() && share > 0.0 && share <= 1.0) {
        return Err(invalid(
            format!("{table}.idle_budget_share"),
            format!("{share} is out of range; expected more than 0 and at most 1"),
        ));
    }
    Ok(share)
}

/// How an account's credentials are had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The SDK's default chain (env, `[aws] profile`, instance role).
    DefaultChain,
    /// A named profile from the shared config files.
    Profile(String),
    /// A role assumed with STS, from the default chain or from `profile`.
    AssumeRole {
        role_arn: String,
        external_id: Option<String>,
        profile: Option<String>,
    },
}

/// An AWS account: `default` (the SDK's chain) and each `[[account]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    pub name: String,
    pub credentials: Credentials,
    /// Its regions, for pipelines and discovery that name none.
    pub regions: Vec<String>,
    pub limits: Limits,
    /// The share of `limits` idle pipelines may use (`idle_budget_share`).
    pub idle_budget_share: f64,
}

fn limits(
    table: &str,
    rps: Option<f64>,
    concurrency: Option<usize>,
    fallback: Limits,
) -> Result<Limits, ConfigError> {
    let rps = rps.unwrap_or(fallback.requests_per_second);
    if !(rps.is_finite() && (0.1..=1000.0).contains(&rps)) {
        return Err(invalid(
            format!("{table}.max_requests_per_second"),
            format!("{rps} is out of range; expected 0.1 to 1000"),
        ));
    }
    let concurrency = concurrency.unwrap_or(fallback.max_concurrency);
    if !(1..=256).contains(&concurrency) {
        return Err(invalid(
            format!("{table}.max_concurrency"),
            format!("{concurrency} is out of range; expected 1 to 256"),
        ));
    }
    Ok(Limits {
        requests_per_second: rps,
        max_concurrency: concurrency,
    })
}

/// `default` (the SDK chain, `[aws] profile`) first, then each `[[account]]`.
pub(super) fn validate_accounts(
    aws: &AwsConfig,
    raw: Vec<raw::Account>,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let aws_limits = limits(
        "aws",
        aws.max_requests_per_second,
        aws.max_concurrency,
        Limits::default(),
    )?;
    let aws_share = idle_share("aws", aws.idle_budget_share, DEFAULT_IDLE_BUDGET_SHARE)?;
    let mut accounts = vec![AccountConfig {
        name: DEFAULT_ACCOUNT.to_owned(),
        credentials: match &aws.profile {
            Some(p) => Credentials::Profile(p.clone()),
            None => Credentials::DefaultChain,
        },
        regions: aws.region.iter().cloned().collect(),
        limits: aws_limits,
        idle_budget_share: aws_share,
    }];
    for (i, a) in raw.into_iter().enumerate() {
        let table = format!("account[{i}]");
        let key = |k: &str| format!("{table}.{k}");
        let name_ok = !a.name.is_empty()
            && a.name.len() <= 64
            && a.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(invalid(
                key("name"),
                format!(
                    "{:?} is not an account name; expected 1 to 64 of A-Z a-z 0-9 - _ .",
                    a.name
                ),
            ));
        }
        if accounts.iter().any(|x| x.name == a.name) {
            let why = if a.name == DEFAULT_ACCOUNT {
                "is reserved for the SDK's default credentials"
            } else {
                "is used twice"
            };
            return Err(invalid(
                key("name"),
                format!("{:?} {why}; expected a unique name", a.name),
            ));
        }
        if let Some(p) = &a.profile
            && p.trim().is_empty()
        {
            return Err(invalid(key("profile"), "is empty; expected a profile name"));
        }
        let credentials = match (a.role_arn, a.profile) {
            (Some(role_arn), profile) => {
                let valid = role_arn.starts_with("arn:aws")
                    && role_arn.contains(":iam::")
                    && role_arn.contains(":role/");
                if !valid {
                    return Err(invalid(
                        key("role_arn"),
                        format!(
                            "{role_arn:?} is not a role ARN; expected arn:aws:iam::123456789012:role/NAME"
                        ),
                    ));
                }
                if let Some(id) = &a.external_id
                    && !(2..=1224).contains(&id.len())
                {
                    return Err(invalid(key("external_id"), "expected 2 to 1224 characters"));
                }
                Credentials::AssumeRole {
                    role_arn,
                    external_id: a.external_id,
                    profile,
                }
            }
            (None, Some(profile)) => {
                if a.external_id.is_some() {
                    return Err(invalid(key("external_id"), "only applies with role_arn"));
                }
                Credentials::Profile(profile)
            }
            (None, None) => {
                return Err(invalid(
                    table,
                    "expected profile or role_arn (or both: the role assumed from the profile)",
                ));
            }
        };
        for (j, r) in a.regions.iter().enumerate() {
            check_region(&format!("{table}.regions[{j}]"), r)?;
        }
        accounts.push(AccountConfig {
            name: a.name,
            credentials,
            regions: a.regions,
            limits: limits(
                &table,
                a.max_requests_per_second,
                a.max_concurrency,
                aws_limits,
            )?,
            idle_budget_share: idle_share(&table, a.idle_budget_share, aws_share)?,
        });
    }
    Ok(accounts)
}

pub(super) fn validate_aws(aws: &AwsConfig) -> Result<(), ConfigError> {
    if let Some(region) = &aws.region {
        check_region("aws.region", region)?;
    }
    if let Some(profile) = &aws.profile
        && profile.trim().is_empty()
    {
        return Err(invalid("aws.profile", "is empty; expected a profile name"));
    }
    if let Some(endpoint) = &aws.endpoint_url {
        let url = url::Url::parse(endpoint).map_err(|e| {
            invalid(
                "aws.endpoint_url",
                format!(
                    "not a valid URL ({e}); expected e.g. https://codepipeline.eu-west-1.amazonaws.com"
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "aws.endpoint_url",
                "expected an http:// or https:// URL",
            ));
        }
    }
    Ok(())
}
