//! An access's audit trail, `2fa:access:{<access>}:events`, read back. The
//! scripts append to it (`access.lua`); operators can edit streams too, so
//! a missing or unparsable field is an error naming it.

use redis::streams::{StreamId, StreamRangeReply};

use super::{Store, StoreError};
use crate::model::{AccessId, Actor, CustomerId, TrailEntry, UnixMillis};

impl Store {
    /// The access's audit trail, oldest first; `None` when the access has
    /// neither a challenge nor a trail, or, with a `scope`, when its
    /// challenge is not that customer's.
    pub async fn trail(
        &self,
        access: &AccessId,
        scope: Option<&CustomerId>,
    ) -> Result<Option<Vec<TrailEntry>>, StoreError> {
        let names = self.keys().access(access);
        let mut read = self.scripts.trail.key(&names.hash);
        read.key(&names.events)
            .arg(scope.map_or("", CustomerId::as_str));
        let Some(trail): Option<StreamRangeReply> = self.run(&read).await? else {
            return Ok(None);
        };
        let entries = trail.ids.iter().map(|entry| trail_entry(access, entry));
        entries.collect::<Result<Vec<_>, _>>().map(Some)
    }
}

fn trail_entry(access: &AccessId, entry: &StreamId) -> Result<TrailEntry, StoreError> {
    let malformed =
        |problem: &str| StoreError::malformed(access, format!("event {}: {problem}", entry.id));
    let text = |field: &str| -> Result<String, StoreError> {
        entry
            .get(field)
            .ok_or_else(|| malformed(&format!("no `{field}`")))
    };
    let by = text("by")?;
    Ok(TrailEntry {
        id: entry.id.clone(),
        kind: text("type")?,
        attempt: text("attempt")?
            .parse()
            .map_err(|_| malformed("`attempt` is not a number"))?,
        at: UnixMillis(
            text("at")?
                .parse()
                .map_err(|_| malformed("`at` is not a number"))?,
        ),
        by: Actor::parse(&by).ok_or_else(|| malformed("unknown `by`"))?,
        reason: entry.get("reason"),
    })
}
