//! Redis restarted under a hundred waiters, by SIGTERM and by SIGKILL, and a
//! restarted Redis still LOADING its data. Each is an outage the gateway
//! says promptly (503 with Retry-After, never a stall or a 500), the
//! challenges survive it in the append-only file, and every waiter rides it
//! out to its own token: a retry cures every failure a client sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use twofa_bridge::client::Client;
use twofa_bridge::redis_server::{RedisServer, Stop};

use crate::support::{
    PATIENCE, Reply, TestApp, WAITING_SCRAPERS, assert_tokens_delivered, code_challenge,
    eventually, field, redis_connection, settled, spawn_waiting_scrapers, start_redis_with, step,
    stored_hashes, token_for, trails,
};

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
            .challenge(
                access,
                &code_challenge(&customers[i % 10], "Enter the code sent by SMS"),
            )
            .await
            .expect("challenge posted");
    }
    let mut scrapers = spawn_waiting_scrapers(&scraper, &accesses, 6 * PATIENCE);
    app.until_waiting(WAITING_SCRAPERS).await;
    let reconnects = app.subscriber.reconnects();

    // SIGTERM: Redis writes and fsyncs its append-only file as it exits.
    outage(&app, &redis, Stop::Term).await;
    assert!(
        app.subscriber.reconnects() > reconnects,
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

/// A Redis that lost the scripts' library (restarted without its data, or
/// a cluster node that joined empty) gets it back from the first call that
/// misses it, and that call succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_lost_the_scripts_gets_them_back_on_the_next_call() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.challenge("001", "c1", "q").await.status,
        StatusCode::CREATED
    );
    let mut conn = app.conn.clone();
    let libraries = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let listed: redis::Value = redis::cmd("FUNCTION")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .expect("FUNCTION LIST");
            format!("{listed:?}")
        }
    };
    assert!(
        libraries(&mut conn).await.contains("twofa_"),
        "the library is loaded"
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("FUNCTION FLUSH");
    assert_eq!(
        app.challenge("002", "c1", "q").await.status,
        StatusCode::CREATED
    );
    assert!(
        libraries(&mut conn).await.contains("twofa_"),
        "loaded again"
    );
    assert_eq!(app.submit("002", "123456").await.status, StatusCode::OK);
}
