//! A Redis of its own for each test, as redis-rs's own tests do it: a
//! `redis-server` on a free loopback port, killed when its last handle drops.

use std::sync::{Arc, Once};

use redis::aio::MultiplexedConnection;
use twofa_bridge::redis_server::RedisServer;

/// A Redis of its own, with its defaults.
pub fn start_redis() -> Arc<RedisServer> {
    start_redis_with(&[])
}

/// A Redis of its own with extra `redis-server` arguments.
pub fn start_redis_with(args: &[&str]) -> Arc<RedisServer> {
    static PROCESS_SETUP: Once = Once::new();
    PROCESS_SETUP.call_once(|| {
        // Hundreds of concurrent long polls need more descriptors than some
        // machines' default soft limit of 1024.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        // The tests' HTTP clients need a TLS provider, which an in-process
        // gateway installs too, but not every test runs one, nor first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Arc::new(RedisServer::start_with(args).unwrap_or_else(|e| panic!("{e}")))
}

/// A new connection to this Redis: one opened before a Redis restart does
/// not survive it.
pub async fn redis_connection(redis: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("a connection to Redis: {e}\n{}", redis.log()))
}
