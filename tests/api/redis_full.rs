//! Redis under pressure: a Redis at its `maxmemory` refuses every write, and
//! the gateway says so with a 503, half-writes nothing, and still reads.

use redis::AsyncCommands;
use reqwest::StatusCode;

use crate::support::{Binary, Reply, TestApp, eventually, metrics_of, start_redis_with};

impl TestApp {
    /// Fills Redis past its `maxmemory`: set 2 MiB above what it holds
    /// now, small values until Redis refuses one, and then the limit a
    /// little under what it holds, so that Redis stays full whatever its
    /// buffers do; freeing the values frees more than that margin.
    async fn fill_redis(&self) {
        let mut conn = self.conn.clone();
        self.set_maxmemory(self.used_memory().await + 2 * 1024 * 1024)
            .await;
        for i in 0.. {
            let set: redis::RedisResult<()> =
                conn.set(format!("filler:{i}"), vec![b'x'; 16 * 1024]).await;
            match set {
                Ok(()) => assert!(i < 2_000, "Redis never filled"),
                Err(error) if error.code() == Some("OOM") => break,
                Err(error) => panic!("filling Redis: {error}"),
            }
        }
        self.set_maxmemory(self.used_memory().await - 512 * 1024)
            .await;
    }

    async fn set_maxmemory(&self, bytes: u64) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async(&mut self.conn.clone())
            .await
            .expect("CONFIG SET maxmemory");
    }

    async fn free_redis(&self) {
        let mut conn = self.conn.clone();
        let fillers: Vec<String> = conn.keys("filler:*").await.expect("KEYS");
        let _: () = conn.del(fillers).await.expect("DEL");
    }
}

#[track_caller]
fn assert_full(reply: &Reply) {
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(reply.body["error"]["message"], "Redis is out of memory");
    assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_redis_refuses_writes_with_503_changes_nothing_and_still_reads() {
    let app = TestApp::spawn().await;
    for access in ["answered", "waiting"] {
        assert_eq!(
            app.challenge(access, "c1", "q").await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        app.submit("answered", "111111").await.status,
        StatusCode::OK
    );

    app.fill_redis().await;
    let before = app.keyspace().await;
    assert_full(&app.challenge("new", "c1", "q").await);
    assert_full(&app.submit("waiting", "222222").await);
    assert_full(&app.report("answered", "ok").await);
    assert_eq!(app.keyspace().await, before, "a refused step wrote nothing");

    // Reads go on: the scraper still gets the token already there, and the
    // front end its list.
    let token = app.wait_token("answered", 0.0).await;
    assert_eq!(token.status, StatusCode::OK, "{token:?}");
    assert_eq!(token.body["token"], "111111");
    assert_eq!(app.access("waiting").await.status, StatusCode::OK);
    let text = metrics_of(&app.base).await;
    let oom = text
        .lines()
        .find(|line| line.starts_with("twofa_redis_errors_total{kind=\"oom\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse::<f64>().ok());
    assert!(oom.is_some_and(|count| count >= 3.0), "{text}");

    // Once memory is freed, the same calls go through.
    app.free_redis().await;
    assert_eq!(
        app.challenge("new", "c1", "q").await.status,
        StatusCode::CREATED
    );
    assert_eq!(app.submit("waiting", "222222").await.status, StatusCode::OK);
    assert_eq!(app.report("answered", "ok").await.status, StatusCode::OK);
}

/// The gauge `twofa_redis_eviction_safe` as the gateway at `base` shows it.
async fn eviction_safe(base: &str) -> Option<String> {
    metrics_of(base)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("twofa_redis_eviction_safe "))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicting_redis_is_reported_by_a_logged_error_and_a_gauge_at_0() {
    let redis = start_redis_with(&["--maxmemory-policy", "allkeys-lru"]);
    let mut gateway = Binary::serve(&redis, &[]);
    let base = gateway.url();
    eventually("the gauge says 0", || async {
        eviction_safe(&base).await.as_deref() == Some("0")
    })
    .await;
    gateway.child.kill().expect("stop the gateway");
    let mut log = gateway.log_before_listening.clone();
    log.extend(gateway.log_after_exit());
    assert!(
        log.iter().any(|line| line.contains("ERROR")
            && line.contains("maxmemory-policy is allkeys-lru")
            && line.contains("noeviction")),
        "{log:#?}"
    );

    // The default, noeviction, is safe.
    let safe = TestApp::spawn().await;
    eventually("the gauge says 1", || async {
        eviction_safe(&safe.base).await.as_deref() == Some("1")
    })
    .await;
}
