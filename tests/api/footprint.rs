//! What a challenge costs Redis, as a guard: the bytes a finished challenge
//! keeps for its retention, and the commands a token submission runs. The
//! benchmark (`cargo bench --bench loadgen`, BENCHMARKS.md) prints the exact
//! figures; these bounds sit above today's with a margin, so a change that
//! doubles either fails here.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::support::TestApp;

/// Today this test measures about 7,200 bytes a finished challenge (the
/// access's hash, its audit-trail stream, whose node Redis sizes at about
/// 4 KiB however few its entries, its wake list, and its share of its
/// customer's feed, ten challenges a customer); the benchmark about 6,100.
const MAX_BYTES_PER_FINISHED_CHALLENGE: u64 = 10_000;

/// Today: 22 (2 functions and the commands they run, and 3 plain ones).
const MAX_COMMANDS_PER_SUBMISSION: u64 = 30;

const CHALLENGES: usize = 300;
const CUSTOMERS: usize = 30;

impl TestApp {
    /// Every command Redis ran since the last `CONFIG RESETSTAT`, those
    /// that functions called included, but the test's own.
    async fn commands_run(&self) -> u64 {
        let stats = self.redis_info("commandstats").await;
        stats
            .lines()
            .filter_map(|line| line.strip_prefix("cmdstat_"))
            .filter(|line| !line.starts_with("config") && !line.starts_with("info"))
            .filter_map(|line| {
                let calls = line.split_once("calls=")?.1;
                calls.split(',').next()?.parse::<u64>().ok()
            })
            .sum()
    }
}

/// Posts the challenges `access-<i>` for customers round-robin, and shows
/// them to their customers.
async fn posted_and_shown(app: &TestApp, prefix: &str) -> Vec<String> {
    let accesses: Vec<String> = (0..CHALLENGES).map(|i| format!("{prefix}-{i}")).collect();
    for (n, chunk) in accesses.chunks(50).enumerate() {
        let posts = chunk.iter().enumerate().map(|(i, access)| {
            let customer = format!("{prefix}-c{}", (n * 50 + i) % CUSTOMERS);
            async move { app.challenge(access, &customer, "Type the code").await }
        });
        for posted in join_all(posts).await {
            assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
        }
    }
    for c in 0..CUSTOMERS {
        app.listed(&format!("{prefix}-c{c}")).await;
    }
    accesses
}

async fn submitted(app: &TestApp, accesses: &[String]) {
    for chunk in accesses.chunks(50) {
        let submits = chunk.iter().map(|access| app.submit(access, "123456"));
        for answered in join_all(submits).await {
            assert_eq!(answered.status, StatusCode::OK, "{answered:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_challenge_and_a_submission_cost_redis_no_more_than_today_with_a_margin() {
    let app = TestApp::spawn().await;
    let before = app.used_memory().await;
    let accesses = posted_and_shown(&app, "done").await;
    submitted(&app, &accesses).await;
    for chunk in accesses.chunks(50) {
        let reports = chunk.iter().map(|access| app.report(access, "ok"));
        for reported in join_all(reports).await {
            assert_eq!(reported.status, StatusCode::OK, "{reported:?}");
        }
    }
    let per_challenge = (app.used_memory().await - before) / CHALLENGES as u64;
    eprintln!("{per_challenge} bytes per finished challenge");
    assert!(
        per_challenge <= MAX_BYTES_PER_FINISHED_CHALLENGE,
        "{per_challenge} bytes per finished challenge"
    );

    let accesses = posted_and_shown(&app, "work").await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut app.conn.clone())
        .await
        .expect("CONFIG RESETSTAT");
    submitted(&app, &accesses).await;
    let per_submission = app.commands_run().await / CHALLENGES as u64;
    eprintln!("{per_submission} commands per submission");
    assert!(
        per_submission <= MAX_COMMANDS_PER_SUBMISSION,
        "{per_submission} commands per submission"
    );
}
