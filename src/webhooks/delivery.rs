//! The delivery worker: every gateway runs one. It leases due lanes from each
//! endpoint's queue (`store::webhooks`), posts each lane's head message, and
//! records the try. A lane is leased to one gateway at a time; a gateway
//! that dies mid-delivery loses its lease when it runs out, and another
//! delivers that message again, with the same `webhook-id`.
//!
//! Deliveries run in tasks of their own, never on a request's path: a
//! receiver that hangs holds only its own lane's delivery, for at most the
//! timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::schedule::next_try;
use super::secret::WebhookSecret;
use super::signing::signature_header;
use super::url::{UrlPolicy, WebhookUrl};
use crate::metrics;
use crate::model::{DeliveryState, UnixMillis};
use crate::store::Store;
use crate::store::webhooks::{Claimed, TryOutcome};

/// How often the worker looks for due messages when nothing woke it, and
/// re-reads the endpoints.
const POLL: Duration = Duration::from_millis(500);

/// How much of a receiver's answer is read, at most.
const ANSWER_LIMIT: usize = 4 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    pub timeout: Duration,
    /// Most deliveries in flight per endpoint on this gateway.
    pub concurrency: usize,
    pub policy: UrlPolicy,
    /// 1, but in tests (`fault::webhook_delay_divisor`).
    pub delay_divisor: u32,
}

impl DeliveryOptions {
    /// A lane's lease: longer than any one try can take, so that a live
    /// gateway never loses a lane mid-try, and short enough that another
    /// takes over from a dead one within 30 s by default.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(10)
    }
}

/// Deliveries in flight on this gateway, per endpoint.
type InFlight = Arc<Mutex<HashMap<String, usize>>>;

fn in_flight(counts: &InFlight, endpoint: &str) -> usize {
    counts
        .lock()
        .map_or(0, |counts| counts.get(endpoint).copied().unwrap_or(0))
}

fn count(counts: &InFlight, endpoint: &str, delta: isize) {
    if let Ok(mut counts) = counts.lock() {
        let n = counts.entry(endpoint.to_owned()).or_default();
        *n = n.saturating_add_signed(delta);
    }
}

pub async fn run(store: Store, options: DeliveryOptions, shutdown: CancellationToken) {
    let client = match super::delivery_client(options.timeout, options.policy.allow_private) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook client; no webhook is delivered");
            return;
        }
    };
    let counts: InFlight = Arc::default();
    let mut refreshed = tokio::time::Instant::now() - POLL;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = store.deliveries_queued() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        if refreshed.elapsed() >= POLL {
            refreshed = tokio::time::Instant::now();
            if let Err(error) = store.refresh_subscriptions().await {
                tracing::warn!(%error, "could not read the webhook endpoints");
            }
            match store.webhooks_pending().await {
                Ok(pending) => metrics::webhooks_pending(pending),
                Err(error) => tracing::debug!(%error, "could not count pending webhooks"),
            }
        }
        for subscription in store.subscriptions().iter() {
            let endpoint = subscription.id.as_str();
            let free = options
                .concurrency
                .saturating_sub(in_flight(&counts, endpoint));
            if free == 0 {
                continue;
            }
            let claim = match store
                .claim_webhook(endpoint, UnixMillis::now().0, options.lease(), free)
                .await
            {
                Ok(Some(claim)) => claim,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%endpoint, %error, "could not lease webhook messages");
                    continue;
                }
            };
            for claimed in claim.items {
                count(&counts, endpoint, 1);
                let delivery = Delivery {
                    store: store.clone(),
                    client: client.clone(),
                    endpoint: endpoint.to_owned(),
                    url: claim.url.clone(),
                    secrets: claim.secrets.clone(),
                    policy: options.policy,
                    delay_divisor: options.delay_divisor,
                };
                let counts = counts.clone();
                tokio::spawn(async move {
                    delivery.deliver(claimed).await;
                    count(&counts, &delivery.endpoint, -1);
                    // The lane's next message may be due now.
                    delivery.store.wake_deliveries();
                });
            }
        }
    }
}

struct Delivery {
    store: Store,
    client: reqwest::Client,
    endpoint: String,
    url: String,
    secrets: Vec<String>,
    policy: UrlPolicy,
    delay_divisor: u32,
}

