//! The HTTP gateway: axum only. Handlers validate, call one store or wait
//! function, and shape the answer; no handler knows a Redis key.

mod accesses;
mod auth;
mod challenges;
pub mod cors;
mod demo;
pub mod error;
mod extract;
mod feeds;
mod health;
mod openapi;
mod sessions;
mod tokens;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::http::header::AUTHORIZATION;
use axum::{Extension, Router, middleware};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Allowed, ApiKeys, Gate, Sessions};
use crate::model::{ExpiresIn, SessionTtl};
use crate::pubsub::Subscriber;
use crate::store::Store;
use error::AppError;

/// Request bodies larger than this get 413.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Limits that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_expires_in: ExpiresIn,
    /// The longest `timeout` a long poll may ask for.
    pub max_wait: Duration,
    /// How often an idle live feed gets a heartbeat comment.
    pub feed_heartbeat: Duration,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// Whether `/` serves the demo front end.
    pub demo: bool,
    /// How long a customer session lives when its minting does not say.
    pub session_ttl: SessionTtl,
}

#[derive(Clone)]
pub struct AppState {
    /// Empty when authentication is off (loopback only).
    pub api_keys: Arc<ApiKeys>,
    pub store: Store,
    pub subscriber: Subscriber,
    pub limits: Limits,
    pub webhooks: webhooks::WebhookLimits,
    /// Cancelled on SIGTERM: long polls answer 204 at once instead of
    /// holding shutdown for their whole timeout.
    pub shutdown: CancellationToken,
    /// The browser origins allowed to call, if any (`cors`).
    pub cors: Option<tower_http::cors::CorsLayer>,
}

fn gate(keys: Allowed, sessions: Sessions) -> Gate {
    Gate { keys, sessions }
}

/// Every route, each registered with its OpenAPI operation, behind the key
/// check its role needs and the session check of the routes a customer
/// session may call. `keys` only feeds the auth layers.
fn routes(keys: &Arc<ApiKeys>) -> OpenApiRouter<AppState> {
    use Sessions::{Header, HeaderOrQuery, Refused};
    let scraper = OpenApiRouter::new()
        .routes(routes!(challenges::post))
        .routes(routes!(tokens::wait))
        .routes(routes!(accesses::report));
    let frontend = OpenApiRouter::new()
        .routes(routes!(challenges::list))
        .routes(routes!(tokens::submit));
    let feed = OpenApiRouter::new().routes(routes!(feeds::events));
    let minting = OpenApiRouter::new().routes(routes!(sessions::create, sessions::end_all));
    let current = OpenApiRouter::new().routes(routes!(sessions::current, sessions::end_current));
    let anyone = OpenApiRouter::new()
        .routes(routes!(challenges::cancel))
        .routes(routes!(accesses::get))
        .routes(routes!(accesses::events));
    let admin = OpenApiRouter::new()
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries));
    let groups = [
        (gate(Allowed::Scraper, Refused), scraper),
        (gate(Allowed::Frontend, Header), frontend),
        (gate(Allowed::Frontend, HeaderOrQuery), feed),
        (gate(Allowed::Frontend, Refused), minting),
        (gate(Allowed::SessionOnly, Header), current),
        (gate(Allowed::Anyone, Header), anyone),
        (gate(Allowed::Admin, Refused), admin),
    ];
    let mut routes = groups
        .into_iter()
        .fold(openapi::base(), |routes, (gate, group)| {
            routes.merge(openapi::guarded(keys, gate, group))
        })
        .routes(routes!(health::alive))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(demo::page))
        .routes(routes!(demo::script))
        .routes(routes!(demo::style));
    openapi::document_bodies(routes.get_openapi_mut());
    routes
}

/// The OpenAPI 3.1 description of every route, exactly as `/openapi.json`
/// serves it.
pub fn openapi_json() -> String {
    openapi::render(&routes(&Arc::new(ApiKeys::default())).into_openapi())
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let cors = state.cors.clone();
    let (routes, document) = routes(&state.api_keys).split_for_parts();
    let rendered = openapi::render(&document);
    let router = routes
        .route_layer(middleware::from_fn(health::count_request))
        .fallback(|| async { AppError::NoRoute })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(Extension(openapi::Rendered(rendered.into())))
        // For the auth layer, which looks customer sessions up.
        .layer(Extension(state.store.clone()))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Spans carry the method, path and request id; never a body, so a
        // token cannot reach a log line through them, and the API key
        // header is marked sensitive for any layer that would show headers.
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state);
    // Outermost, so that a preflight is answered before any route or key
    // check sees it.
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// The span every request's log lines carry: its method, path and id, and
/// never its query, where the live feed may carry a customer session.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
}

/// How long a stopping gateway waits for requests in flight: within the
/// 5 s that a deploy allows it, with room to exit.
const DRAIN_LIMIT: Duration = Duration::from_secs(4);

/// Serves until `shutdown` is cancelled, then stops accepting and lets the
/// connections finish their requests (long polls and feeds end at once on
/// the same signal).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // A client that trickles its headers (slowloris) is cut off rather than
    // holding a connection.
    let header_timeout = state.limits.header_timeout;
    let app = router(state);
    let connections = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, say: pause rather than spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // A woken waiter's answer is one small write: send it now.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    // hyper closes idle connections at once and lets requests finish; a
    // client stalled mid-request would hold the process up, so the drain is
    // bounded, and what is left is dropped with the runtime.
    if tokio::time::timeout(DRAIN_LIMIT, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(limit = ?DRAIN_LIMIT, "stopped waiting for connections that had not finished their requests");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// axum has no API to list a router's routes, but its `Debug` output
    /// names every path it matches; the fallbacks' own paths come after
    /// `fallback_router`.
    fn routed_paths(router: &Router<AppState>) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        let routes = debug
            .split("fallback_router")
            .next()
            .expect("split yields at least one part");
        let path = regex::Regex::new(r#"RouteId\(\d+\): "([^"]+)""#).expect("a regex");
        path.captures_iter(routes)
            .map(|found| found[1].to_owned())
            .collect()
    }

    #[test]
    fn every_routed_path_is_documented_and_every_documented_path_routed() {
        let (router, doc) = routes(&Arc::new(ApiKeys::default())).split_for_parts();
        let routed = routed_paths(&router);
        assert!(
            routed.contains("/healthz"),
            "the Debug format changed: {routed:?}"
        );
        let documented: BTreeSet<String> = doc.paths.paths.keys().cloned().collect();
        assert_eq!(routed, documented);
    }
}
