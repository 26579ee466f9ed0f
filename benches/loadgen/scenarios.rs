//! The four scenarios of the benchmark, each printing one or two tables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use twofa_bridge::redis_server::RedisServer;

use crate::Result;
use crate::client::calls;
use crate::load::{
    Floor, POOL, SCRAPERS, for_each, full_cycles, received_after, redis_floor, spawn_pollers,
    spawn_waiters_from, submit_at_rate, submit_each,
};
use crate::processes::{self, CommandStats, Server};
use crate::report::{Latencies, Table, ms};

/// How big a run is: the figures, or a smoke run that only shows it works.
pub struct Sizes {
    pub waiters: Vec<usize>,
    pub rates: Vec<usize>,
    /// Seconds of submissions per wake-latency row.
    pub seconds: f64,
    /// How long idle Redis traffic is counted.
    pub idle_window: Duration,
    pub throughput_window: Duration,
    /// Challenges answered in the `POST /v1/tokens` rate run.
    pub tokens: usize,
    pub memory_steps: Vec<usize>,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            waiters: vec![100, 1_000, 10_000],
            rates: vec![200, 1_000],
            seconds: 5.0,
            idle_window: Duration::from_secs(3),
            throughput_window: Duration::from_secs(5),
            tokens: 50_000,
            memory_steps: vec![0, 5_000, 15_000],
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            waiters: vec![10],
            rates: vec![200],
            seconds: 0.05,
            idle_window: Duration::from_millis(200),
            throughput_window: Duration::from_millis(200),
            tokens: 100,
            memory_steps: vec![0, 10],
        }
    }
}

pub struct Bench {
    pub sizes: Sizes,
    /// Dropped (killed) before Redis, so it has nothing to complain of.
    gateway: Server,
    redis: RedisServer,
    admin: MultiplexedConnection,
    /// Makes every run's access ids new.
    runs: usize,
}

impl Bench {
    pub async fn start(sizes: Sizes) -> Result<Bench> {
        let redis = RedisServer::start()?;
        let gateway = Server::gateway(&redis.url())?;
        let admin = processes::admin(&redis.url()).await?;
        Ok(Bench {
            sizes,
            gateway,
            redis,
            admin,
            runs: 0,
        })
    }

