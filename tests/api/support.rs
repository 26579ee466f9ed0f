//! A real redis-server per test and the gateway in-process on port 0, with
//! helpers named after what scrapers, TesBack and operators do.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use twofa_bridge::app::Application;
use twofa_bridge::config::Config;
use twofa_bridge::redis_server::RedisServer;
use twofa_bridge::wait::Waiters;

/// Long enough for any honest wait in these tests, short enough that a
/// broken one fails instead of hanging the suite.
pub const PATIENCE: Duration = Duration::from_secs(10);

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

/// One HTTP answer: status, headers, and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the status and that the body is our error JSON.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.error_code(), code, "{self:?}");
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without a message: {self:?}");
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub redis: Arc<RedisServer>,
    pub conn: MultiplexedConnection,
    pub waiters: Waiters,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// A gateway on a Redis of its own.
    pub async fn spawn() -> TestApp {
        Self::spawn_on(start_redis()).await
    }

    /// Another gateway on an existing Redis.
    pub async fn spawn_on(redis: Arc<RedisServer>) -> TestApp {
        Self::spawn_with(redis, |_| {}).await
    }

    pub async fn spawn_with(redis: Arc<RedisServer>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = Config::with_redis(redis.url());
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let app = Application::build(&config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start: {e}\n{}", redis.log()));
        let addr = app.local_addr().expect("bound address");
        let waiters = app.waiters();
        let server = tokio::spawn(app.run());
        let client = redis::Client::open(redis.url()).expect("redis url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("test connection to redis");
        TestApp {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            redis,
            conn,
            waiters,
            shutdown,
            server: Some(server),
        }
    }

    /// Stops the gateway as SIGTERM would, and waits until it has.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server exits cleanly");
        }
    }

    /// From now on, every request of the helpers carries this API key.
    pub fn authorize(&mut self, key: &str) {
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {key}").parse().expect("header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        self.http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
    }

    /// A request with exactly this Authorization header (or none), whatever
    /// `authorize` said.
    pub async fn send_as(
        &self,
        authorization: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    /// A request with a raw body and content type, for hostile input.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        into_reply(request.send().await.expect("request sent")).await
    }

    // The scraper's side.

    /// Posts the bank's question for this access and customer, at bank Real.
    pub async fn challenge(&self, access: &str, customer: &str, question: &str) -> Reply {
        let body =
            json!({"customer": customer, "finEntityName": "Real", "doubleAuthQuestion": question});
        self.challenge_with(access, body).await
    }

    pub async fn challenge_with(&self, access: &str, body: Value) -> Reply {
        let path = format!("/v1/accesses/{access}/challenge");
        self.send(Method::PUT, &path, Some(body)).await
    }

    pub async fn wait_token(&self, access: &str, timeout_secs: f64) -> Reply {
        let path = format!("/v1/accesses/{access}/token?timeout={timeout_secs}");
        self.send(Method::GET, &path, None).await
    }

    /// A scraper's long poll, running in the background; `settled` it.
    pub fn spawn_wait(&self, access: &str, timeout_secs: f64) -> JoinHandle<Reply> {
        let url = format!(
            "{}/v1/accesses/{access}/token?timeout={timeout_secs}",
            self.base
        );
        let http = self.http.clone();
        tokio::spawn(
            async move { into_reply(http.get(url).send().await.expect("long poll")).await },
        )
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

    pub async fn report(&self, access: &str, status: &str) -> Reply {
        let path = format!("/v1/accesses/{access}/status");
        self.send(Method::PUT, &path, Some(json!({ "status": status })))
            .await
    }

    pub async fn cancel(&self, access: &str) -> Reply {
        let path = format!("/v1/accesses/{access}/challenge");
        self.send(Method::DELETE, &path, None).await
    }

    // TesBack's side.

    pub async fn list(&self, customer: &str) -> Reply {
        let path = format!("/v1/customers/{customer}/challenges");
        self.send(Method::GET, &path, None).await
    }

    /// The customer's list items; the list call must succeed.
    pub async fn listed(&self, customer: &str) -> Vec<Value> {
        let reply = self.list(customer).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        reply.body.as_array().cloned().expect("a JSON array")
    }

    /// Opens the customer's live feed, as TesBack's front end would.
    pub async fn open_feed(&self, customer: &str, last_event_id: Option<&str>) -> FeedClient {
        let mut request = self
            .http
            .get(format!("{}/v1/customers/{customer}/events", self.base))
            .timeout(Duration::from_secs(600));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("feed opened");
        FeedClient {
            status: response.status(),
            response,
            buffer: String::new(),
            heartbeats: 0,
        }
    }

    /// Opens a feed, posts a challenge, and reads both its events: the
    /// challenge and the question it sent. Returns the feed and the id of
    /// the last event read.
    pub async fn follow_a_challenge(&self, customer: &str, access: &str) -> (FeedClient, String) {
        let mut feed = self.open_feed(customer, None).await;
        self.challenge(access, customer, "q").await;
        feed.expect("challenge", access, "question_sent").await;
        let seen = feed.expect("status", access, "question_sent").await;
        (feed, seen)
    }

    pub async fn submit(&self, access: &str, token: &str) -> Reply {
        let body = json!({ "access": access, "token": token });
        self.send(Method::POST, "/v1/tokens", Some(body)).await
    }

    pub async fn access(&self, access: &str) -> Reply {
        self.send(Method::GET, &format!("/v1/accesses/{access}"), None)
            .await
    }

    // The operator's side: Redis as redis-cli shows it.

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
        keyspace.retain(|key, _| !key.ends_with(":submissions"));
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

    /// Waits until `condition` holds, checking every few milliseconds: for
    /// states that no event announces, such as "the gateway has subscribed".
    pub async fn until<F, Fut>(&self, what: &str, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        eventually(what, condition).await;
    }

    /// Until `n` long polls have subscribed, read once, and wait for a hint.
    pub async fn until_waiting(&self, n: usize) {
        self.until(&format!("{n} long polls are waiting"), || async {
            self.waiters.waiting() == n
        })
        .await;
    }

    /// Until every waiter has left, and released its subscription.
    pub async fn until_no_waiters(&self) {
        self.until("every subscription is released", || async {
            self.waiters.channels() == 0
        })
        .await;
    }

    /// Until some client (a raw-Redis scraper) is blocked in BLPOP.
    pub async fn until_blocked_in_blpop(&self) {
        self.until("a scraper is blocked in BLPOP", || async {
            let mut conn = self.conn.clone();
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .expect("CLIENT LIST");
            clients.contains("cmd=blpop")
        })
        .await;
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
}

/// One Server-Sent Event, as a front end's EventSource sees it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: String,
    pub data: Value,
    pub retry: Option<String>,
}

