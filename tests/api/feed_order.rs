//! The live feed under pressure: entries removed while a client is away,
//! long quiet spells, positions it never gave, and steps racing each other.

use std::time::Duration;

use reqwest::StatusCode;
use twofa_bridge::store::CLASSIC;

use crate::support::{TestApp, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_missed_removed_events_starts_over_from_what_waits() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.feed_length = 10).await;
    let (feed, seen) = app.follow_a_challenge("c1", "001").await;
    drop(feed);

    // More than the feed keeps happens while the client is away.
    app.submit("001", "987654").await;
    app.challenge("keep", "c1", "q").await;
    for i in 0..6 {
        app.challenge(&format!("x{i}"), "c1", "q").await;
        app.cancel(&format!("x{i}")).await;
    }
    let mut feed = app.open_feed("c1", Some(&seen)).await;
    // Not the token_received it missed, which is gone: what waits now.
    let first = feed.expect("challenge", "keep", "question_sent").await;
    assert!(
        !first.is_empty(),
        "the last item of a start-over carries the position"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caught_up_feed_gets_the_next_event_however_long_the_quiet() {
    let redis = start_redis();
    let app = TestApp::spawn_with(redis, |config| config.feed_retention = 1).await;
    let (mut feed, _) = app.follow_a_challenge("c1", "001").await;
    // Longer than the feed keeps anything: this test is about time passing.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    app.cancel("001").await;
    feed.expect("status", "001", "cancelled").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_position_the_feed_never_gave_starts_over_and_a_malformed_one_is_refused() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    // From the future: nothing comes after it, yet it is no position of
    // this feed, so the client gets what waits rather than silence.
    let mut feed = app.open_feed("c1", Some("99999999999999-0")).await;
    feed.expect("challenge", "001", "question_sent").await;
    drop(feed);
    // The feed is gone altogether (expired): start over too.
    let mut conn = app.conn.clone();
    let _: () = redis::cmd("DEL")
        .arg("2fa:customer:{c1}:events")
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let mut feed = app.open_feed("c1", Some("5-0")).await;
    feed.expect("challenge", "001", "question_sent").await;
    let refused = app.open_feed("c1", Some("yesterday")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

/// Runs the feed's append script as a gateway would, with `entries` of
/// (event, access, status, audit id), and returns the feed's statuses.
async fn append(app: &TestApp, entries: &[(&str, &str, &str, &str)]) -> Vec<(String, String)> {
    // The clock reads 1970, so nothing is old enough to trim.
    append_at(app, 1, 1, entries).await
}

/// [`append`] with the gateway's clock reading `now` and a feed that keeps
/// entries `retention` ms, housekept every minute.
async fn append_at(
    app: &TestApp,
    now: u64,
    retention: u64,
    entries: &[(&str, &str, &str, &str)],
) -> Vec<(String, String)> {
    // The very script the gateway runs on a single Redis.
    let mut invocation = CLASSIC.feed_add.key("2fa:customer:{c1}:events");
    invocation
        .key("2fa:customer:{c1}:latest")
        .key("2fa:customer:{c1}:pending")
        .arg("2fa:customer:{c1}:changed")
        .arg(1000)
        .arg(now)
        .arg(90_000_000)
        // No pending entry to drop.
        .arg("")
        .arg("")
        .arg(retention)
        .arg(HOUSEKEEPING);
    for (event, access, status, audit_id) in entries {
        invocation
            .arg(event)
            .arg(access)
            .arg(status)
            .arg(1)
            .arg(0)
            .arg(audit_id);
    }
    let mut conn = app.conn.clone();
    let _: String = invocation.invoke_async(&mut conn).await.expect("feed_add");
    app.stream("2fa:customer:{c1}:events")
        .await
        .into_iter()
        .map(|(_, fields)| (fields["event"].clone(), fields["status"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_relay_brought_twice_or_late_adds_nothing_to_the_feed() {
    let app = TestApp::spawn().await;
    // One gateway relays an outbox of two entries; another, whose step came
    // first, relays its older one late: the feed has it already.
    let relayed = [
        ("challenge", "001", "need", "1700000000001-0"),
        ("status", "001", "question_sent", "1700000000002-0"),
    ];
    append(&app, &relayed).await;
    let feed = append(&app, &relayed[..1]).await;
    assert_eq!(
        feed,
        [
            ("challenge".to_owned(), "need".to_owned()),
            ("status".to_owned(), "question_sent".to_owned())
        ]
    );
    // The whole outbox again, as after a retry, plus what came since: only
    // the new entry is added. Another access is not held back by this one.
    let feed = append(
        &app,
        &[
            ("challenge", "001", "need", "1700000000001-0"),
            ("status", "001", "question_sent", "1700000000002-0"),
            ("status", "001", "token_received", "1700000000003-0"),
            ("challenge", "002", "need", "1700000000001-5"),
        ],
    )
    .await;
    assert_eq!(feed.len(), 4);
    assert_eq!(feed[2].1, "token_received");
    assert_eq!(feed[3], ("challenge".to_owned(), "need".to_owned()));
}

/// How often `append_at`'s feed renews its keys and drops old entries (ms).
const HOUSEKEEPING: u64 = 60_000;

/// Redis's clock, in whole seconds as Unix ms.
async fn redis_now(app: &TestApp) -> u64 {
    let mut conn = app.conn.clone();
    let time: (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn)
        .await
        .expect("TIME");
    time.0 * 1000
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_feed_renews_its_lifetimes_and_drops_old_entries_once_a_minute() {
    let app = TestApp::spawn().await;
    let mut conn = app.conn.clone();
    let t0 = redis_now(&app).await;
    let feed = "2fa:customer:{c1}:events";
    let latest = "2fa:customer:{c1}:latest";
    let ttl = |key: &'static str| {
        let mut conn = app.conn.clone();
        async move {
            redis::cmd("PTTL")
                .arg(key)
                .query_async::<i64>(&mut conn)
                .await
                .expect("PTTL")
        }
    };
    // The first append keeps the keys: they live a minute past the keep.
    append_at(&app, t0, 3_600_000, &[("challenge", "001", "need", "1-0")]).await;
    for key in [feed, latest] {
        let left = ttl(key).await;
        assert!(
            left > 90_000_000 && left <= 90_000_000 + 60_000,
            "{key}: {left}"
        );
    }
    // Within the minute an append leaves the lifetimes and old entries
    // alone, even when every entry is past its retention.
    let _: () = redis::cmd("PERSIST")
        .arg(feed)
        .query_async(&mut conn)
        .await
        .expect("PERSIST");
    let kept = append_at(
        &app,
        t0 + HOUSEKEEPING - 1,
        1,
        &[("status", "001", "question_sent", "2-0")],
    )
    .await;
    assert_eq!(kept.len(), 2, "no age trim within the minute");
    assert_eq!(ttl(feed).await, -1, "no renewal within the minute");
    // A minute on, the append renews them and drops what is past its
    // retention: here everything, by a clock a minute ahead.
    let trimmed = append_at(
        &app,
        t0 + HOUSEKEEPING,
        1,
        &[("status", "001", "token_received", "3-0")],
    )
    .await;
    assert!(trimmed.is_empty(), "the age trim ran: {trimmed:?}");
    assert!(ttl(feed).await > 90_000_000);
    let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(feed)
        .query_async(&mut conn)
        .await
        .expect("XINFO");
    let removed: String =
        redis::from_redis_value(info["max-deleted-entry-id"].clone()).expect("an id");
    assert_ne!(
        removed, "0-0",
        "a reader behind the feed learns what it missed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn housekeeping_drops_every_old_entry_not_just_a_first_hundred() {
    let app = TestApp::spawn().await;
    let t0 = redis_now(&app).await;
    for i in 1..=250 {
        let id = format!("{i}-0");
        append_at(
            &app,
            t0,
            3_600_000,
            &[("status", "001", "question_sent", &id)],
        )
        .await;
    }
    // A minute on, by a clock that finds every entry past its retention.
    let left = append_at(
        &app,
        t0 + HOUSEKEEPING,
        1,
        &[("status", "001", "ok", "251-0")],
    )
    .await;
    assert!(
        left.is_empty(),
        "{} entries outlived their retention",
        left.len()
    );
}
