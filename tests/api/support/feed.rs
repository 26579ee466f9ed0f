//! The customer's live feed (Server-Sent Events), held open and read event
//! by event as a front end's EventSource reads it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{PATIENCE, TestApp};

impl TestApp {
    /// Opens the customer's live feed, as TesBack's front end would.
    pub async fn open_feed(&self, customer: &str, last_event_id: Option<&str>) -> FeedClient {
        let mut request = self
            .http
            .get(format!("{}/v1/customers/{customer}/events", self.base))
            .timeout(Duration::from_secs(600));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        FeedClient::new(request.send().await.expect("feed opened"))
    }

    /// Opens a customer's live feed as a browser's `EventSource` would with
    /// a session: in the query, and with no Authorization header.
    pub async fn open_feed_with_session(&self, customer: &str, session: &str) -> FeedClient {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/v1/customers/{customer}/events?session={session}",
                self.base
            ))
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .expect("feed opened");
        FeedClient::new(response)
    }

    /// Opens a feed, posts a challenge, and reads both its events: the
    /// challenge and the question it sent. Returns the feed and the id of
    /// the last event read.
    pub async fn follow_a_challenge(&self, customer: &str, access: &str) -> (FeedClient, String) {
        let mut feed = self.open_feed(customer, None).await;
        self.challenge(access, customer, "q").await;
        feed.expect("challenge", access, "question_sent").await;
        let seen = feed.expect("status", access, "question_sent").await;
        (feed, seen)
    }
}

/// One Server-Sent Event, as a front end's EventSource sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
    pub retry: Option<String>,
}

/// A live feed held open, read event by event.
pub struct FeedClient {
    pub status: StatusCode,
    response: reqwest::Response,
    buffer: String,
    /// How many heartbeat comments have come so far.
    pub heartbeats: usize,
}

impl FeedClient {
    fn new(response: reqwest::Response) -> FeedClient {
        FeedClient {
            status: response.status(),
            response,
            buffer: String::new(),
            heartbeats: 0,
        }
    }

    /// Reads until the gateway closes the feed, which it must within
    /// `limit`, and returns the events it sent on the way (a closing feed's
    /// last one carries a retry hint).
    pub async fn until_closed_within(&mut self, limit: Duration) -> Vec<SseEvent> {
        let mut events = Vec::new();
        let read = async {
            while let Some(event) = self.next_event().await {
                events.push(event);
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .unwrap_or_else(|_| panic!("the feed was still open after {limit:?}"));
        events
    }

    /// The next event with data or a retry hint, skipping heartbeats;
    /// `None` once the gateway closed the feed.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            match self.next_block().await? {
                Some(event) => return Some(event),
                None => self.heartbeats += 1,
            }
        }
    }

    /// The next event, which must be `event` about `access` in `status`;
    /// returns its id.
    pub async fn expect(&mut self, event: &str, access: &str, status: &str) -> String {
        let got = self.next_event().await.expect("the feed is open");
        assert_eq!(
            (
                got.event.as_str(),
                got.data["access"].as_str(),
                got.data["status"].as_str()
            ),
            (event, Some(access), Some(status)),
            "{got:?}"
        );
        got.id
    }

    /// The next heartbeat comment; false if the feed closed first.
    pub async fn next_heartbeat(&mut self) -> bool {
        match self.next_block().await {
            Some(Some(event)) => panic!("an event on an idle feed: {event:?}"),
            Some(None) => true,
            None => false,
        }
    }

    /// The next block: `Some(None)` for a heartbeat, `None` at the end.
    async fn next_block(&mut self) -> Option<Option<SseEvent>> {
        let read = async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    return Some(parse_sse(&block));
                }
                let chunk = self.response.chunk().await.expect("feed readable")?;
                self.buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("a feed event in time")
    }
}

/// One SSE block, read as the client library reads it; `None` for a
/// comment alone (a heartbeat).
fn parse_sse(block: &str) -> Option<SseEvent> {
    let block = twofa_bridge::client::parse_sse_block(block)?;
    let data = match block.data.as_str() {
        "" => Value::Null,
        json => serde_json::from_str(json).expect("JSON data"),
    };
    Some(SseEvent {
        event: block.event,
        id: block.id.unwrap_or_default(),
        data,
        retry: block.retry,
    })
}
