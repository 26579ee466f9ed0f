//! The OpenAPI 3.1 description, generated from the handlers' `#[utoipa::path]`
//! attributes and the model's schemas. Routes are registered through
//! `utoipa_axum`, so a route cannot exist without its description; and the
//! auth layer documents the security it enforces, so the two cannot drift.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use utoipa::openapi::Required;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use super::auth;
use super::error::ErrorBody;
use crate::auth::{ApiKeys, Gate, Role, Sessions};
use crate::model::{
    AccessId, ChallengeWaitingMessage, CustomerId, StatusChange, StatusChangedMessage, TestMessage,
};

/// The name of the security scheme every keyed route names.
const SCHEME: &str = "apiKey";

/// A customer session, as a bearer token.
const SESSION_SCHEME: &str = "session";

/// A customer session in the query, on the live feed only.
const SESSION_QUERY_SCHEME: &str = "sessionQuery";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "twofa-bridge",
        description = "Relays a bank's second-factor challenge from a scraper to the customer, \
            and the customer's token back to the waiting scraper.\n\n\
            Every error is `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}` (`ErrorBody`). \
            An unknown path is 404 `no_route`; a known path with another method is 405 \
            `method_not_allowed`. A 503 carries `Retry-After`.\n\n\
            With API keys configured, a keyed route needs `Authorization: Bearer <key>` of one \
            of the roles its security requirement lists (`admin` may call every route). \
            Without keys the gateway listens on loopback only and asks for none.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(
        StatusChange,
        ErrorBody,
        ChallengeWaitingMessage,
        StatusChangedMessage,
        TestMessage
    )),
    modifiers(&BearerKeys, &WebhookMessages),
    tags(
        (name = "scraper", description = "The robot that logs into the bank"),
        (name = "frontend", description = "TesBack, which shows the challenge to the customer"),
        (name = "admin", description = "Webhook endpoints, for the admin key"),
        (name = "operations", description = "Health, readiness, metrics and this document")
    )
)]
struct ApiDoc;

/// The messages a webhook endpoint receives, in OpenAPI 3.1's top-level
/// `webhooks`: each a `POST` with its body, signed after Standard Webhooks.
struct WebhookMessages;

impl Modify for WebhookMessages {
    fn modify(&self, doc: &mut Document) {
        let messages = [
            (
                "challenge.waiting",
                "ChallengeWaitingMessage",
                "A challenge started waiting for its customer",
            ),
            (
                "access.status_changed",
                "StatusChangedMessage",
                "An access moved to another status, question_sent through cancelled",
            ),
            (
                "webhook.test",
                "TestMessage",
                "Sent by POST /v1/webhooks/{id}/test",
            ),
        ];
        let mut paths = Paths::new();
        for (name, schema, summary) in messages {
            let body = RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(schema)))
                        .build(),
                )
                .required(Some(Required::True))
                .build();
            let operation = OperationBuilder::new()
                .summary(Some(summary))
                .description(Some(
                    "Headers: `webhook-id` (`msg_…`, the same on every try), `webhook-timestamp` \
                     (Unix seconds of the try) and `webhook-signature` (`v1,<base64>` of \
                     HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the secret's \
                     decoded bytes; two values during a rotation).",
                ))
                .request_body(Some(body))
                .response(
                    "2XX",
                    ResponseBuilder::new()
                        .description("Delivered. Anything else is tried again later; 410 disables the endpoint.")
                        .build(),
                )
                .build();
            paths
                .paths
                .insert(name.to_owned(), PathItem::new(HttpMethod::Post, operation));
        }
        doc.webhooks = Some(paths);
    }
}

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, doc: &mut Document) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "An API key from TWOFA_API_KEYS or TWOFA_API_KEYS_FILE; the role is set there."
                .to_owned(),
        );
        let mut session = Http::new(HttpAuthScheme::Bearer);
        session.description = Some(
            "A customer session, `tfs_…`, from POST /v1/customers/{customer}/sessions: it may \
             call only the routes that list it, for its own customer's challenges. Another \
             customer in the path is 403; another customer's access is 404, as an unknown one."
                .to_owned(),
        );
        let query = ApiKey::Query(ApiKeyValue::with_description(
            "session",
            "A customer session, `tfs_…`, on the live feed, for `EventSource`, which cannot \
             send headers. It never reaches a log line.",
        ));
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(SCHEME, SecurityScheme::Http(scheme));
        components.add_security_scheme(SESSION_SCHEME, SecurityScheme::Http(session));
        components.add_security_scheme(SESSION_QUERY_SCHEME, SecurityScheme::ApiKey(query));
    }
}

