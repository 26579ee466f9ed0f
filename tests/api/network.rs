//! A network cut between the gateway and Redis, made with a TCP proxy the
//! test controls. A cut connection is never closed, as when a cable is
//! pulled or a NAT entry is lost: the gateway must find it half-open on its
//! own, and after the cut heals its waiters must get their tokens.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::support::{TestApp, eventually, settled, start_redis};

/// Forwards loopback connections to a Redis port until it is cut.
struct Proxy {
    port: u16,
    cut: watch::Sender<bool>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (cut, _) = watch::channel(false);
        // Connections that were cut, or came while cut: held open, never
        // read, never written.
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let state = cut.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut cut = state.subscribe();
                let held = held.clone();
                if *cut.borrow_and_update() {
                    held.lock().expect("held").push(client);
                    continue;
                }
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                tokio::spawn(async move {
                    let was_cut = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut.wait_for(|cut| *cut) => true,
                    };
                    if was_cut {
                        held.lock().expect("held").extend([client, server]);
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            accepting,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection, open or new, stops passing anything.
    fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// New connections pass again; the cut ones stay dead.
    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_network_cut_half_open_connections_are_replaced_and_waiters_get_their_tokens() {
    let redis = start_redis();
    let proxy = Proxy::start(redis.port()).await;
    let url = proxy.url();
    // Short intervals so that the test is quick; the defaults (a 10 s
    // heartbeat, 1.5 s timeouts) find a cut within 12 s.
    let behind_proxy = TestApp::spawn_with(redis.clone(), |config| {
        config.redis_url = Some(url);
        config.heartbeat_ms = 300;
        config.redis_timeout_ms = 300;
    })
    .await;
    let direct = TestApp::spawn_on(redis).await;
    let accesses: Vec<String> = (1..=10).map(|i| format!("cut-{i}")).collect();
    for access in &accesses {
        let posted = behind_proxy.challenge(access, "c1", "q").await;
        assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
    }
    let waiters: Vec<_> = accesses
        .iter()
        .map(|access| behind_proxy.spawn_wait(access, 60.0))
        .collect();
    behind_proxy.until_waiting(accesses.len()).await;
    let reconnects = behind_proxy.subscriber.reconnects();

    proxy.cut();
    // Tokens land while the gateway cannot hear of them.
    for access in &accesses {
        let submitted = direct.submit(access, &format!("token-{access}")).await;
        assert_eq!(submitted.status, StatusCode::OK, "{submitted:?}");
    }
    // The cut is found: not ready, and a request is refused promptly
    // rather than left hanging.
    eventually("the gateway says it is not ready", || async {
        let asked = Instant::now();
        let ready = behind_proxy
            .send(reqwest::Method::GET, "/readyz", None)
            .await;
        assert!(asked.elapsed() < Duration::from_secs(2), "{ready:?}");
        ready.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let refused = behind_proxy.list("c1").await;
    refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(refused.headers.contains_key("retry-after"), "{refused:?}");

    proxy.heal();
    for (access, waiter) in accesses.iter().zip(waiters) {
        let answer = settled(waiter).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body["token"], format!("token-{access}"));
    }
    assert!(
        behind_proxy.subscriber.reconnects() > reconnects,
        "the subscriber replaced its half-open connection"
    );
    eventually("the gateway is ready again", || async {
        behind_proxy
            .send(reqwest::Method::GET, "/readyz", None)
            .await
            .status
            == StatusCode::OK
    })
    .await;
    let posted = behind_proxy.challenge("after-cut", "c1", "q").await;
    assert_eq!(posted.status, StatusCode::CREATED, "{posted:?}");
}
