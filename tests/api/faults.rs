//! Faults against real processes (issue 7): a gateway killed mid-wait,
//! Redis restarted under waiters, graceful deploys, and concurrency chaos.
//! Each shows that no token and no status is lost, and that every failure a
//! client sees is one a retry cures.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use twofa_bridge::client::{Client, ClientError};
use twofa_bridge::model::{BankName, ChallengeRequest, Outcome, Question, Status, Token};
use twofa_bridge::redis_server::{RedisServer, Stop};

use crate::support::{
    Binary, PATIENCE, Reply, TestApp, TrailStep, eventually, free_port, redis_connection, settled,
    start_redis, start_redis_with, trails,
};

/// How many scrapers wait at once in the kill and restart tests.
const WAITING_SCRAPERS: usize = 100;

fn code_challenge(customer: &str) -> ChallengeRequest {
    ChallengeRequest::code(
        customer,
        BankName::parse("Real").expect("a bank name"),
        Question::parse("Enter the code sent by SMS").expect("a question"),
    )
}

/// Every token names its access, so a token delivered to the wrong
/// scraper cannot go unnoticed.
fn token_for(access: &str) -> Token {
    Token::parse(format!("tok.{access}")).expect("a token")
}

fn step(kind: &str, by: &str) -> TrailStep {
    TrailStep {
        kind: kind.to_owned(),
        attempt: 1,
        by: by.to_owned(),
    }
}

/// True once every one of these accesses' channels has a subscriber: each
/// scraper's long poll is registered with a gateway.
async fn all_subscribed(conn: &MultiplexedConnection, accesses: &[String]) -> bool {
    let mut conn = conn.clone();
    let mut numsub = redis::cmd("PUBSUB");
    numsub.arg("NUMSUB");
    for access in accesses {
        numsub.arg(format!("2fa:access:{{{access}}}:changed"));
    }
    let counts: Vec<(String, usize)> = numsub.query_async(&mut conn).await.expect("PUBSUB NUMSUB");
    counts.iter().all(|(_, subscribers)| *subscribers > 0)
}

/// Many scrapers, each waiting through the client for its access's token.
fn spawn_waiting_scrapers(
    scraper: &Client,
    accesses: &[String],
    total: Duration,
) -> Vec<JoinHandle<Result<twofa_bridge::model::TokenAnswer, ClientError>>> {
    accesses
        .iter()
        .map(|access| {
            let (scraper, access) = (scraper.clone(), access.clone());
            tokio::spawn(async move { scraper.wait_token(&access, total).await })
        })
        .collect()
}

