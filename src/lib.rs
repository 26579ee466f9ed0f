//! twofa-bridge relays a bank's second-factor challenge from a scraper to a
//! customer, and the customer's token back, through Redis.
//!
//! The map, in the order data flows. A request comes in through:
//!
//! - [`cli`] and [`config`]: the command line; with no subcommand it serves,
//!   through [`app`], which starts the gateway and its expiry sweeper;
//! - [`http`]: the axum gateway. Handlers validate input into [`model`]
//!   types, call one [`store`] or [`follow`] function, and shape the answer.
//!   Every failure becomes an HTTP status in one place, `http::error`; the
//!   credential check (an API key, or a customer session looked up in
//!   Redis) runs as a route layer, before any extractor. It also
//!   serves the demo front end (`src/http/demo/`), compiled in;
//! - [`auth`]: API keys (kept as SHA-256 digests), their roles, and which
//!   routes a customer session may call;
//! - [`model`]: validated ids and texts, kinds and answer rules, statuses,
//!   the access object and the audit trail. A value is checked once, at the
//!   edge; after that its type is the proof;
//! - [`store`]: everything that speaks Redis commands. Each lifecycle step is
//!   one Lua script on one access's keys, called through a typed wrapper,
//!   and records its moves in the access's outbox, which `store::relay`
//!   passes on to the feed and the webhook queues at least once; every key
//!   name is built in `store::keys`;
//! - [`redis_target`]: where Redis is, one server or a cluster, and the
//!   command connection that replaces itself when it stops answering.
//!
//! And back out, when Redis changes:
//!
//! - [`pubsub`]: the one shared subscriber per gateway, a registry of wanted
//!   channels over one connection (one per primary on a cluster). A message
//!   is only a hint;
//! - [`follow`]: what follows it, side by side: the scraper's long poll for
//!   a token, and a customer's live feed. Each re-reads the store on a hint;
//! - [`webhooks`]: where an endpoint may point, its signing secrets, the
//!   signature header, the retry schedule, and the delivery worker that
//!   leases each endpoint's lanes from Redis and posts their messages;
//! - [`metrics`]: Prometheus figures, counted from the moves each store step
//!   reports;
//! - [`fault`]: test-only fault points, compiled in only with the
//!   `fault-points` feature.
//!
//! Beside the gateway: [`client`], a typed client of its HTTP API (for Rust
//! scrapers, the CLI and the tests); [`commands`], the CLI's client
//! subcommands over it; and [`redis_server`], a private redis-server for
//! tests and first runs.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod fault;
pub mod follow;
pub mod http;
pub mod metrics;
pub mod model;
pub mod pubsub;
pub mod redis_server;
pub mod redis_target;
pub mod store;
pub mod webhooks;
