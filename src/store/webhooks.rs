//! Webhook endpoints, and each one's queue of messages, in Redis.
//!
//! The registry `2fa:webhooks` lists the endpoints; each endpoint's keys
//! share its own hash tag, so its queue moves in one script on one slot.
//! Messages are queued by the relay, in the same pass that relays an outbox
//! to the feed (`relay`), before the outbox moves on: a message can be
//! queued twice, never lost, and queuing it twice changes nothing, as its id
//! comes from the move. Each endpoint's queue holds one lane per access, so
//! that an access's messages go out in order while the others' go on.
//! Delivery itself, with its leases, is `webhooks::delivery`'s.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, millis};
use crate::model::{Delivery, DeliveryState, EventType, Message, Transition, UnixMillis, Webhook};

/// How many messages an endpoint's history keeps, and for how long.
pub const HISTORY_LENGTH: usize = 1_000;
pub const HISTORY_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An endpoint as Redis keeps it: the API object, and its secrets.
#[derive(Clone)]
pub struct Endpoint {
    pub webhook: Webhook,
    pub secret: String,
    /// The secret a rotation replaced, and until when it still signs.
    pub previous: Option<(String, UnixMillis)>,
}

/// Which messages an endpoint wants, as the relay needs to know it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub events: Vec<EventType>,
}

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

/// The endpoints the relay queues for, refreshed from Redis.
#[derive(Default)]
pub(super) struct Subscriptions(RwLock<Arc<Vec<Subscription>>>);

impl Store {
    /// Adds an endpoint, unless `max` are registered already (`false`).
    pub async fn register_webhook(
        &self,
        endpoint: &Endpoint,
        max: usize,
    ) -> Result<bool, StoreError> {
        let hook = &endpoint.webhook;
        let mut invocation = self.scripts.webhook_register.key(self.keys().webhooks());
        invocation.arg(&hook.id).arg(hook.created_at.0).arg(max);
        if self.run::<i64>(&invocation).await? == 0 {
            return Ok(false);
        }
        let mut fields = endpoint_fields(hook);
        fields.push(("created_at", hook.created_at.0.to_string()));
        fields.push(("secret", endpoint.secret.clone()));
        fields.retain(|(_, value)| !value.is_empty());
        let mut conn = self.link.get();
        let key = self.keys().webhook(&hook.id).endpoint;
        let written = self
            .bounded(conn.hset_multiple::<_, _, _, ()>(&key, &fields))
            .await;
        if let Err(error) = written {
            // Not left counting against the limit.
            let _ = self
                .bounded(conn.zrem::<_, _, ()>(self.keys().webhooks(), &hook.id))
                .await;
            return Err(error);
        }
        self.refresh_subscriptions().await?;
        Ok(true)
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let mut conn = self.link.get();
        let fields: HashMap<String, String> = self
            .bounded(conn.hgetall(self.keys().webhook(id).endpoint))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        endpoint_from(id, &fields).map(Some)
    }

