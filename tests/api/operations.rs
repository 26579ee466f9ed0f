//! What operators see: Prometheus metrics, JSON logs, and Redis behind a
//! password.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Binary, TestApp, free_port, settled, start_redis};

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_the_story_without_naming_anyone() {
    let app = TestApp::spawn().await;
    let (access, customer) = ("acc-metrics-7f3e", "cust-metrics-9b2d");
    app.challenge(access, customer, "q").await;
    let waiter = app.spawn_wait(access, 10.0);
    app.until_waiting(1).await;
    app.listed(customer).await;
    app.submit(access, "tok-metrics-5521").await;
    settled(waiter).await;
    app.report(access, "ok").await;

    let metrics = app.send_as(None, Method::GET, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().map(str::to_owned).unwrap_or_default();
    for name in [
        "twofa_challenges_created_total{kind=\"code\"}",
        "twofa_tokens_submitted_total",
        "twofa_outcomes_total{status=\"ok\"}",
        "twofa_waiters",
        "twofa_feed_clients",
        "twofa_wait_duration_seconds_bucket",
        "twofa_wake_latency_seconds_bucket",
        "twofa_http_requests_total{route=\"/v1/tokens\",status=\"200\"}",
        "twofa_http_request_duration_seconds_bucket",
        "twofa_redis_errors_total",
        "twofa_subscriber_reconnects_total",
    ] {
        assert!(text.contains(name), "no {name} in:\n{text}");
    }
    for secret in [access, customer, "tok-metrics-5521"] {
        assert!(!text.contains(secret), "{secret} is in the metrics");
    }
}

#[test]
fn json_logs_are_one_object_a_line() {
    let redis = start_redis();
    let mut gateway = Binary::serve(&redis, &[("TWOFA_LOG_FORMAT", "json")]);
    gateway.child.kill().expect("stop the gateway");
    let mut lines = gateway.log_before_listening.clone();
    lines.extend(gateway.log_after_exit());
    assert!(!lines.is_empty());
    for line in &lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            object["level"].is_string() && object["timestamp"].is_string(),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_behind_a_password_works_and_the_password_never_shows() {
    let password = "pw-7c1d9e42a";
    let redis = crate::support::start_redis_with(&["--requirepass", password]);
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .map(str::to_owned)
        .expect("port");
    let url = format!("redis://:{password}@127.0.0.1:{port}");
    let gateway = Binary::serve(&redis, &[("REDIS_URL", &url), ("RUST_LOG", "debug")]);
    let base = gateway.url();
    let http = reqwest::Client::new();
    let body =
        serde_json::json!({"customer": "c1", "finEntityName": "Real", "doubleAuthQuestion": "q"});
    let posted = http
        .put(format!("{base}/v1/accesses/001/challenge"))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(posted.status(), StatusCode::CREATED);
    let ready = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    drop(gateway);

    let wrong = format!("redis://:not-{password}@127.0.0.1:{port}");
    let stderr = crate::support::refused_start(&[("REDIS_URL", &wrong)]);
    assert!(stderr.contains(":***@127.0.0.1"), "{stderr}");
    assert!(!stderr.contains(password), "the password leaked: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_redis_is_reached_with_rediss() {
    // A private CA, a server certificate for 127.0.0.1, and a redis-server
    // that speaks only TLS.
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_string_lossy().into_owned()
    };
    let ca_file = write("ca.pem", ca_cert.pem());
    let cert_file = write("server.pem", server.pem());
    let key_file = write("server.key", server_key.serialize_pem());
    let tls_port = free_port().to_string();
    let tls = crate::support::start_redis_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{tls_port}");
    // The gateway trusts the private CA the way any rustls program on Linux
    // can be told to: SSL_CERT_FILE.
    let gateway = Binary::serve(&tls, &[("REDIS_URL", &url), ("SSL_CERT_FILE", &ca_file)]);
    let ready = reqwest::get(format!("{}/readyz", gateway.url()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
}