/// The skeleton every router starts from: info, tags and security scheme.
pub fn base() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// Puts `routes` behind the key check for `allowed`, and writes the same
/// requirement, with its 401 and 403, into each of their operations.
pub fn guarded(
    keys: &Arc<ApiKeys>,
    gate: Gate,
    routes: OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let mut routes = routes.route_layer(middleware::from_fn_with_state(
        (keys.clone(), gate),
        auth::require,
    ));
    let roles: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|role| role.may(gate.keys))
        .map(Role::as_str)
        .collect();
    let mut security = Vec::new();
    if !roles.is_empty() {
        security.push(SecurityRequirement::new(SCHEME, roles));
    }
    if gate.sessions != Sessions::Refused {
        security.push(SecurityRequirement::new(SESSION_SCHEME, [] as [&str; 0]));
    }
    if gate.sessions == Sessions::HeaderOrQuery {
        security.push(SecurityRequirement::new(
            SESSION_QUERY_SCHEME,
            [] as [&str; 0],
        ));
    }
    for item in routes.get_openapi_mut().paths.paths.values_mut() {
        for operation in operations(item) {
            document_guard(operation, security.clone());
        }
    }
    routes
}

fn document_guard(operation: &mut Operation, security: Vec<SecurityRequirement>) {
    operation.security = Some(security);
    // Every keyed route reads an id and calls Redis, so each may also
    // answer 400, 500 and 503.
    for (status, description) in [
        (
            "400",
            "A malformed id, query parameter or header (`invalid_id`, `bad_request`)",
        ),
        (
            "401",
            "No API key, or an unknown one; a session that is unknown or has ended (`unauthorized`)",
        ),
        (
            "403",
            "A key of a role this route is not for; a session on a route sessions may not call, or with another customer in the path (`forbidden`)",
        ),
        (
            "500",
            "Redis answered with an error, or holds a malformed hash (`internal`)",
        ),
        (
            "503",
            "Redis is down or too slow, or the gateway holds its maximum of long polls and feeds (`unavailable`)",
        ),
    ] {
        add_error(operation, status, description);
    }
}

/// Adds the errors every JSON body can cause to each operation that takes
/// one.
pub fn document_bodies(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            if operation.request_body.is_none() {
                continue;
            }
            for (status, description) in [
                (
                    "400",
                    "The body is not JSON (`invalid_json`), or an id in it is malformed (`invalid_id`)",
                ),
                ("413", "The body is over 256 KiB (`payload_too_large`)"),
                (
                    "415",
                    "The body is not `application/json` (`unsupported_media_type`)",
                ),
                (
                    "422",
                    "A field is missing, unknown, of the wrong type, or breaks a rule (`invalid_body`)",
                ),
            ] {
                add_error(operation, status, description);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

/// Documents an error response; where the operation already describes the
/// status, the new cause is added to its description.
fn add_error(operation: &mut Operation, status: &str, description: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(status) {
        Some(RefOr::T(response)) => {
            response.description = format!("{}; or: {description}", response.description);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_owned(), error_response(status, description));
        }
    }
}

/// A response whose body is the error JSON, with the headers the gateway
/// adds to that status.
fn error_response(status: &str, description: &str) -> RefOr<Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build()
    };
    match status {
        "401" => response = response.header("WWW-Authenticate", header("`Bearer`")),
        "503" => response = response.header("Retry-After", header("Seconds to wait: `1`")),
        _ => {}
    }
    response.build().into()
}

/// The `{access}` path parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccessPath {
    /// The scraper's id for one login to one bank account.
    #[expect(dead_code, reason = "read by the `PathId` extractor, described here")]
    access: AccessId,
}

/// The `{customer}` path parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CustomerPath {
    /// TesBack's id for the person who answers the challenges.
    #[expect(dead_code, reason = "read by the `PathId` extractor, described here")]
    customer: CustomerId,
}

/// The document as JSON, with a final newline as a file has.
pub fn render(doc: &Document) -> String {
    // A tree of strings and maps with string keys: serialising cannot fail.
    let json = doc
        .to_pretty_json()
        .expect("an OpenAPI document serialises to JSON");
    json + "\n"
}

/// The document as served, rendered once when the router is built.
#[derive(Clone)]
pub struct Rendered(pub Arc<str>);

/// The OpenAPI 3.1 description of this gateway.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub async fn document(Extension(Rendered(json)): Extension<Rendered>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}
