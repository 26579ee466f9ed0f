//! The client subcommands of `twofa-bridge`, for shell scripts and for
//! scrapers in any language: `challenge`, `wait`, `submit`, `report`,
//! `list`, `cancel`, and `inspect` (which reads Redis itself, for
//! operators); `webhook` for the admin's endpoints, and `demo-receiver`.
//!
//! Results go to stdout as JSON (a token alone, for `wait`); everything
//! else, such as errors and the spinner, goes to stderr.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::auth::Secret;
use crate::client::{Client, ClientError};
use crate::config::DEFAULT_REDIS_URL;
use crate::model::{
    AccessId, BankName, ChallengeRequest, CreatedSession, ExpiresIn, Kind, Outcome, Question,
    Reason, SessionTtl, Token,
};
use crate::redis_target::{Target, TargetError, redacted_url};
use crate::store::{Keys, Prefix};

mod demo_scraper;
mod webhook;
pub use demo_scraper::{DemoScraperArgs, demo_scraper};
pub use webhook::{DemoReceiverArgs, WebhookArgs, demo_receiver, webhook};

/// `wait` exit codes, for scripts: a token is 0.
const EXIT_TIMEOUT: u8 = 3;
const EXIT_ENDED: u8 = 4;
/// A usage or connection error, as clap's own usage errors.
const EXIT_USAGE: u8 = 2;
/// Any other refusal from the gateway (a conflict, an unknown access).
const EXIT_REFUSED: u8 = 1;

/// How long `inspect` waits for Redis.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the gateway is, and the key to show it.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The gateway's base URL.
    #[arg(long, env = "TWOFA_URL", default_value = "http://127.0.0.1:8080")]
    url: String,

    /// An API key of the role the command needs.
    #[arg(long, env = "TWOFA_API_KEY", hide_env_values = true)]
    api_key: Option<Secret>,
}

