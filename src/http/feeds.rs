//! `GET /v1/customers/{customer}/events`: the live feed as Server-Sent
//! Events, resumable with `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::AppState;
use super::auth::Caller;
use super::error::AppError;
use super::extract::PathId;
use super::openapi::CustomerPath;
use crate::follow::{Feed, FeedEnd, FeedItem, FeedSession};
use crate::model::{CustomerId, StatusChange};

/// How soon a client whose feed was closed (the gateway stopping, or Redis
/// failing) should reconnect, with its `Last-Event-ID`.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The customer's live feed: challenges waiting for them, then every status
/// change of their accesses, as Server-Sent Events.
///
/// `event: challenge` carries an `Access` (delivering it counts as sending
/// the question); `event: status` carries a `StatusChange`. A comment comes
/// at least every `TWOFA_FEED_HEARTBEAT_MS`. A client that reconnects with
/// `Last-Event-ID` gets what it missed, in order. When the gateway stops,
/// or Redis fails, the feed ends with a `retry:` hint.
#[utoipa::path(
    get,
    path = "/v1/customers/{customer}/events",
    operation_id = "followCustomerFeed",
    tag = "frontend",
    params(
        CustomerPath,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, such as `1764089305123-0`", pattern = "^[0-9]+-[0-9]+$"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    PathId(customer): PathId<CustomerId>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let session = match caller {
        Caller::Session(holder) => Some(FeedSession {
            digest: holder.digest.clone(),
            left: holder.session.left,
        }),
        Caller::Open | Caller::Key(_) => None,
    };
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(stream_id(value.to_str().unwrap_or_default())?),
    };
    let feed = Feed::open(
        state.store.clone(),
        &state.subscriber,
        customer,
        last_event_id,
        session,
        state.shutdown.clone(),
    )
    .await?;
    let events = futures_util::stream::unfold(Some(feed), |feed| async move {
        let mut feed = feed?;
        match feed.next().await {
            Ok(Ok(item)) => Some((Ok(sse_event(item)), Some(feed))),
            Ok(Err(FeedEnd::Shutdown)) => Some((Ok(closing("the gateway is shutting down")), None)),
            // The client comes back, gets 401, and asks for a new session.
            Ok(Err(FeedEnd::SessionEnded)) => Some((Ok(closing("the session has ended")), None)),
            Err(error) => {
                tracing::warn!(%error, "a live feed failed; its client will reconnect");
                Some((Ok(closing("the feed failed; reconnect")), None))
            }
        }
    });
    let heartbeat = KeepAlive::new().interval(state.limits.feed_heartbeat);
    Ok(Sse::new(events).keep_alive(heartbeat))
}

/// A `Last-Event-ID` is a stream id, `<ms>-<seq>`.
fn stream_id(value: &str) -> Result<String, AppError> {
    // Digits only: `u64::from_str` alone would take a leading `+`.
    let number = |part: &str| {
        !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && part.parse::<u64>().is_ok()
    };
    let valid = value
        .split_once('-')
        .is_some_and(|(ms, seq)| number(ms) && number(seq));
    if !valid {
        return Err(AppError::BadRequest(
            "Last-Event-ID must be an event id this feed sent, such as 1764089305123-0".to_owned(),
        ));
    }
    Ok(value.to_owned())
}

fn sse_event(item: FeedItem) -> Event {
    match item {
        FeedItem::Challenge { id, access } => {
            let event = Event::default().event("challenge");
            let event = match id {
                Some(id) => event.id(id),
                None => event,
            };
            event
                .json_data(&access)
                .unwrap_or_else(|_| closing("an item could not be written"))
        }
        FeedItem::Status {
            id,
            access,
            status,
            attempt,
            at,
        } => {
            let change = StatusChange {
                access,
                status,
                attempt,
                at,
            };
            Event::default()
                .event("status")
                .id(id)
                .json_data(&change)
                .unwrap_or_else(|_| closing("an item could not be written"))
        }
    }
}

/// The last event of a feed the gateway closes: a retry hint, so the
/// client's EventSource comes back soon.
fn closing(why: &str) -> Event {
    Event::default().retry(RECONNECT_AFTER).comment(why)
}
