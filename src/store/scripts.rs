//! The Lua scripts, one file per step, compiled into the binary.
//!
//! Shared helpers live in `clock.lua` and `access.lua` and are prepended at
//! compile time, so every script is self-contained on the server and is run
//! by its SHA (EVALSHA, falling back to EVAL once after a Redis restart).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($($part:literal),+) => {
        Script::new(concat!($(include_str!(concat!("scripts/", $part, ".lua")), "\n"),+))
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

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    post_challenge: script!("clock", "access", "post_challenge"),
    send_question: script!("clock", "access", "send_question"),
    submit_token: script!("clock", "access", "submit_token"),
    report: script!("clock", "access", "report"),
    cancel: script!("clock", "access", "cancel"),
    expire: script!("clock", "access", "expire"),
    read: script!("clock", "access", "read"),
    index_add: script!("clock", "index_add"),
    index_remove: script!("index_remove"),
    expiring_add: script!("expiring_add"),
    expiring_postpone: script!("expiring_postpone"),
    due: script!("clock", "due"),
    feed_add: script!("clock", "stream_ids", "feed_add"),
    feed_since: script!("stream_ids", "feed_since"),
});