    /// `n` new access ids, each with a challenge waiting for its token.
    async fn challenges(&mut self, n: usize) -> Result<Arc<Vec<String>>> {
        self.runs += 1;
        let run = self.runs;
        let ids: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("r{run}-{i}")).collect());
        let posted = ids.clone();
        for_each(self.gateway.addr, POOL, n, move |i| {
            let customer = format!("r{run}-c{}", i % 100);
            let path = calls::challenge_path(&posted[i]);
            (
                Method::PUT,
                path,
                Some(calls::challenge(&customer)),
                StatusCode::CREATED,
            )
        })
        .await?;
        Ok(ids)
    }

    /// Scenario 1: long polls woken by a token, against Redis's own floor.
    pub async fn wake_latency(&mut self) -> Result<()> {
        let mut table = Table::new(
            "1. Wake latency: POST /v1/tokens sent → the long poll's 200 received",
            &[
                "waiters",
                "tokens/s",
                "samples",
                "p50 ms",
                "p99 ms",
                "max ms",
                "p50 × floor",
                "p99 × floor",
                "Redis cmds/s, idle",
            ],
        );
        let largest = self.sizes.waiters.iter().max().copied().unwrap_or(1);
        let floor_samples = self.samples(largest, self.sizes.rates[0]).max(200);
        let floor = redis_floor(&self.redis.url(), 100, floor_samples, self.sizes.rates[0]).await?;
        for n in self.sizes.waiters.clone() {
            for (r, rate) in self.sizes.rates.clone().into_iter().enumerate() {
                let ids = self.challenges(n).await?;
                let waiters = spawn_waiters_from(self.gateway.addr, ids.clone(), 0);
                self.gateway.until_waiters(n).await?;
                let idle = if r == 0 {
                    let rate = processes::command_rate(&mut self.admin, self.sizes.idle_window);
                    format!("{:.1}", rate.await?)
                } else {
                    "".to_owned()
                };
                let samples = self.samples(n, rate);
                let sent = submit_at_rate(self.gateway.addr, &ids, samples, rate).await?;
                let latencies = received_after(waiters, &sent).await?;
                self.gateway.until_waiters(0).await?;
                let mut row = latency_cells(n, rate, &latencies);
                row.extend([
                    ratio(latencies.p50(), floor.p50()),
                    ratio(latencies.p99(), floor.p99()),
                    idle,
                ]);
                table.row(row);
            }
        }
        table.row(vec![
            "Redis floor: BLPOP woken by RPUSH".to_owned(),
            self.sizes.rates[0].to_string(),
            floor.len().to_string(),
            ms(floor.p50()),
            ms(floor.p99()),
            ms(floor.max()),
            "1".to_owned(),
            "1".to_owned(),
            String::new(),
        ]);
        table.print();
        Ok(())
    }

    /// Scenario 2: the old design, a GET of the access every second.
    pub async fn polling(&mut self) -> Result<()> {
        let mut table = Table::new(
            "2. Polling baseline: GET /v1/accesses/{access} every 1 s",
            &[
                "pollers",
                "tokens/s",
                "samples",
                "p50 ms",
                "p99 ms",
                "max ms",
                "Redis cmds/s, idle",
                "per poller per s",
            ],
        );
        let rate = self.sizes.rates[0];
        for n in self.sizes.waiters.clone() {
            let ids = self.challenges(n).await?;
            let pollers = spawn_pollers(self.gateway.addr, &ids);
            // Every poller has started its cycle before the count begins.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let idle = processes::command_rate(&mut self.admin, self.sizes.idle_window).await?;
            let samples = self.samples(n, rate);
            let sent = submit_at_rate(self.gateway.addr, &ids, samples, rate).await?;
            let latencies = received_after(pollers, &sent).await?;
            let mut row = latency_cells(n, rate, &latencies);
            row.extend([format!("{idle:.1}"), format!("{:.2}", idle / n as f64)]);
            table.row(row);
        }
        table.print();
        Ok(())
    }

    /// Scenario 3: full cycles, then `POST /v1/tokens` flat out, against a
    /// bare axum route.
    pub async fn throughput(&mut self) -> Result<()> {
        let mut table = Table::new(
            &format!("3. Throughput, {SCRAPERS} concurrent connections"),
            &[
                "what",
                "count",
                "seconds",
                "per second",
                "vs bare axum",
                "CPU: server",
                "Redis",
                "load generator",
            ],
        );
        let redis_pid = processes::redis_pid(&mut self.admin).await?;
        let gateway_pid = self.gateway.pid().to_string();
        let addr = self.gateway.addr;
        let window = self.sizes.throughput_window;
        let usage = Usage::start(&gateway_pid, &redis_pid)?;
        let (cycles, elapsed) = full_cycles(addr, window).await?;
        let mut row = vec![
            "full cycles (challenge, list, submit, wait, ok)".to_owned(),
            cycles.to_string(),
            format!("{:.2}", elapsed.as_secs_f64()),
            format!("{:.0}", cycles as f64 / elapsed.as_secs_f64()),
            String::new(),
        ];
        row.extend(usage.finish(elapsed)?);
        table.row(row);

        let n = self.sizes.tokens;
        let ids = self.challenges(n).await?;
        let usage = Usage::start(&gateway_pid, &redis_pid)?;
        let ((ours, ours_usage), submitted) = processes::counted(&mut self.admin, async {
            let started = Instant::now();
            submit_each(addr, ids).await?;
            let ours = started.elapsed();
            Ok((ours, usage.finish(ours)?))
        })
        .await?;
        // The floor, the same way: as many calls, as many at once.
        let url = self.redis.url();
        let floor = Floor::load(&url).await?;
        floor.post(n).await?;
        let ((), floor) = processes::counted(&mut self.admin, floor.submit(n)).await?;
        let watched = self.challenges(WATCHED).await?;
        let direct =
            processes::direct_calls(&url, &mut self.admin, submit_each(addr, watched)).await?;
        let profile = redis_profile(&submitted, &floor, &direct, n);

        let bare = Server::bare()?;
        let usage = Usage::start(&bare.pid().to_string(), &redis_pid)?;
        let started = Instant::now();
        submit_each(
            bare.addr,
            Arc::new((0..n).map(|i| format!("r0-{i}")).collect()),
        )
        .await?;
        let ceiling = started.elapsed();
        let bare_usage = usage.finish(ceiling)?;
        let rate = |elapsed: Duration| n as f64 / elapsed.as_secs_f64();
        let mut row = vec![
            "POST /v1/tokens, each storing a token".to_owned(),
            n.to_string(),
            format!("{:.2}", ours.as_secs_f64()),
            format!("{:.0}", rate(ours)),
            format!("{:.0} %", 100.0 * rate(ours) / rate(ceiling)),
        ];
        row.extend(ours_usage);
        table.row(row);
        let mut row = vec![
            "bare axum POST route (JSON in, JSON out)".to_owned(),
            n.to_string(),
            format!("{:.2}", ceiling.as_secs_f64()),
            format!("{:.0}", rate(ceiling)),
            "100 %".to_owned(),
        ];
        row.extend(bare_usage);
        table.row(row);
        table.print();
        profile.print();
        Ok(())
    }

    /// Scenario 4: a fresh gateway's memory as long polls pile up.
    pub async fn memory(&mut self) -> Result<()> {
        let mut table = Table::new(
            "4. Memory per waiter: a fresh gateway's RSS",
            &[
                "waiting long polls",
                "RSS MiB",
                "bytes per waiter",
                "Redis connections",
            ],
        );
        self.gateway = Server::gateway(&self.redis.url())?;
        let steps = self.sizes.memory_steps.clone();
        let largest = steps.iter().max().copied().unwrap_or(0);
        let ids = self.challenges(largest).await?;
        self.gateway.until_waiters(0).await?;
        let base = self.gateway.rss_bytes()?;
        let mut held: Vec<JoinHandle<Result<Instant>>> = Vec::new();
        for n in steps {
            let more: Vec<String> = ids[held.len()..n].to_vec();
            let offset = held.len();
            held.extend(spawn_waiters_from(
                self.gateway.addr,
                Arc::new(more),
                offset,
            ));
            self.gateway.until_waiters(n).await?;
            let rss = self.gateway.rss_bytes()?;
            let per_waiter = match n {
                0 => String::new(),
                n => format!("{:.0}", rss.saturating_sub(base) as f64 / n as f64),
            };
            table.row(vec![
                n.to_string(),
                format!("{:.1}", rss as f64 / (1024.0 * 1024.0)),
                per_waiter,
                processes::gateway_connections(&mut self.admin)
                    .await?
                    .to_string(),
            ]);
        }
        for waiter in held {
            waiter.abort();
        }
        table.print();
        Ok(())
    }

    /// Tokens submitted per row: `seconds` worth at `rate`, at most `n`.
    fn samples(&self, n: usize, rate: usize) -> usize {
        let worth = (self.sizes.seconds * rate as f64).ceil() as usize;
        n.min(worth.max(1))
    }
}

