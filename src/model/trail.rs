//! The audit trail, and what one step recorded in it.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Access, Actor, Status, UnixMillis};

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

/// One audit-trail entry on its way to the customer's feed and the
/// webhooks: what happened, to which attempt, when and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The trail entry's id: the order of an access's moves, and the key
    /// that makes relaying them twice harmless.
    pub audit_id: String,
    pub to: Moved,
    pub attempt: u32,
    pub at: UnixMillis,
    pub by: Actor,
    pub reason: Option<String>,
}

/// An access's outbox as one step left it: the trail entries not relayed
/// yet, oldest first, and the access as the step left it. The last `own` of
/// the moves are the step's own; the others were left by a step whose
/// gateway died before relaying them. The relay takes all of them; the
/// metrics count only the step's own.
#[derive(Debug, Clone)]
pub struct Transition {
    pub after: Access,
    pub moves: Vec<Move>,
    own: usize,
}

impl Transition {
    /// `None` when there is nothing to relay.
    pub fn new(after: &Access, moves: Vec<Move>, own: usize) -> Option<Transition> {
        (!moves.is_empty()).then(|| Transition {
            after: after.clone(),
            own: own.min(moves.len()),
            moves,
        })
    }

    /// The moves this step made itself.
    pub fn own_moves(&self) -> &[Move] {
        &self.moves[self.moves.len() - self.own..]
    }
}
