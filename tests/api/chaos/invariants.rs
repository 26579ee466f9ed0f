//! What the chaos run checks once every task is done: the calls' answers,
//! each access's trail against its hash, and the pending index.

use std::collections::{BTreeMap, HashMap};

use redis::aio::MultiplexedConnection;
use reqwest::StatusCode;

use super::{CHAOS_CUSTOMERS, Done, Op, customer_of};
use crate::support::{TrailStep, field};

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

pub(super) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Every call got an answer its route documents for a race, and none a 5xx.
pub(super) fn check_calls(log: &[Done]) {
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
pub(super) fn check_histories(
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
pub(super) async fn check_pending_index(
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
