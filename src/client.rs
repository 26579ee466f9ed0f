//! A typed async client for the gateway: Rust scrapers use it, and so do
//! the CLI and the integration tests.
//!
//! ```no_run
//! # async fn scrape() -> Result<(), twofa_bridge::client::ClientError> {
//! use std::time::Duration;
//! use twofa_bridge::client::Client;
//! use twofa_bridge::model::{BankName, ChallengeRequest, Outcome, Question};
//!
//! let gateway = Client::new("http://127.0.0.1:8080", None)?;
//! let bank = BankName::parse("Real").expect("a bank name");
//! let question = Question::parse("Enter the code sent by SMS").expect("a question");
//! gateway.challenge("001", &ChallengeRequest::code("c1", bank, question)).await?;
//! let answer = gateway.wait_token("001", Duration::from_secs(300)).await?;
//! // ... use answer.token.expose() at the bank ...
//! gateway.report("001", Outcome::Ok, None).await?;
//! # Ok(()) }
//! ```

mod webhooks;

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::model::{
    Access, ChallengeRequest, CreatedSession, Outcome, Reason, SessionRequest, SessionTtl,
    StatusChange, StatusReport, Token, TokenAnswer, TokenSubmission,
};

/// One long poll asks for at most this long; `wait_token` chains them.
const POLL: Duration = Duration::from_secs(30);

/// The first pause after the gateway could not be reached; it doubles up to
/// `MAX_PAUSE` while `wait_token` keeps trying.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the challenge expired before a token came")]
    Expired,
    #[error("the challenge was cancelled")]
    Cancelled,
    /// 409: the lifecycle forbids the step (`conflict`), or the challenge
    /// moved on to another attempt (`attempt_mismatch`).
    #[error("{message}")]
    Conflict { code: String, message: String },
    #[error("{message}")]
    NotFound { message: String },
    /// Any other refusal (400, 401, 403, 413, 415, 422, 429): `code` is the
    /// gateway's error code, such as `invalid_token` or `unauthorized`.
    #[error("{status}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// 503: Redis is down, or the gateway is full. Worth a retry.
    #[error("the gateway is unavailable: {message}")]
    Unavailable { message: String },
    #[error("no token came within {0:?}")]
    TimedOut(Duration),
    #[error("cannot reach the gateway: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("the gateway answered something unexpected: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Worth trying again: the gateway could not be reached, or said so
    /// (503). Public so that a caller retrying its own requests, such as a
    /// scraper riding out a rolling restart, judges an error as `wait_token`
    /// does instead of keeping a copy of this list.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Transport(_) | ClientError::Unavailable { .. }
        )
    }
}

/// What a live feed brings.
#[derive(Debug, Clone)]
pub enum FeedMessage {
    /// A challenge waits for the customer. `id` is absent on all but the
    /// last of the challenges a feed starts with.
    Challenge {
        id: Option<String>,
        access: Box<Access>,
    },
    /// One of the customer's accesses changed status.
    Status { id: String, change: StatusChange },
}

/// One Server-Sent Events block, as far as a feed uses it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseBlock {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
    pub retry: Option<String>,
}

