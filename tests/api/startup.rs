//! Starting the binary: a wrong Redis is one clear line and a non-zero exit.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::{Binary, TestApp, free_port, refused_start, start_redis};

#[test]
fn an_unreachable_redis_is_one_clear_line_naming_the_url() {
    let port = free_port();
    let url = format!("redis://user:s3cret@127.0.0.1:{port}/0");
    let stderr = refused_start(&[("REDIS_URL", &url)]);
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
