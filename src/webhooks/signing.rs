//! The `webhook-signature` header of a delivery, after the Standard Webhooks
//! spec: `v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`.
//!
//! The signing itself is the `standardwebhooks` crate's, the reference the
//! receivers' libraries verify against, so the two ends cannot drift apart.

use standardwebhooks::{Webhook, WebhookError};

use super::WebhookSecret;

/// The header names a delivery carries, as the spec (and the crate) spell them.
pub use standardwebhooks::{HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP};

/// Why a delivery could not be signed. Neither happens with the gateway's
/// own JSON bodies and parsed secrets; they are errors, not panics, because a
/// worker must fail one message, never the process.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// An endpoint always has a secret; a header with no signature would
    /// only be refused by every receiver.
    #[error("a webhook needs at least one secret to be signed with")]
    NoSecret,
    /// The crate refused: a body that is not UTF-8, which the spec's signed
    /// content cannot hold, or a secret that is not base64.
    #[error("webhook could not be signed: {0}")]
    Sign(#[from] WebhookError),
}

/// The `webhook-signature` value for one delivery: one `v1,…` signature per
/// secret, separated by single spaces.
///
/// During a rotation both the new and the old secret sign, so a receiver
/// still holding the old one keeps accepting deliveries until it switches.
/// `timestamp_secs` must be the value sent in `webhook-timestamp`, and
/// `msg_id` the one in `webhook-id`: both are part of what is signed.
pub fn signature_header(
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
    secrets: &[&WebhookSecret],
) -> Result<String, SignError> {
    if secrets.is_empty() {
        return Err(SignError::NoSecret);
    }
    let signatures = secrets
        .iter()
        .map(|secret| Webhook::new(secret.expose())?.sign(msg_id, timestamp_secs, body))
        .collect::<Result<Vec<String>, WebhookError>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    const BODY: &[u8] = br#"{"type":"challenge.created","data":{"access":"acc-1"}}"#;

    fn now() -> i64 {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(since.as_secs()).unwrap()
    }

    fn headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_WEBHOOK_ID, HeaderValue::from_str(msg_id).unwrap());
        headers.insert(HEADER_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(
            HEADER_WEBHOOK_SIGNATURE,
            HeaderValue::from_str(signature).unwrap(),
        );
        headers
    }

    fn receiver(secret: &WebhookSecret) -> Webhook {
        Webhook::new(secret.expose()).unwrap()
    }

    #[test]
    fn each_secret_of_a_rotation_verifies_the_header() {
        let (old, new) = (WebhookSecret::generate(), WebhookSecret::generate());
        let timestamp = now();
        let signature = signature_header("msg_1", timestamp, BODY, &[&new, &old]).unwrap();

        let values: Vec<&str> = signature.split(' ').collect();
        assert_eq!(values.len(), 2);
        assert!(values.iter().all(|v| v.starts_with("v1,")));

        let sent = headers("msg_1", timestamp, &signature);
        receiver(&new).verify(BODY, &sent).unwrap();
        receiver(&old).verify(BODY, &sent).unwrap();
    }

    #[test]
    fn a_wrong_secret_or_a_changed_message_fails() {
        let secret = WebhookSecret::generate();
        let timestamp = now();
        let signature = signature_header("msg_1", timestamp, BODY, &[&secret]).unwrap();
        assert!(!signature.contains(' '));
        let sent = headers("msg_1", timestamp, &signature);

        assert!(
            receiver(&WebhookSecret::generate())
                .verify(BODY, &sent)
                .is_err()
        );
        assert!(receiver(&secret).verify(b"{}", &sent).is_err());
        let other_id = headers("msg_2", timestamp, &signature);
        assert!(receiver(&secret).verify(BODY, &other_id).is_err());
    }

    #[test]
    fn the_crates_own_vector_signs_as_published() {
        // The vector of the standardwebhooks crate's own tests: a receiver
        // that checks against it checks against us.
        let secret = WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let signature = signature_header(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1649367553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
            &[&secret],
        )
        .unwrap();
        assert_eq!(signature, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[test]
    fn no_secret_or_a_binary_body_is_an_error() {
        let secret = WebhookSecret::generate();
        assert!(matches!(
            signature_header("msg_1", now(), BODY, &[]),
            Err(SignError::NoSecret)
        ));
        assert!(matches!(
            signature_header("msg_1", now(), &[0xff, 0xfe], &[&secret]),
            Err(SignError::Sign(WebhookError::InvalidPayload))
        ));
    }
}