impl Remote {
    fn client(&self) -> Result<Client, ClientError> {
        Client::new(&self.url, self.api_key.as_ref().map(Secret::expose))
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: twofa-bridge challenge 001 --customer c1 --bank Real --question 123456"
)]
pub struct ChallengeArgs {
    /// The access the bank asks about.
    access: String,
    #[arg(long)]
    customer: String,
    /// The bank's name as the customer knows it.
    #[arg(long)]
    bank: String,
    /// The bank's question, shown to the customer.
    #[arg(long)]
    question: String,
    /// Seconds the challenge waits; the gateway's default when absent.
    #[arg(long)]
    expires_in: Option<u64>,
    /// code, text or decoupled (choice and image need the HTTP API).
    #[arg(long, value_enum)]
    kind: Option<CliKind>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliKind {
    Code,
    Text,
    Decoupled,
}

impl From<CliKind> for Kind {
    fn from(kind: CliKind) -> Kind {
        match kind {
            CliKind::Code => Kind::Code,
            CliKind::Text => Kind::Text,
            CliKind::Decoupled => Kind::Decoupled,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Prints the token alone on stdout. Exit status: 0 with a token, \
3 when the timeout passed, 4 when the challenge expired or was cancelled, \
2 on a usage or connection error.\n\nExample: TOKEN=$(twofa-bridge wait 001 --timeout 300)"
)]
pub struct WaitArgs {
    access: String,
    /// Seconds to wait in all, across as many long polls as it takes.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: twofa-bridge submit 001 987654")]
pub struct SubmitArgs {
    access: String,
    /// The token the customer typed.
    token: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: twofa-bridge report 001 ok")]
pub struct ReportArgs {
    access: String,
    /// ok or rejected.
    #[arg(value_enum)]
    outcome: CliOutcome,
    /// Why, kept in the hash and the audit trail.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CliOutcome {
    Ok,
    Rejected,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: twofa-bridge list c1")]
pub struct ListArgs {
    customer: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Prints the session as JSON, with `demoUrl`: the demo page signed in with it.\n\n\
Example: twofa-bridge session c1 --ttl 900"
)]
pub struct SessionArgs {
    customer: String,
    /// Seconds the session lives (1 to 3600); the gateway's default when absent.
    #[arg(long)]
    ttl: Option<SessionTtl>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
#[command(after_help = "Example: twofa-bridge cancel 001")]
pub struct CancelArgs {
    access: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
#[command(after_help = "The token, when there is one, is shown as <hidden>.\n\n\
Example: REDIS_URL=redis://127.0.0.1:6379 twofa-bridge inspect 001")]
pub struct InspectArgs {
    access: String,
    /// The Redis the gateways use.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = DEFAULT_REDIS_URL)]
    redis_url: String,
    /// The gateways' key prefix.
    #[arg(long, env = "TWOFA_PREFIX", default_value = "2fa")]
    prefix: Prefix,
}

pub async fn challenge(args: ChallengeArgs) -> ExitCode {
    let request = (|| {
        let mut request = ChallengeRequest::code(
            &args.customer,
            BankName::parse(args.bank.as_str())?,
            Question::parse(args.question.as_str())?,
        );
        request.expires_in = args.expires_in.map(ExpiresIn::from_secs).transpose()?;
        request.kind = args.kind.map(Kind::from);
        Ok::<_, crate::model::Invalid>(request)
    })();
    let request = match request {
        Ok(request) => request,
        Err(invalid) => return usage(&invalid.to_string()),
    };
    finish(async {
        args.remote
            .client()?
            .challenge(&args.access, &request)
            .await
    })
    .await
}

pub async fn wait(args: WaitArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(error) => return failed(&error),
    };
    let total = Duration::from_secs(args.timeout);
    let spinner = Spinner::start(&client, &args.access, total).await;
    let answer = client.wait_token(&args.access, total).await;
    drop(spinner);
    match answer {
        Ok(answer) => {
            println!("{}", answer.token.expose());
            ExitCode::SUCCESS
        }
        Err(error) => failed(&error),
    }
}

pub async fn submit(args: SubmitArgs) -> ExitCode {
    let token = match Token::parse(args.token) {
        Ok(token) => token,
        Err(invalid) => return usage(&invalid.to_string()),
    };
    finish(async { args.remote.client()?.submit(&args.access, token).await }).await
}

pub async fn report(args: ReportArgs) -> ExitCode {
    let reason = match args.reason.map(Reason::parse).transpose() {
        Ok(reason) => reason,
        Err(invalid) => return usage(&invalid.to_string()),
    };
    let outcome = match args.outcome {
        CliOutcome::Ok => Outcome::Ok,
        CliOutcome::Rejected => Outcome::Rejected,
    };
    finish(async {
        args.remote
            .client()?
            .report(&args.access, outcome, reason)
            .await
    })
    .await
}

pub async fn list(args: ListArgs) -> ExitCode {
    finish(async { args.remote.client()?.list(&args.customer).await }).await
}

/// What `session` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MintedSession {
    #[serde(flatten)]
    created: CreatedSession,
    /// The demo page, with the session in its fragment, which no request
    /// sends to a server.
    demo_url: String,
}

pub async fn session(args: SessionArgs) -> ExitCode {
    finish(async {
        let client = args.remote.client()?;
        let created = client.create_session(&args.customer, args.ttl).await?;
        let demo_url = format!("{}/#session={}", client.base_url(), created.session);
        Ok(MintedSession { created, demo_url })
    })
    .await
}

pub async fn cancel(args: CancelArgs) -> ExitCode {
    finish(async { args.remote.client()?.cancel(&args.access).await }).await
}

/// What `inspect` prints: the access's keys as redis-cli would show them,
/// the token hidden.
#[derive(Serialize)]
struct Inspection {
    key: String,
    /// Milliseconds the hash still lives, or -2 when there is none.
    ttl_ms: i64,
    fields: std::collections::BTreeMap<String, String>,
    wake: Vec<String>,
}

pub async fn inspect(args: InspectArgs) -> ExitCode {
    let access = match AccessId::parse(args.access) {
        Ok(access) => access,
        Err(invalid) => return usage(&invalid.to_string()),
    };
    let names = Keys::new(args.prefix).access(&access);
    let read = async {
        let target = Target::parse(&args.redis_url)?;
        let mut conn = target.connect(INSPECT_TIMEOUT).await?;
        let read: redis::RedisResult<_> = redis::pipe()
            .cmd("HGETALL")
            .arg(&names.hash)
            .cmd("PTTL")
            .arg(&names.hash)
            .cmd("LRANGE")
            .arg(&names.wake)
            .arg(0)
            .arg(-1)
            .query_async::<(std::collections::BTreeMap<String, String>, i64, Vec<String>)>(
                &mut conn,
            )
            .await;
        Ok::<_, TargetError>(read?)
    };
    match read.await {
        Ok((mut fields, ttl_ms, wake)) => {
            if let Some(token) = fields.get_mut("token") {
                *token = "<hidden>".to_owned();
            }
            print_json(&Inspection {
                key: names.hash,
                ttl_ms,
                fields,
                wake,
            })
        }
        Err(error) => {
            eprintln!(
                "error: cannot read Redis at {}: {error}",
                redacted_url(&args.redis_url)
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prints a successful call's result as JSON, or its error.
async fn finish<T: Serialize>(call: impl Future<Output = Result<T, ClientError>>) -> ExitCode {
    match call.await {
        Ok(result) => print_json(&result),
        Err(error) => failed(&error),
    }
}

pub fn openapi() -> ExitCode {
    print!("{}", crate::http::openapi_json());
    ExitCode::SUCCESS
}

fn print_json(value: &impl Serialize) -> ExitCode {
    match serde_json::to_string(value) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_REFUSED)
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn failed(error: &ClientError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(match error {
        ClientError::TimedOut(_) => EXIT_TIMEOUT,
        ClientError::Expired | ClientError::Cancelled => EXIT_ENDED,
        ClientError::Transport(_) | ClientError::Unavailable { .. } => EXIT_USAGE,
        ClientError::Refused { status: 400, .. } => EXIT_USAGE,
        _ => EXIT_REFUSED,
    })
}

/// A spinner on stderr while `wait` blocks at a terminal: the question and
/// the time left. Never on stdout, which carries the token alone.
struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    async fn start(client: &Client, access: &str, total: Duration) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner { task: None };
        }
        let question = client
            .access(access)
            .await
            .map(|a| format!("{}: {}", a.fin_entity_name, a.question))
            .unwrap_or_else(|_| format!("access {access}"));
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        let started = Instant::now();
        let task = tokio::spawn(async move {
            loop {
                let left = total.saturating_sub(started.elapsed()).as_secs();
                bar.set_message(format!("waiting for the token ({question}), {left} s left"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Spinner { task: Some(task) }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The line the spinner drew is cleared for what comes next.
            eprint!("\r\x1b[2K");
        }
    }
}
