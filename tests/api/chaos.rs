//! Concurrency chaos: 32 tasks drive 1,000 accesses through two gateways on
//! one Redis with random calls that keep colliding on the same accesses
//! (posts, lists, duplicate submissions, cancels, reports, short waits,
//! expiries). Whatever the interleaving, every answer is one its route
//! documents for a race, each access's trail is a legal walk that ends where
//! its hash is, every waiter gets exactly the token accepted for it, and the
//! pending index holds exactly the waiting accesses. A failing run prints
//! its seed; `FAULTS_SEED=<seed>` replays it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    Reply, Rng, TestApp, eventually, redis_connection, start_redis, stored_hashes, trails,
};

mod invariants;
use invariants::{check_calls, check_histories, check_pending_index, now_millis};

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
