//! Each endpoint's queue: messages queued by the relay, leased lane by lane
//! to one gateway's delivery worker, and kept as history.

use futures_util::future::join_all;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::super::{Store, StoreError, millis};
use crate::model::{Delivery, DeliveryState, EventType, Message, Transition, UnixMillis};

/// How many messages an endpoint's history keeps, and for how long.
pub const HISTORY_LENGTH: usize = 1_000;
pub const HISTORY_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One message's state with one endpoint, as its record holds it (JSON in
/// `2fa:webhook:{<id>}:messages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRecord {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub access: Option<String>,
    /// The JSON body, signed and sent as it is on every try.
    pub body: String,
    pub tries: u32,
    pub state: DeliveryState,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    pub created_at: u64,
    #[serde(default)]
    pub last_tried_at: Option<u64>,
    #[serde(default)]
    pub next_try_at: Option<u64>,
    /// When what it reports happened (ms), for the delivery latency.
    pub at: u64,
}

impl MessageRecord {
    pub fn new(kind: &str, access: Option<String>, body: String, at: u64, now: u64) -> Self {
        MessageRecord {
            kind: kind.to_owned(),
            access,
            body,
            tries: 0,
            state: DeliveryState::Pending,
            last_status: None,
            last_error: None,
            created_at: now,
            last_tried_at: None,
            next_try_at: Some(now),
            at,
        }
    }

    fn to_delivery(&self, message_id: String) -> Delivery {
        Delivery {
            message_id,
            kind: self.kind.clone(),
            access: self
                .access
                .as_deref()
                .and_then(|a| crate::model::AccessId::parse(a).ok()),
            tries: self.tries,
            state: self.state,
            last_status: self.last_status,
            last_error: self.last_error.clone(),
            created_at: UnixMillis(self.created_at),
            last_tried_at: self.last_tried_at.map(UnixMillis),
            next_try_at: self.next_try_at.map(UnixMillis),
        }
    }
}

/// Lanes leased to this gateway, with what it needs to deliver them.
pub struct Claim {
    pub url: String,
    /// The current secret, and the one a rotation replaced while it still
    /// signs.
    pub secrets: Vec<String>,
    pub items: Vec<Claimed>,
}

pub struct Claimed {
    pub lane: String,
    pub lease: String,
    pub message_id: String,
    pub record: MessageRecord,
}

/// What became of one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryOutcome {
    Delivered,
    /// Tried again at this time (ms).
    Retry(u64),
    /// No tries left.
    Failed,
    /// The receiver answered 410 Gone: the endpoint is disabled.
    Gone,
}

impl Store {
    /// Queues messages for one endpoint; how many were new.
    pub async fn enqueue_webhook(
        &self,
        id: &str,
        messages: &[(String, String, MessageRecord)],
        now: u64,
    ) -> Result<usize, StoreError> {
        let names = self.keys().webhook(id);
        let mut invocation = self.scripts.webhook_enqueue.key(&names.endpoint);
        invocation
            .key(&names.queue)
            .key(&names.lanes)
            .key(&names.messages)
            .key(&names.history)
            .arg(now)
            .arg(millis(HISTORY_AGE));
        for (message_id, lane, record) in messages {
            let record = serde_json::to_string(record).map_err(|e| {
                StoreError::malformed_in(format!("webhook {id}"), format!("a record: {e}"))
            })?;
            invocation.arg(message_id).arg(lane).arg(record);
        }
        let added: usize = self.run(&invocation).await?;
        if added > 0 {
            self.deliveries_due.notify_one();
        }
        Ok(added)
    }

