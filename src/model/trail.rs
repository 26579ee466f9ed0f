//! The audit trail, and what one step recorded in it.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Access, AccessId, Actor, CustomerId, Kind, Status, UnixMillis};

/// One entry of an access's audit trail. It never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Event)]
pub struct TrailEntry {
    /// The stream entry's id, such as `1764089305123-0`.
    pub id: String,
    /// `challenge`, or the status the transition led to.
    #[serde(rename = "type")]
    pub kind: String,
    pub attempt: u32,
    pub at: UnixMillis,
    pub by: Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub reason: Option<String>,
}

/// What one audit-trail entry recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// A challenge was posted: attempt n+1 began, in `need`.
    Challenge,
    /// The access moved to this status.
    To(Status),
}

/// One entry a step appended to the audit trail, with the entry's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub to: Moved,
    pub audit_id: String,
}

/// What one step did to an access: its entries in the audit trail, in
/// order, and the access as the step left it. The customer's feed and the
/// metrics both take this, so neither parses a script's reply.
#[derive(Debug, Clone)]
pub struct Transition {
    pub access: AccessId,
    pub customer: CustomerId,
    pub kind: Kind,
    pub attempt: u32,
    pub started_at: UnixMillis,
    /// When the last status in `moves` was reached.
    pub updated_at: UnixMillis,
    pub moves: Vec<Move>,
}

impl Transition {
    pub fn new(after: &Access, moves: Vec<Move>) -> Transition {
        Transition {
            access: after.access.clone(),
            customer: after.customer.clone(),
            kind: after.kind,
            attempt: after.attempt,
            started_at: after.started_at,
            updated_at: after.updated_at,
            moves,
        }
    }
}
