//! The load itself: waiting scrapers, pollers, token submitters at a rate,
//! full cycles, and the Redis floor they are compared with.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::{Method, StatusCode};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use twofa_bridge::model::AccessId;
use twofa_bridge::store::keys::AccessKeys;
use twofa_bridge::store::{Keys, Prefix};

use crate::Result;
use crate::client::{Conn, calls};
use crate::report::Latencies;

/// Connections that create challenges and submit tokens.
pub const POOL: usize = 32;
/// Connections opening at once, so the gateway's accept backlog keeps up.
pub const CONNECTING: usize = 256;
/// A long poll's timeout: longer than any scenario.
pub const WAIT_SECS: u64 = 3600;
/// Concurrent scrapers in the throughput scenario.
pub const SCRAPERS: usize = 64;

/// Sends `n` requests over `conns` keep-alive connections, each made by
/// `request(i)`, and fails on any answer but the expected one.
pub async fn for_each(
    server: std::net::SocketAddr,
    conns: usize,
    n: usize,
    request: impl Fn(usize) -> (Method, String, Option<String>, StatusCode) + Send + Sync + 'static,
) -> Result<()> {
    let request = Arc::new(request);
    spread(conns, n, |k, calls| {
        let request = request.clone();
        async move {
            let mut conn = Conn::open(server, k).await?;
            while let Some(i) = calls.next() {
                let (method, path, body, expected) = request(i);
                conn.expect(expected, method, &path, body).await?;
            }
            Ok(())
        }
    })
    .await
}

/// Answers each challenge in `ids` once, `POST /v1/tokens` from `SCRAPERS`
/// connections.
pub async fn submit_each(server: std::net::SocketAddr, ids: Arc<Vec<String>>) -> Result<()> {
    let n = ids.len();
    for_each(server, SCRAPERS, n, move |i| {
        (
            Method::POST,
            "/v1/tokens".to_owned(),
            Some(calls::token(&ids[i])),
            StatusCode::OK,
        )
    })
    .await
}

/// The essential writes of a token submission, in one script: what the
/// gateway's Redis work per submission is compared with in table 3b.
const FLOOR_SCRIPT: &str = include_str!("floor.lua");

/// The floor of a submission, straight to Redis: `floor.lua`, loaded.
pub struct Floor {
    conn: MultiplexedConnection,
    script: redis::Script,
    keys: Keys,
}

impl Floor {
    /// Connects and loads the script, so that the calls measured later are
    /// EVALSHAs only.
    pub async fn load(url: &str) -> Result<Floor> {
        let mut conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        let script = redis::Script::new(FLOOR_SCRIPT);
        script.prepare_invoke().load_async(&mut conn).await?;
        Ok(Floor {
            conn,
            script,
            keys: Keys::new(Prefix::parse("2fa")?),
        })
    }

    /// `n` challenges for the floor to answer, as the gateway's are when a
    /// token comes: a hash that exists, and an audit trail with an entry.
    /// Writing to keys that exist costs Redis less than creating them.
    pub async fn post(&self, n: usize) -> Result<()> {
        self.each(n, |access| {
            let mut post = redis::pipe();
            post.hset_multiple(&access.hash, &[("status", "need"), ("attempt", "1")])
                .xadd(
                    &access.events,
                    "*",
                    &[("type", "need"), ("attempt", "1"), ("by", "backend")],
                );
            post
        })
        .await
    }

    /// `n` calls of the script, one per challenge `post` made. Each is a
    /// pipeline of one, which is sent as that one command alone.
    pub async fn submit(&self, n: usize) -> Result<()> {
        let hash = self.script.get_hash().to_owned();
        self.each(n, move |access| {
            let mut submit = redis::pipe();
            submit
                .cmd("EVALSHA")
                .arg(&hash)
                .arg(3)
                .arg(&access.hash)
                .arg(&access.wake)
                .arg(&access.events)
                .arg(&access.changed)
                .arg("987654");
            submit
        })
        .await
    }

    /// Sends `call(access)` for `n` accesses of their own (`floor-<i>`, so
    /// as not to meet the gateway's), from `SCRAPERS` tasks sharing one
    /// multiplexed connection, as the gateway's requests share its one.
    async fn each(
        &self,
        n: usize,
        call: impl Fn(&AccessKeys) -> redis::Pipeline + Send + Sync + 'static,
    ) -> Result<()> {
        let call = Arc::new(call);
        spread(SCRAPERS, n, |_, calls| {
            let (call, keys, mut conn) = (call.clone(), self.keys.clone(), self.conn.clone());
            async move {
                while let Some(i) = calls.next() {
                    let access = keys.access(&AccessId::parse(format!("floor-{i}"))?);
                    call(&access).query_async::<()>(&mut conn).await?;
                }
                Ok(())
            }
        })
        .await
    }
}