    /// Leases up to `lanes` due lanes of one endpoint; `None` when the
    /// endpoint is gone or disabled.
    pub async fn claim_webhook(
        &self,
        id: &str,
        now: u64,
        lease: std::time::Duration,
        lanes: usize,
    ) -> Result<Option<Claim>, StoreError> {
        let names = self.keys().webhook(id);
        let mut invocation = self.scripts.webhook_claim.key(&names.endpoint);
        invocation
            .key(&names.queue)
            .key(&names.lanes)
            .key(&names.messages)
            .arg(now)
            .arg(millis(lease))
            .arg(lanes);
        let reply: Vec<String> = self.run(&invocation).await?;
        let malformed =
            |problem: String| StoreError::malformed_in(format!("webhook {id}"), problem);
        if reply.is_empty() {
            return Ok(None);
        }
        let mut reply = reply.into_iter();
        let (Some(url), Some(secret), Some(previous), Some(until)) =
            (reply.next(), reply.next(), reply.next(), reply.next())
        else {
            return Err(malformed("a claim without its endpoint".to_owned()));
        };
        let mut secrets = vec![secret];
        if !previous.is_empty() && until.parse::<u64>().is_ok_and(|until| now < until) {
            secrets.push(previous);
        }
        let rest: Vec<String> = reply.collect();
        if !rest.len().is_multiple_of(4) {
            return Err(malformed(format!("a claim of {} values", rest.len())));
        }
        let items = rest
            .chunks_exact(4)
            .map(|item| {
                let record = serde_json::from_str(&item[3])
                    .map_err(|e| malformed(format!("message {}: {e}", item[2])))?;
                Ok(Claimed {
                    lane: item[0].clone(),
                    lease: item[1].clone(),
                    message_id: item[2].clone(),
                    record,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some(Claim {
            url,
            secrets,
            items,
        }))
    }

    /// Records a try; `false` when the lease was lost meanwhile.
    pub async fn complete_webhook(
        &self,
        id: &str,
        claimed: &Claimed,
        outcome: TryOutcome,
        now: u64,
    ) -> Result<bool, StoreError> {
        let names = self.keys().webhook(id);
        let (what, next) = match outcome {
            TryOutcome::Delivered => ("delivered", 0),
            TryOutcome::Retry(at) => ("retry", at),
            TryOutcome::Failed => ("failed", 0),
            TryOutcome::Gone => ("gone", 0),
        };
        let record = serde_json::to_string(&claimed.record).map_err(|e| {
            StoreError::malformed_in(format!("webhook {id}"), format!("a record: {e}"))
        })?;
        let mut invocation = self.scripts.webhook_complete.key(&names.endpoint);
        invocation
            .key(&names.queue)
            .key(&names.lanes)
            .key(&names.messages)
            .key(&names.history)
            .arg(&claimed.lane)
            .arg(&claimed.lease)
            .arg(&claimed.message_id)
            .arg(what)
            .arg(record)
            .arg(next)
            .arg(now)
            .arg(HISTORY_LENGTH)
            .arg(millis(HISTORY_AGE));
        let done: String = self.run(&invocation).await?;
        if outcome == TryOutcome::Gone {
            self.refresh_after_change().await;
        }
        match done.as_str() {
            "done" => Ok(true),
            "lost" => Ok(false),
            other => Err(StoreError::malformed_in(
                format!("webhook {id}"),
                format!("webhook_complete.lua replied `{other}`"),
            )),
        }
    }

    /// The latest messages of one endpoint, newest first.
    pub async fn deliveries(&self, id: &str, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let names = self.keys().webhook(id);
        let mut conn = self.link.get();
        let last = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let ids: Vec<String> = self
            .bounded(conn.zrevrange(&names.history, 0, last))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<String>> = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(&names.messages)
                    .arg(&ids)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(ids
            .into_iter()
            .zip(records)
            .filter_map(|(message_id, record)| {
                let record: MessageRecord = serde_json::from_str(&record?).ok()?;
                Some(record.to_delivery(message_id))
            })
            .collect())
    }

    /// Waits until a message was queued on this gateway, or a delivery
    /// finished and its lane may have the next one due.
    pub async fn deliveries_queued(&self) {
        self.deliveries_due.notified().await;
    }

    pub fn wake_deliveries(&self) {
        self.deliveries_due.notify_one();
    }

    /// How many messages wait to be delivered, over every enabled endpoint.
    pub async fn webhooks_pending(&self) -> Result<usize, StoreError> {
        let mut pending = 0;
        for subscription in self.subscriptions().iter() {
            let mut conn = self.link.get();
            let lanes: Vec<String> = self
                .bounded(conn.hvals(self.keys().webhook(&subscription.id).lanes))
                .await?;
            pending += lanes
                .iter()
                .map(|ids| ids.split(' ').count())
                .sum::<usize>();
        }
        Ok(pending)
    }

    /// Queues an outbox's messages for every endpoint that wants them.
    /// Returns whether every endpoint has them.
    pub(in crate::store) async fn relay_to_webhooks(
        &self,
        transition: &Transition,
        now: u64,
    ) -> bool {
        let subscriptions = self.subscriptions();
        if subscriptions.is_empty() {
            return true;
        }
        let after = &transition.after;
        // Each move's message, paired with its own move (a superseded
        // challenge makes none), built once for every endpoint.
        let messages: Vec<(EventType, (String, String, MessageRecord))> = transition
            .moves
            .iter()
            .filter_map(|moved| {
                let message = Message::of(after, moved)?;
                let access = message.access.to_string();
                let record = MessageRecord::new(
                    message.event.as_str(),
                    Some(access.clone()),
                    message.body,
                    moved.at.0,
                    now,
                );
                Some((message.event, (message.id, access, record)))
            })
            .collect();
        // Every endpoint's queue is its own slot: they are written at once.
        let queued = subscriptions.iter().map(|subscription| {
            let wanted: Vec<(String, String, MessageRecord)> = messages
                .iter()
                .filter(|(event, _)| subscription.events.contains(event))
                .map(|(_, message)| message.clone())
                .collect();
            async move {
                if wanted.is_empty() {
                    return true;
                }
                let queued = self.enqueue_webhook(&subscription.id, &wanted, now).await;
                if let Err(error) = &queued {
                    let (endpoint, access) = (&subscription.id, &after.access);
                    tracing::warn!(%endpoint, %access, %error, "could not queue webhook messages; the sweep will");
                }
                queued.is_ok()
            }
        });
        join_all(queued).await.into_iter().all(|queued| queued)
    }
}
