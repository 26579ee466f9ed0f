//! The integration tests, built as one binary (faster to link on 2 cores).
//! Each test starts its own redis-server on a free port; none uses 6379.

mod support;

mod audit;
mod bad_input;
mod browser;
mod cli;
mod client;
mod cluster;
mod concurrency;
mod demo;
mod deploy;
mod expiry;
mod faults;
mod feed;
mod feed_order;
mod fuzz;
mod indexes;
mod kinds;
mod lifecycle;
mod network;
mod openapi;
mod operations;
mod resilience;
mod secrets;
mod security;
mod startup;
mod story;
mod waiting;
