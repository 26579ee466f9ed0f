//! `/v1/webhooks`: the admin's webhook endpoints, their secrets and their
//! deliveries.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use serde::Deserialize;
use utoipa::IntoParams;

use super::AppState;
use super::error::{AppError, ErrorBody};
use super::extract::{AppJson, AppQuery};
use crate::model::{
    CreatedWebhook, Delivery, EventType, MessageBody, NewWebhook, RotatedSecret, UnixMillis,
    Webhook, WebhookPatch,
};
use crate::store::webhooks::{Endpoint, EndpointChange, MessageRecord};
use crate::webhooks::{HostError, UrlPolicy, WebhookSecret, WebhookUrl, check_host};

/// What the webhook routes enforce, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct WebhookLimits {
    pub policy: UrlPolicy,
    pub max: usize,
    pub rotation_grace: Duration,
}

/// The longest description.
const DESCRIPTION_LIMIT: usize = 256;

/// The URL, checked as registration checks it: its form, and where its host
/// resolves to, if it resolves.
async fn checked_url(url: &str, policy: &UrlPolicy) -> Result<String, AppError> {
    let url =
        WebhookUrl::parse(url, policy).map_err(|e| AppError::Unprocessable(format!("url: {e}")))?;
    match check_host(&url, policy).await {
        Ok(()) => Ok(url.as_str().to_owned()),
        Err(HostError::Forbidden(e)) => Err(AppError::Unprocessable(format!("url: {e}"))),
        // A name that does not resolve now (a DNS hiccup, a record not
        // published yet) is taken: every delivery checks it again.
        Err(HostError::Unresolved(_)) => Ok(url.as_str().to_owned()),
    }
}

fn checked_events(events: Option<Vec<EventType>>) -> Result<Vec<EventType>, AppError> {
    let Some(events) = events else {
        return Ok(EventType::ALL.to_vec());
    };
    if events.is_empty() {
        return Err(AppError::Unprocessable(
            "events: name at least one, or leave it out for both".to_owned(),
        ));
    }
    Ok(EventType::ALL
        .into_iter()
        .filter(|event| events.contains(event))
        .collect())
}

fn checked_description(description: Option<String>) -> Result<Option<String>, AppError> {
    match description {
        Some(text) if text.chars().count() > DESCRIPTION_LIMIT => Err(AppError::Unprocessable(
            format!("description: at most {DESCRIPTION_LIMIT} characters"),
        )),
        Some(text) if text.chars().any(char::is_control) => Err(AppError::Unprocessable(
            "description: no control characters".to_owned(),
        )),
        other => Ok(other.filter(|text| !text.is_empty())),
    }
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no webhook endpoint {id}"))
}

/// `POST /v1/webhooks`: registers an endpoint; its secret is shown here only.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhook",
    tag = "admin",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "The endpoint, with its signing secret, shown this once", body = CreatedWebhook,
         headers(("Location" = String, description = "/v1/webhooks/{id}"))),
        (status = 422, description = "A URL, event or description that is refused, or too many endpoints", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    AppJson(body): AppJson<NewWebhook>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<CreatedWebhook>,
    ),
    AppError,
> {
    let limits = state.webhooks;
    let webhook = Webhook {
        id: format!("wh_{}", &uuid::Uuid::new_v4().simple().to_string()[..26]),
        url: checked_url(&body.url, &limits.policy).await?,
        events: checked_events(body.events)?,
        description: checked_description(body.description)?,
        created_at: UnixMillis::now(),
        disabled: false,
    };
    let secret = WebhookSecret::generate();
    let endpoint = Endpoint {
        webhook: webhook.clone(),
        secret: secret.expose().to_owned(),
        previous: None,
    };
    if !state.store.register_webhook(&endpoint, limits.max).await? {
        return Err(AppError::Unprocessable(format!(
            "at most {} webhook endpoints may be registered (TWOFA_MAX_WEBHOOKS)",
            limits.max
        )));
    }
    let location = format!("/v1/webhooks/{}", webhook.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedWebhook {
            webhook,
            secret: secret.expose().to_owned(),
        }),
    ))
}

/// `GET /v1/webhooks`: every endpoint, oldest first, without secrets.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhooks",
    tag = "admin",
    responses((status = 200, description = "Every endpoint, oldest first; never a secret", body = Vec<Webhook>))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Webhook>>, AppError> {
    let endpoints = state.store.webhooks().await?;
    Ok(Json(endpoints.into_iter().map(|e| e.webhook).collect()))
}

/// The `{id}` path parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookPath {
    /// `wh_` and 26 characters.
    id: String,
}

/// An id as the gateway makes them; anything else is no endpoint of ours.
fn endpoint_id(path: WebhookPath) -> Result<String, AppError> {
    let id = path.id;
    let valid = id.len() == 29
        && id.starts_with("wh_")
        && id[3..].bytes().all(|b| b.is_ascii_alphanumeric());
    if valid { Ok(id) } else { Err(not_found(&id)) }
}

