//! The command line, as a shell script or a Python scraper would use it.

use std::process::Output;

use serde_json::Value;

use crate::support::TestApp;

/// Runs `twofa-bridge` with these arguments against the gateway at `url`.
async fn cli(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .args(args)
        .env("TWOFA_URL", url)
        .env_remove("TWOFA_API_KEY")
        .output()
        .await
        .expect("the binary runs")
}

/// Posts a challenge for `access` of customer c1, as a scraper's script would.
async fn post(url: &str, access: &str, question: &str) -> Output {
    let args = [
        "challenge",
        access,
        "--customer",
        "c1",
        "--bank",
        "Real",
        "--question",
        question,
    ];
    cli(url, &args).await
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_through_the_command_line() {
    let app = TestApp::spawn().await;
    let url = app.base.as_str();
    let posted = post(url, "001", "123456").await;
    assert_eq!(json(&posted)["status"], "need");

    let waiting = tokio::spawn({
        let url = url.to_owned();
        async move { cli(&url, &["wait", "001", "--timeout", "20"]).await }
    });
    app.until_waiting(1).await;
    let listed = json(&cli(url, &["list", "c1"]).await);
    assert_eq!(listed[0]["doubleAuthQuestion"], "123456");
    json(&cli(url, &["submit", "001", "987654"]).await);
    let waited = crate::support::settled(waiting).await;
    assert!(waited.status.success(), "{waited:?}");
    assert_eq!(
        String::from_utf8_lossy(&waited.stdout),
        "987654\n",
        "the token alone"
    );
    assert!(
        waited.stderr.is_empty(),
        "nothing else, and no spinner off a terminal"
    );
    let reported = json(&cli(url, &["report", "001", "ok", "--reason", "logged in"]).await);
    assert_eq!(reported["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_prints_a_session_and_the_demo_page_signed_in_with_it() {
    let app = TestApp::spawn().await;
    let url = app.base.as_str();
    let minted = json(&cli(url, &["session", "c1", "--ttl", "60"]).await);
    let session = minted["session"].as_str().expect("a session");
    assert!(session.starts_with("tfs_"), "{minted}");
    assert_eq!(minted["customer"], "c1");
    assert_eq!(minted["demoUrl"], format!("{url}/#session={session}"));
    let listed = app
        .as_session(
            session,
            reqwest::Method::GET,
            "/v1/customers/c1/challenges",
            None,
        )
        .await;
    assert_eq!(listed.status, reqwest::StatusCode::OK, "{listed:?}");
    let refused = cli(url, &["session", "c1", "--ttl", "3601"]).await;
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ttl"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_says_how_it_ended_in_its_exit_status() {
    let app = TestApp::spawn().await;
    let url = app.base.as_str();
    post(url, "slow", "q").await;
    let timeout = cli(url, &["wait", "slow", "--timeout", "1"]).await;
    assert_eq!(timeout.status.code(), Some(3), "{timeout:?}");

    post(url, "gone", "q").await;
    json(&cli(url, &["cancel", "gone"]).await);
    let ended = cli(url, &["wait", "gone", "--timeout", "5"]).await;
    assert_eq!(ended.status.code(), Some(4), "{ended:?}");

    let nowhere = cli("http://127.0.0.1:9", &["wait", "x", "--timeout", "1"]).await;
    assert_eq!(nowhere.status.code(), Some(2), "{nowhere:?}");
    let usage = cli(url, &["wait"]).await;
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspect_reads_redis_and_hides_the_token() {
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "q").await;
    app.submit("001", "987654").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .args(["inspect", "001"])
        .env("REDIS_URL", app.redis.url())
        .output()
        .await
        .expect("the binary runs");
    let shown = json(&output);
    assert_eq!(shown["key"], "2fa:access:{001}");
    assert_eq!(shown["fields"]["status"], "token_received");
    assert_eq!(shown["fields"]["token"], "<hidden>");
    assert_eq!(shown["wake"][0], "token_received");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("987654"));
}

#[test]
fn every_subcommand_explains_itself_with_an_example() {
    for command in [
        "serve",
        "challenge",
        "wait",
        "submit",
        "report",
        "list",
        "cancel",
        "session",
        "inspect",
        "openapi",
    ] {
        let help = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
            .args([command, "--help"])
            .output()
            .expect("the binary runs");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains("Example"),
            "{command} --help has no example:\n{text}"
        );
    }
}

#[test]
fn openapi_prints_the_committed_document_without_a_server() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .arg("openapi")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .expect("docs/openapi.json");
    assert!(output.stdout == committed, "docs/openapi.json is stale");
}

#[tokio::test(flavor = "multi_thread")]
async fn readmes_python_scraper_gets_the_token_from_redis_alone() {
    let Some(snippet) = crate::support::readme_python("python-scraper", "redis") else {
        return;
    };
    let app = TestApp::spawn().await;
    app.challenge("001", "c1", "123456").await;
    let scraper = tokio::process::Command::new("python3")
        .args(["-c", &snippet])
        .env("REDIS_URL", app.redis.url())
        .env("ACCESS", "001")
        .output();
    let scraper = tokio::spawn(scraper);
    app.until_blocked_in_blpop().await;
    app.submit("001", "987654").await;
    let output = crate::support::settled(scraper).await.expect("python3 ran");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "987654\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_through_the_command_line_and_the_demo_receiver() {
    use tokio::io::AsyncBufReadExt;
    let app = TestApp::spawn_with(crate::support::start_redis(), |config| {
        config.webhook_allow_http = true;
        config.webhook_allow_private = true;
    })
    .await;
    let port = crate::support::free_port().to_string();
    let hook_url = format!("http://127.0.0.1:{port}/hooks");
    let added = json(
        &cli(
            &app.base,
            &["webhook", "add", &hook_url, "--events", "challenge.waiting"],
        )
        .await,
    );
    let (id, secret) = (
        added["id"].as_str().expect("an id"),
        added["secret"].as_str().expect("a secret"),
    );
    assert_eq!(added["events"], serde_json::json!(["challenge.waiting"]));
    let mut receiver = tokio::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .args(["demo-receiver", "--port", &port, "--secret", secret])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the receiver starts");
    let mut said = tokio::io::BufReader::new(receiver.stderr.take().expect("stderr")).lines();
    let listening = said.next_line().await.expect("stderr").unwrap_or_default();
    assert!(listening.contains("listening"), "{listening}");
    let mut printed = tokio::io::BufReader::new(receiver.stdout.take().expect("stdout")).lines();
    app.challenge("001", "c1", "Enter the code").await;
    let line = tokio::time::timeout(crate::support::PATIENCE, printed.next_line())
        .await
        .expect("a message in time")
        .expect("stdout")
        .expect("a line");
    let line: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(line["message"]["type"], "challenge.waiting", "{line}");
    assert!(
        line["webhookId"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );

    let listed = json(&cli(&app.base, &["webhook", "list"]).await);
    assert_eq!(listed[0]["id"], id);
    assert!(listed[0].get("secret").is_none());
    let rows = json(&cli(&app.base, &["webhook", "deliveries", id, "--limit", "5"]).await);
    assert_eq!(rows[0]["type"], "challenge.waiting");
    let rotated = json(&cli(&app.base, &["webhook", "rotate", id]).await);
    assert!(
        rotated["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_") && s != secret)
    );
    json(&cli(&app.base, &["webhook", "remove", id]).await);
    assert_eq!(
        json(&cli(&app.base, &["webhook", "list"]).await),
        serde_json::json!([])
    );
    let unknown = cli(
        &app.base,
        &["webhook", "add", &hook_url, "--events", "everything"],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}
