//! The protocol between the gateway and its Lua scripts, typed on this side
//! and parsed here, in one place.
//!
//! Each script is one file in `scripts/`, whose header states its KEYS, ARGV
//! and reply. Here each one gets a wrapper: its arguments as a small struct,
//! its reply as a type whose parser names every reply the script can send and
//! refuses anything else as [`StoreError::Malformed`], never falling through
//! to a default. The scripts that move one access share a shape and are in
//! [`steps`](super::steps); the index and feed scripts are here.
//!
//! Shared helpers live in `clock.lua`, `stream_ids.lua` and `access.lua`;
//! with `function.lua` they open one library of Redis Functions, a function
//! per script (see [`function`](super::function)). Scripts that announce a
//! change call `PUBLISH`, a name each library defines: classic pub/sub on a
//! single Redis, sharded pub/sub (`SPUBLISH`) on a cluster, where a message
//! then stays on the shard that owns its channel.

use std::sync::LazyLock;
use std::time::Duration;

use super::function::{Builder, Function};
use super::{Store, StoreError, millis};
use crate::model::{AccessId, CustomerId, Status, UnixMillis};

/// A file of `scripts/`.
macro_rules! lua {
    ($name:literal) => {
        include_str!(concat!("scripts/", $name, ".lua"))
    };
}

/// Every script, as a function of one library assembled for one kind of
/// Redis. Public so that tests run the very Lua the gateway runs.
pub struct Scripts {
    pub post_challenge: Function,
    pub send_question: Function,
    pub submit_token: Function,
    pub report: Function,
    pub cancel: Function,
    pub expire: Function,
    pub read: Function,
    pub index_add: Function,
    pub index_remove: Function,
    pub expiring_add: Function,
    pub expiring_postpone: Function,
    pub due: Function,
    pub feed_add: Function,
    pub feed_since: Function,
    pub webhook_register: Function,
    pub webhook_update: Function,
    pub webhook_enqueue: Function,
    pub webhook_claim: Function,
    pub webhook_complete: Function,
    pub session_open: Function,
    pub session_index: Function,
    pub session_end: Function,
    pub trail: Function,
}

/// The scripts for a single Redis: `PUBLISH`.
pub static CLASSIC: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("PUBLISH"));

/// The scripts for a Redis Cluster: `SPUBLISH`.
pub static SHARDED: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("SPUBLISH"));

impl Scripts {
    fn new(publish: &str) -> Scripts {
        let prelude = [
            lua!("clock"),
            lua!("stream_ids"),
            lua!("access"),
            lua!("function"),
        ];
        let mut library = Builder::new(publish, &prelude);
        // Scripts that only read carry `no-writes`; `read`, which writes
        // only to expire a challenge past its deadline, carries `allow-oom`,
        // so that a full Redis still hands a waiting scraper its token.
        let mut add = |script: &'static str, body: &str| {
            let flags: &[&str] = match script {
                "due" | "feed_since" | "trail" => &["no-writes"],
                "read" => &["allow-oom"],
                _ => &[],
            };
            library.function(script, flags, body)
        };
        let scripts = Scripts {
            post_challenge: add("post_challenge", lua!("post_challenge")),
            send_question: add("send_question", lua!("send_question")),
            submit_token: add("submit_token", lua!("submit_token")),
            report: add("report", lua!("report")),
            cancel: add("cancel", lua!("cancel")),
            expire: add("expire", lua!("expire")),
            read: add("read", lua!("read")),
            index_add: add("index_add", lua!("index_add")),
            index_remove: add("index_remove", lua!("index_remove")),
            expiring_add: add("expiring_add", lua!("expiring_add")),
            expiring_postpone: add("expiring_postpone", lua!("expiring_postpone")),
            due: add("due", lua!("due")),
            feed_add: add("feed_add", lua!("feed_add")),
            feed_since: add("feed_since", lua!("feed_since")),
            webhook_register: add("webhook_register", lua!("webhook_register")),
            webhook_update: add("webhook_update", lua!("webhook_update")),
            webhook_enqueue: add("webhook_enqueue", lua!("webhook_enqueue")),
            webhook_claim: add("webhook_claim", lua!("webhook_claim")),
            webhook_complete: add("webhook_complete", lua!("webhook_complete")),
            session_open: add("session_open", lua!("session_open")),
            session_index: add("session_index", lua!("session_index")),
            session_end: add("session_end", lua!("session_end")),
            trail: add("trail", lua!("trail")),
        };
        library.finish();
        scripts
    }

    /// Any function, to load the library they share.
    pub(super) fn any(&self) -> &Function {
        &self.read
    }
}

