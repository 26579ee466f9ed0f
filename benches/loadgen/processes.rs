//! The processes under measure: the real `twofa-bridge` binary, a bare axum
//! server for comparison, and what Redis and `/proc` say about them.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use hyper::{Method, StatusCode};
use redis::aio::MultiplexedConnection;
use serde_json::Value;

use crate::Result;
use crate::client::Conn;

/// How long a child process may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process that listens on a loopback port; killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// The gateway, exactly as a user runs it, logging JSON so that the
    /// listening line can be read.
    pub fn gateway(redis_url: &str) -> Result<Server> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_twofa-bridge"));
        command
            .env("REDIS_URL", redis_url)
            .env("TWOFA_LISTEN", "127.0.0.1:0")
            .env("TWOFA_LOG_FORMAT", "json")
            .env("TWOFA_MAX_WAIT", "3600")
            .env("RUST_LOG", "warn,twofa_bridge=info");
        Self::start(command, |line| {
            let object: Value = serde_json::from_str(line).ok()?;
            let fields = &object["fields"];
            (fields["message"] == "twofa-bridge is listening")
                .then(|| fields["addr"].as_str()?.parse().ok())
                .flatten()
        })
    }

    /// This benchmark's own binary in `--serve-bare` mode.
    pub fn bare() -> Result<Server> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--serve-bare");
        Self::start(command, |line| {
            line.strip_prefix("listening ")?.parse().ok()
        })
    }

    fn start(
        mut command: Command,
        listening: impl Fn(&str) -> Option<SocketAddr>,
    ) -> Result<Server> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (lines, log) = mpsc::channel();
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(|l| l.ok()) {
                    // After the listening line nobody reads: log lines
                    // (warnings) go to the terminal instead.
                    if let Err(mpsc::SendError(line)) = lines.send(line) {
                        eprintln!("  server: {line}");
                    }
                }
            });
        }
        // Built first, so that an early return still kills the process.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        loop {
            let line = log
                .recv_timeout(START_TIMEOUT)
                .map_err(|_| "the server did not say where it listens")?;
            if let Some(addr) = listening(&line) {
                server.addr = addr;
                return Ok(server);
            }
        }
    }

    /// The process's resident memory, from `/proc`.
    pub fn rss_bytes(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or("no VmRSS in /proc/<pid>/status")?;
        Ok(kib * 1024)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The long polls the gateway holds, from its `twofa_waiters` gauge.
    pub async fn waiters(&self, conn: &mut Conn) -> Result<usize> {
        let body = conn
            .expect(StatusCode::OK, Method::GET, "/metrics", None)
            .await?;
        let text = String::from_utf8_lossy(&body);
        let gauge = text
            .lines()
            .find_map(|line| line.strip_prefix("twofa_waiters "))
            .map_or(Ok(0.0), str::parse::<f64>)?;
        Ok(gauge as usize)
    }

    /// Waits until the gateway holds exactly `n` long polls.
    pub async fn until_waiters(&self, n: usize) -> Result<()> {
        let mut conn = Conn::open(self.addr, 0).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let held = self.waiters(&mut conn).await?;
            if held == n {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("the gateway holds {held} long polls, not {n}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time a process has used so far, user and system, from `/proc`.
pub fn cpu_time(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces, in parentheses.
    let after = stat.rsplit_once(')').ok_or("no ) in /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<u64> { Ok(fields.get(i).ok_or("a short /proc/<pid>/stat")?.parse()?) };
    // utime and stime, fields 14 and 15, in USER_HZ (100 on Linux).
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// Redis's process id, from `INFO server`.
pub async fn redis_pid(admin: &mut MultiplexedConnection) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(admin).await?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .map(|pid| pid.trim().to_owned())
        .ok_or_else(|| "no process_id in INFO server".into())
}

/// The benchmark's own Redis connection, named so it can be told apart.
pub async fn admin(redis_url: &str) -> Result<MultiplexedConnection> {
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("loadgen")
        .query_async::<()>(&mut conn)
        .await?;
    Ok(conn)
}

/// Per command, calls and the microseconds they took, from `INFO
/// commandstats`. A script's time includes that of the commands it calls,
/// which are counted too.
pub type CommandStats = BTreeMap<String, (u64, u64)>;

/// What Redis has run so far, but for `INFO` (this benchmark's own reads).
pub async fn command_stats(admin: &mut MultiplexedConnection) -> Result<CommandStats> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await?;
    let mut stats = BTreeMap::new();
    for line in info.lines() {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let Some(command) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        if command == "info" {
            continue;
        }
        let field = |key: &str| -> Result<u64> {
            let value = fields
                .split(',')
                .find_map(|field| field.strip_prefix(key))
                .ok_or("a field missing in INFO commandstats")?;
            Ok(value.parse()?)
        };
        stats.insert(command.to_owned(), (field("calls=")?, field("usec=")?));
    }
    Ok(stats)
}

/// Per command, the calls that clients sent Redis themselves while `during`
/// ran, as opposed to those a script made: `INFO commandstats` counts both
/// alike. MONITOR tells them apart (a script's calls come from `lua`), but
/// slows Redis down, so it watches a few calls of their own, never a
/// measured run.
pub async fn direct_calls(
    redis_url: &str,
    admin: &mut MultiplexedConnection,
    during: impl Future<Output = Result<()>>,
) -> Result<BTreeMap<String, u64>> {
    const MARKER: &str = "loadgen: the end of direct_calls";
    let monitor = redis::Client::open(redis_url)?.get_async_monitor().await?;
    let mut lines = monitor.into_on_message::<String>();
    during.await?;
    // MONITOR shows commands in the order they ran, so once this one shows,
    // every command of `during` has.
    redis::cmd("ECHO")
        .arg(MARKER)
        .query_async::<()>(admin)
        .await?;
    let mut calls = BTreeMap::new();
    while let Some(line) = lines.next().await {
        // `<time> [<db> <client>] "<command>" "<argument>"…`
        let (client, command) = line
            .split_once('[')
            .and_then(|(_, rest)| rest.split_once("] \""))
            .and_then(|(source, rest)| Some((source.split_once(' ')?.1, rest.split_once('"')?.0)))
            .ok_or_else(|| format!("a MONITOR line not understood: {line}"))?;
        if line.contains(MARKER) {
            return Ok(calls);
        }
        if client != "lua" {
            *calls.entry(command.to_lowercase()).or_default() += 1;
        }
    }
    Err("MONITOR ended before the end of direct_calls".into())
}

/// What Redis ran while `during` ran, and what `during` returned.
pub async fn counted<T>(
    admin: &mut MultiplexedConnection,
    during: impl Future<Output = Result<T>>,
) -> Result<(T, CommandStats)> {
    let before = command_stats(admin).await?;
    let value = during.await?;
    let after = command_stats(admin).await?;
    let ran = after
        .into_iter()
        .map(|(command, (calls, usec))| {
            let (calls_before, usec_before) = before.get(&command).copied().unwrap_or_default();
            (
                command,
                (
                    calls.saturating_sub(calls_before),
                    usec.saturating_sub(usec_before),
                ),
            )
        })
        .filter(|(_, (calls, _))| *calls > 0)
        .collect();
    Ok((value, ran))
}

/// Every command Redis has run so far, but for `INFO`.
pub async fn commands_run(admin: &mut MultiplexedConnection) -> Result<u64> {
    Ok(command_stats(admin)
        .await?
        .values()
        .map(|(calls, _)| calls)
        .sum())
}

/// Redis commands per second over `window`, while the caller holds still.
pub async fn command_rate(admin: &mut MultiplexedConnection, window: Duration) -> Result<f64> {
    let before = commands_run(admin).await?;
    tokio::time::sleep(window).await;
    let after = commands_run(admin).await?;
    Ok((after - before) as f64 / window.as_secs_f64())
}

/// Redis connections held by others than this benchmark: the gateways.
pub async fn gateway_connections(admin: &mut MultiplexedConnection) -> Result<usize> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(admin).await?;
    Ok(list
        .lines()
        .filter(|line| !line.contains(" name=loadgen "))
        .count())
}

/// `--serve-bare`: one axum route, as light as a JSON route gets, served
/// the same way on the same runtime as the gateway, for the HTTP ceiling.
pub fn serve_bare() -> Result<()> {
    use axum::Json;
    use axum::routing::post;
    use axum::serve::ListenerExt;

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/v1/tokens",
            post(|Json(body): Json<Value>| async move {
                Json(serde_json::json!({ "access": body["access"], "status": "token_received" }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        // As the gateway does: a small answer is sent at once.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}
