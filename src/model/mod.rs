//! The domain: validated ids and texts, challenge kinds and their answer
//! rules, the lifecycle's statuses, and the objects every route returns.
//!
//! Values are checked once, when they are parsed at the edge (a path segment,
//! a JSON body). After that the type is the proof: the store and the Lua
//! scripts never re-check an id, and no unchecked string can reach a Redis
//! key name.

mod api;
mod challenge;
mod schema;
mod session;
mod text;
mod trail;
mod webhook;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

pub use api::{ChallengeRequest, StatusChange, StatusReport, TokenAnswer, TokenSubmission};
pub use challenge::{
    AnswerRule, ChallengeParts, Choice, Choices, ImageUri, Kind, NewChallenge, Validation,
};
pub use session::{
    CreatedSession, CurrentSession, SESSION_PREFIX, SessionDigest, SessionRequest, SessionString,
    SessionTtl,
};
pub(crate) use text::is_key_char;
pub use text::{
    AccessId, BankName, ChoiceLabel, ChoiceValue, CustomerId, ExpiresIn, Instructions, Invalid,
    Question, Reason, Token, ValidationMessage,
};
pub use trail::{Move, Moved, TrailEntry, Transition};
pub use webhook::{
    ChallengeWaitingMessage, CreatedWebhook, Delivery, DeliveryState, EventType, Message,
    MessageBody, NewWebhook, RotatedSecret, StatusChanged, StatusChangedMessage, TestMessage,
    Webhook, WebhookPatch,
};

/// Where an access is in its lifecycle. The strings are the public contract:
/// they are stored in the hash, pushed on the wake list and published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Need,
    QuestionSent,
    TokenReceived,
    Ok,
    Rejected,
    Expired,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Need,
        Status::QuestionSent,
        Status::TokenReceived,
        Status::Ok,
        Status::Rejected,
        Status::Expired,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Need => "need",
            Status::QuestionSent => "question_sent",
            Status::TokenReceived => "token_received",
            Status::Ok => "ok",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Waiting for the customer: listed to the front end, open to a token.
    pub fn is_waiting(self) -> bool {
        matches!(self, Status::Need | Status::QuestionSent)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the scraper reports after using the token at the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Rejected,
}

impl Outcome {
    pub fn status(self) -> Status {
        match self {
            Outcome::Ok => Status::Ok,
            Outcome::Rejected => Status::Rejected,
        }
    }
}

/// A moment as Unix milliseconds, the way the hash stores it; serialised as
/// an RFC 3339 UTC string with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// Now, by this process's clock (Redis's own clock decides deadlines;
    /// this one only schedules the gateway's own work and stamps records).
    pub fn now() -> UnixMillis {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        UnixMillis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    /// This long later, or the end of time.
    pub fn after(self, duration: Duration) -> UnixMillis {
        UnixMillis(
            self.0
                .saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_millis(self.to_system_time())
        )
    }
}

impl Serialize for UnixMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UnixMillis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let moment = humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)?;
        let since = moment
            .duration_since(UNIX_EPOCH)
            .map_err(serde::de::Error::custom)?;
        Ok(UnixMillis(
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

/// One access's current challenge: the hash, minus the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub access: AccessId,
    pub customer: CustomerId,
    pub fin_entity_name: String,
    #[serde(rename = "doubleAuthQuestion")]
    pub question: String,
    pub kind: Kind,
    pub status: Status,
    pub attempt: u32,
    pub started_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub expires_at: UnixMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<Choice>)]
    pub choices: Option<Vec<Choice>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub validation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub validation_message: Option<String>,
    /// Whether the challenge carries an image; the image itself is sent only
    /// by `GET /v1/accesses/{access}`, which fills `image`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_image: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub image: Option<String>,
}

/// Who made a transition, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Scraper,
    Frontend,
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Scraper => "scraper",
            Actor::Frontend => "frontend",
            Actor::System => "system",
        }
    }

    pub fn parse(value: &str) -> Option<Actor> {
        [Actor::Scraper, Actor::Frontend, Actor::System]
            .into_iter()
            .find(|a| a.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_serialise_as_rfc3339_with_milliseconds() {
        assert_eq!(
            UnixMillis(1_764_089_305_007).to_string(),
            "2025-11-25T16:48:25.007Z"
        );
    }

    #[test]
    fn statuses_round_trip_through_their_strings() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
