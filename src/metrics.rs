//! Prometheus metrics, through the `metrics` facade. Every name is here, and
//! no label ever carries an access id, a customer id or a token: labels are
//! kinds, statuses, route templates and HTTP status codes only.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::model::{Moved, Status, Transition, UnixMillis};

/// Buckets for the wait from challenge to token: seconds to minutes.
const WAIT_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Buckets for the wake latency and request durations: sub-millisecond up.
const FAST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The process's recorder, installed once: every gateway in the process
/// reports to it, and `/metrics` renders it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("twofa_wait_duration_seconds".into()),
                WAIT_BUCKETS,
            )
            .and_then(|b| b.set_buckets(FAST_BUCKETS));
        let recorder = match builder {
            Ok(builder) => builder.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        // Fails only if another recorder was installed first, in which case
        // that one gets the figures and this handle renders none.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// Help texts, and a zero for the series that would otherwise appear only
/// once something happens, so dashboards and alerts see them from the start.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "twofa_challenges_created_total",
        "Challenges posted, by kind."
    );
    describe_counter!(
        "twofa_tokens_submitted_total",
        "Tokens stored for a waiting challenge."
    );
    describe_counter!(
        "twofa_outcomes_total",
        "Challenges that reached a final status, by status."
    );
    describe_gauge!("twofa_waiters", "Long polls waiting for a token now.");
    describe_gauge!("twofa_feed_clients", "Live feeds open now.");
    describe_histogram!(
        "twofa_wait_duration_seconds",
        Unit::Seconds,
        "From a challenge's start to its token."
    );
    describe_histogram!(
        "twofa_wake_latency_seconds",
        Unit::Seconds,
        "From a token stored to its waiting long poll answered."
    );
    describe_counter!(
        "twofa_http_requests_total",
        "HTTP requests, by route template and status."
    );
    describe_histogram!(
        "twofa_http_request_duration_seconds",
        Unit::Seconds,
        "Time to the response's headers, by route template."
    );
    describe_counter!(
        "twofa_webhook_messages_total",
        "Webhook tries, by outcome: delivered, retried or failed."
    );
    describe_gauge!(
        "twofa_webhook_pending",
        "Webhook messages waiting to be delivered."
    );
    describe_histogram!(
        "twofa_webhook_delivery_seconds",
        Unit::Seconds,
        "From a transition to its webhook message's 2xx."
    );
    describe_histogram!(
        "twofa_relay_lag_seconds",
        Unit::Seconds,
        "From a move recorded to its outbox relayed to the feed."
    );
    describe_counter!(
        "twofa_redis_errors_total",
        "Redis calls that failed, by kind: oom, timeout, connection, loading, other."
    );
    describe_counter!(
        "twofa_subscriber_reconnects_total",
        "Times the pub/sub connection was lost and replaced."
    );
    metrics::counter!("twofa_tokens_submitted_total").increment(0);
    for kind in ["oom", "timeout", "connection", "loading", "other"] {
        metrics::counter!("twofa_redis_errors_total", "kind" => kind).increment(0);
    }
    metrics::counter!("twofa_subscriber_reconnects_total").increment(0);
    metrics::gauge!("twofa_waiters").increment(0.0);
    metrics::gauge!("twofa_feed_clients").increment(0.0);
    metrics::gauge!("twofa_webhook_pending").set(0.0);
}

/// What one store step did: counts its own moves (not those it relayed for
/// a step whose gateway died).
pub fn transition(transition: &Transition) {
    let after = &transition.after;
    for moved in transition.own_moves() {
        match moved.to {
            Moved::Challenge => {
                metrics::counter!("twofa_challenges_created_total", "kind" => after.kind.as_str())
                    .increment(1);
            }
            Moved::To(Status::TokenReceived) => {
                metrics::counter!("twofa_tokens_submitted_total").increment(1);
                let waited = moved.at.0.saturating_sub(after.started_at.0);
                metrics::histogram!("twofa_wait_duration_seconds")
                    .record(Duration::from_millis(waited).as_secs_f64());
            }
            Moved::To(
                status @ (Status::Ok | Status::Rejected | Status::Expired | Status::Cancelled),
            ) => {
                metrics::counter!("twofa_outcomes_total", "status" => status.as_str()).increment(1);
            }
            Moved::To(Status::Need | Status::QuestionSent) => {}
        }
    }
}

/// One webhook try recorded: `delivered` (with how long after the
/// transition it reports), `retried` or `failed`.
pub fn webhook_try(outcome: &'static str, delivered_after: Option<Duration>) {
    if let Some(since) = delivered_after {
        metrics::histogram!("twofa_webhook_delivery_seconds").record(since.as_secs_f64());
    }
    metrics::counter!("twofa_webhook_messages_total", "outcome" => outcome).increment(1);
}

/// Webhook messages waiting to be delivered, over every endpoint.
pub fn webhooks_pending(pending: usize) {
    metrics::gauge!("twofa_webhook_pending").set(pending as f64);
}

/// Moves relayed to the feed, this long after they happened.
pub fn relayed(lag: Duration) {
    metrics::histogram!("twofa_relay_lag_seconds").record(lag.as_secs_f64());
}

/// A long poll answered with a token stored at `stored_at` (Redis's clock).
pub fn waiter_woken(stored_at: UnixMillis) {
    let since = stored_at
        .to_system_time()
        .elapsed()
        .unwrap_or(Duration::ZERO);
    metrics::histogram!("twofa_wake_latency_seconds").record(since.as_secs_f64());
}

/// Long polls now waiting (`delta` +1 or -1).
pub fn waiters(delta: f64) {
    metrics::gauge!("twofa_waiters").increment(delta);
}

/// Whether Redis's `maxmemory-policy` is `noeviction`, as last read.
pub fn eviction_safe(safe: bool) {
    metrics::gauge!("twofa_redis_eviction_safe").set(if safe { 1.0 } else { 0.0 });
}

/// Live feeds now open (`delta` +1 or -1).
pub fn feed_clients(delta: f64) {
    metrics::gauge!("twofa_feed_clients").increment(delta);
}

pub fn http_request(route: String, status: u16, took: Duration) {
    let status = status.to_string();
    metrics::counter!("twofa_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("twofa_http_request_duration_seconds", "route" => route)
        .record(took.as_secs_f64());
}

/// One failed Redis call, by kind: `oom`, `timeout`, `connection`,
/// `loading` or `other`.
pub fn redis_error(kind: &'static str) {
    metrics::counter!("twofa_redis_errors_total", "kind" => kind).increment(1);
}

pub fn subscriber_reconnected() {
    metrics::counter!("twofa_subscriber_reconnects_total").increment(1);
}
