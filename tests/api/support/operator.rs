//! The operator's side: Redis as redis-cli shows it, read straight from
//! Redis rather than through the API, and a raw-Redis scraper's BLPOP.

use std::collections::{BTreeMap, HashMap};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;

use twofa_bridge::redis_server::RedisServer;

use super::{PATIENCE, TestApp, redis_connection};

/// The Prometheus text a gateway at `base` serves.
pub async fn metrics_of(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("the metrics' text")
}

impl TestApp {
    /// A section of `INFO`, as redis-cli shows it.
    pub async fn redis_info(&self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.conn.clone())
            .await
            .expect("INFO")
    }

    /// Redis's `used_memory`, in bytes.
    pub async fn used_memory(&self) -> u64 {
        let info = self.redis_info("memory").await;
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("used_memory")
    }

    pub async fn hash(&self, access: &str) -> HashMap<String, String> {
        let mut conn = self.conn.clone();
        conn.hgetall(format!("2fa:access:{{{access}}}"))
            .await
            .expect("HGETALL")
    }

    /// The keyspace but the per-access submission counters: what a refused
    /// step must leave as it was. A token submission counts against its
    /// access's rate limit, whatever becomes of it.
    pub async fn state(&self) -> BTreeMap<String, String> {
        let mut keyspace = self.keyspace().await;
        keyspace.retain(|key, _| !key.ends_with(":submitted"));
        keyspace
    }

    /// Every key with its type, content and whether it has a TTL: two equal
    /// snapshots mean nothing changed.
    pub async fn keyspace(&self) -> BTreeMap<String, String> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
        let mut snapshot = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            let content = match kind.as_str() {
                "hash" => {
                    let fields: BTreeMap<String, String> =
                        conn.hgetall(&key).await.expect("HGETALL");
                    format!("{fields:?}")
                }
                "list" => {
                    let items: Vec<String> = conn.lrange(&key, 0, -1).await.expect("LRANGE");
                    format!("{items:?}")
                }
                "zset" => {
                    let items: Vec<(String, f64)> =
                        conn.zrange_withscores(&key, 0, -1).await.expect("ZRANGE");
                    format!("{items:?}")
                }
                "stream" => {
                    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
                        .arg(&key)
                        .arg("-")
                        .arg("+")
                        .query_async(&mut conn)
                        .await
                        .expect("XRANGE");
                    format!("{entries:?}")
                }
                other => format!("unexpected type {other}"),
            };
            let ttl: i64 = conn.pttl(&key).await.expect("PTTL");
            snapshot.insert(key, format!("{kind} ttl={} {content}", ttl > 0));
        }
        snapshot
    }

    /// A stream's entries, oldest first, as (id, fields), the way XRANGE
    /// shows them to an operator.
    pub async fn stream(&self, key: &str) -> Vec<(String, HashMap<String, String>)> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        entries
            .into_iter()
            .map(|(id, flat)| {
                let fields = flat
                    .chunks(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect();
                (id, fields)
            })
            .collect()
    }

    /// How many connections are subscribed to the access's channel.
    pub async fn subscribers(&self, access: &str) -> usize {
        let mut conn = self.conn.clone();
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("2fa:access:{{{access}}}:changed"))
            .query_async(&mut conn)
            .await
            .expect("PUBSUB NUMSUB");
        count
    }

    /// Makes Redis hold every client's commands for a while, like a stalled
    /// server or a half-open connection; it resumes by itself.
    pub async fn pause_redis(&self, millis: u64) {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(millis)
            .query_async(&mut conn)
            .await
            .expect("CLIENT PAUSE");
    }

    /// A pub/sub connection that hears every access's status changes.
    pub async fn redis_pubsub(&self) -> redis::aio::PubSub {
        let client = redis::Client::open(self.redis.url()).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub connection");
        pubsub
            .psubscribe("2fa:access:*:changed")
            .await
            .expect("PSUBSCRIBE");
        pubsub
    }

    /// A connection of its own for blocking commands (BLPOP), with no
    /// response timeout.
    pub async fn blocking_connection(&self) -> MultiplexedConnection {
        let client = redis::Client::open(self.redis.url()).expect("redis url");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("blocking connection")
    }

    /// A raw-Redis scraper: BLPOP on the wake list in the background, giving
    /// the status it was woken with.
    pub async fn spawn_blpop(&self, access: &str) -> JoinHandle<String> {
        let mut blocking = self.blocking_connection().await;
        let list = format!("2fa:access:{{{access}}}:wake");
        tokio::spawn(async move {
            let (_, status): (String, String) = blocking
                .blpop(list, PATIENCE.as_secs_f64())
                .await
                .expect("BLPOP woke before its timeout");
            status
        })
    }

    /// Until some client (a raw-Redis scraper) is blocked in BLPOP.
    pub async fn until_blocked_in_blpop(&self) {
        self.until("a scraper is blocked in BLPOP", || async {
            self.redis_clients().await.contains("cmd=blpop")
        })
        .await;
    }

    /// Every connection Redis has, one line each, as CLIENT LIST shows them.
    pub async fn redis_clients(&self) -> String {
        let mut conn = self.conn.clone();
        redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .expect("CLIENT LIST")
    }
}

/// One step of an access's audit trail, as its stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailStep {
    /// `challenge`, or the status moved to.
    pub kind: String,
    pub attempt: u32,
    pub by: String,
}

/// The audit trails of these accesses, oldest step first, read straight
/// from their streams in one round trip.
pub async fn trails(conn: &mut MultiplexedConnection, accesses: &[String]) -> Vec<Vec<TrailStep>> {
    let mut pipe = redis::pipe();
    for access in accesses {
        pipe.cmd("XRANGE")
            .arg(format!("2fa:access:{{{access}}}:events"))
            .arg("-")
            .arg("+");
    }
    let streams: Vec<Vec<(String, HashMap<String, String>)>> =
        pipe.query_async(conn).await.expect("XRANGE of the trails");
    streams
        .into_iter()
        .map(|entries| {
            entries
                .into_iter()
                .map(|(id, fields)| TrailStep {
                    kind: fields.get("type").cloned().unwrap_or_default(),
                    attempt: fields
                        .get("attempt")
                        .and_then(|a| a.parse().ok())
                        .unwrap_or_else(|| panic!("trail entry {id} without an attempt")),
                    by: fields.get("by").cloned().unwrap_or_default(),
                })
                .collect()
        })
        .collect()
}

/// A first-attempt step of a trail, made by `by`.
pub fn step(kind: &str, by: &str) -> TrailStep {
    TrailStep {
        kind: kind.to_owned(),
        attempt: 1,
        by: by.to_owned(),
    }
}

/// The accesses' hashes as Redis holds them, read on a new connection.
pub async fn stored_hashes(
    redis: &RedisServer,
    accesses: &[String],
) -> Vec<HashMap<String, String>> {
    let mut conn = redis_connection(redis).await;
    let mut pipe = redis::pipe();
    for access in accesses {
        pipe.hgetall(format!("2fa:access:{{{access}}}"));
    }
    pipe.query_async(&mut conn).await.expect("HGETALL")
}

/// A field of an access's hash, which must be there: a missing field fails
/// the test with the hash shown, rather than reading as `""` and letting two
/// missing fields compare equal.
pub fn field<'a>(hash: &'a HashMap<String, String>, name: &str) -> &'a str {
    hash.get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no field {name} in {hash:?}"))
}