/// Parses one SSE block (the text between two blank lines); `None` for a
/// comment alone, such as a heartbeat.
pub fn parse_sse_block(block: &str) -> Option<SseBlock> {
    let mut parsed = SseBlock::default();
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => parsed.event = value.to_owned(),
            "id" => parsed.id = Some(value.to_owned()),
            "data" => {
                if !parsed.data.is_empty() {
                    parsed.data.push('\n');
                }
                parsed.data.push_str(value);
            }
            "retry" => parsed.retry = Some(value.to_owned()),
            _ => {}
        }
    }
    let comment_only = parsed.data.is_empty() && parsed.retry.is_none() && parsed.id.is_none();
    (!comment_only).then_some(parsed)
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl Client {
    /// A client of the gateway at `base_url` (such as
    /// `http://127.0.0.1:8080`), with an API key when the gateway wants one.
    pub fn new(base_url: &str, api_key: Option<&str>) -> Result<Client, ClientError> {
        // reqwest's rustls needs a process-wide crypto provider; this is a
        // no-op when one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(ClientError::Transport)?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.map(str::to_owned),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        decode(self.send(method, path, body).await?).await
    }

    /// One request with the usual 30 s bound, its answer not read yet.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.request(method, path).timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(ClientError::Transport)
    }

    /// `PUT /v1/accesses/{access}/challenge`: starts attempt n+1.
    pub async fn challenge(
        &self,
        access: &str,
        request: &ChallengeRequest,
    ) -> Result<Access, ClientError> {
        let path = format!("/v1/accesses/{}/challenge", segment(access));
        self.call(Method::PUT, &path, Some(request)).await
    }

    /// Waits up to `total` for the access's token, re-issuing long polls
    /// until then, and riding out a gateway restart or a dropped connection
    /// in between. Reading the token does not consume it.
    pub async fn wait_token(
        &self,
        access: &str,
        total: Duration,
    ) -> Result<TokenAnswer, ClientError> {
        let deadline = Instant::now() + total;
        let path = format!("/v1/accesses/{}/token", segment(access));
        let mut pause = FIRST_PAUSE;
        // When the deadline comes while the gateway cannot be reached, that
        // is the answer, rather than a plain timeout.
        let mut unreachable = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(unreachable.unwrap_or(ClientError::TimedOut(total)));
            }
            let poll = left.min(POLL);
            let response = self
                .request(
                    Method::GET,
                    &format!("{path}?timeout={}", poll.as_secs_f64()),
                )
                .timeout(poll + Duration::from_secs(10))
                .send()
                .await;
            let outcome = match response {
                Ok(response) if response.status() == StatusCode::NO_CONTENT => {
                    unreachable = None;
                    continue;
                }
                Ok(response) => decode::<TokenAnswer>(response).await,
                Err(error) => Err(ClientError::Transport(error)),
            };
            match outcome {
                Err(error) if error.is_transient() => {
                    unreachable = Some(error);
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                other => return other,
            }
        }
    }

    /// `PUT /v1/accesses/{access}/status`: the bank's verdict on the token.
    pub async fn report(
        &self,
        access: &str,
        outcome: Outcome,
        reason: Option<Reason>,
    ) -> Result<Access, ClientError> {
        let path = format!("/v1/accesses/{}/status", segment(access));
        let body = StatusReport {
            status: outcome,
            reason,
        };
        self.call(Method::PUT, &path, Some(&body)).await
    }

    /// `GET /v1/customers/{customer}/challenges`: what the customer must
    /// answer, oldest first (listing sends the questions).
    pub async fn list(&self, customer: &str) -> Result<Vec<Access>, ClientError> {
        let path = format!("/v1/customers/{}/challenges", segment(customer));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `POST /v1/tokens`: the customer's token.
    pub async fn submit(&self, access: &str, token: Token) -> Result<Access, ClientError> {
        let body = TokenSubmission {
            access: access.to_owned(),
            token,
            attempt: None,
        };
        self.call(Method::POST, "/v1/tokens", Some(&body)).await
    }

    /// `POST /v1/customers/{customer}/sessions`: a session for the
    /// customer's browser, for `ttl` or the gateway's default.
    pub async fn create_session(
        &self,
        customer: &str,
        ttl: Option<SessionTtl>,
    ) -> Result<CreatedSession, ClientError> {
        let path = format!("/v1/customers/{}/sessions", segment(customer));
        self.call(Method::POST, &path, Some(&SessionRequest { ttl }))
            .await
    }

    /// The base URL this client calls.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `DELETE /v1/accesses/{access}/challenge`.
    pub async fn cancel(&self, access: &str) -> Result<Access, ClientError> {
        let path = format!("/v1/accesses/{}/challenge", segment(access));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// `GET /v1/accesses/{access}`.
    pub async fn access(&self, access: &str) -> Result<Access, ClientError> {
        let path = format!("/v1/accesses/{}", segment(access));
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// The customer's live feed. When the connection ends it is opened
    /// again with `Last-Event-ID`, after the gateway's retry hint, so the
    /// stream misses nothing the feed still holds; it ends only on an error
    /// that a retry would not cure.
    pub fn events(
        &self,
        customer: &str,
    ) -> impl Stream<Item = Result<FeedMessage, ClientError>> + use<> {
        let state = FeedState {
            client: self.clone(),
            path: format!("/v1/customers/{}/events", segment(customer)),
            last_id: None,
            body: None,
            buffer: String::new(),
            pause: FIRST_PAUSE,
            done: false,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
    }
}

struct FeedState {
    client: Client,
    path: String,
    last_id: Option<String>,
    body: Option<futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buffer: String,
    pause: Duration,
    done: bool,
}

impl FeedState {
    async fn next(&mut self) -> Option<Result<FeedMessage, ClientError>> {
        while !self.done {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = self.message(&block) {
                    return Some(message);
                }
                continue;
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(error) = self.connect().await {
                    if !error.is_transient() {
                        self.done = true;
                        return Some(Err(error));
                    }
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(MAX_PAUSE);
                }
                continue;
            };
            match body.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                // The gateway closed the feed (or the network dropped it):
                // open it again after the pause.
                Some(Err(_)) | None => {
                    self.body = None;
                    self.buffer.clear();
                    tokio::time::sleep(self.pause).await;
                }
            }
        }
        None
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let mut request = self.client.request(Method::GET, &self.path);
        if let Some(id) = &self.last_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.map_err(ClientError::Transport)?;
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        self.body = Some(response.bytes_stream().boxed());
        self.pause = FIRST_PAUSE;
        Ok(())
    }

    fn message(&mut self, block: &str) -> Option<Result<FeedMessage, ClientError>> {
        let block = parse_sse_block(block)?;
        if let Some(retry) = block.retry.as_deref().and_then(|r| r.parse().ok()) {
            self.pause = Duration::from_millis(retry);
        }
        if let Some(id) = &block.id {
            self.last_id = Some(id.clone());
        }
        let message = match block.event.as_str() {
            "challenge" => serde_json::from_str(&block.data).map(|access| FeedMessage::Challenge {
                id: block.id.clone(),
                access: Box::new(access),
            }),
            "status" => serde_json::from_str(&block.data).map(|change| FeedMessage::Status {
                id: block.id.clone().unwrap_or_default(),
                change,
            }),
            _ => return None,
        };
        Some(message.map_err(|e| ClientError::Protocol(format!("a feed event: {e}"))))
    }
}

/// What a path segment may carry as it is: an id's own alphabet.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b':');

/// Percent-encodes a path segment, so an id can never change the path.
fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

async fn decode<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    if !response.status().is_success() {
        return Err(error_of(response).await);
    }
    response
        .json()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))
}

