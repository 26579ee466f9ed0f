//! Webhook endpoints, and each one's queue of messages, in Redis.
//!
//! The registry `2fa:webhooks` lists the endpoints; each endpoint's keys
//! share its own hash tag, so its queue moves in one script on one slot.
//! Messages are queued by the relay, in the same pass that relays an outbox
//! to the feed (`relay`), before its relay fields close: a message can be
//! queued twice, never lost, and queuing it twice changes nothing, as its id
//! comes from the move. Each endpoint's queue holds one lane per access, so
//! that an access's messages go out in order while the others' go on.
//! Delivery itself, with its leases, is `webhooks::delivery`'s.
//!
//! Here: the endpoints and the relay's cached list of them; in `queue`, the
//! messages, their lanes, leases and history.

mod queue;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use redis::AsyncCommands;

use super::{Store, StoreError};
use crate::model::{EventType, UnixMillis, Webhook};
pub use queue::{Claim, Claimed, HISTORY_AGE, HISTORY_LENGTH, MessageRecord, TryOutcome};

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
        self.refresh_after_change().await;
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
        // A rotation alone changes no subscription.
        if !fields.is_empty() {
            self.refresh_after_change().await;
        }
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
        self.refresh_after_change().await;
        Ok(deleted > 0 || unlisted > 0)
    }

    /// The endpoints the relay queues for, as last read.
    pub fn subscriptions(&self) -> Arc<Vec<Subscription>> {
        match self.subscriptions.0.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a change this gateway made, which has committed: the cache
    /// catches up at once, or else with the delivery loop's next poll, so a
    /// failure here fails nothing.
    pub(super) async fn refresh_after_change(&self) {
        if let Err(error) = self.refresh_subscriptions().await {
            tracing::warn!(%error, "could not read the webhook endpoints again; the next poll will");
        }
    }

    /// Reads the enabled endpoints again: every gateway does it each poll,
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
/// What a change to an endpoint sets; `None` leaves a field as it is, and
/// a description of `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub description: Option<Option<String>>,
    pub disabled: Option<bool>,
}

impl EndpointChange {
    /// The hash fields it writes; an empty value deletes one.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::new();
        if let Some(url) = &self.url {
            fields.push(("url", url.clone()));
        }
        if let Some(events) = &self.events {
            fields.push(("events", events_field(events)));
        }
        if let Some(description) = &self.description {
            fields.push(("description", description.clone().unwrap_or_default()));
        }
        if let Some(disabled) = self.disabled {
            fields.push(("disabled", flag(disabled)));
        }
        fields
    }
}

/// Every setting of a new endpoint, as hash fields.
fn endpoint_fields(webhook: &Webhook) -> Vec<(&'static str, String)> {
    EndpointChange {
        url: Some(webhook.url.clone()),
        events: Some(webhook.events.clone()),
        description: Some(webhook.description.clone()),
        disabled: Some(webhook.disabled),
    }
    .fields()
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