/// A live feed held open, read event by event.
pub struct FeedClient {
    pub status: StatusCode,
    response: reqwest::Response,
    buffer: String,
    /// How many heartbeat comments have come so far.
    pub heartbeats: usize,
}

impl FeedClient {
    /// The next event with data or a retry hint, skipping heartbeats;
    /// `None` once the gateway closed the feed.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            match self.next_block().await? {
                Some(event) => return Some(event),
                None => self.heartbeats += 1,
            }
        }
    }

    /// The next event, which must be `event` about `access` in `status`;
    /// returns its id.
    pub async fn expect(&mut self, event: &str, access: &str, status: &str) -> String {
        let got = self.next_event().await.expect("the feed is open");
        assert_eq!(
            (
                got.event.as_str(),
                got.data["access"].as_str(),
                got.data["status"].as_str()
            ),
            (event, Some(access), Some(status)),
            "{got:?}"
        );
        got.id
    }

    /// The next heartbeat comment; false if the feed closed first.
    pub async fn next_heartbeat(&mut self) -> bool {
        match self.next_block().await {
            Some(Some(event)) => panic!("an event on an idle feed: {event:?}"),
            Some(None) => true,
            None => false,
        }
    }

    /// The next block: `Some(None)` for a heartbeat, `None` at the end.
    async fn next_block(&mut self) -> Option<Option<SseEvent>> {
        let read = async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    return Some(parse_sse(&block));
                }
                let chunk = self.response.chunk().await.expect("feed readable")?;
                self.buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("a feed event in time")
    }
}

