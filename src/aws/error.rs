//! AWS failures, named by operation, pipeline and AWS's error code.

use aws_sdk_codepipeline::config::http::HttpResponse;
use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;

use approval_watch_core::model::Target;

/// A failed AWS call, naming the operation, the pipeline and AWS's error code.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{operation} for pipeline {pipeline} in {region} (account {account}) failed: {code}: {message}"
)]
pub struct AwsError {
    pub operation: &'static str,
    pub account: String,
    pub region: String,
    pub pipeline: String,
    /// AWS's error code (`AccessDeniedException`, …) or the kind of transport failure.
    pub code: String,
    pub message: String,
    /// The HTTP status of a service error.
    pub status: Option<u16>,
    /// AWS's request id of a service error (`x-amzn-RequestId`), for the audit.
    pub request_id: Option<String>,
}

/// Codes AWS uses for "slow down"; not modelled by the SDK, so matched by name.
const THROTTLING_CODES: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

impl AwsError {
    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
        }
    }

    /// An answer that parsed but cannot be true of a pipeline (a stage missing from its
    /// state, no pipeline in its definition): a failed read, never evidence of a change.
    pub fn malformed(operation: &'static str, target: &Target, message: String) -> Self {
        Self {
            operation,
            account: target.account.clone(),
            region: target.region.clone(),
            pipeline: target.pipeline.clone(),
            code: "MalformedResponse".into(),
            message,
            status: None,
            request_id: None,
        }
    }

    pub fn is_throttling(&self) -> bool {
        THROTTLING_CODES.contains(&self.code.as_str()) || self.status == Some(429)
    }

    /// Worth another try within the cycle: throttling, 5xx, timeouts, connection failures.
    pub fn is_transient(&self) -> bool {
        self.is_throttling()
            || self.status.is_some_and(|s| s >= 500)
            || matches!(
                self.code.as_str(),
                "Timeout" | "DispatchFailure" | "ResponseError"
            )
    }

    pub fn new<E>(operation: &'static str, target: &Target, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // A hostile answer (too large, nested too deep) is malformed, and never retried: the
        // same answer would come back.
        if let Some(rejected) = super::guard::rejection(&err) {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let message = match status {
                Some(status) => format!("{rejected} (HTTP {status})"),
                None => rejected.to_string(),
            };
            return Self::malformed(operation, target, message);
        }
        let mut status = None;
        let mut request_id = None;
        let (code, message) = match &err {
            SdkError::ServiceError(service) => {
                status = Some(service.raw().status().as_u16());
                request_id = service
                    .raw()
                    .headers()
                    .get("x-amzn-requestid")
                    .map(|id| id.chars().take(100).filter(|c| !c.is_control()).collect());
                let e = service.err();
                (
                    e.code().unwrap_or("UnknownError").to_owned(),
                    e.message().unwrap_or("no message").to_owned(),
                )
            }
            SdkError::TimeoutError(_) => {
                ("Timeout".to_owned(), DisplayErrorContext(&err).to_string())
            }
            SdkError::DispatchFailure(_) => (
                "DispatchFailure".to_owned(),
                DisplayErrorContext(&err).to_string(),
            ),
            SdkError::ResponseError(r) => {
                status = Some(r.raw().status().as_u16());
                (
                    "ResponseError".to_owned(),
                    DisplayErrorContext(&err).to_string(),
                )
            }
            _ => ("SdkError".to_owned(), DisplayErrorContext(&err).to_string()),
        };
        Self {
            operation,
            account: target.account.clone(),
            region: target.region.clone(),
            pipeline: target.pipeline.clone(),
            code,
            message,
            status,
            request_id,
        }
    }
}
