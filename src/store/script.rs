//! The Lua scripts, one file per step, compiled into the binary.
//!
//! Shared helpers live in `clock.lua` and `access.lua` and are prepended at
//! compile time, so every script is self-contained on the server and is run
//! by its SHA (EVALSHA, falling back to EVAL once after a Redis restart).
//!
//! Scripts that announce a change call `PUBLISH`, a name each set defines:
//! classic pub/sub on a single Redis, sharded pub/sub (`SPUBLISH`) on a
//! cluster, where a message then stays on the shard that owns its channel.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($publish:expr, $($part:literal),+) => {
        Script::new(&format!(
            "local PUBLISH = '{}'\n{}",
            $publish,
            concat!($(include_str!(concat!("scripts/", $part, ".lua")), "\n"),+)
        ))
    };
}

pub(super) struct Scripts {
    pub post_challenge: Script,
    pub send_question: Script,
    pub submit_token: Script,
    pub report: Script,
    pub cancel: Script,
    pub expire: Script,
    pub read: Script,
    pub index_add: Script,
    pub index_remove: Script,
    pub expiring_add: Script,
    pub expiring_postpone: Script,
    pub due: Script,
    pub feed_add: Script,
    pub feed_since: Script,
}

impl Scripts {
    pub fn all(&self) -> [&Script; 14] {
        [
            &self.post_challenge,
            &self.send_question,
            &self.submit_token,
            &self.report,
            &self.cancel,
            &self.expire,
            &self.read,
            &self.index_add,
            &self.index_remove,
            &self.expiring_add,
            &self.expiring_postpone,
            &self.due,
            &self.feed_add,
            &self.feed_since,
        ]
    }
}

/// The scripts for a single Redis: `PUBLISH`.
pub(super) static CLASSIC: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("PUBLISH"));

/// The scripts for a Redis Cluster: `SPUBLISH`.
pub(super) static SHARDED: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("SPUBLISH"));

impl Scripts {
    fn new(publish: &str) -> Scripts {
        Scripts {
            post_challenge: script!(publish, "clock", "access", "post_challenge"),
            send_question: script!(publish, "clock", "access", "send_question"),
            submit_token: script!(publish, "clock", "access", "submit_token"),
            report: script!(publish, "clock", "access", "report"),
            cancel: script!(publish, "clock", "access", "cancel"),
            expire: script!(publish, "clock", "access", "expire"),
            read: script!(publish, "clock", "access", "read"),
            index_add: script!(publish, "clock", "index_add"),
            index_remove: script!(publish, "index_remove"),
            expiring_add: script!(publish, "expiring_add"),
            expiring_postpone: script!(publish, "expiring_postpone"),
            due: script!(publish, "clock", "due"),
            feed_add: script!(publish, "clock", "stream_ids", "feed_add"),
            feed_since: script!(publish, "stream_ids", "feed_since"),
        }
    }
}