// Fault 1: a gateway killed mid-wait.

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_wait_loses_no_token_and_skips_no_status() {
    let redis = start_redis();
    let port = free_port();
    let mut first = Binary::serve_on(&redis, port, &[]);
    let second = Binary::serve(&redis, &[]);
    let scraper = Client::new(&first.url(), None).expect("a client of the first gateway");
    let tesback = Client::new(&second.url(), None).expect("a client of the second gateway");
    let accesses: Vec<String> = (0..WAITING_SCRAPERS)
        .map(|i| format!("killed-{i:03}"))
        .collect();
    for (i, access) in accesses.iter().enumerate() {
        let customer = format!("c{}", i % 10);
        scraper
            .challenge(access, &code_challenge(&customer))
            .await
            .expect("challenge posted");
    }
    let scrapers = spawn_waiting_scrapers(&scraper, &accesses, 3 * PATIENCE);
    let conn = redis_connection(&redis).await;
    eventually("every scraper waits on the first gateway", || {
        all_subscribed(&conn, &accesses)
    })
    .await;

    // SIGKILL: no chance to answer anyone; the long polls just break.
    first.child.kill().expect("SIGKILL the first gateway");
    first.child.wait().expect("the first gateway is gone");
    let submitted = join_all(
        accesses
            .iter()
            .map(|access| tesback.submit(access, token_for(access))),
    )
    .await;
    for (access, stored) in accesses.iter().zip(submitted) {
        let stored = stored.unwrap_or_else(|e| panic!("{access}: the token was refused: {e}"));
        assert_eq!(stored.status, Status::TokenReceived, "{access}");
    }
    for (access, scraper) in accesses.iter().zip(&scrapers) {
        assert!(
            !scraper.is_finished(),
            "{access}'s scraper stopped waiting while its gateway was dead"
        );
    }

    let _restarted = Binary::serve_on(&redis, port, &[]);
    for (access, scraper) in accesses.iter().zip(scrapers) {
        let answer = settled(scraper)
            .await
            .unwrap_or_else(|e| panic!("{access}: no token after the restart: {e}"));
        assert_eq!(answer.access.as_str(), access);
        assert_eq!(
            answer.token.expose(),
            token_for(access).expose(),
            "{access}"
        );
    }

    // No status skipped, as the audit trail tells it through the API.
    let http = reqwest::Client::new();
    let trails = join_all(accesses.iter().map(|access| {
        let request = http.get(format!("{}/v1/accesses/{access}/events", second.url()));
        async move {
            let response = request.send().await.expect("the audit trail");
            assert_eq!(response.status(), StatusCode::OK, "{access}");
            response.json::<Vec<Value>>().await.expect("a JSON array")
        }
    }))
    .await;
    for (access, trail) in accesses.iter().zip(trails) {
        let steps: Vec<(&str, u64, &str)> = trail
            .iter()
            .map(|event| {
                (
                    event["type"].as_str().unwrap_or_default(),
                    event["attempt"].as_u64().unwrap_or_default(),
                    event["by"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            steps,
            [
                ("challenge", 1, "scraper"),
                ("token_received", 1, "frontend")
            ],
            "{access}: need, then token_received"
        );
    }
}

// Fault 2: Redis restarted under waiters.

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_under_waiters_keeps_challenges_and_delivers_every_token() {
    let redis = start_redis_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let app = TestApp::spawn_on(redis.clone()).await;
    let scraper = Client::new(&app.base, None).expect("a client");
    let accesses: Vec<String> = (0..WAITING_SCRAPERS)
        .map(|i| format!("aof-{i:03}"))
        .collect();
    let customers: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
    for (i, access) in accesses.iter().enumerate() {
        scraper
            .challenge(access, &code_challenge(&customers[i % 10]))
            .await
            .expect("challenge posted");
    }
    let mut scrapers = spawn_waiting_scrapers(&scraper, &accesses, 6 * PATIENCE);
    app.until_waiting(WAITING_SCRAPERS).await;
    let reconnects = app.waiters.reconnects();

    // SIGTERM: Redis writes and fsyncs its append-only file as it exits.
    outage(&app, &redis, Stop::Term).await;
    assert!(
        app.waiters.reconnects() > reconnects,
        "the subscriber reconnected"
    );
    let kept = stored_hashes(&redis, &accesses).await;
    for (access, hash) in accesses.iter().zip(&kept) {
        assert_eq!(field(hash, "status"), "need", "{access} survived: {hash:?}");
        assert_eq!(field(hash, "attempt"), "1", "{access}");
    }

    // Tokens for the first ten, submitted once Redis is back, reach them.
    let (answered, still_waiting) = accesses.split_at(10);
    for access in answered {
        let stored = app.submit(access, token_for(access).expose()).await;
        assert_eq!(stored.status, StatusCode::OK, "{access}: {stored:?}");
    }
    let later = scrapers.split_off(answered.len());
    assert_tokens_delivered(answered, scrapers).await;
    // TesBack shows the others their questions: a write to each hash that
    // the crash below must not lose.
    for customer in &customers {
        app.listed(customer).await;
    }

    // SIGKILL loses what was not fsynced yet; everysec fsyncs at least
    // once a second, so 1.5 s after the last write nothing is at risk. The
    // wait is part of the scenario, not a synchronisation.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    outage(&app, &redis, Stop::Kill).await;
    let kept = stored_hashes(&redis, &accesses).await;
    for (access, hash) in answered.iter().zip(&kept) {
        assert_eq!(
            field(hash, "status"),
            "token_received",
            "{access}: {hash:?}"
        );
        assert_eq!(field(hash, "token"), token_for(access).expose(), "{access}");
    }
    for (access, hash) in still_waiting.iter().zip(&kept[answered.len()..]) {
        assert_eq!(field(hash, "status"), "question_sent", "{access}: {hash:?}");
    }

    for access in still_waiting {
        let stored = app.submit(access, token_for(access).expose()).await;
        assert_eq!(stored.status, StatusCode::OK, "{access}: {stored:?}");
    }
    assert_tokens_delivered(still_waiting, later).await;

    let mut conn = redis_connection(&redis).await;
    let trails = trails(&mut conn, &accesses).await;
    for (i, (access, trail)) in accesses.iter().zip(trails).enumerate() {
        // The first ten got their tokens before TesBack listed the rest.
        let mut expected = vec![step("challenge", "scraper")];
        if i >= answered.len() {
            expected.push(step("question_sent", "frontend"));
        }
        expected.push(step("token_received", "frontend"));
        assert_eq!(trail, expected, "{access}");
    }
}

/// A restarted Redis answers LOADING until it has read its data back, which
/// takes seconds on a real dataset: that is an outage like any other (503
/// with Retry-After, not 500), and a waiter rides it out.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_still_loading_its_data_is_an_outage_and_waiters_ride_it_out() {
    // Half a millisecond per key read back: 6,000 keys load for 3 s, a window
    // wide enough for a busy machine.
    let redis = start_redis_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--key-load-delay",
        "500",
        "--loading-process-events-interval-bytes",
        "1024",
    ]);
    let app = TestApp::spawn_on(redis.clone()).await;
    app.challenge("001", "c1", "q").await;
    let waiter = app.spawn_wait("001", 30.0);
    app.until_waiting(1).await;
    let mut filler = redis::pipe();
    for i in 0..6_000 {
        filler.set(format!("filler:{i}"), "x").ignore();
    }
    let mut conn = app.conn.clone();
    filler
        .query_async::<()>(&mut conn)
        .await
        .expect("filler keys");

    let restarting = redis.clone();
    let restarted = tokio::task::spawn_blocking(move || restarting.restart(Stop::Term));
    // Asked over plain TCP: a client library's handshake fails while loading.
    eventually("Redis answers LOADING", || async {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", redis.port())).await else {
            return false;
        };
        let mut reply = [0u8; 8];
        stream.write_all(b"PING\r\n").await.is_ok()
            && stream.read_exact(&mut reply).await.is_ok()
            && reply == *b"-LOADING"
    })
    .await;
    for path in ["/readyz", "/v1/accesses/001"] {
        let refused = prompt(&app, Method::GET, path, None).await;
        refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(refused.headers.contains_key("retry-after"), "{refused:?}");
    }

    restarted
        .await
        .expect("the restart task")
        .unwrap_or_else(|e| panic!("{e}"));
    app.until("readiness is 200 once Redis has loaded", || async {
        prompt(&app, Method::GET, "/readyz", None).await.status == StatusCode::OK
    })
    .await;
    let stored = app.submit("001", "987654").await;
    assert_eq!(stored.status, StatusCode::OK, "{stored:?}");
    let answer = settled(waiter).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["token"], "987654");
}

