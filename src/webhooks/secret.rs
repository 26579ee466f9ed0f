//! The secret an endpoint's deliveries are signed with, in the Standard
//! Webhooks form `whsec_<base64 key>`, which receivers' libraries take as is.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngExt;

use crate::model::Invalid;

const PREFIX: &str = "whsec_";

/// Bytes of key in a generated secret: HMAC-SHA256's own block of strength.
pub const KEY_BYTES: usize = 32;

/// A webhook signing secret.
///
/// Like [`crate::model::Token`], it has no `Display` and a redacted `Debug`:
/// a secret in a log line is a secret given away, and a `Display` that
/// printed a mask would be a header silently signed with the mask. Use
/// [`WebhookSecret::expose`] where the value itself is meant.
#[derive(Clone)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A fresh secret of [`KEY_BYTES`] random bytes, from the thread's
    /// generator: ChaCha seeded, and reseeded, from the operating system.
    pub fn generate() -> WebhookSecret {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill(&mut key);
        WebhookSecret(format!("{PREFIX}{}", STANDARD.encode(key)))
    }

    /// Accepts a secret kept earlier, or one an operator brings along: the
    /// `whsec_` prefix and the padded standard base64 of 24 to 64 bytes, the
    /// range the spec gives.
    pub fn parse(value: impl Into<String>) -> Result<WebhookSecret, Invalid> {
        let value = value.into();
        let key_len = value
            .strip_prefix(PREFIX)
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .map(|key| key.len());
        match key_len {
            Some(24..=64) => Ok(WebhookSecret(value)),
            _ => Err(Invalid::new(
                "webhook secret must be whsec_ followed by the base64 of 24 to 64 bytes",
            )),
        }
    }

    /// The secret itself, `whsec_` and all: for the signer, the store, and
    /// the one answer that hands it to the endpoint's owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_parses_and_carries_32_bytes() {
        let secret = WebhookSecret::generate();
        let encoded = secret.expose().strip_prefix("whsec_").unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap().len(), KEY_BYTES);
        assert!(WebhookSecret::parse(secret.expose()).is_ok());
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(
            WebhookSecret::generate().expose(),
            WebhookSecret::generate().expose()
        );
    }

    #[test]
    fn parse_takes_the_spec_form_only() {
        let of = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert!(WebhookSecret::parse(of(24)).is_ok());
        assert!(WebhookSecret::parse(of(64)).is_ok());
        for bad in [
            of(23),
            of(65),
            STANDARD.encode([7u8; 32]),
            "whsec_not base64!".to_owned(),
            "whsec_".to_owned(),
            String::new(),
        ] {
            let message = WebhookSecret::parse(bad.clone()).unwrap_err().to_string();
            assert!(message.contains("24 to 64 bytes"), "{message}");
            let key = bad.trim_start_matches("whsec_");
            assert!(key.is_empty() || !message.contains(key), "{message}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = WebhookSecret::generate();
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains(secret.expose()));
        assert!(!shown.contains("whsec_"));
        assert!(shown.contains("<redacted>"));
    }
}