/// One SSE block, read as the client library reads it; `None` for a
/// comment alone (a heartbeat).
fn parse_sse(block: &str) -> Option<SseEvent> {
    let block = twofa_bridge::client::parse_sse_block(block)?;
    let data = match block.data.as_str() {
        "" => Value::Null,
        json => serde_json::from_str(json).expect("JSON data"),
    };
    Some(SseEvent {
        event: block.event,
        id: block.id.unwrap_or_default(),
        data,
        retry: block.retry,
    })
}

/// Runs the binary on a free loopback port with this environment, expects
/// it to refuse to start, and returns what it printed on stderr.
pub fn refused_start(env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .env("TWOFA_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "it started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The real `twofa-bridge` binary, serving on a free port, with its log
/// (stderr) collected line by line. Killed when dropped.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: String,
    /// What it logged up to the line saying where it listens.
    pub log_before_listening: Vec<String>,
    log: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    pub fn serve(redis: &RedisServer, env: &[(&str, &str)]) -> Binary {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
            .env("REDIS_URL", redis.url())
            .env("TWOFA_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        // Built first, so that a panic below still kills the process.
        let mut binary = Binary {
            child,
            addr: String::new(),
            log_before_listening: Vec::new(),
            log,
        };
        binary.addr = loop {
            let line = binary
                .log
                .recv_timeout(PATIENCE)
                .expect("the gateway says where it listens");
            if let Some(addr) = listening_addr(&line) {
                break addr;
            }
            binary.log_before_listening.push(line);
        };
        binary
    }

    /// Every log line after the listening one, once the process has exited.
    pub fn log_after_exit(&mut self) -> Vec<String> {
        self.child.wait().expect("the gateway exits");
        self.log.iter().collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the gateway's "is listening" line, as text or as JSON.
fn listening_addr(line: &str) -> Option<String> {
    if let Some((_, addr)) = line.split_once("is listening addr=") {
        return Some(addr.trim().to_owned());
    }
    let object: Value = serde_json::from_str(line).ok()?;
    let fields = &object["fields"];
    (fields["message"] == "twofa-bridge is listening")
        .then(|| fields["addr"].as_str().map(str::to_owned))
        .flatten()
}

/// The result of a background task, which must come within `PATIENCE`.
pub async fn settled<T>(task: JoinHandle<T>) -> T {
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("settled in time")
        .expect("the task did not panic")
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let text = headers
        .get("content-type")
        .is_some_and(|ct| ct.as_bytes().starts_with(b"text/"));
    let body = if bytes.is_empty() {
        Value::Null
    } else if text {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: the body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Reply {
        status,
        headers,
        body,
    }
}

// For the fault tests: gateways on fixed ports that come back on the same
// address, and conditions awaited without a TestApp at hand.

/// A loopback port nobody listens on now (bound, then let go), for a
/// gateway that must be restarted on the same address.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Binary {
    /// The binary on this loopback port, so that it can be started again on
    /// the same address after it stopped.
    pub fn serve_on(redis: &RedisServer, port: u16, env: &[(&str, &str)]) -> Binary {
        let listen = format!("127.0.0.1:{port}");
        let mut with_listen = vec![("TWOFA_LISTEN", listen.as_str())];
        with_listen.extend_from_slice(env);
        let binary = Binary::serve(redis, &with_listen);
        assert_eq!(binary.addr, listen, "the gateway listens where it was told");
        binary
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, as an orchestrator sends at a deploy.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// The exit status, if the process exits within `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the gateway's status") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds: for
/// states that no event announces, in tests with or without a `TestApp`.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
