//! One HTTP answer, and the requests of each side named after what it
//! does: the scraper posts, waits and reports; TesBack lists and submits.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::TestApp;

/// One HTTP answer: status, headers, and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and that the body is our error JSON.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without a message: {self:?}");
    }
}

impl TestApp {
    /// A request with exactly this Authorization header (or none), whatever
    /// `authorize` said.
    pub async fn send_as(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    /// A request with a raw body and content type, for hostile input.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        into_reply(request.send().await.expect("request sent")).await
    }
}

/// The scraper's side.
impl TestApp {
    /// Posts the bank's question for this access and customer, at bank Real.
    pub async fn challenge(&self, access: &str, customer: &str, question: &str) -> Reply {
        let body =
            json!({"customer": customer, "finEntityName": "Real", "doubleAuthQuestion": question});
        self.challenge_with(access, body).await
    }

    pub async fn challenge_with(&self, access: &str, body: Value) -> Reply {
        let path = format!("/v1/accesses/{access}/challenge");
        self.send(Method::PUT, &path, Some(body)).await
    }

    pub async fn wait_token(&self, access: &str, timeout_secs: f64) -> Reply {
        let path = format!("/v1/accesses/{access}/token?timeout={timeout_secs}");
        self.send(Method::GET, &path, None).await
    }

    /// A scraper's long poll, running in the background; `settled` it.
    pub fn spawn_wait(&self, access: &str, timeout_secs: f64) -> JoinHandle<Reply> {
        let url = format!(
            "{}/v1/accesses/{access}/token?timeout={timeout_secs}",
            self.base
        );
        let http = self.http.clone();
        tokio::spawn(
            async move { into_reply(http.get(url).send().await.expect("long poll")).await },
        )
    }

    pub async fn report(&self, access: &str, status: &str) -> Reply {
        let path = format!("/v1/accesses/{access}/status");
        self.send(Method::PUT, &path, Some(json!({ "status": status })))
            .await
    }

    pub async fn cancel(&self, access: &str) -> Reply {
        let path = format!("/v1/accesses/{access}/challenge");
        self.send(Method::DELETE, &path, None).await
    }
}

/// TesBack's side.
impl TestApp {
    pub async fn list(&self, customer: &str) -> Reply {
        let path = format!("/v1/customers/{customer}/challenges");
        self.send(Method::GET, &path, None).await
    }

    /// The customer's list items; the list call must succeed.
    pub async fn listed(&self, customer: &str) -> Vec<Value> {
        let reply = self.list(customer).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body.as_array().cloned().expect("a JSON array")
    }

    pub async fn submit(&self, access: &str, token: &str) -> Reply {
        let body = json!({ "access": access, "token": token });
        self.send(Method::POST, "/v1/tokens", Some(body)).await
    }

    pub async fn access(&self, access: &str) -> Reply {
        self.send(Method::GET, &format!("/v1/accesses/{access}"), None)
            .await
    }
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let text = headers
        .get("content-type")
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/"));
    let body = if bytes.is_empty() {
        Value::Null
    } else if text {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: the body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A customer session's side: TesBack mints it, the browser presents it.
impl TestApp {
    /// Mints a session for `customer` with the helpers' own credential.
    pub async fn mint(&self, customer: &str, body: Option<Value>) -> String {
        let minted = self
            .send(
                Method::POST,
                &format!("/v1/customers/{customer}/sessions"),
                body,
            )
            .await;
        assert_eq!(minted.status, StatusCode::CREATED, "{minted:?}");
        minted.body["session"]
            .as_str()
            .expect("a session string")
            .to_owned()
    }

    /// A request presenting `session` as a bearer token.
    pub async fn as_session(
        &self,
        session: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.send_as(Some(&format!("Bearer {session}")), method, path, body)
            .await
    }

    /// Ends every session of `customer`, as TesBack does, with the helpers'
    /// own credential.
    pub async fn end_sessions(&self, customer: &str) {
        let path = format!("/v1/customers/{customer}/sessions");
        let ended = self.send(Method::DELETE, &path, None).await;
        assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
    }
}
