//! SIGTERM, as an orchestrator sends at a deploy: the gateway refuses new
//! connections and closes idle ones, finishes the requests in flight,
//! answers its waiters, ends its feeds with a retry hint, and exits within
//! 5 s, even when a client stalls mid-request.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Binary, PATIENCE, TestApp, eventually, settled, start_redis};

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
async fn sigterm_answers_waiters_at_once_and_exits_cleanly() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[]);
    let mut scraper = TestApp::spawn_on(redis).await;
    scraper.base = gateway.url();
    scraper.challenge("001", "c1", "q").await;
    let waiter = scraper.spawn_wait("001", 120.0);
    scraper
        .until("the binary's waiter subscribed", || async {
            scraper.subscribers("001").await == 1
        })
        .await;

    let signalled = Instant::now();
    gateway.terminate();
    assert_eq!(settled(waiter).await.status, StatusCode::NO_CONTENT);
    let status = gateway.child.wait().expect("the gateway exits");
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
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
