//! Webhook endpoints and their messages, as the admin API and a receiver see
//! them. The message bodies are built here, from the moves a relay carries,
//! so that the feed and the webhooks tell one story.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Access, AccessId, CustomerId, Move, Moved, Status, UnixMillis};

/// What an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// A challenge started waiting for its customer (status `need`).
    #[serde(rename = "challenge.waiting")]
    ChallengeWaiting,
    /// An access moved to another status, `question_sent` through
    /// `cancelled`.
    #[serde(rename = "access.status_changed")]
    AccessStatusChanged,
}

impl EventType {
    pub const ALL: [EventType; 2] = [EventType::ChallengeWaiting, EventType::AccessStatusChanged];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ChallengeWaiting => "challenge.waiting",
            EventType::AccessStatusChanged => "access.status_changed",
        }
    }

    pub fn parse(value: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|event| event.as_str() == value)
    }
}

/// `POST /v1/webhooks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// An absolute `https` URL of at most 2,048 characters, with no userinfo
    /// and no fragment, whose host is not on a private network.
    pub url: String,
    /// Both when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<EventType>>,
    /// At most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`: any of the fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub events: Option<Vec<EventType>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// An endpoint, as every route but its creation and rotation shows it: never
/// with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// `wh_` and 26 characters.
    pub id: String,
    pub url: String,
    pub events: Vec<EventType>,
    #[schema(value_type = Option<String>)]
    pub description: Option<String>,
    pub created_at: UnixMillis,
    /// Set by `PATCH`, or by a receiver's `410 Gone`; a disabled endpoint
    /// gets nothing.
    pub disabled: bool,
}

/// `201` of `POST /v1/webhooks`: the endpoint and its signing secret, shown
/// this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_` and the base64 of 32 random bytes.
    pub secret: String,
}

/// `200` of `POST /v1/webhooks/{id}/rotate`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedSecret {
    pub secret: String,
}

/// Where a message stands with one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

/// One row of `GET /v1/webhooks/{id}/deliveries`: one message, all its
/// tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The `webhook-id` of every try.
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Option<String>)]
    pub access: Option<AccessId>,
    pub tries: u32,
    pub state: DeliveryState,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: UnixMillis,
    pub last_tried_at: Option<UnixMillis>,
    pub next_try_at: Option<UnixMillis>,
}

/// `access.status_changed`'s `data`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusChanged {
    pub access: AccessId,
    pub customer: CustomerId,
    pub status: Status,
    pub attempt: u32,
    pub at: UnixMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A message's body: `{"type","timestamp","data"}`. It never carries a
/// token: `data` is built from the access without one, or from a move.
#[derive(Debug, Clone, Serialize)]
pub struct MessageBody<T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: UnixMillis,
    pub data: T,
}

/// The body of a `challenge.waiting` message, as the OpenAPI document's
/// `webhooks` describe it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeWaitingMessage {
    /// `challenge.waiting`.
    #[serde(rename = "type")]
    #[schema(pattern = "^challenge\\.waiting$")]
    pub kind: String,
    pub timestamp: UnixMillis,
    /// The item as `GET /v1/customers/{customer}/challenges` shows it, in
    /// status `need`, with `hasImage` but never the image.
    pub data: Access,
}

/// The body of an `access.status_changed` message.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChangedMessage {
    /// `access.status_changed`.
    #[serde(rename = "type")]
    #[schema(pattern = "^access\\.status_changed$")]
    pub kind: String,
    pub timestamp: UnixMillis,
    pub data: StatusChanged,
}

/// The body of a `webhook.test` message.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestMessage {
    /// `webhook.test`.
    #[serde(rename = "type")]
    #[schema(pattern = "^webhook\\.test$")]
    pub kind: String,
    pub timestamp: UnixMillis,
    /// Always `{}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// One message for the endpoints that want its type.
#[derive(Debug, Clone)]
pub struct Message {
    /// Derived from the access and the move's trail id, so that relaying a
    /// move twice gives the same `webhook-id`.
    pub id: String,
    pub event: EventType,
    pub access: AccessId,
    /// The body, as JSON.
    pub body: String,
}

impl Message {
    /// The message a relayed move makes, if any: a challenge that is still
    /// the access's current attempt (one superseded before its relay, which
    /// only a dead gateway delays, has no data left to show), or a status.
    pub fn of(after: &Access, moved: &Move) -> Option<Message> {
        let (event, body) = match moved.to {
            Moved::Challenge if moved.attempt == after.attempt => {
                let mut item = after.clone();
                item.status = Status::Need;
                item.image = None;
                let body = MessageBody {
                    kind: EventType::ChallengeWaiting.as_str(),
                    timestamp: moved.at,
                    data: item,
                };
                (EventType::ChallengeWaiting, serde_json::to_string(&body))
            }
            Moved::Challenge => return None,
            Moved::To(status) => {
                let body = MessageBody {
                    kind: EventType::AccessStatusChanged.as_str(),
                    timestamp: moved.at,
                    data: StatusChanged {
                        access: after.access.clone(),
                        customer: after.customer.clone(),
                        status,
                        attempt: moved.attempt,
                        at: moved.at,
                        reason: moved.reason.clone(),
                    },
                };
                (EventType::AccessStatusChanged, serde_json::to_string(&body))
            }
        };
        Some(Message {
            id: message_id(&after.access, &moved.audit_id),
            event,
            access: after.access.clone(),
            body: body.ok()?,
        })
    }
}

/// `msg_` and 32 hex digits of SHA-256 over the access and the trail id.
fn message_id(access: &AccessId, audit_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{access}|{audit_id}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}
