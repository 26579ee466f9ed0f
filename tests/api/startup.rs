//! Starting the binary: a wrong Redis is one clear line and a non-zero exit.

use std::net::TcpListener;
use std::process::Command;

#[test]
fn an_unreachable_redis_is_one_clear_line_naming_the_url() {
    // A port nobody listens on: bind one, then let it go.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://user:s3cret@127.0.0.1:{port}/0");
    let output = Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .env("REDIS_URL", &url)
        .env("TWOFA_LISTEN", "127.0.0.1:0")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
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
