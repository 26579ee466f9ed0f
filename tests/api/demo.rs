//! The demo front end as HTTP serves it, and the demo scraper driven by a
//! customer's answers. (The page's behaviour in a browser is issue 8's
//! browser tests' business.)

use std::process::Stdio;

use reqwest::StatusCode;
use tokio::io::AsyncReadExt;

use crate::support::{TestApp, eventually, settled};

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    for (path, content_type, marker) in [
        ("/", "text/html; charset=utf-8", r#"<label for="customer">"#),
        (
            "/demo/app.js",
            "text/javascript; charset=utf-8",
            "/v1/tokens",
        ),
        ("/demo/app.css", "text/css; charset=utf-8", "@media"),
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("served");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().expect("text");
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} lacks {marker}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_demo_serves_no_page() {
    let app = TestApp::spawn_with(crate::support::start_redis(), |config| {
        config.no_demo = true;
    })
    .await;
    for path in ["/", "/demo/app.js", "/demo/app.css"] {
        let reply = app.send(reqwest::Method::GET, path, None).await;
        reply.assert_error(StatusCode::NOT_FOUND, "no_route");
    }
    // The API is unaffected.
    assert_eq!(
        app.challenge("001", "c1", "q").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_scraper_prints_each_token_and_retries_after_a_refused_code() {
    let app = TestApp::spawn().await;
    let mut scraper = tokio::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .args([
            "demo-scraper",
            "--customer",
            "c1",
            "--bank",
            "Real",
            "--access",
            "d1",
        ])
        .args(["--url", &app.base])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo scraper starts");
    let attempt_waiting = |attempt: u64| {
        let app = &app;
        move || async move {
            let access = app.access("d1").await;
            access.body["attempt"] == attempt
                && matches!(
                    access.body["status"].as_str(),
                    Some("need" | "question_sent")
                )
                && app.subscriber.waiting() == 1
        }
    };
    eventually("the demo scraper waits on attempt 1", attempt_waiting(1)).await;
    assert_eq!(app.submit("d1", "000000").await.status, StatusCode::OK);
    eventually("the refused code brings attempt 2", attempt_waiting(2)).await;
    assert_eq!(app.submit("d1", "123456").await.status, StatusCode::OK);

    let mut stdout = scraper.stdout.take().expect("piped stdout");
    let status = settled(tokio::spawn(async move { scraper.wait().await })).await;
    assert!(status.is_ok_and(|s| s.success()), "the demo scraper failed");
    let mut printed = String::new();
    stdout.read_to_string(&mut printed).await.expect("stdout");
    assert_eq!(printed, "000000\n123456\n");
    let trail: Vec<String> = app
        .send(reqwest::Method::GET, "/v1/accesses/d1/events", None)
        .await
        .body
        .as_array()
        .expect("a trail")
        .iter()
        .filter_map(|event| event["type"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        trail,
        [
            "challenge",
            "token_received",
            "rejected",
            "challenge",
            "token_received",
            "ok"
        ]
    );
}
