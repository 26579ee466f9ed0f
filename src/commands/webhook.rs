//! `twofa-bridge webhook …`, the admin's webhook routes from a shell, and
//! `twofa-bridge demo-receiver`, a receiver that prints each verified
//! message, so a newcomer can watch webhooks arrive.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::{Args, Subcommand};

use super::{Remote, finish, usage};
use crate::model::{EventType, NewWebhook};

#[derive(Debug, Args)]
#[command(
    after_help = "Needs an admin key: TWOFA_API_KEY=<admin key> TWOFA_URL=http://127.0.0.1:8080\n\n\
Example: twofa-bridge webhook add https://tesback.example/hooks/2fa --events challenge.waiting"
)]
pub struct WebhookArgs {
    #[command(subcommand)]
    command: WebhookCommand,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Subcommand)]
enum WebhookCommand {
    /// Register an endpoint; prints it with its secret, shown this once.
    Add {
        /// Where messages go: https (http only if the gateway allows it).
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Which messages, comma-separated: challenge.waiting,
        /// access.status_changed (both by default).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Print every endpoint, without secrets.
    List,
    /// Delete an endpoint; its pending messages are dropped.
    Remove { id: String },
    /// Give an endpoint a new secret; the old one signs beside it for the
    /// gateway's rotation grace.
    Rotate { id: String },
    /// Print an endpoint's latest messages, newest first.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub async fn webhook(args: WebhookArgs) -> ExitCode {
    let client = match args.remote.client() {
        Ok(client) => client,
        Err(error) => return super::failed(&error),
    };
    match args.command {
        WebhookCommand::Add {
            endpoint,
            events,
            description,
        } => {
            let mut wanted = Vec::new();
            for event in &events {
                match EventType::parse(event) {
                    Some(event) => wanted.push(event),
                    None => {
                        return usage(&format!(
                            "unknown event {event}: challenge.waiting or access.status_changed"
                        ));
                    }
                }
            }
            let body = NewWebhook {
                url: endpoint,
                events: (!wanted.is_empty()).then_some(wanted),
                description,
            };
            finish(client.create_webhook(&body)).await
        }
        WebhookCommand::List => finish(client.webhooks()).await,
        WebhookCommand::Remove { id } => {
            finish(async {
                client
                    .delete_webhook(&id)
                    .await
                    .map(|()| serde_json::json!({"deleted": id}))
            })
            .await
        }
        WebhookCommand::Rotate { id } => finish(client.rotate_webhook(&id)).await,
        WebhookCommand::Deliveries { id, limit } => {
            finish(client.webhook_deliveries(&id, limit)).await
        }
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: twofa-bridge demo-receiver --port 9000 --secret whsec_…\n\
then register it: twofa-bridge webhook add http://127.0.0.1:9000/hooks (with \
TWOFA_WEBHOOK_ALLOW_HTTP=1 and TWOFA_WEBHOOK_ALLOW_PRIVATE=1 on the gateway)"
)]
pub struct DemoReceiverArgs {
    /// The loopback port to listen on.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// The endpoint's secret, as `webhook add` printed it.
    #[arg(long, env = "TWOFA_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
}

/// Listens on loopback, verifies every message with the Standard Webhooks
/// library, and prints each verified one as a JSON line on stdout; a message
/// that does not verify gets 401 and a line on stderr.
pub async fn demo_receiver(args: DemoReceiverArgs) -> ExitCode {
    let hook = match standardwebhooks::Webhook::new(&args.secret) {
        Ok(hook) => std::sync::Arc::new(hook),
        Err(_) => return usage("the secret is not a whsec_ secret"),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => return usage(&format!("cannot listen on {addr}: {error}")),
    };
    eprintln!("listening on http://{addr}/ for webhook messages; Ctrl-C stops");
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(hook);
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => usage(&format!("the receiver stopped: {error}")),
    }
}

async fn receive(
    State(hook): State<std::sync::Arc<standardwebhooks::Webhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if let Err(error) = hook.verify(&body, &headers) {
        eprintln!("refused a message that does not verify: {error}");
        return StatusCode::UNAUTHORIZED;
    }
    let id = headers
        .get("webhook-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let line = serde_json::json!({ "webhookId": id, "message": message });
    println!("{line}");
    StatusCode::NO_CONTENT
}