/// Stops Redis `how`, checks that the gateway says so promptly while it is
/// down, starts it again on the same port, and returns once the gateway is
/// ready again.
async fn outage(app: &TestApp, redis: &Arc<RedisServer>, how: Stop) {
    let stopping = redis.clone();
    tokio::task::spawn_blocking(move || stopping.stop(how))
        .await
        .expect("the stop task")
        .unwrap_or_else(|e| panic!("{e}"));

    app.until("readiness is 503 while Redis is down", || async {
        prompt(app, Method::GET, "/readyz", None).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let challenge = json!({"customer": "c0", "finEntityName": "Real", "doubleAuthQuestion": "q"});
    let requests = [
        (Method::GET, "/readyz", None),
        (Method::GET, "/v1/accesses/aof-000", None),
        (Method::GET, "/v1/customers/c0/challenges", None),
        (Method::PUT, "/v1/accesses/late/challenge", Some(challenge)),
    ];
    let mut slowest = Duration::ZERO;
    for (method, path, body) in requests {
        let asked = Instant::now();
        let refused = prompt(app, method.clone(), path, body).await;
        slowest = slowest.max(asked.elapsed());
        refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        let retry_after = refused.headers.get("retry-after").map(|v| v.to_str());
        assert!(
            matches!(retry_after, Some(Ok(seconds)) if seconds.parse::<u64>().is_ok_and(|s| s > 0)),
            "{method} {path} during the outage: no Retry-After in {refused:?}"
        );
    }

    eprintln!("Redis down ({how:?}): the slowest 503 came in {slowest:?}");

    let starting = redis.clone();
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .expect("the start task")
        .unwrap_or_else(|e| panic!("{e}"));
    app.until("readiness is 200 once Redis is back", || async {
        prompt(app, Method::GET, "/readyz", None).await.status == StatusCode::OK
    })
    .await;
}

/// A request that must be answered within 2 s, whatever the answer.
async fn prompt(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    let asked = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(2), app.send(method.clone(), path, body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} stalled for 2 s"));
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{method} {path} took {took:?}"
    );
    reply
}

/// The accesses' hashes as Redis holds them, read on a new connection.
async fn stored_hashes(redis: &RedisServer, accesses: &[String]) -> Vec<HashMap<String, String>> {
    let mut conn = redis_connection(redis).await;
    let mut pipe = redis::pipe();
    for access in accesses {
        pipe.hgetall(format!("2fa:access:{{{access}}}"));
    }
    pipe.query_async(&mut conn).await.expect("HGETALL")
}

fn field<'a>(hash: &'a HashMap<String, String>, name: &str) -> &'a str {
    hash.get(name).map_or("", String::as_str)
}

async fn assert_tokens_delivered(
    accesses: &[String],
    scrapers: Vec<JoinHandle<Result<twofa_bridge::model::TokenAnswer, ClientError>>>,
) {
    for (access, scraper) in accesses.iter().zip(scrapers) {
        let answer = settled(scraper)
            .await
            .unwrap_or_else(|e| panic!("{access}: no token: {e}"));
        assert_eq!(answer.access.as_str(), access);
        assert_eq!(
            answer.token.expose(),
            token_for(access).expose(),
            "{access}"
        );
    }
}

// Fault 4: graceful deploys.

/// Starts a token submission on a raw connection and stops before its
/// body, once the gateway has asked for it: hyper answers `Expect:
/// 100-continue` only when the handler reads the body, so the request is
/// surely in flight. Returns the connection and the body still to send.
async fn submission_in_flight(addr: &str, access: &str, token: &str) -> (TcpStream, String) {
    let body = json!({"access": access, "token": token}).to_string();
    let mut stream = TcpStream::connect(addr).await.expect("connected");
    let head = format!(
        "POST /v1/tokens HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head sent");
    let interim = read_head(&mut stream).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue"),
        "the gateway did not ask for the body: {interim}"
    );
    (stream, body)
}

