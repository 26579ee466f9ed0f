//! Where Redis is: one server (`redis://`, `rediss://`, `unix://`), or a
//! Redis Cluster named by its seed nodes
//! (`redis+cluster://[user:password@]host:port,host:port,...`, or
//! `rediss+cluster://` for TLS). The gateway discovers the other nodes, and
//! follows resharding and failover, from the seeds.
//!
//! Both kinds give the store one [`Connection`], which sends every command to
//! the node that owns its keys. Every step's keys share one hash tag, so on a
//! cluster each step is still one atomic script on one node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Debug, Clone)]
pub enum Target {
    Single(Box<redis::Client>),
    /// The seed nodes' URLs, each `redis://` or `rediss://`.
    Cluster(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Url(String),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let Some((scheme, rest)) = url.split_once("+cluster://") else {
            return Ok(Target::Single(Box::new(redis::Client::open(url)?)));
        };
        if !matches!(scheme, "redis" | "rediss") {
            return Err(TargetError::Url(format!(
                "a cluster URL starts with redis+cluster:// or rediss+cluster://, not {scheme}+cluster://"
            )));
        }
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (format!("{credentials}@"), rest),
            None => (String::new(), rest),
        };
        let (nodes, tail) = match rest.find(['/', '?']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let seeds: Vec<String> = nodes
            .split(',')
            .map(|node| format!("{scheme}://{credentials}{node}{tail}"))
            .collect();
        if nodes.is_empty() || nodes.split(',').any(str::is_empty) {
            return Err(TargetError::Url(
                "a cluster URL names its seed nodes as host:port,host:port,...".to_owned(),
            ));
        }
        // Each seed must be a URL the redis crate accepts on its own.
        for seed in &seeds {
            redis::Client::open(seed.as_str())?;
        }
        Ok(Target::Cluster(seeds))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// A connection for commands, which reconnects on its own. Each call
    /// waits at most `timeout` for its answer.
    pub async fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        match self {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager =
                    ConnectionManager::new_with_config((**client).clone(), config).await?;
                Ok(Connection::Single(manager))
            }
            Target::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?;
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// A command connection that replaces itself when a call times out. The
/// redis crate reconnects after an error, but not after a timeout, and a
/// connection that stopped answering (half-open, after a network cut) is
/// never cured by waiting: every call on it would time out for good.
#[derive(Clone)]
pub struct Link {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    target: Target,
    timeout: Duration,
    current: RwLock<Connection>,
    replacing: AtomicBool,
}

impl Link {
    pub async fn open(target: &Target, timeout: Duration) -> RedisResult<Link> {
        let current = target.connect(timeout).await?;
        Ok(Link {
            inner: Arc::new(LinkInner {
                target: target.clone(),
                timeout,
                current: RwLock::new(current),
                replacing: AtomicBool::new(false),
            }),
        })
    }

    /// The connection to use now.
    pub fn get(&self) -> Connection {
        // Never left half-written: the lock only guards an assignment.
        let current = self.inner.current.read().unwrap_or_else(|e| e.into_inner());
        current.clone()
    }

    /// Connects anew in the background, one attempt at a time, and swaps
    /// the new connection in once it answers. Calls in flight finish (or
    /// time out) on the old one.
    pub fn replace(&self) {
        if self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let connect = inner.target.connect(inner.timeout);
            match tokio::time::timeout(inner.timeout, connect).await {
                Ok(Ok(fresh)) => {
                    *inner.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                    tracing::info!("replaced the Redis connection after a call timed out");
                }
                Ok(Err(error)) => {
                    tracing::debug!(%error, "could not replace the Redis connection yet");
                }
                Err(_) => tracing::debug!("could not replace the Redis connection yet: timed out"),
            }
            inner.replacing.store(false, Ordering::Release);
        });
    }
}

/// A command connection to a single Redis or to a cluster.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The URL with its password replaced by `***`, fit for logs and errors.
pub fn redacted_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("+cluster://") {
        return match rest.rsplit_once('@') {
            Some((credentials, nodes)) => {
                let user = credentials.split_once(':').map_or("", |(user, _)| user);
                format!("{scheme}+cluster://{user}:***@{nodes}")
            }
            None => url.to_owned(),
        };
    }
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Only fails for URLs that cannot have a password at all.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_url_names_every_seed_with_the_credentials_and_options() {
        let Ok(Target::Cluster(seeds)) =
            Target::parse("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/?protocol=2")
        else {
            panic!("a cluster target");
        };
        assert_eq!(
            seeds,
            [
                "redis://app:s3cret@10.0.0.1:7000/?protocol=2",
                "redis://app:s3cret@10.0.0.2:7001/?protocol=2"
            ]
        );
    }

    #[test]
    fn a_plain_url_is_one_server_and_bad_cluster_urls_are_refused() {
        assert!(
            !Target::parse("redis://127.0.0.1:6379")
                .expect("valid")
                .is_cluster()
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://h1:1,,h2:2",
            "http+cluster://h1:1",
            "redis+cluster://h1:notaport",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn passwords_are_hidden_in_both_kinds_of_url() {
        assert_eq!(
            redacted_url("redis+cluster://app:s3cret@h1:1,h2:2"),
            "redis+cluster://app:***@h1:1,h2:2"
        );
        assert_eq!(
            redacted_url("redis://user:s3cret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redacted_url("redis://host:6379"), "redis://host:6379");
    }
}
