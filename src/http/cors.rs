//! Cross-origin access for front ends that call the gateway from a browser
//! (`TWOFA_CORS_ORIGINS`), with tower-http's `CorsLayer`.
//!
//! Only exact origins are allowed, never credentials: a browser sends a
//! session or key in `Authorization` itself, and no cookie is involved.
//! `*` is refused while API keys are configured, so a keyed gateway never
//! answers every site on the web.

use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The request id, which a front end may send and read back.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `TWOFA_CORS_ORIGINS` allows: nothing (no CORS headers at all) when
/// unset or empty.
pub fn layer(origins: Option<&str>, keys_enabled: bool) -> Result<Option<CorsLayer>, String> {
    let listed: Vec<&str> = origins
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .collect();
    if listed.is_empty() {
        return Ok(None);
    }
    let allow = if listed.contains(&"*") {
        if keys_enabled {
            return Err(
                "TWOFA_CORS_ORIGINS=* would let every web site call a gateway that has \
                        API keys: list the front ends' exact origins instead"
                    .to_owned(),
            );
        }
        AllowOrigin::any()
    } else {
        let exact = listed
            .iter()
            .map(|origin| exact_origin(origin))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(exact)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                AUTHORIZATION,
                CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                REQUEST_ID,
            ])
            .expose_headers([REQUEST_ID]),
    ))
}

/// An origin exactly as a browser sends it: `https://host[:port]`, or
/// `http://` for a development front end, with no path, query or user.
fn exact_origin(origin: &str) -> Result<HeaderValue, String> {
    let refused = |why: &str| format!("TWOFA_CORS_ORIGINS: `{origin}` {why}");
    let url = url::Url::parse(origin).map_err(|_| refused("is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(refused("is not an http or https origin"));
    }
    let serialized = url.origin().ascii_serialization();
    if serialized != origin {
        return Err(refused(&format!(
            "is not an exact origin: write `{serialized}`"
        )));
    }
    HeaderValue::from_str(origin).map_err(|_| refused("is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_star_needs_keys_off() {
        assert!(layer(None, true).expect("unset").is_none());
        assert!(layer(Some(" , "), true).expect("empty").is_none());
        assert!(
            layer(
                Some("https://app.tesfront.example, http://localhost:3000"),
                true
            )
            .expect("two origins")
            .is_some()
        );
        for wrong in [
            "https://app.tesfront.example/",
            "https://app.tesfront.example/path",
            "ftp://files.example",
            "https://user@app.example",
            "app.tesfront.example",
        ] {
            assert!(layer(Some(wrong), true).is_err(), "{wrong} was taken");
        }
        assert!(layer(Some("*"), true).is_err());
        assert!(layer(Some("*"), false).expect("keys off").is_some());
    }
}
