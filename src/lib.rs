//! twofa-bridge relays a bank's second-factor challenge from a scraper to a
//! customer, and the customer's token back, through Redis.
//!
//! The map, in the order data flows:
//!
//! - [`http`]: the axum gateway. Handlers validate input into [`model`]
//!   types, call one [`store`] or [`wait`] function, and shape the answer.
//!   Every failure becomes an HTTP status in one place, `http::error`. It
//!   also serves the demo front end (`src/http/demo/`), compiled in.
//! - [`model`]: validated ids and texts, statuses, the access object. A value
//!   is checked once, at the edge; after that its type is the proof.
//! - [`store`]: everything that speaks Redis commands. Each lifecycle step is
//!   one Lua script (`store/scripts/*.lua`) on one access's keys; every key
//!   name is built in `store::keys`.
//! - [`wait`]: the shared pub/sub subscriber and the in-process fan-out that
//!   wakes long polls. A message is only a hint; the waiter re-reads the
//!   store. On a cluster it subscribes each channel on its shard.
//! - [`redis_target`]: where Redis is, one server or a cluster, and the
//!   command connection that replaces itself when it stops answering.
//! - [`feed`]: a customer's live feed as one front end follows it, woken by
//!   the same subscriber, reading the feed stream from its own position.
//! - [`auth`]: API keys (kept as SHA-256 digests) and their roles; the
//!   check itself runs as a route layer in `http`, before any extractor.
//! - [`app`]: startup and the expiry sweeper; [`config`] and [`cli`]: the
//!   command line; [`redis_server`]: a private redis-server for tests and
//!   first runs.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod model;
pub mod redis_server;
pub mod redis_target;
pub mod store;
pub mod wait;