    /// Every endpoint, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.link.get();
        let ids: Vec<String> = self
            .bounded(conn.zrange(self.keys().webhooks(), 0, -1))
            .await?;
        let mut endpoints = Vec::with_capacity(ids.len());
        for id in ids {
            // An id whose settings are gone (a crash mid-delete) is skipped.
            if let Some(endpoint) = self.webhook(&id).await? {
                endpoints.push(endpoint);
            }
        }
        Ok(endpoints)
    }

    /// Sets these fields (an empty value deletes one) and, with a new
    /// secret, keeps the old one signing until `until`. `false` when there is
    /// no such endpoint.
    pub async fn update_webhook(
        &self,
        id: &str,
        new_secret: Option<(&str, UnixMillis)>,
        fields: &[(&str, String)],
    ) -> Result<bool, StoreError> {
        let mut invocation = self
            .scripts
            .webhook_update
            .key(self.keys().webhook(id).endpoint);
        let (secret, until) = new_secret.map_or(("", 0), |(secret, until)| (secret, until.0));
        invocation.arg(secret).arg(until);
        for (field, value) in fields {
            invocation.arg(*field).arg(value);
        }
        let changed = self.run::<i64>(&invocation).await? == 1;
        self.refresh_subscriptions().await?;
        Ok(changed)
    }

    /// Removes an endpoint with its queue and history: no delivery to it
    /// starts afterwards. `false` when there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool, StoreError> {
        let names = self.keys().webhook(id);
        let mut conn = self.link.get();
        let deleted: usize = self
            .bounded(conn.del(&[
                &names.endpoint,
                &names.queue,
                &names.lanes,
                &names.messages,
                &names.history,
            ]))
            .await?;
        let unlisted: usize = self.bounded(conn.zrem(self.keys().webhooks(), id)).await?;
        self.refresh_subscriptions().await?;
        Ok(deleted > 0 || unlisted > 0)
    }

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
            self.refresh_subscriptions().await?;
        }
        Ok(done == "done")
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

    /// The endpoints the relay queues for, as last read.
    pub fn subscriptions(&self) -> Arc<Vec<Subscription>> {
        match self.subscriptions.0.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the enabled endpoints again: every gateway does it each second,
    /// and after its own changes, so a new endpoint hears of transitions
    /// relayed from about a second after its creation on.
    pub async fn refresh_subscriptions(&self) -> Result<(), StoreError> {
        let fresh: Vec<Subscription> = self
            .webhooks()
            .await?
            .into_iter()
            .filter(|endpoint| !endpoint.webhook.disabled)
            .map(|endpoint| Subscription {
                id: endpoint.webhook.id,
                events: endpoint.webhook.events,
            })
            .collect();
        let fresh = Arc::new(fresh);
        match self.subscriptions.0.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
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
    pub(super) async fn relay_to_webhooks(&self, transition: &Transition, now: u64) -> bool {
        let subscriptions = self.subscriptions();
        if subscriptions.is_empty() {
            return true;
        }
        let after = &transition.after;
        let messages: Vec<Message> = transition
            .moves
            .iter()
            .filter_map(|moved| Message::of(after, moved))
            .collect();
        let mut all = true;
        for subscription in subscriptions.iter() {
            let wanted: Vec<(String, String, MessageRecord)> = messages
                .iter()
                .zip(&transition.moves)
                .filter(|(message, _)| subscription.events.contains(&message.event))
                .map(|(message, moved)| {
                    let record = MessageRecord::new(
                        message.event.as_str(),
                        Some(message.access.to_string()),
                        message.body.clone(),
                        moved.at.0,
                        now,
                    );
                    (message.id.clone(), message.access.to_string(), record)
                })
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if let Err(error) = self.enqueue_webhook(&subscription.id, &wanted, now).await {
                let (endpoint, access) = (&subscription.id, &after.access);
                tracing::warn!(%endpoint, %access, %error, "could not queue webhook messages; the sweep will");
                all = false;
            }
        }
        all
    }
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_owned()
}

fn events_field(events: &[EventType]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The endpoint hash's fields, as `register_webhook` writes them.
pub fn endpoint_fields(webhook: &Webhook) -> Vec<(&'static str, String)> {
    vec![
        ("url", webhook.url.clone()),
        ("events", events_field(&webhook.events)),
        (
            "description",
            webhook.description.clone().unwrap_or_default(),
        ),
        ("disabled", flag(webhook.disabled)),
    ]
}

fn endpoint_from(id: &str, fields: &HashMap<String, String>) -> Result<Endpoint, StoreError> {
    let malformed = |problem: &str| StoreError::malformed_in(format!("webhook {id}"), problem);
    let text = |field: &str| {
        fields
            .get(field)
            .cloned()
            .ok_or_else(|| malformed(&format!("no `{field}`")))
    };
    let events = text("events")?
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|e| EventType::parse(e).ok_or_else(|| malformed(&format!("event `{e}`"))))
        .collect::<Result<_, _>>()?;
    let created_at = text("created_at")?
        .parse()
        .map_err(|_| malformed("`created_at` is not a number"))?;
    let previous = match (fields.get("previous_secret"), fields.get("previous_until")) {
        (Some(secret), Some(until)) => until
            .parse()
            .ok()
            .map(|until| (secret.clone(), UnixMillis(until))),
        _ => None,
    };
    Ok(Endpoint {
        webhook: Webhook {
            id: id.to_owned(),
            url: text("url")?,
            events,
            description: fields.get("description").filter(|d| !d.is_empty()).cloned(),
            created_at: UnixMillis(created_at),
            disabled: text("disabled")? != "0",
        },
        secret: text("secret")?,
        previous,
    })
}
