//! The scraper's long poll: waits for an access's token without polling.
//!
//! It subscribes to the access's `changed` channel through the shared
//! subscriber, then reads the hash; every hint, and the challenge's own
//! deadline, makes it read again. Redis is the truth: a message only says
//! when to look.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FollowError;
use crate::metrics;
use crate::model::{AccessId, Status, Token, UnixMillis};
use crate::pubsub::Subscriber;
use crate::store::{Store, StoreError};

/// How soon a waiter whose re-read failed reads again.
const READ_AGAIN_AFTER_FAILURE: Duration = Duration::from_millis(250);

/// What a long poll ends with.
#[derive(Debug)]
pub enum Answer {
    Token {
        attempt: u32,
        token: Token,
        /// When the token was stored, by Redis's clock.
        stored_at: UnixMillis,
    },
    /// The timeout passed (or the gateway is shutting down) and the
    /// challenge is still waiting.
    StillWaiting,
    /// The challenge ended without a token, or the token was already used.
    Finished(Status),
    NotFound,
}

impl Answer {
    /// What a log line may say of the answer: never the token.
    fn describe(&self) -> &'static str {
        match self {
            Answer::Token { .. } => "token",
            Answer::StillWaiting => "still waiting",
            Answer::Finished(status) => status.as_str(),
            Answer::NotFound => "not found",
        }
    }
}

/// Waits up to `timeout` for the access's token. A zero timeout just looks.
pub async fn wait_for_token(
    store: &Store,
    subscriber: &Subscriber,
    access: &AccessId,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<Answer, FollowError> {
    let answer = wait(store, subscriber, access, timeout, shutdown).await?;
    tracing::trace!(%access, answer = answer.describe(), "long poll answered");
    Ok(answer)
}

async fn wait(
    store: &Store,
    subscriber: &Subscriber,
    access: &AccessId,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<Answer, FollowError> {
    // Every read is boxed: the read's state machine is large, and a parked
    // waiter, which is most of them, should not carry room for it.
    if timeout.is_zero() {
        return Ok(Box::pin(look(store, access)).await?.0);
    }
    let deadline = Instant::now() + timeout;
    let _admitted = subscriber.admit()?;
    // Subscribe before reading, or a token landing in between is missed.
    let mut subscription = tokio::select! {
        subscribed = subscriber.subscribe(store.keys().changed(access)) => subscribed?,
        () = shutdown.cancelled() => return Ok(Answer::StillWaiting),
    };
    let (answer, mut expires_at) = Box::pin(look(store, access)).await?;
    if !matches!(answer, Answer::StillWaiting) {
        return Ok(answer);
    }
    let _parked = subscriber.park();
    // The challenge's own deadline wakes the waiter too, so it learns of the
    // expiry at once rather than at the next sweep. Once per deadline: if
    // this gateway's clock runs ahead of Redis's, the sweep's message follows.
    let mut checked_deadline = None;
    // Set when a re-read failed: the hint that woke the waiter is spent, so
    // it reads again soon instead of waiting for another one.
    let mut read_again_at = None;
    loop {
        let check = expires_at.filter(|e| Some(*e) != checked_deadline);
        tokio::select! {
            () = subscription.changed() => {}
            () = tokio::time::sleep_until(check.map_or(deadline, instant_after)), if check.is_some() => {
                checked_deadline = check;
            }
            () = tokio::time::sleep_until(read_again_at.unwrap_or(deadline)), if read_again_at.is_some() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(Answer::StillWaiting),
            () = shutdown.cancelled() => return Ok(Answer::StillWaiting),
        }
        // A waiter that Redis cannot answer for a moment keeps waiting: its
        // client has been told nothing yet, and the token is safe in Redis.
        match Box::pin(look(store, access)).await {
            Ok((Answer::StillWaiting, deadline_now)) => {
                expires_at = deadline_now;
                read_again_at = None;
            }
            Ok((answer, _)) => {
                if let Answer::Token { stored_at, .. } = &answer {
                    metrics::waiter_woken(*stored_at);
                }
                return Ok(answer);
            }
            Err(error) if error.is_unavailable() => {
                tracing::debug!(%access, %error, "a waiter could not re-read; trying again");
                read_again_at = Some(Instant::now() + READ_AGAIN_AFTER_FAILURE);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The instant just after a wall-clock moment.
fn instant_after(moment: UnixMillis) -> Instant {
    let ahead = moment
        .to_system_time()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + ahead + Duration::from_millis(5)
}

/// The answer as it stands, with the deadline of a challenge still waiting.
async fn look(
    store: &Store,
    access: &AccessId,
) -> Result<(Answer, Option<UnixMillis>), StoreError> {
    let Some(view) = store.token_view(access).await? else {
        return Ok((Answer::NotFound, None));
    };
    let expires_at = view.status.is_waiting().then_some(view.expires_at);
    let answer = match (view.status, view.token) {
        (Status::TokenReceived, Some(token)) => Answer::Token {
            attempt: view.attempt,
            token,
            stored_at: view.updated_at,
        },
        (Status::TokenReceived, None) => {
            return Err(StoreError::malformed(
                access,
                "status is token_received but there is no token",
            ));
        }
        (status, _) if status.is_waiting() => Answer::StillWaiting,
        (status, _) => Answer::Finished(status),
    };
    Ok((answer, expires_at))
}
