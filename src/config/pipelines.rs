//! `[[pipeline]]` and `[[discover]]`: which pipelines are watched, in which account and region.

use std::collections::HashSet;

use super::accounts::{AccountConfig, AwsConfig};
use super::{ConfigError, Glob, check_region, invalid, raw};
use approval_watch_core::model::DEFAULT_ACCOUNT;

/// `[[discover]]`: list an account's pipelines and keep those the globs select.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoverConfig {
    pub account: String,
    /// Empty: the account's regions (else `[aws] region`, else the SDK's default).
    pub region: Option<String>,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl DiscoverConfig {
    pub fn selects(&self, pipeline: &str) -> bool {
        self.include.iter().any(|g| g.matches(pipeline))
            && !self.exclude.iter().any(|g| g.matches(pipeline))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    pub name: String,
    /// `None` → the account's only region, else `[aws] region`, else the SDK's default.
    pub region: Option<String>,
    pub account: String,
}

/// CodePipeline's own rule for pipeline names.
fn check_pipeline_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'));
    if name.is_empty() || name.len() > 100 || !valid_chars {
        return Err(invalid(
            key,
            format!(
                "{name:?} is not a pipeline name; expected 1 to 100 characters of A-Z a-z 0-9 . @ _ -"
            ),
        ));
    }
    Ok(())
}

/// The account a table names (`default` when it names none), which must be configured.
fn account_key(
    accounts: &[AccountConfig],
    key: String,
    name: Option<String>,
) -> Result<String, ConfigError> {
    let name = name.unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned());
    if accounts.iter().any(|a| a.name == name) {
        Ok(name)
    } else {
        Err(invalid(
            key,
            format!("{name:?} is not a configured account; expected the name of an [[account]]"),
        ))
    }
}

pub(super) fn validate_discover(
    raw: Vec<raw::Discover>,
    accounts: &[AccountConfig],
) -> Result<Vec<DiscoverConfig>, ConfigError> {
    let mut discover = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let table = format!("discover[{i}]");
        if let Some(region) = &d.region {
            check_region(&format!("{table}.region"), region)?;
        }
        let globs = |k: &str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(j, p)| Glob::parse(&format!("{table}.{k}[{j}]"), p))
                .collect::<Result<Vec<_>, _>>()
        };
        let include = if d.include.is_empty() {
            vec![Glob::any()]
        } else {
            globs("include", &d.include)?
        };
        discover.push(DiscoverConfig {
            account: account_key(accounts, format!("{table}.account"), d.account)?,
            region: d.region,
            include,
            exclude: globs("exclude", &d.exclude)?,
        });
    }
    Ok(discover)
}

pub(super) fn validate_pipelines(
    raw: Vec<raw::Pipeline>,
    accounts: &[AccountConfig],
    aws: &AwsConfig,
) -> Result<Vec<PipelineConfig>, ConfigError> {
    let mut seen = HashSet::new();
    let mut pipelines = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("pipeline[{i}].name");
        check_pipeline_name(&key, &p.name)?;
        if let Some(region) = &p.region {
            check_region(&format!("pipeline[{i}].region"), region)?;
        }
        let account = account_key(accounts, format!("pipeline[{i}].account"), p.account)?;
        let region = p.region.clone().or_else(|| aws.region.clone());
        if !seen.insert((p.name.clone(), region, account.clone())) {
            return Err(invalid(
                key,
                format!(
                    "pipeline {:?} is listed twice in the same account and region",
                    p.name
                ),
            ));
        }
        pipelines.push(PipelineConfig {
            name: p.name,
            region: p.region,
            account,
        });
    }
    Ok(pipelines)
}