/// The endpoint, or a 404.
async fn endpoint(state: &AppState, id: &str) -> Result<Endpoint, AppError> {
    state.store.webhook(id).await?.ok_or_else(|| not_found(id))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "admin",
    params(WebhookPath),
    responses(
        (status = 200, description = "The endpoint, without its secret", body = Webhook),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
) -> Result<Json<Webhook>, AppError> {
    let id = endpoint_id(path)?;
    Ok(Json(endpoint(&state, &id).await?.webhook))
}

/// `PATCH /v1/webhooks/{id}`: any of `url`, `events`, `description` and
/// `disabled`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    operation_id = "updateWebhook",
    tag = "admin",
    params(WebhookPath),
    request_body = WebhookPatch,
    responses(
        (status = 200, description = "The endpoint as changed", body = Webhook),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "A URL, event or description that is refused", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    AppJson(patch): AppJson<WebhookPatch>,
) -> Result<Json<Webhook>, AppError> {
    let id = endpoint_id(path)?;
    endpoint(&state, &id).await?;
    // Only what the patch names is written, so a field changed meanwhile
    // (a 410 that disabled the endpoint, another patch) stays as it is.
    let mut change = EndpointChange {
        disabled: patch.disabled,
        ..EndpointChange::default()
    };
    if let Some(url) = patch.url {
        change.url = Some(checked_url(&url, &state.webhooks.policy).await?);
    }
    if patch.events.is_some() {
        change.events = Some(checked_events(patch.events)?);
    }
    if patch.description.is_some() {
        change.description = Some(checked_description(patch.description)?);
    }
    if !state
        .store
        .update_webhook(&id, None, &change.fields())
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(endpoint(&state, &id).await?.webhook))
}

/// `DELETE /v1/webhooks/{id}`: no delivery to it starts afterwards, and its
/// pending messages are dropped.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "admin",
    params(WebhookPath),
    responses(
        (status = 204, description = "Deleted, with its queue and history"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
) -> Result<StatusCode, AppError> {
    let id = endpoint_id(path)?;
    if state.store.delete_webhook(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// `POST /v1/webhooks/{id}/rotate`: a new secret. The old one keeps signing
/// beside it for `TWOFA_WEBHOOK_ROTATION_GRACE` seconds.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate",
    operation_id = "rotateWebhookSecret",
    tag = "admin",
    params(WebhookPath),
    responses(
        (status = 200, description = "The new secret, shown this once", body = RotatedSecret),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
) -> Result<Json<RotatedSecret>, AppError> {
    let id = endpoint_id(path)?;
    let secret = WebhookSecret::generate();
    let until = UnixMillis::now().after(state.webhooks.rotation_grace);
    if !state
        .store
        .update_webhook(&id, Some((secret.expose(), until)), &[])
        .await?
    {
        return Err(not_found(&id));
    }
    Ok(Json(RotatedSecret {
        secret: secret.expose().to_owned(),
    }))
}

/// `POST /v1/webhooks/{id}/test`: sends a `webhook.test` message.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    operation_id = "testWebhook",
    tag = "admin",
    params(WebhookPath),
    responses(
        (status = 202, description = "A `webhook.test` message is queued (unless the endpoint is disabled)"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn test(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
) -> Result<StatusCode, AppError> {
    let id = endpoint_id(path)?;
    endpoint(&state, &id).await?;
    let now = UnixMillis::now();
    let body = MessageBody {
        kind: "webhook.test",
        timestamp: now,
        data: serde_json::json!({}),
    };
    let body = serde_json::to_string(&body)
        .map_err(|e| AppError::Internal(format!("a test message: {e}")))?;
    let message_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let record = MessageRecord::new("webhook.test", None, body, now.0, now.0);
    let lane = format!("test:{message_id}");
    state
        .store
        .enqueue_webhook(&id, &[(message_id, lane, record)], now.0)
        .await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many messages, 1 to 1,000; 50 by default.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// `GET /v1/webhooks/{id}/deliveries?limit=50`: the latest messages, newest
/// first, one row per message.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "admin",
    params(WebhookPath, DeliveriesQuery),
    responses(
        (status = 200, description = "The latest messages, newest first", body = Vec<Delivery>),
        (status = 400, description = "A limit out of range", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn deliveries(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    AppQuery(query): AppQuery<DeliveriesQuery>,
) -> Result<Json<Vec<Delivery>>, AppError> {
    let id = endpoint_id(path)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::BadRequest("limit must be 1 to 1000".to_owned()));
    }
    endpoint(&state, &id).await?;
    Ok(Json(state.store.deliveries(&id, limit).await?))
}
