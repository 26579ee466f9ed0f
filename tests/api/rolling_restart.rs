//! A rolling restart under load: of two gateways on one Redis, each in turn
//! gets SIGTERM and is started again on its port, while fifty scrapers and
//! their TesBacks go on through both. No token is lost, no status skipped,
//! and every request that fails does so transiently and a retry cures it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use twofa_bridge::client::{Client, ClientError};
use twofa_bridge::model::{Outcome, Status};

use crate::support::{
    Binary, Rng, code_challenge, eventually, field, free_port, redis_connection, settled,
    start_redis, step, stored_hashes, token_for, trails,
};

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
        let request = code_challenge(&customer, "Enter the code sent by SMS");
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
