//! Concurrency chaos: 32 tasks drive 1,000 accesses through two gateways on
//! one Redis with random calls that keep colliding on the same accesses
//! (posts, lists, duplicate submissions, cancels, reports, short waits,
//! expiries). Whatever the interleaving, every answer is one its route
//! documents for a race, each access's trail is a legal walk that ends where
//! its hash is, every waiter gets exactly the token accepted for it, and the
//! pending index holds exactly the waiting accesses. A failing run prints
//! its seed; `FAULTS_SEED=<seed>` replays it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{
    Reply, Rng, TestApp, TrailStep, eventually, field, redis_connection, start_redis,
    stored_hashes, trails,
};

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