/// `index_add.lua`: a customer's pending index gains an access, scored by
/// Redis's clock, before the hash write it points to.
pub(super) struct IndexAdd<'a> {
    pub index: &'a str,
    pub access: &'a AccessId,
    /// The index lives at least this long.
    pub keep: Duration,
    /// The lowest score to use: above the `started_at` of a post that
    /// overtook this one, or 0.
    pub after: u64,
}

/// `index_remove.lua`: drops an index entry only if it is still the one the
/// caller saw.
pub(super) struct IndexRemove<'a> {
    pub index: &'a str,
    pub member: &'a str,
    /// The score the caller saw, as Redis gave it.
    pub score: &'a str,
}

/// `expiring_add.lua`: a posted challenge's entry in the expiring index.
pub(super) struct ExpiringAdd<'a> {
    pub index: &'a str,
    pub member: &'a str,
    pub deadline: u64,
}

/// `expiring_postpone.lua`: moves an expiring entry later, never earlier,
/// and never adds one.
pub(super) struct ExpiringPostpone<'a> {
    pub index: &'a str,
    pub member: &'a str,
    pub until: u64,
}

/// `feed_add.lua`: relays an outbox to a customer's feed, and drops the
/// access from their pending index when the relaying step left waiting.
pub(super) struct FeedAdd<'a> {
    pub customer: &'a CustomerId,
    /// The access to drop from the pending index, and the score (its
    /// `started_at`) its entry must still have.
    pub unpend: Option<(&'a AccessId, UnixMillis)>,
    /// How many entries the feed keeps.
    pub length: usize,
    /// The gateway's clock, which only the feed's housekeeping reads.
    pub now: UnixMillis,
    /// How long the feed's keys live after the last append.
    pub keep: Duration,
    /// How long the feed keeps an entry.
    pub retention: Duration,
    /// How often the keys' lifetimes are renewed and old entries go, rather
    /// than on every append.
    pub housekeeping: Duration,
    pub entries: &'a [FeedAddEntry<'a>],
}

/// One entry to append, with the id of the audit-trail entry it comes from.
pub(super) struct FeedAddEntry<'a> {
    pub event: FeedEvent,
    pub access: &'a AccessId,
    pub status: Status,
    pub attempt: u32,
    pub at: UnixMillis,
    pub audit_id: &'a str,
}

/// What a feed entry announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent {
    /// A challenge started waiting for the customer.
    Challenge,
    /// One of the customer's accesses moved to another status.
    Status,
}

impl FeedEvent {
    fn as_str(self) -> &'static str {
        match self {
            FeedEvent::Challenge => "challenge",
            FeedEvent::Status => "status",
        }
    }

    fn parse(value: &str) -> Option<FeedEvent> {
        [FeedEvent::Challenge, FeedEvent::Status]
            .into_iter()
            .find(|event| event.as_str() == value)
    }
}

/// `feed_since.lua`: the entries after a reader's position.
pub(super) struct FeedSince<'a> {
    pub customer: &'a CustomerId,
    /// A stream id, or `0-0`.
    pub after: &'a str,
    /// How many entries at most; 0 for the head alone.
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// The stream id, which feed clients see as the SSE `id:`.
    pub id: String,
    pub event: FeedEvent,
    pub access: AccessId,
    pub status: Status,
    pub attempt: u32,
    pub at: UnixMillis,
}

/// What a reader finds after its position.
#[derive(Debug)]
pub enum FeedRead {
    /// The entries after it, oldest first, and the feed's head: the id a
    /// reader resumes from once it has them all.
    Entries {
        head: String,
        entries: Vec<FeedEntry>,
    },
    /// Entries after the position may have been removed (the feed keeps a
    /// bounded count, for a bounded time): the reader must start over from
    /// what is waiting now, and follow the feed from `head`.
    Gap { head: String },
}

impl Store {
    pub(super) async fn index_add(&self, call: IndexAdd<'_>) -> Result<u64, StoreError> {
        let mut invocation = self.scripts.index_add.key(call.index);
        invocation
            .arg(call.access.as_str())
            .arg(millis(call.keep))
            .arg(call.after);
        self.run(&invocation).await
    }

    /// Whether the entry was still the one seen, and is gone now.
    pub(super) async fn index_remove(&self, call: IndexRemove<'_>) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.index_remove.key(call.index);
        invocation.arg(call.member).arg(call.score);
        Ok(self.run::<i64>(&invocation).await? == 1)
    }

    pub(super) async fn expiring_add(&self, call: ExpiringAdd<'_>) -> Result<(), StoreError> {
        let mut invocation = self.scripts.expiring_add.key(call.index);
        invocation.arg(call.member).arg(call.deadline);
        self.run::<()>(&invocation).await
    }

    /// Whether the entry was moved: `false` when it is gone, or already as
    /// late.
    pub(super) async fn expiring_postpone(
        &self,
        call: ExpiringPostpone<'_>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.expiring_postpone.key(call.index);
        invocation.arg(call.member).arg(call.until);
        Ok(self.run::<i64>(&invocation).await? == 1)
    }