/// Submissions watched with MONITOR, to tell the gateway's own calls from
/// its scripts'.
const WATCHED: usize = 200;

/// Where Redis spent its time during `n` submissions, by command, then the
/// same for `n` calls of the floor, and the two in all. `direct` holds the
/// calls the gateway sent itself during `WATCHED` other submissions.
fn redis_profile(
    submitted: &CommandStats,
    floor: &CommandStats,
    direct: &BTreeMap<String, u64>,
    n: usize,
) -> Table {
    let mut table = Table::new(
        "3b. Redis's work per POST /v1/tokens, from INFO commandstats",
        &["command", "calls", "µs (a script's includes its calls')"],
    );
    let per = |x: f64| x / n.max(1) as f64;
    for (name, ran) in [("", submitted), ("floor: ", floor)] {
        let mut used: Vec<(&String, &(u64, u64))> = ran.iter().collect();
        used.sort_by_key(|(_, (_, usec))| std::cmp::Reverse(*usec));
        for (command, (calls, usec)) in used {
            table.row(vec![
                format!("{name}{command}"),
                format!("{:.2}", per(*calls as f64)),
                format!("{:.1}", per(*usec as f64)),
            ]);
        }
    }
    let own_per_submission = |command: &str| {
        let calls = direct.get(command).copied().unwrap_or_default();
        calls as f64 / WATCHED as f64
    };
    // The floor sends nothing but its EVALSHAs.
    let floor_own = |command: &str| if command == "evalsha" { 1.0 } else { 0.0 };
    let ours = OwnWork::of(submitted, n, own_per_submission);
    let floor = OwnWork::of(floor, n, floor_own);
    for (name, work) in [("gateway", &ours), ("floor", &floor)] {
        table.row(vec![
            format!(
                "total per submission, {name}: {}, with what they called",
                work.commands.join(", ")
            ),
            format!("{:.2}", per(work.calls)),
            format!("{:.1}", per(work.usec)),
        ]);
    }
    table.row(vec![
        "gateway ÷ floor".to_owned(),
        format!("{:.2}", ours.calls / floor.calls.max(1e-9)),
        format!("{:.2}", ours.usec / floor.usec.max(1e-9)),
    ]);
    table
}