/// How one try went.
enum Answer {
    Accepted(u16),
    /// A 410: the receiver wants no more.
    Gone,
    Refused {
        status: Option<u16>,
        error: String,
    },
}

impl Delivery {
    async fn deliver(&self, mut claimed: Claimed) {
        let now = UnixMillis::now().0;
        let answer = self.post(&claimed, now).await;
        let record = &mut claimed.record;
        record.tries += 1;
        record.last_tried_at = Some(now);
        let outcome = match &answer {
            Answer::Accepted(status) => {
                record.last_status = Some(*status);
                record.last_error = None;
                TryOutcome::Delivered
            }
            Answer::Gone => {
                record.last_status = Some(410);
                record.last_error = Some("410 Gone: the endpoint is disabled".to_owned());
                TryOutcome::Gone
            }
            Answer::Refused { status, error } => {
                record.last_status = *status;
                record.last_error = Some(error.clone());
                match next_try(record.tries, &mut rand::rng()) {
                    Some(wait) => {
                        let wait = wait / self.delay_divisor.max(1);
                        TryOutcome::Retry(UnixMillis(now).after(wait).0)
                    }
                    None => TryOutcome::Failed,
                }
            }
        };
        (record.state, record.next_try_at) = match outcome {
            TryOutcome::Delivered => (DeliveryState::Delivered, None),
            TryOutcome::Retry(at) => (DeliveryState::Pending, Some(at)),
            TryOutcome::Failed | TryOutcome::Gone => (DeliveryState::Failed, None),
        };
        if let Answer::Refused { status, error } = &answer {
            let endpoint = &self.endpoint;
            tracing::warn!(%endpoint, status = ?status, %error, tries = record.tries, "a webhook delivery failed");
        }
        let at = record.at;
        match self
            .store
            .complete_webhook(&self.endpoint, &claimed, outcome, UnixMillis::now().0)
            .await
        {
            Ok(true) => {
                let since = Duration::from_millis(UnixMillis::now().0.saturating_sub(at));
                match outcome {
                    TryOutcome::Delivered => metrics::webhook_try("delivered", Some(since)),
                    TryOutcome::Retry(_) => metrics::webhook_try("retried", None),
                    TryOutcome::Failed | TryOutcome::Gone => metrics::webhook_try("failed", None),
                }
            }
            Ok(false) => {
                tracing::info!(endpoint = %self.endpoint, "a webhook lease ran out mid-try; another gateway has the message")
            }
            Err(error) => {
                tracing::warn!(endpoint = %self.endpoint, %error, "could not record a webhook try; it will be tried again")
            }
        }
    }

    async fn post(&self, claimed: &Claimed, now: u64) -> Answer {
        let refused = |status: Option<u16>, error: String| Answer::Refused { status, error };
        // An IP literal skips the resolver's check: judge it here, with the
        // policy as it is now.
        let url = match WebhookUrl::parse(&self.url, &self.policy) {
            Ok(url) => url,
            Err(error) => return refused(None, error.to_string()),
        };
        let secrets: Vec<WebhookSecret> = self
            .secrets
            .iter()
            .filter_map(|secret| WebhookSecret::parse(secret.clone()).ok())
            .collect();
        let secrets: Vec<&WebhookSecret> = secrets.iter().collect();
        let timestamp = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let body = claimed.record.body.as_bytes();
        let signature = match signature_header(&claimed.message_id, timestamp, body, &secrets) {
            Ok(signature) => signature,
            Err(error) => return refused(None, format!("could not sign: {error}")),
        };
        let sent = self
            .client
            .post(url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &claimed.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(claimed.record.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let what = if error.is_timeout() {
                    "timed out"
                } else if error.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                return refused(None, what.to_owned());
            }
        };
        let status = response.status();
        // At most 4 KiB of the answer is read; a 2xx counts only once its
        // answer arrived within the timeout.
        let mut read = 0;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    if read >= ANSWER_LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) if status.is_success() => {
                    let what = if error.is_timeout() {
                        "timed out reading the answer"
                    } else {
                        "the answer broke off"
                    };
                    return refused(Some(status.as_u16()), what.to_owned());
                }
                Err(_) => break,
            }
        }
        if status.is_success() {
            Answer::Accepted(status.as_u16())
        } else if status == reqwest::StatusCode::GONE {
            Answer::Gone
        } else {
            refused(Some(status.as_u16()), format!("HTTP {}", status.as_u16()))
        }
    }
}