/// The indices `0..n`, shared by tasks that each take the next one left.
#[derive(Clone)]
struct Calls {
    next: Arc<AtomicUsize>,
    n: usize,
}

impl Calls {
    fn next(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.n).then_some(i)
    }
}

/// Makes `n` calls from `tasks` concurrent tasks, each `task(k, calls)`,
/// which makes calls for as long as `calls` has any left.
async fn spread<F>(tasks: usize, n: usize, task: impl Fn(usize, Calls) -> F) -> Result<()>
where
    F: Future<Output = Result<()>> + Send + 'static,
{
    let calls = Calls {
        next: Arc::new(AtomicUsize::new(0)),
        n,
    };
    let tasks: Vec<JoinHandle<Result<()>>> = (0..tasks.min(n.max(1)))
        .map(|k| tokio::spawn(task(k, calls.clone())))
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Opens the `i`th connection, no more than `CONNECTING` at once.
async fn open_limited(
    connecting: &Semaphore,
    server: std::net::SocketAddr,
    i: usize,
) -> Result<Conn> {
    let _permit = connecting.acquire().await?;
    Conn::open(server, i).await
}

/// One long poll per id, each on its own connection, re-polling on 204;
/// each task ends with the moment its token arrived.
pub fn spawn_waiters_from(
    server: std::net::SocketAddr,
    ids: Arc<Vec<String>>,
    offset: usize,
) -> Vec<JoinHandle<Result<Instant>>> {
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    (0..ids.len())
        .map(|i| {
            let (ids, connecting) = (ids.clone(), connecting.clone());
            tokio::spawn(async move {
                let mut conn = open_limited(&connecting, server, POOL + offset + i).await?;
                let path = calls::wait_path(&ids[i], WAIT_SECS);
                loop {
                    let (status, body) = conn.send(Method::GET, &path, None).await?;
                    match status {
                        StatusCode::OK => return Ok(Instant::now()),
                        StatusCode::NO_CONTENT => continue,
                        other => {
                            let body = String::from_utf8_lossy(&body);
                            return Err(format!("a long poll answered {other}: {body}").into());
                        }
                    }
                }
            })
        })
        .collect()
}

/// The old design: each access read once a second, phases spread evenly,
/// until it shows `token_received`.
pub fn spawn_pollers(
    server: std::net::SocketAddr,
    ids: &Arc<Vec<String>>,
) -> Vec<JoinHandle<Result<Instant>>> {
    let connecting = Arc::new(Semaphore::new(CONNECTING));
    let n = ids.len();
    (0..n)
        .map(|i| {
            let (ids, connecting) = (ids.clone(), connecting.clone());
            tokio::spawn(async move {
                let mut conn = open_limited(&connecting, server, POOL + i).await?;
                let path = format!("/v1/accesses/{}", ids[i]);
                let phase = Duration::from_secs_f64(i as f64 / n as f64);
                let mut next = Instant::now() + phase;
                loop {
                    tokio::time::sleep_until(next).await;
                    let body = conn
                        .expect(StatusCode::OK, Method::GET, &path, None)
                        .await?;
                    let access: serde_json::Value = serde_json::from_slice(&body)?;
                    if access["status"] == "token_received" {
                        return Ok(Instant::now());
                    }
                    next += Duration::from_secs(1);
                }
            })
        })
        .collect()
}

/// Which submissions a submitter sent, and when.
type Sent = Vec<(usize, Instant)>;

/// Submits the first `samples` ids' tokens at a steady `rate`, from a few
/// connections, and returns when each was sent.
pub async fn submit_at_rate(
    server: std::net::SocketAddr,
    ids: &Arc<Vec<String>>,
    samples: usize,
    rate: usize,
) -> Result<Vec<Instant>> {
    let submitters = 16.min(samples);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(10);
    let tasks: Vec<JoinHandle<Result<Sent>>> = (0..submitters)
        .map(|k| {
            let ids = ids.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(server, 60_000 - 1 - k).await?;
                let mut sent = Vec::new();
                for i in (k..samples).step_by(submitters) {
                    tokio::time::sleep_until(start + interval * i as u32).await;
                    let at = Instant::now();
                    let body = calls::token(&ids[i]);
                    conn.expect(StatusCode::OK, Method::POST, "/v1/tokens", Some(body))
                        .await?;
                    sent.push((i, at));
                }
                Ok(sent)
            })
        })
        .collect();
    let mut sent = vec![start; samples];
    for task in tasks {
        for (i, at) in task.await?? {
            sent[i] = at;
        }
    }
    Ok(sent)
}

