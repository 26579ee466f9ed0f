//! The JSON bodies on the wire, shared by the gateway's handlers and the
//! typed client, so the two cannot drift apart.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::challenge::{Choices, ImageUri, Kind, Validation};
use super::text::{
    AccessId, BankName, CustomerId, ExpiresIn, Instructions, Question, Reason, Token,
    ValidationMessage,
};
use super::{Outcome, Status, UnixMillis};

/// `PUT /v1/accesses/{access}/challenge`: the bank's question.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChallengeRequest {
    /// Checked by the gateway's handler, so a bad id is a 400 as in a path.
    #[schema(value_type = CustomerId)]
    pub customer: String,
    pub fin_entity_name: BankName,
    pub double_auth_question: Question,
    /// Seconds; the gateway's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<ExpiresIn>,
    /// `code` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// For `choice`: 2 to 20 `{"value","label"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Choices>,
    /// For `image`: a PNG or JPEG `data:` URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageUri>,
    /// For `code`, `text` and `image`: a regex the whole token must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_message: Option<ValidationMessage>,
    /// Text to show the customer beside the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Instructions>,
    /// Another name for `instructions`; give one or the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Instructions>,
}

impl ChallengeRequest {
    /// A one-time code challenge with the gateway's default expiry.
    pub fn code(customer: &str, bank: BankName, question: Question) -> Self {
        ChallengeRequest {
            customer: customer.to_owned(),
            fin_entity_name: bank,
            double_auth_question: question,
            expires_in: None,
            kind: None,
            choices: None,
            image: None,
            validation: None,
            validation_message: None,
            instructions: None,
            label: None,
        }
    }
}

/// `POST /v1/tokens`: exactly the seed's message, plus an optional attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSubmission {
    /// Checked by the gateway's handler, so a bad id is a 400 as in a path.
    #[schema(value_type = AccessId)]
    pub access: String,
    pub token: Token,
    /// When given, the call fails with 409 if the challenge has moved on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u32>, minimum = 1)]
    pub attempt: Option<NonZeroU32>,
}

/// `PUT /v1/accesses/{access}/status`: the scraper's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Report)]
pub struct StatusReport {
    pub status: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The scraper's answer: the token. Sent with `Cache-Control: no-store`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenAnswer {
    pub access: AccessId,
    /// Always `token_received`.
    pub status: Status,
    pub token: Token,
    pub attempt: u32,
}

/// The data of a live feed's `event: status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusChange {
    pub access: AccessId,
    pub status: Status,
    pub attempt: u32,
    pub at: UnixMillis,
}