/// Reads a response head, up to its blank line.
async fn read_head(stream: &mut TcpStream) -> String {
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.expect("readable") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a response head in time")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_connections_finishes_requests_answers_waiters_and_closes_feeds() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[]);
    let mut app = TestApp::spawn_on(redis).await;
    app.base = gateway.url();
    let (mut feed, _) = app.follow_a_challenge("c1", "001").await;
    let waiter = app.spawn_wait("001", 120.0);
    app.until("the binary's long poll subscribed", || async {
        app.subscribers("001").await == 1
    })
    .await;
    let (mut in_flight, body) = submission_in_flight(&gateway.addr, "001", "987654").await;
    let mut idle = TcpStream::connect(&gateway.addr).await.expect("connected");
    let health = format!("GET /healthz HTTP/1.1\r\nhost: {}\r\n\r\n", gateway.addr);
    idle.write_all(health.as_bytes()).await.expect("sent");
    let head = read_head(&mut idle).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("a content-length");
    let mut body_read = vec![0; length];
    idle.read_exact(&mut body_read).await.expect("the body");

    let signalled = Instant::now();
    gateway.terminate();
    assert_eq!(settled(waiter).await.status, StatusCode::NO_CONTENT);
    let closing = feed.next_event().await.expect("a last block");
    assert_eq!(closing.retry.as_deref(), Some("1000"), "{closing:?}");
    assert!(feed.next_event().await.is_none(), "then the feed ends");
    eventually("the gateway refuses new connections", || async {
        TcpStream::connect(&gateway.addr).await.is_err()
    })
    .await;
    // An idle keep-alive connection is closed, so no new request can
    // slip in on it either.
    let mut rest = [0u8; 1];
    let closed = tokio::time::timeout(PATIENCE, idle.read(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the idle connection stays open: {closed:?}"
    );
    assert!(
        gateway.child.try_wait().expect("status").is_none(),
        "still running: the request in flight holds it"
    );

    in_flight
        .write_all(body.as_bytes())
        .await
        .expect("body sent");
    let head = read_head(&mut in_flight).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let limit = Duration::from_secs(5).saturating_sub(signalled.elapsed());
    let status = gateway.exit_within(limit).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?} within 5 s of SIGTERM"
    );
    assert_eq!(app.hash("001").await["status"], "token_received");
}

/// hyper's graceful shutdown waits for requests in flight; a client that
/// stalls mid-request (headers in, body never sent) must not hold up a
/// deploy: the gateway stops waiting for it and exits within 5 s.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_within_5_s_even_with_a_client_stalled_mid_request() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[]);
    let mut app = TestApp::spawn_on(redis).await;
    app.base = gateway.url();
    app.challenge("001", "c1", "q").await;
    // A TesBack on a bad mobile link: headers in, body never comes.
    let (_stalled, _body) = submission_in_flight(&gateway.addr, "001", "987654").await;

    gateway.terminate();
    let status = gateway.exit_within(Duration::from_secs(5)).await;
    assert!(
        status.is_some(),
        "the gateway did not exit within 5 s of SIGTERM: a client stalled mid-request \
         held the graceful shutdown"
    );
}

/// What the rolling-restart scrapers and their TesBack share.
struct Load {
    /// Cycles each scraper has completed.
    cycles: Vec<AtomicUsize>,
    /// Requests that failed with a transient error and were retried.
    retried: AtomicUsize,
    /// Set when the scrapers should finish their cycle and stop.
    stop: CancellationToken,
}

/// How long a request may keep failing transiently before the scraper
/// gives up on it: a restart takes well under a second.
const RETRY_FOR: Duration = Duration::from_secs(15);

/// Calls `request` until it succeeds, retrying transient errors on the
/// gateways in turn, starting with `first`. Any other error is the answer.
async fn retrying<T, F, Fut>(
    load: &Load,
    gateways: &[&Client],
    first: usize,
    what: &str,
    request: F,
) -> Result<T, String>
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = Instant::now() + RETRY_FOR;
    let mut turn = first;
    loop {
        match request(gateways[turn % gateways.len()].clone()).await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                load.retried.fetch_add(1, Ordering::Relaxed);
                turn += 1;
                // The pause a client takes before trying again.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(format!("{what}: {error:?}")),
        }
    }
}

