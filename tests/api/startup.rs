//! Starting the binary: a wrong Redis is one clear line and a non-zero exit.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::{Binary, TestApp, free_port, refused_start, start_redis};

#[test]
fn an_unreachable_redis_is_one_clear_line_naming_the_url() {
    let port = free_port();
    let url = format!("redis://user:s3cret@127.0.0.1:{port}/0");
    let stderr = refused_start(&[("REDIS_URL", &url), ("TWOFA_REDIS_WAIT", "0")]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&format!("redis://user:***@127.0.0.1:{port}/0")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "the password leaked: {stderr}");
}

#[test]
fn serve_is_the_default_subcommand() {
    let help = Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--redis-url",
        "--listen",
        "--prefix",
        "--max-wait",
        "--retention",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("serve"), "{text}");
}

/// Runs the binary against a Redis that answers, expecting it to refuse
/// this configuration.
fn refused(env: &[(&str, &str)]) -> String {
    let redis = start_redis();
    let url = redis.url();
    let mut env = env.to_vec();
    env.insert(0, ("REDIS_URL", &url));
    refused_start(&env)
}

#[test]
fn without_keys_it_refuses_any_address_but_loopback() {
    let stderr = refused(&[("TWOFA_LISTEN", "0.0.0.0:0")]);
    assert!(stderr.contains("TWOFA_API_KEYS"), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[test]
fn short_or_malformed_keys_are_refused_at_start_without_being_shown() {
    let stderr = refused(&[("TWOFA_API_KEYS", "scraper:short-secret")]);
    assert!(stderr.contains("at least 32"), "{stderr}");
    assert!(
        !stderr.contains("short-secret"),
        "the key was shown: {stderr}"
    );
    let stderr = refused(&[("TWOFA_API_KEYS", "root:0123456789abcdef0123456789abcdef")]);
    assert!(stderr.contains("role:key"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_from_a_file_open_the_gateway_on_any_address() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("keys");
    let key = "frontend-0123456789abcdef0123456789abcd";
    std::fs::write(&file, format!("# TesBack\n\nfrontend:{key}\n")).expect("keys file");
    let path = file.to_string_lossy().into_owned();
    let gateway = Binary::serve(
        &redis,
        &[
            ("TWOFA_API_KEYS_FILE", &path),
            ("TWOFA_LISTEN", "0.0.0.0:0"),
        ],
    );
    let port = gateway.addr.rsplit(':').next().expect("port");
    let mut app = TestApp::spawn_on(redis).await;
    app.base = format!("http://127.0.0.1:{port}");
    let listed = app
        .send_as(
            Some(&format!("Bearer {key}")),
            reqwest::Method::GET,
            "/v1/customers/c1/challenges",
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let anonymous = app
        .send_as(
            None,
            reqwest::Method::GET,
            "/v1/customers/c1/challenges",
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn without_keys_on_loopback_it_warns_loudly_that_authentication_is_off() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[]);
    gateway.child.kill().expect("stop the gateway");
    let log = gateway.log_before_listening.join("\n");
    assert!(log.contains("AUTHENTICATION IS OFF"), "{log}");
}

#[test]
fn a_redis_that_never_comes_is_waited_for_as_long_as_told_then_one_clear_line() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let stderr = refused_start(&[("REDIS_URL", &url), ("TWOFA_REDIS_WAIT", "1")]);
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(1) && took < std::time::Duration::from_secs(3),
        "gave up after {took:?}"
    );
    assert!(stderr.contains("waiting for Redis"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:") && last.contains(&url),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_started_before_its_redis_serves_once_redis_answers() {
    // reqwest's rustls needs a provider, which nothing else here installs.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("a dir for Redis");
    let mut redis = None;
    // Redis starts only once the gateway has said it is waiting for it;
    // until then nothing listens on the gateway's port either.
    let gateway = Binary::serve_at(&url, &[], |line| {
        if redis.is_none() && line.contains("waiting for Redis") {
            let server = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server starts");
            redis = Some(KillOnDrop(server));
        }
    });
    assert!(redis.is_some(), "the gateway said it was waiting");
    assert!(
        gateway
            .log_before_listening
            .iter()
            .any(|line| line.contains("Redis answers")),
        "{:?}",
        gateway.log_before_listening
    );
    let ready = reqwest::get(format!("{}/readyz", gateway.url()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let posted = reqwest::Client::new()
        .put(format!("{}/v1/accesses/late/challenge", gateway.url()))
        .json(&serde_json::json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q"}))
        .send()
        .await
        .expect("a post");
    assert_eq!(posted.status(), StatusCode::CREATED);
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