/// Each sampled waiter's latency from its token's submission; the others
/// are stopped.
pub async fn received_after(
    waiters: Vec<JoinHandle<Result<Instant>>>,
    sent: &[Instant],
) -> Result<Latencies> {
    let mut latencies = Vec::with_capacity(sent.len());
    for (i, waiter) in waiters.into_iter().enumerate() {
        match sent.get(i) {
            Some(at) => {
                let received = tokio::time::timeout(Duration::from_secs(60), waiter)
                    .await
                    .map_err(|_| "a waiter never got its token")???;
                latencies.push(received.saturating_duration_since(*at));
            }
            None => waiter.abort(),
        }
    }
    Ok(Latencies::new(latencies))
}

/// Scrapers in a loop of whole cycles for `window`.
pub async fn full_cycles(
    server: std::net::SocketAddr,
    window: Duration,
) -> Result<(usize, Duration)> {
    let started = Instant::now();
    let deadline = started + window;
    let tasks: Vec<JoinHandle<Result<usize>>> = (0..SCRAPERS)
        .map(|k| {
            tokio::spawn(async move {
                let mut conn = Conn::open(server, k).await?;
                let customer = format!("cycle-{k}");
                let mut cycles = 0;
                while Instant::now() < deadline {
                    let access = format!("cycle-{k}-{cycles}");
                    let body = Some(calls::challenge(&customer));
                    conn.expect(
                        StatusCode::CREATED,
                        Method::PUT,
                        &calls::challenge_path(&access),
                        body,
                    )
                    .await?;
                    let list = format!("/v1/customers/{customer}/challenges");
                    conn.expect(StatusCode::OK, Method::GET, &list, None)
                        .await?;
                    let token = Some(calls::token(&access));
                    conn.expect(StatusCode::OK, Method::POST, "/v1/tokens", token)
                        .await?;
                    conn.expect(
                        StatusCode::OK,
                        Method::GET,
                        &calls::wait_path(&access, 5),
                        None,
                    )
                    .await?;
                    let ok = Some(r#"{"status":"ok"}"#.to_owned());
                    conn.expect(
                        StatusCode::OK,
                        Method::PUT,
                        &format!("/v1/accesses/{access}/status"),
                        ok,
                    )
                    .await?;
                    cycles += 1;
                }
                Ok(cycles)
            })
        })
        .collect();
    let mut cycles = 0;
    for task in tasks {
        cycles += task.await??;
    }
    Ok((cycles, started.elapsed()))
}

/// The floor: `waiters` connections blocked in BLPOP, each woken by an
/// RPUSH from another connection at a steady `rate`, in rounds until
/// `samples` wake-ups are timed.
pub async fn redis_floor(
    url: &str,
    waiters: usize,
    samples: usize,
    rate: usize,
) -> Result<Latencies> {
    let client = redis::Client::open(url)?;
    let blocking = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conns = Vec::with_capacity(waiters);
    for _ in 0..waiters {
        conns.push(
            client
                .get_multiplexed_async_connection_with_config(&blocking)
                .await?,
        );
    }
    let mut pusher = client.get_multiplexed_async_connection().await?;
    let mut admin = client.get_multiplexed_async_connection().await?;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies = Vec::with_capacity(samples);
    while latencies.len() < samples {
        let tasks: Vec<JoinHandle<Result<(MultiplexedConnection, Instant)>>> = conns
            .drain(..)
            .enumerate()
            .map(|(i, mut conn)| {
                tokio::spawn(async move {
                    let _: (String, String) = redis::cmd("BLPOP")
                        .arg(format!("floor:{i}"))
                        .arg(0)
                        .query_async(&mut conn)
                        .await?;
                    Ok((conn, Instant::now()))
                })
            })
            .collect();
        until_blocked(&mut admin, waiters).await?;
        let start = Instant::now();
        let mut sent = Vec::with_capacity(waiters);
        for i in 0..waiters {
            tokio::time::sleep_until(start + interval * i as u32).await;
            sent.push(Instant::now());
            redis::cmd("RPUSH")
                .arg(format!("floor:{i}"))
                .arg("x")
                .query_async::<()>(&mut pusher)
                .await?;
        }
        for (task, at) in tasks.into_iter().zip(sent) {
            let (conn, received) = task.await??;
            latencies.push(received.saturating_duration_since(at));
            conns.push(conn);
        }
    }
    Ok(Latencies::new(latencies))
}

async fn until_blocked(admin: &mut MultiplexedConnection, n: usize) -> Result<()> {
    loop {
        let info: String = redis::cmd("INFO").arg("clients").query_async(admin).await?;
        let blocked = info
            .lines()
            .find_map(|line| line.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .ok_or("no blocked_clients in INFO clients")?;
        if blocked >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