/// The typed error for a refused request, from the gateway's error JSON.
async fn error_of(response: Response) -> ClientError {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let message = body["error"]["message"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_owned);
    match (status, code.as_str()) {
        (StatusCode::GONE, "cancelled") => ClientError::Cancelled,
        (StatusCode::GONE, _) => ClientError::Expired,
        (StatusCode::CONFLICT, _) => ClientError::Conflict { code, message },
        (StatusCode::NOT_FOUND, _) => ClientError::NotFound { message },
        (StatusCode::SERVICE_UNAVAILABLE, _) => ClientError::Unavailable { message },
        _ => ClientError::Refused {
            status: status.as_u16(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks_parse_as_an_event_source_reads_them() {
        let block = "event: status\nid: 1-0\ndata: {\"a\":1}\n\n";
        let parsed = parse_sse_block(block).expect("an event");
        assert_eq!(parsed.event, "status");
        assert_eq!(parsed.id.as_deref(), Some("1-0"));
        assert_eq!(parsed.data, "{\"a\":1}");
        assert_eq!(parse_sse_block(":\n\n"), None, "a heartbeat");
        let closing = parse_sse_block(": bye\nretry: 1000\n\n").expect("a retry hint");
        assert_eq!(closing.retry.as_deref(), Some("1000"));
    }

    #[test]
    fn ids_cannot_change_the_path() {
        assert_eq!(segment("../admin"), "..%2Fadmin");
        assert_eq!(segment("a b"), "a%20b");
        assert_eq!(segment("acc:01-x_y.z"), "acc:01-x_y.z");
    }
}