/// One scraper pinned to its gateway: full cycles (challenge, wait for the
/// token, report ok), each on a new access, until told to stop. Returns
/// the accesses it completed.
async fn scraper_cycles(
    index: usize,
    gateway: Client,
    tesback: mpsc::UnboundedSender<String>,
    load: Arc<Load>,
) -> Result<Vec<String>, String> {
    let customer = format!("c{index}");
    let mut done = Vec::new();
    while !load.stop.is_cancelled() {
        let access = format!("s{index}-{}", done.len());
        let request = code_challenge(&customer);
        retrying(&load, &[&gateway], 0, &format!("{access} challenge"), |g| {
            let (access, request) = (access.clone(), request.clone());
            async move { g.challenge(&access, &request).await }
        })
        .await?;
        tesback
            .send(access.clone())
            .map_err(|_| "TesBack stopped".to_owned())?;
        let answer = gateway
            .wait_token(&access, RETRY_FOR)
            .await
            .map_err(|e| format!("{access} wait: {e:?}"))?;
        if answer.access.as_str() != access || answer.token.expose() != token_for(&access).expose()
        {
            return Err(format!(
                "{access} received the token of {}",
                answer.access.as_str()
            ));
        }
        retrying(&load, &[&gateway], 0, &format!("{access} report"), |g| {
            let access = access.clone();
            async move { g.report(&access, Outcome::Ok, None).await }
        })
        .await?;
        load.cycles[index].fetch_add(1, Ordering::Relaxed);
        done.push(access);
        // Think time: a steady load rather than a flood, which would starve
        // the other tests sharing these cores. Part of the scenario.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(done)
}

/// The customer's TesBack: sees each question in the list, then submits the
/// token the customer typed, through whichever gateway answers.
async fn tesback_answers(
    customer: String,
    gateways: [Client; 2],
    first: usize,
    mut questions: mpsc::UnboundedReceiver<String>,
    load: Arc<Load>,
    seed: u64,
) -> Result<(), String> {
    let gateways = [&gateways[0], &gateways[1]];
    let mut typing = Rng::new(seed);
    while let Some(access) = questions.recv().await {
        // The customer reads the question and types the code: 20 to 120
        // ms, so that scrapers are often in a long poll when a gateway
        // stops. Part of the scenario.
        let typed = 20 + typing.below(100) as u64;
        tokio::time::sleep(Duration::from_millis(typed)).await;
        let listed = retrying(&load, &gateways, first, &format!("{customer} list"), |g| {
            let customer = customer.clone();
            async move { g.list(&customer).await }
        })
        .await?;
        if !listed
            .iter()
            .any(|a| a.access.as_str() == access && a.status == Status::QuestionSent)
        {
            return Err(format!(
                "{access} is not in its customer's list: {listed:?}"
            ));
        }
        let stored = retrying(&load, &gateways, first, &format!("{access} submit"), |g| {
            let access = access.clone();
            async move { g.submit(&access, token_for(&access)).await }
        })
        .await?;
        if stored.status != Status::TokenReceived {
            return Err(format!("{access} submitted, but {:?}", stored.status));
        }
    }
    Ok(())
}

/// Until every scraper in `pinned` has completed a cycle begun after now.
async fn until_cycles_go_on(load: &Load, pinned: &[usize], what: &str) {
    let seen: Vec<usize> = pinned
        .iter()
        .map(|&i| load.cycles[i].load(Ordering::Relaxed))
        .collect();
    eventually(what, || async {
        pinned
            .iter()
            .zip(&seen)
            .all(|(&i, &before)| load.cycles[i].load(Ordering::Relaxed) >= before + 2)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_no_token_and_fails_no_retried_request() {
    const SCRAPERS: usize = 50;
    let redis = start_redis();
    let ports = [free_port(), free_port()];
    let mut instances = [
        Binary::serve_on(&redis, ports[0], &[]),
        Binary::serve_on(&redis, ports[1], &[]),
    ];
    let clients = [
        Client::new(&instances[0].url(), None).expect("a client of A"),
        Client::new(&instances[1].url(), None).expect("a client of B"),
    ];
    let load = Arc::new(Load {
        cycles: (0..SCRAPERS).map(|_| AtomicUsize::new(0)).collect(),
        retried: AtomicUsize::new(0),
        stop: CancellationToken::new(),
    });
    let mut scrapers = Vec::new();
    let mut tesbacks = Vec::new();
    for index in 0..SCRAPERS {
        let pinned = index % 2;
        let (questions, inbox) = mpsc::unbounded_channel();
        scrapers.push(tokio::spawn(scraper_cycles(
            index,
            clients[pinned].clone(),
            questions,
            load.clone(),
        )));
        // TesBack starts with the other gateway: a token lands through one
        // instance and wakes a waiter on the other.
        tesbacks.push(tokio::spawn(tesback_answers(
            format!("c{index}"),
            clients.clone(),
            1 - pinned,
            inbox,
            load.clone(),
            index as u64 + 1,
        )));
    }
    let everyone: Vec<usize> = (0..SCRAPERS).collect();
    until_cycles_go_on(&load, &everyone, "every scraper completes cycles").await;

    for (name, which) in [("A", 0), ("B", 1)] {
        let signalled = Instant::now();
        instances[which].terminate();
        let status = instances[which].exit_within(Duration::from_secs(5)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} exits cleanly within 5 s of SIGTERM under load: {status:?}"
        );
        instances[which] = Binary::serve_on(&redis, ports[which], &[]);
        eprintln!("{name} restarted in {:?}", signalled.elapsed());
        let pinned: Vec<usize> = (which..SCRAPERS).step_by(2).collect();
        until_cycles_go_on(
            &load,
            &pinned,
            &format!("the scrapers pinned to {name} go on"),
        )
        .await;
    }

    load.stop.cancel();
    let mut accesses = Vec::new();
    for (index, scraper) in scrapers.into_iter().enumerate() {
        let done = settled(scraper)
            .await
            .unwrap_or_else(|e| panic!("scraper {index} failed: {e}"));
        accesses.extend(done);
    }
    for (index, tesback) in tesbacks.into_iter().enumerate() {
        settled(tesback)
            .await
            .unwrap_or_else(|e| panic!("TesBack of c{index} failed: {e}"));
    }
    eprintln!(
        "{} cycles; {} requests failed transiently and were cured by a retry",
        accesses.len(),
        load.retried.load(Ordering::Relaxed)
    );

    let mut conn = redis_connection(&redis).await;
    let trails = trails(&mut conn, &accesses).await;
    let expected = [
        step("challenge", "scraper"),
        step("question_sent", "frontend"),
        step("token_received", "frontend"),
        step("ok", "scraper"),
    ];
    for (access, trail) in accesses.iter().zip(trails) {
        assert_eq!(trail, expected, "{access}: no status skipped");
    }
    let hashes = stored_hashes(&redis, &accesses).await;
    for (access, hash) in accesses.iter().zip(hashes) {
        assert_eq!(field(&hash, "status"), "ok", "{access}");
        assert!(!hash.contains_key("token"), "{access} kept its token");
    }
}

// Fault 5: concurrency chaos.

/// A small, fast, seedable generator (xorshift64*), so a failing run can be
/// replayed with `FAULTS_SEED=<seed>`.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const CHAOS_ACCESSES: usize = 1_000;
const CHAOS_TASKS: usize = 32;
const CHAOS_CUSTOMERS: usize = 25;
/// Operations per access on average; the first is always a challenge.
const OPS_PER_ACCESS: usize = 5;
/// Each operation picks among the accesses most recently begun, so the 32
/// tasks keep colliding on the same few accesses.
const HOT_WINDOW: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Challenge,
    List,
    Submit,
    DuplicateSubmit,
    Cancel,
    Report,
    Wait,
}

/// What one call did, as the caller saw it.
#[derive(Debug, Clone)]
struct Done {
    op: Op,
    access: String,
    status: StatusCode,
    /// The attempt the answer names, when it names one.
    attempt: Option<u64>,
    /// The token submitted, or the token a waiter received.
    token: Option<String>,
    /// For a report or a cancel: the status asked for.
    to: Option<&'static str>,
}

fn customer_of(access: usize) -> String {
    format!("k{:02}", access % CHAOS_CUSTOMERS)
}

fn access_name(access: usize) -> String {
    format!("x{access:04}")
}

fn done(op: Op, access: &str, reply: &Reply) -> Done {
    Done {
        op,
        access: access.to_owned(),
        status: reply.status,
        attempt: reply.body["attempt"].as_u64(),
        token: None,
        to: None,
    }
}

/// One of 32 tasks: takes the next operation slot until all are taken.
async fn chaos_task(
    apps: Arc<[TestApp; 2]>,
    seed: u64,
    next_slot: Arc<AtomicUsize>,
    nonce: Arc<AtomicUsize>,
) -> Vec<Done> {
    let mut rng = Rng::new(seed);
    let mut log = Vec::new();
    loop {
        let slot = next_slot.fetch_add(1, Ordering::Relaxed);
        if slot >= CHAOS_ACCESSES * OPS_PER_ACCESS {
            return log;
        }
        let app = &apps[rng.below(2)];
        let begun = slot / OPS_PER_ACCESS;
        let (index, op) = if slot.is_multiple_of(OPS_PER_ACCESS) {
            (begun, Op::Challenge)
        } else {
            let index = begun.saturating_sub(rng.below(HOT_WINDOW));
            let op = match rng.below(100) {
                0..12 => Op::Challenge,
                12..27 => Op::List,
                27..50 => Op::Submit,
                50..58 => Op::DuplicateSubmit,
                58..66 => Op::Cancel,
                66..82 => Op::Report,
                _ => Op::Wait,
            };
            (index, op)
        };
        let access = access_name(index);
        let token = || {
            // Names its access, and is unique: the waiter that receives it
            // says exactly which submission it came from.
            format!("t.{access}.{}", nonce.fetch_add(1, Ordering::Relaxed))
        };
        match op {
            Op::Challenge => {
                let mut body = json!({
                    "customer": customer_of(index),
                    "finEntityName": "Real",
                    "doubleAuthQuestion": "q",
                });
                // Some challenges expire during the run: 1 s is the least
                // `expiresIn` takes.
                if rng.chance(25) {
                    body["expiresIn"] = json!(1);
                }
                // A post that newer posts of the same access kept
                // overtaking writes nothing and says so with a 503 that
                // asks for a retry: a scraper posts again.
                let mut reply = app.challenge_with(&access, body.clone()).await;
                for _ in 0..5 {
                    let overtaken = reply.status == StatusCode::SERVICE_UNAVAILABLE
                        && reply.body["error"]["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("kept overtaking"));
                    if !overtaken {
                        break;
                    }
                    reply = app.challenge_with(&access, body.clone()).await;
                }
                log.push(done(op, &access, &reply));
            }
            Op::List => {
                let customer = customer_of(index);
                let reply = app.list(&customer).await;
                let mut entry = done(op, &access, &reply);
                entry.attempt = None;
                if reply.status == StatusCode::OK {
                    for item in reply.body.as_array().expect("a list") {
                        let listed = item["access"].as_str().unwrap_or_default();
                        assert_eq!(item["customer"], customer.as_str(), "{item}");
                        assert_eq!(item["status"], "question_sent", "{item}");
                        log.push(Done {
                            op: Op::List,
                            access: listed.to_owned(),
                            status: StatusCode::OK,
                            attempt: item["attempt"].as_u64(),
                            token: None,
                            to: None,
                        });
                    }
                } else {
                    log.push(entry);
                }
            }
            Op::Submit => {
                let token = token();
                let reply = app.submit(&access, &token).await;
                let mut entry = done(op, &access, &reply);
                entry.token = Some(token);
                log.push(entry);
            }
            Op::DuplicateSubmit => {
                let (first, second) = (token(), token());
                let (a, b) =
                    tokio::join!(app.submit(&access, &first), app.submit(&access, &second));
                for (reply, token) in [(a, first), (b, second)] {
                    let mut entry = done(op, &access, &reply);
                    entry.token = Some(token);
                    log.push(entry);
                }
            }
            Op::Cancel => {
                let (path, by) = if rng.chance(50) {
                    (
                        format!("/v1/accesses/{access}/challenge?by=frontend"),
                        "frontend",
                    )
                } else {
                    (format!("/v1/accesses/{access}/challenge"), "scraper")
                };
                let reply = app.send(Method::DELETE, &path, None).await;
                let mut entry = done(op, &access, &reply);
                entry.to = Some(by);
                log.push(entry);
            }
            Op::Report => {
                let outcome = if rng.chance(70) { "ok" } else { "rejected" };
                let reply = app.report(&access, outcome).await;
                let mut entry = done(op, &access, &reply);
                entry.to = Some(outcome);
                log.push(entry);
            }
            Op::Wait => {
                // A short long poll: most tokens land while nobody waits,
                // some while a waiter is parked.
                let reply = app.wait_token(&access, 0.05).await;
                let mut entry = done(op, &access, &reply);
                entry.token = reply.body["token"].as_str().map(str::to_owned);
                log.push(entry);
            }
        }
    }
}

/// The status each audit-trail step may move to from `from`; `None` is an
/// access without a challenge yet.
fn legal(from: Option<&str>, to: &str) -> bool {
    let waiting = matches!(from, Some("need" | "question_sent"));
    match to {
        "challenge" => true,
        "question_sent" => from == Some("need"),
        "token_received" | "expired" => waiting,
        "ok" | "rejected" => from == Some("token_received"),
        "cancelled" => waiting || from == Some("token_received"),
        _ => false,
    }
}

/// Who may make each step.
fn legal_actor(kind: &str, by: &str) -> bool {
    match kind {
        "challenge" | "ok" | "rejected" => by == "scraper",
        "question_sent" | "token_received" => by == "frontend",
        "expired" => by == "system",
        "cancelled" => by == "scraper" || by == "frontend",
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_chaos_keeps_every_invariant() {
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
        });
    eprintln!("concurrency chaos: replay with FAULTS_SEED={seed}");

    let redis = start_redis();
    let generous = |config: &mut twofa_bridge::config::Config| {
        // Duplicate submissions must meet the lifecycle, not the rate limit.
        config.submissions_per_minute = 1_000;
    };
    let apps = Arc::new([
        TestApp::spawn_with(redis.clone(), generous).await,
        TestApp::spawn_with(redis.clone(), generous).await,
    ]);
    let next_slot = Arc::new(AtomicUsize::new(0));
    let nonce = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks = (0..CHAOS_TASKS as u64).map(|task| {
        let task_seed = seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tokio::spawn(chaos_task(
            apps.clone(),
            task_seed,
            next_slot.clone(),
            nonce.clone(),
        ))
    });
    let mut log = Vec::new();
    for task in join_all(tasks).await {
        log.extend(task.expect("a chaos task did not panic"));
    }
    eprintln!("{} calls in {:?}", log.len(), started.elapsed());

    // Let every challenge past its deadline expire, then stop the gateways
    // (and their sweepers), so Redis holds still while it is inspected.
    let mut conn = redis_connection(&redis).await;
    eventually("every challenge past its deadline is expired", || {
        let mut conn = conn.clone();
        async move {
            let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg("2fa:expiring")
                .arg("-inf")
                .arg(now_millis())
                .query_async(&mut conn)
                .await
                .expect("ZRANGEBYSCORE");
            due.is_empty()
        }
    })
    .await;
    let mut apps = Arc::try_unwrap(apps).unwrap_or_else(|_| panic!("the tasks are done"));
    for app in &mut apps {
        app.stop().await;
    }

    check_calls(&log);
    let accesses: Vec<String> = (0..CHAOS_ACCESSES).map(access_name).collect();
    let trails = trails(&mut conn, &accesses).await;
    let hashes = stored_hashes(&redis, &accesses).await;
    check_histories(&log, &accesses, &trails, &hashes);
    check_pending_index(&mut conn, &accesses, &hashes).await;
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Every call got an answer its route documents for a race, and none a 5xx.
fn check_calls(log: &[Done]) {
    for call in log {
        let allowed: &[u16] = match call.op {
            Op::Challenge => &[201],
            Op::List => &[200],
            Op::Submit | Op::DuplicateSubmit => &[200, 404, 409, 410],
            Op::Cancel | Op::Report => &[200, 404, 409],
            Op::Wait => &[200, 204, 404, 409, 410],
        };
        assert!(
            allowed.contains(&call.status.as_u16()),
            "an unexpected answer: {call:?}"
        );
    }
}

/// Each access's trail is a legal walk through the lifecycle, the final
/// hash is where that walk ends, its token is the one accepted, and every
/// waiter got exactly the token accepted for its access and attempt.
fn check_histories(
    log: &[Done],
    accesses: &[String],
    trails: &[Vec<TrailStep>],
    hashes: &[HashMap<String, String>],
) {
    let mut calls: HashMap<&str, Vec<&Done>> = HashMap::new();
    for call in log {
        calls.entry(call.access.as_str()).or_default().push(call);
    }
    let mut kinds = BTreeMap::new();
    for ((access, trail), hash) in accesses.iter().zip(trails).zip(hashes) {
        let mine = calls.get(access.as_str()).cloned().unwrap_or_default();
        let mut status: Option<&str> = None;
        let mut attempt = 0;
        for step in trail {
            assert!(
                legal(status, &step.kind),
                "{access}: {:?} -> {} is not a legal step; trail {trail:?}",
                status,
                step.kind
            );
            assert!(
                legal_actor(&step.kind, &step.by),
                "{access}: {} by {}",
                step.kind,
                step.by
            );
            if step.kind == "challenge" {
                attempt += 1;
                status = Some("need");
            } else {
                status = Some(step.kind.as_str());
            }
            assert_eq!(step.attempt, attempt, "{access}: trail {trail:?}");
            *kinds.entry(step.kind.clone()).or_insert(0) += 1;
        }
        assert!(
            trail.len() < 100,
            "{access}: the trail may be trimmed at 100"
        );
        assert_eq!(
            status,
            Some(field(hash, "status")),
            "{access}: the hash is not where its trail ends"
        );
        assert_eq!(field(hash, "attempt"), attempt.to_string(), "{access}");

        // Each post started the next attempt: together they number 1 to n.
        let mut posted: Vec<u64> = mine
            .iter()
            .filter(|c| c.op == Op::Challenge && c.status == StatusCode::CREATED)
            .map(|c| c.attempt.expect("a posted access names its attempt"))
            .collect();
        posted.sort_unstable();
        assert_eq!(
            posted,
            (1..=u64::from(attempt)).collect::<Vec<_>>(),
            "{access}: the attempts its posts started"
        );

        // Every transition the callers saw made is in the trail, once.
        let succeeded = |op: &[Op], to: Option<&str>| {
            mine.iter()
                .filter(|c| op.contains(&c.op) && c.status.is_success())
                .filter(|c| to.is_none() || c.to == to)
                .count()
        };
        let in_trail = |kind: &str, by: Option<&str>| {
            trail
                .iter()
                .filter(|s| s.kind == kind && by.is_none_or(|b| s.by == b))
                .count()
        };
        assert_eq!(
            succeeded(&[Op::Challenge], None),
            in_trail("challenge", None),
            "{access}: posts"
        );
        assert_eq!(
            succeeded(&[Op::Submit, Op::DuplicateSubmit], None),
            in_trail("token_received", None),
            "{access}: tokens accepted"
        );
        for outcome in ["ok", "rejected"] {
            assert_eq!(
                succeeded(&[Op::Report], Some(outcome)),
                in_trail(outcome, None),
                "{access}: reports {outcome}"
            );
        }
        for by in ["scraper", "frontend"] {
            assert_eq!(
                succeeded(&[Op::Cancel], Some(by)),
                in_trail("cancelled", Some(by)),
                "{access}: cancels by {by}"
            );
        }

        // The token accepted for each attempt, and what waiters received.
        let mut accepted: HashMap<u64, &str> = HashMap::new();
        for call in mine.iter().filter(|c| {
            matches!(c.op, Op::Submit | Op::DuplicateSubmit) && c.status == StatusCode::OK
        }) {
            let attempt = call.attempt.expect("a stored access names its attempt");
            let token = call.token.as_deref().expect("the token sent");
            let earlier = accepted.insert(attempt, token);
            assert!(
                earlier.is_none(),
                "{access}: two tokens accepted for attempt {attempt}"
            );
        }
        for call in mine
            .iter()
            .filter(|c| c.op == Op::Wait && c.status == StatusCode::OK)
        {
            let attempt = call.attempt.expect("an answer names its attempt");
            assert_eq!(
                call.token.as_deref(),
                accepted.get(&attempt).copied(),
                "{access}: a waiter received a token not accepted for attempt {attempt}"
            );
        }
        match field(hash, "status") {
            "token_received" => assert_eq!(
                hash.get("token").map(String::as_str),
                accepted.get(&u64::from(attempt)).copied(),
                "{access}: the stored token is not the one accepted"
            ),
            _ => assert!(
                !hash.contains_key("token"),
                "{access} is {} and still holds a token",
                field(hash, "status")
            ),
        }
    }
    eprintln!("trail steps by kind: {kinds:?}");
    for kind in [
        "challenge",
        "question_sent",
        "token_received",
        "ok",
        "rejected",
        "expired",
        "cancelled",
    ] {
        assert!(
            kinds.get(kind).is_some_and(|n| *n > 0),
            "the chaos never produced a {kind} step: {kinds:?}"
        );
    }
}

/// The pending index holds exactly the waiting accesses, each under its
/// customer and scored by its challenge's start.
async fn check_pending_index(
    conn: &mut MultiplexedConnection,
    accesses: &[String],
    hashes: &[HashMap<String, String>],
) {
    let mut pipe = redis::pipe();
    for customer in 0..CHAOS_CUSTOMERS {
        pipe.cmd("ZRANGE")
            .arg(format!(
                "2fa:customer:{{{}}}:pending",
                customer_of(customer)
            ))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
    }
    let indexes: Vec<Vec<(String, u64)>> = pipe.query_async(conn).await.expect("ZRANGE");
    let by_access: HashMap<&str, &HashMap<String, String>> =
        accesses.iter().map(String::as_str).zip(hashes).collect();
    let mut indexed = 0;
    for (customer, members) in indexes.iter().enumerate() {
        let customer = customer_of(customer);
        for (access, score) in members {
            let hash = by_access
                .get(access.as_str())
                .unwrap_or_else(|| panic!("{customer}'s pending index names {access}"));
            assert!(
                matches!(field(hash, "status"), "need" | "question_sent"),
                "{customer}'s pending index holds {access}, which is {}",
                field(hash, "status")
            );
            assert_eq!(field(hash, "customer"), customer, "{access}");
            assert_eq!(field(hash, "started_at"), score.to_string(), "{access}");
            indexed += 1;
        }
    }
    let waiting = hashes
        .iter()
        .filter(|h| matches!(field(h, "status"), "need" | "question_sent"))
        .count();
    assert_eq!(indexed, waiting, "every waiting access is indexed");
}
