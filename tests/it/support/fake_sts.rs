//! A fake STS (awsQuery: form-encoded POST, XML answers) that hands out credentials for
//! `AssumeRole`, so assumed-role accounts can be tested without AWS.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::task::JoinHandle;

/// One `AssumeRole` the fake answered.
#[derive(Debug, Clone)]
pub struct AssumeRoleCall {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    /// The access key the request was signed with (the source credentials).
    pub signed_with: Option<String>,
    /// The access key id handed out.
    pub issued: String,
}

#[derive(Default)]
struct Inner {
    calls: Vec<AssumeRoleCall>,
}

pub struct FakeSts {
    inner: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The access key id issued for a role: `ASIA` + the role's account id.
pub fn issued_key(role_arn: &str) -> String {
    let account = role_arn.split(':').nth(4).unwrap_or("000000000000");
    format!("ASIA{account}")
}

impl FakeSts {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake STS");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            addr,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_STS`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<AssumeRoleCall> {
        self.inner.lock().unwrap().calls.clone()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if get("Action").as_deref() != Some("AssumeRole") {
        return (StatusCode::BAD_REQUEST, "only AssumeRole").into_response();
    }
    let role_arn = get("RoleArn").unwrap_or_default();
    let issued = issued_key(&role_arn);
    let signed_with = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .map(str::to_owned);
    inner.lock().unwrap().calls.push(AssumeRoleCall {
        role_arn: role_arn.clone(),
        session_name: get("RoleSessionName").unwrap_or_default(),
        external_id: get("ExternalId"),
        signed_with,
        issued: issued.clone(),
    });
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let xml = format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:approval-watch</AssumedRoleId>
      <Arn>{role_arn}/approval-watch</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{issued}</AccessKeyId>
      <SecretAccessKey>fake-secret</SecretAccessKey>
      <SessionToken>fake-session-token</SessionToken>
      <Expiration>{}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#,
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], xml).into_response()
}
