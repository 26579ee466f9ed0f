//! A private `redis-server` process on a free loopback port, in a temp dir,
//! killed when dropped.
//!
//! The tests start one per test, so they are isolated and can kill and
//! restart Redis at will; a newcomer's first `cargo run` starts one when no
//! Redis is running.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a fresh redis-server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Another process may take the free port we picked before Redis binds it;
/// then Redis exits and we try another port.
const PORT_ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    #[error("redis-server is not installed (not found on PATH)")]
    NotInstalled,
    #[error("redis-server did not start: {0}")]
    Failed(String),
}

impl From<std::io::Error> for RedisServerError {
    fn from(error: std::io::Error) -> Self {
        RedisServerError::Failed(error.to_string())
    }
}

pub struct RedisServer {
    /// Behind a lock so that a test holding the server in an `Arc` can stop
    /// and start it again.
    child: Mutex<Child>,
    port: u16,
    dir: TempDir,
    /// The extra arguments it was started with, for a restart.
    extra: Vec<String>,
}

/// How to stop Redis: as an orchestrator does (SIGTERM, after which Redis
/// flushes and fsyncs its append-only file), or as a crash does (SIGKILL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

impl RedisServer {
    /// A throwaway Redis: no persistence at all.
    pub fn start() -> Result<Self, RedisServerError> {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments, such as `--requirepass x`.
    pub fn start_with(extra: &[&str]) -> Result<Self, RedisServerError> {
        let dir = tempfile::tempdir()?;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let mut child = spawn(dir.path(), port, extra)?;
            match wait_until_ready(&mut child, port, dir.path()) {
                Ok(true) => {
                    return Ok(RedisServer {
                        child: Mutex::new(child),
                        port,
                        dir,
                        extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
                    });
                }
                Ok(false) => continue,
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(error);
                }
            }
        }
        Err(RedisServerError::Failed(format!(
            "it exited at every attempt; its last log:\n{}",
            read_log(dir.path())
        )))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the process and waits until it has exited. Its port and its
    /// directory (with any append-only file) are kept for `start_again`.
    pub fn stop(&self, how: Stop) -> Result<(), RedisServerError> {
        let mut child = self.child();
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        match how {
            Stop::Kill => child.kill()?,
            Stop::Term => {
                // std sends only SIGKILL, and the crate has no libc binding:
                // the `kill` command sends SIGTERM.
                let sent = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()?;
                if !sent.success() {
                    return Err(RedisServerError::Failed(format!(
                        "kill -TERM exited with {sent}"
                    )));
                }
            }
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RedisServerError::Failed(format!(
                    "it did not exit within {START_TIMEOUT:?} of {how:?}; its log:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port, in the same
    /// directory and with the same arguments, so it reloads what it had
    /// persisted; returns once it answers PING (after loading its data).
    pub fn start_again(&self) -> Result<(), RedisServerError> {
        let mut child = self.child();
        if child.try_wait()?.is_none() {
            return Err(RedisServerError::Failed(
                "start_again on a server that is still running".to_owned(),
            ));
        }
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut restarted = spawn(self.dir.path(), self.port, &extra)?;
        match wait_until_ready(&mut restarted, self.port, self.dir.path()) {
            Ok(true) => {
                *child = restarted;
                Ok(())
            }
            Ok(false) => Err(RedisServerError::Failed(format!(
                "it exited at restart (is port {} taken?); its log:\n{}",
                self.port,
                self.log()
            ))),
            Err(error) => {
                let _ = restarted.kill();
                let _ = restarted.wait();
                Err(error)
            }
        }
    }

    /// `stop`, then `start_again`.
    pub fn restart(&self, how: Stop) -> Result<(), RedisServerError> {
        self.stop(how)?;
        self.start_again()
    }

    /// A panic elsewhere while the lock was held leaves the child as it was.
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

/// Retries a PING until Redis answers. `Ok(false)` when the process exited
/// (its port was taken), an error when it hangs.
fn wait_until_ready(child: &mut Child, port: u16, dir: &Path) -> Result<bool, RedisServerError> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        if ping(port) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(RedisServerError::Failed(format!(
        "no answer on port {port} within {START_TIMEOUT:?}; its log:\n{}",
        read_log(dir)
    )))
}

fn spawn(dir: &Path, port: u16, extra: &[&str]) -> Result<Child, RedisServerError> {
    let port = port.to_string();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no", "--daemonize", "no"])
        .args(["--logfile", "redis.log"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RedisServerError::NotInstalled,
        _ => RedisServerError::Failed(e.to_string()),
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// True when something on the port answers PING like Redis does (an AUTH
/// error counts: a password-protected Redis is up too).
fn ping(port: u16) -> bool {
    let answer = || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        stream.write_all(b"PING\r\n")?;
        let mut reply = [0u8; 64];
        let n = stream.read(&mut reply)?;
        Ok(reply[..n].to_vec())
    };
    matches!(answer(), Ok(reply) if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"))
}
