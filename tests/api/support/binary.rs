//! The real `twofa-bridge` binary as a process: what it refuses at start,
//! what it logs, and how it stops. For the fault tests, it also serves on a
//! fixed port, so that it comes back on the same address after a restart.

use std::time::Duration;

use serde_json::Value;
use twofa_bridge::redis_server::RedisServer;

use super::PATIENCE;

/// Runs the binary on a free loopback port with this environment, expects
/// it to refuse to start, and returns what it printed on stderr.
pub fn refused_start(env: &[(&str, &str)]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
        .env("TWOFA_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "it started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The real `twofa-bridge` binary, serving on a free port, with its log
/// (stderr) collected line by line. Killed when dropped.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: String,
    /// What it logged up to the line saying where it listens.
    pub log_before_listening: Vec<String>,
    log: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    pub fn serve(redis: &RedisServer, env: &[(&str, &str)]) -> Binary {
        Binary::serve_at(&redis.url(), env, |_| {})
    }

    /// The binary on the Redis at `url`, which may not be up yet: each line
    /// it logs before it listens goes to `before_listening` as it comes.
    pub fn serve_at(
        url: &str,
        env: &[(&str, &str)],
        mut before_listening: impl FnMut(&str),
    ) -> Binary {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twofa-bridge"))
            .env("REDIS_URL", url)
            .env("TWOFA_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        // Built first, so that a panic below still kills the process.
        let mut binary = Binary {
            child,
            addr: String::new(),
            log_before_listening: Vec::new(),
            log,
        };
        binary.addr = loop {
            let line = binary
                .log
                .recv_timeout(PATIENCE)
                .expect("the gateway says where it listens");
            if let Some(addr) = listening_addr(&line) {
                break addr;
            }
            before_listening(&line);
            binary.log_before_listening.push(line);
        };
        binary
    }

    /// Every log line after the listening one, once the process has exited.
    pub fn log_after_exit(&mut self) -> Vec<String> {
        self.child.wait().expect("the gateway exits");
        self.log.iter().collect()
    }

    /// The binary on this loopback port, so that it can be started again on
    /// the same address after it stopped.
    pub fn serve_on(redis: &RedisServer, port: u16, env: &[(&str, &str)]) -> Binary {
        let listen = format!("127.0.0.1:{port}");
        let mut with_listen = vec![("TWOFA_LISTEN", listen.as_str())];
        with_listen.extend_from_slice(env);
        let binary = Binary::serve(redis, &with_listen);
        assert_eq!(binary.addr, listen, "the gateway listens where it was told");
        binary
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the gateway to reach its test-only fault point (`fault.rs`:
    /// a step committed, its relay not begun), then SIGKILLs it there.
    pub fn kill_at_fault_point(&mut self) {
        loop {
            let line = self.log.recv_timeout(PATIENCE).expect(
                "the gateway reaches its fault point (is it built with \
                 --features fault-points, as README's test command does?)",
            );
            if line.contains("fault point reached") {
                break;
            }
        }
        self.child.kill().expect("SIGKILL the gateway");
        self.child.wait().expect("the gateway is gone");
    }

    /// SIGTERM, as an orchestrator sends at a deploy.
    pub fn terminate(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// The exit status, if the process exits within `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("the gateway's status") {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the gateway's "is listening" line, as text or as JSON.
fn listening_addr(line: &str) -> Option<String> {
    if let Some((_, addr)) = line.split_once("is listening addr=") {
        return Some(addr.trim().to_owned());
    }
    let object: Value = serde_json::from_str(line).ok()?;
    let fields = &object["fields"];
    (fields["message"] == "twofa-bridge is listening")
        .then(|| fields["addr"].as_str().map(str::to_owned))
        .flatten()
}