    /// `due.lua`: the expiring entries whose deadline has passed by Redis's
    /// clock, oldest first, at most `limit`, as (member, deadline).
    pub(super) async fn due(
        &self,
        index: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut invocation = self.scripts.due.key(index);
        invocation.arg(limit);
        let due: Vec<(String, String)> = self.run(&invocation).await?;
        // A score that is no whole number (only a hand edit makes one) counts
        // as due long ago, rather than failing the batch: the sweep then
        // re-scores or drops that entry like any other.
        Ok(due
            .into_iter()
            .map(|(member, score)| (member, score.parse().unwrap_or(0)))
            .collect())
    }

    /// Returns the id of the last entry added, or `None` when every entry
    /// was one the feed already had.
    pub(super) async fn feed_add(&self, call: &FeedAdd<'_>) -> Result<Option<String>, StoreError> {
        let keys = self.keys();
        let mut invocation = self.scripts.feed_add.key(keys.feed(call.customer));
        let (unpend, score) = match call.unpend {
            Some((access, started_at)) => (access.as_str(), started_at.0.to_string()),
            None => ("", String::new()),
        };
        invocation
            .key(keys.feed_latest(call.customer))
            .key(keys.pending(call.customer))
            .arg(keys.feed_channel(call.customer))
            .arg(call.length)
            .arg(call.now.0)
            .arg(millis(call.keep))
            .arg(unpend)
            .arg(score)
            .arg(millis(call.retention))
            .arg(millis(call.housekeeping));
        for entry in call.entries {
            invocation
                .arg(entry.event.as_str())
                .arg(entry.access.as_str())
                .arg(entry.status.as_str())
                .arg(entry.attempt)
                .arg(entry.at.0)
                .arg(entry.audit_id);
        }
        let id: String = self.run(&invocation).await?;
        Ok((!id.is_empty()).then_some(id))
    }

    pub(super) async fn feed_read(&self, call: FeedSince<'_>) -> Result<FeedRead, StoreError> {
        let mut invocation = self.scripts.feed_since.key(self.keys().feed(call.customer));
        invocation.arg(call.after).arg(call.count);
        let reply: Vec<String> = self.run(&invocation).await?;
        parse_feed_read(reply).map_err(|problem| {
            StoreError::malformed_in(format!("the feed of customer {}", call.customer), problem)
        })
    }
}

/// `{ 'gap', head }` or `{ 'ok', head, id, event, access, status, attempt,
/// at, id, ... }`.
fn parse_feed_read(reply: Vec<String>) -> Result<FeedRead, String> {
    let mut reply = reply.into_iter();
    let (Some(outcome), Some(head)) = (reply.next(), reply.next()) else {
        return Err("the feed script replied without a head".to_owned());
    };
    let rest: Vec<String> = reply.collect();
    match outcome.as_str() {
        "gap" if rest.is_empty() => Ok(FeedRead::Gap { head }),
        "ok" if rest.len().is_multiple_of(6) => {
            let entries = rest
                .chunks_exact(6)
                .map(|entry| parse_feed_entry(entry).ok_or_else(|| format!("entry {}", entry[0])))
                .collect::<Result<_, _>>()?;
            Ok(FeedRead::Entries { head, entries })
        }
        other => Err(format!(
            "unexpected feed reply `{other}` with {} values",
            rest.len()
        )),
    }
}

fn parse_feed_entry(entry: &[String]) -> Option<FeedEntry> {
    let [id, event, access, status, attempt, at] = entry else {
        return None;
    };
    Some(FeedEntry {
        id: id.clone(),
        event: FeedEvent::parse(event)?,
        access: AccessId::parse(access.as_str()).ok()?,
        status: Status::parse(status)?,
        attempt: attempt.parse().ok()?,
        at: UnixMillis(at.parse().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn a_feed_reply_names_its_outcome_or_is_malformed() {
        assert!(matches!(
            parse_feed_read(strings(&["gap", "5-0"])),
            Ok(FeedRead::Gap { head }) if head == "5-0"
        ));
        let read = parse_feed_read(strings(&[
            "ok", "7-0", "6-0", "status", "001", "ok", "2", "1700",
        ]));
        let Ok(FeedRead::Entries { head, entries }) = read else {
            panic!("not entries: {read:?}");
        };
        assert_eq!(head, "7-0");
        assert_eq!(entries[0].status, Status::Ok);
        assert!(parse_feed_read(strings(&["okay", "7-0"])).is_err());
        assert!(parse_feed_read(strings(&["ok", "7-0", "6-0"])).is_err());
        assert!(
            parse_feed_read(strings(&[
                "ok", "7-0", "6-0", "news", "001", "ok", "2", "1700"
            ]))
            .is_err()
        );
    }
}
