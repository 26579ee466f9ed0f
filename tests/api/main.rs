//! The integration tests, built as one binary (faster to link on 2 cores).
//! Each test starts its own redis-server on a free port; none uses 6379.

mod support;

mod audit;
mod bad_input;
mod browser;
mod chaos;
mod cli;
mod client;
mod cluster;
mod concurrency;
mod cors;
mod demo;
mod deploy;
mod expiry;
mod feed;
mod feed_order;
mod footprint;
mod fuzz;
mod gateway_crash;
mod indexes;
mod kinds;
mod lifecycle;
mod network;
mod openapi;
mod operations;
mod outbox;
mod redis_full;
mod redis_restart;
mod resilience;
mod rolling_restart;
mod secrets;
mod security;
mod sessions;
mod shutdown;
mod startup;
mod story;
mod waiting;
mod webhooks;