/// What a client sent Redis itself: the commands, their calls and their
/// µs, with those of the commands its scripts called.
struct OwnWork<'a> {
    commands: Vec<&'a str>,
    calls: f64,
    usec: f64,
}

impl<'a> OwnWork<'a> {
    /// From what Redis ran during `n` submissions, `own(command)` being how
    /// many calls of each command the client sends per submission. A
    /// script's µs include its calls', so only the share of each command's
    /// calls that the client sent counts: all of an EVALSHA's, none of a
    /// command only scripts call, and for a command called both ways, its
    /// mean µs per call times the client's calls.
    fn of(ran: &'a CommandStats, n: usize, own: impl Fn(&str) -> f64) -> OwnWork<'a> {
        let mut work = OwnWork {
            commands: Vec::new(),
            calls: 0.0,
            usec: 0.0,
        };
        for (command, (calls, usec)) in ran {
            let share = (own(command) * n as f64 / (*calls as f64).max(1.0)).min(1.0);
            if share > 0.0 {
                work.commands.push(command);
                work.calls += share * *calls as f64;
                work.usec += share * *usec as f64;
            }
        }
        work
    }
}

/// CPU used by the server, Redis and this process over a run, each as a
/// share of one core: which of them is the bottleneck.
struct Usage {
    pids: [String; 3],
    before: [Duration; 3],
}

impl Usage {
    fn start(server: &str, redis: &str) -> Result<Usage> {
        let pids = [server.to_owned(), redis.to_owned(), "self".to_owned()];
        let mut before = [Duration::ZERO; 3];
        for (time, pid) in before.iter_mut().zip(&pids) {
            *time = processes::cpu_time(pid)?;
        }
        Ok(Usage { pids, before })
    }

    fn finish(self, elapsed: Duration) -> Result<Vec<String>> {
        self.pids
            .iter()
            .zip(self.before)
            .map(|(pid, before)| {
                let used = processes::cpu_time(pid)?.saturating_sub(before);
                Ok(format!(
                    "{:.0} %",
                    100.0 * used.as_secs_f64() / elapsed.as_secs_f64()
                ))
            })
            .collect()
    }
}

/// A latency row's first cells: who waited, how fast tokens came, and the
/// percentiles.
fn latency_cells(n: usize, rate: usize, latencies: &Latencies) -> Vec<String> {
    vec![
        n.to_string(),
        rate.to_string(),
        latencies.len().to_string(),
        ms(latencies.p50()),
        ms(latencies.p99()),
        ms(latencies.max()),
    ]
}

fn ratio(ours: Duration, floor: Duration) -> String {
    format!("{:.1}", ours.as_secs_f64() / floor.as_secs_f64().max(1e-9))
}
