//! A webhook receiver inside the test: a real HTTP server on loopback that
//! verifies every message with the `standardwebhooks` crate (its 5-minute
//! tolerance included), answers as the test scripts it, and hands each
//! verified message to the test in arrival order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

use super::PATIENCE;

/// One message as it arrived, verified.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub body: Value,
    pub raw: String,
    pub headers: HeaderMap,
}

#[derive(Clone)]
struct Shared {
    secrets: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<VecDeque<StatusCode>>>,
    /// Once the scripted answers run out: a 500 this often (percent), drawn
    /// from a seeded generator, but never a fourth time in a row for one
    /// message (so no message runs out of tries by chance).
    failing: Arc<Mutex<Option<(u64, super::Rng)>>>,
    failures: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    /// How many of the next messages get no answer at all.
    hanging: Arc<Mutex<usize>>,
    arrived: mpsc::UnboundedSender<Received>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
    arrived: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on(0).await
    }

    /// A receiver on this loopback port: one that comes up after its URL
    /// was registered.
    pub async fn start_on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("a loopback port");
        let url = format!(
            "http://{}/hooks/2fa",
            listener.local_addr().expect("bound address")
        );
        let (sender, arrived) = mpsc::unbounded_channel();
        let shared = Shared {
            secrets: Arc::default(),
            answers: Arc::default(),
            failing: Arc::default(),
            failures: Arc::default(),
            hanging: Arc::default(),
            arrived: sender,
        };
        let app = Router::new()
            .route("/hooks/2fa", post(receive))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            shared,
            arrived,
        }
    }

    /// The secrets that verify messages from now on: any one of them.
    pub fn trust(&self, secrets: &[&str]) {
        *self.shared.secrets.lock().expect("lock") =
            secrets.iter().map(|s| (*s).to_owned()).collect();
    }

    /// The next answers, in order; 200 once they run out.
    pub fn answer(&self, statuses: &[u16]) {
        let mut answers = self.shared.answers.lock().expect("lock");
        answers.extend(
            statuses
                .iter()
                .map(|s| StatusCode::from_u16(*s).expect("a status")),
        );
    }

    /// From now on, answers 500 to `percent` of the tries, at random, but
    /// never to a message's fourth try in a row.
    pub fn fail_at_random(&self, percent: u64, seed: u64) {
        *self.shared.failing.lock().expect("lock") = Some((percent, super::Rng::new(seed)));
    }

    /// Never answers the next `n` messages (they still arrive here).
    pub fn hang(&self, n: usize) {
        *self.shared.hanging.lock().expect("lock") = n;
    }

    /// A message that arrived already, if any.
    pub fn try_next(&mut self) -> Option<Received> {
        self.arrived.try_recv().ok()
    }

    /// The next message that arrived, whatever was answered to it.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE * 3, self.arrived.recv())
            .await
            .expect("a webhook message arrives")
            .expect("the receiver runs")
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secrets = shared.secrets.lock().expect("lock").clone();
    let verified = secrets.iter().any(|secret| {
        standardwebhooks::Webhook::new(secret)
            .and_then(|hook| hook.verify(&body, &headers))
            .is_ok()
    });
    assert!(
        verified,
        "a message no trusted secret verifies: {headers:?}"
    );
    let raw = String::from_utf8(body.to_vec()).expect("a UTF-8 body");
    let received = Received {
        id: headers["webhook-id"].to_str().expect("an id").to_owned(),
        body: serde_json::from_str(&raw).expect("a JSON body"),
        raw,
        headers,
    };
    let id = received.id.clone();
    let _ = shared.arrived.send(received);
    let hangs = {
        let mut hanging = shared.hanging.lock().expect("lock");
        let hangs = *hanging > 0;
        *hanging = hanging.saturating_sub(1);
        hangs
    };
    if hangs {
        std::future::pending::<()>().await;
    }
    if let Some(scripted) = shared.answers.lock().expect("lock").pop_front() {
        return scripted;
    }
    let mut failures = shared.failures.lock().expect("lock");
    let failed = failures.entry(id).or_default();
    let fails = match &mut *shared.failing.lock().expect("lock") {
        Some((percent, rng)) => *failed < 3 && rng.chance(*percent),
        None => false,
    };
    if fails {
        *failed += 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// A receiver that accepts connections and never answers, for as long as
/// the returned task lives: a URL to register.
pub async fn hanging_receiver() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!(
        "http://{}/hooks",
        listener.local_addr().expect("bound address")
    );
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    (url, held)
}
