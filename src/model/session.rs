//! Customer sessions: the short-lived credential a browser holds instead of
//! an API key, scoped to one customer.
//!
//! The session string is shown once, when it is minted; Redis and the
//! gateway keep only its SHA-256 digest, so neither a Redis dump nor a
//! replica gives a live session away.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::UnixMillis;
use super::text::{CustomerId, Invalid};

/// What every session string starts with, so that a leaked one is easy to
/// recognise (and to tell from an API key).
pub const SESSION_PREFIX: &str = "tfs_";

/// Random bytes in a session: 256 bits, beyond any guessing.
const SESSION_BYTES: usize = 32;

/// The characters after the prefix: unpadded base64url of 32 bytes.
const ENCODED_CHARS: usize = 43;

/// A session string, `tfs_` and the base64url of 32 random bytes.
///
/// Like [`super::Token`], it has no `Display` and a redacted `Debug`; use
/// [`SessionString::expose`] where the value itself is meant (the one
/// answer that hands it out, and a client that presents it).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionString(String);

impl SessionString {
    /// A fresh session from the thread's generator: ChaCha seeded, and
    /// reseeded, from the operating system.
    pub fn generate() -> SessionString {
        let mut bytes = [0u8; SESSION_BYTES];
        rand::rng().fill(&mut bytes);
        SessionString(format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A presented session, if it has a session's shape. Anything else is
    /// refused before Redis is asked.
    pub fn parse(value: &str) -> Option<SessionString> {
        let encoded = value.strip_prefix(SESSION_PREFIX)?;
        let decodes = encoded.len() == ENCODED_CHARS
            && URL_SAFE_NO_PAD
                .decode(encoded)
                .is_ok_and(|bytes| bytes.len() == SESSION_BYTES);
        decodes.then(|| SessionString(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What Redis keeps in its place.
    pub fn digest(&self) -> SessionDigest {
        let digest: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        SessionDigest(digest.iter().map(|byte| format!("{byte:02x}")).collect())
    }
}

impl fmt::Debug for SessionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionString(<redacted>)")
    }
}

/// The SHA-256 of a session string, as 64 lowercase hex digits: the name
/// Redis knows the session by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionDigest(String);

impl SessionDigest {
    /// One read back from Redis.
    pub fn parse(value: &str) -> Result<SessionDigest, Invalid> {
        let hex = value.len() == 64
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(Invalid::new("a session digest is 64 lowercase hex digits"));
        }
        Ok(SessionDigest(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long a session lives: 1 s to 1 h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTtl(Duration);

impl SessionTtl {
    pub const MAX_SECS: u64 = 3600;

    pub fn from_secs(secs: u64) -> Result<SessionTtl, Invalid> {
        if !(1..=Self::MAX_SECS).contains(&secs) {
            return Err(Invalid::new(format!(
                "ttl must be 1 to {} seconds",
                Self::MAX_SECS
            )));
        }
        Ok(SessionTtl(Duration::from_secs(secs)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl std::str::FromStr for SessionTtl {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<SessionTtl, Invalid> {
        let secs = s
            .parse()
            .map_err(|_| Invalid::new("ttl must be a whole number of seconds"))?;
        SessionTtl::from_secs(secs)
    }
}

impl Serialize for SessionTtl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.as_secs())
    }
}

impl<'de> Deserialize<'de> for SessionTtl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_secs(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/customers/{customer}/sessions`: the body is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Seconds the session lives; `TWOFA_SESSION_TTL` (900) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<SessionTtl>,
}

/// A new session, the only answer that ever shows its string.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSession {
    /// `tfs_` and 43 base64url characters (256 random bits). Present it as
    /// `Authorization: Bearer tfs_…`, or as `?session=` on the live feed.
    #[schema(pattern = "^tfs_[A-Za-z0-9_-]{43}$")]
    pub session: String,
    pub customer: CustomerId,
    pub expires_at: UnixMillis,
}

impl fmt::Debug for CreatedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedSession")
            .field("session", &"<redacted>")
            .field("customer", &self.customer)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `GET /v1/sessions/current`: who a session is for, and until when; never
/// the session itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentSession {
    pub customer: CustomerId,
    pub expires_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_session_parses_and_is_never_shown_by_debug() {
        let session = SessionString::generate();
        assert_eq!(session.expose().len(), SESSION_PREFIX.len() + ENCODED_CHARS);
        assert_eq!(
            SessionString::parse(session.expose()),
            Some(session.clone())
        );
        assert!(!format!("{session:?}").contains(&session.expose()[4..]));
        assert_ne!(SessionString::generate(), session);
        let digest = session.digest();
        assert_eq!(SessionDigest::parse(digest.as_str()), Ok(digest));
    }

    #[test]
    fn only_a_session_shaped_string_is_taken() {
        let encoded = "A".repeat(ENCODED_CHARS);
        assert!(SessionString::parse(&format!("tfs_{encoded}")).is_some());
        assert!(SessionString::parse(&format!("tfx_{encoded}")).is_none());
        assert!(SessionString::parse(&format!("tfs_{encoded}A")).is_none());
        assert!(SessionString::parse(&format!("tfs_{}+", &encoded[1..])).is_none());
        assert!(SessionString::parse("tfs_").is_none());
    }

    #[test]
    fn the_ttl_is_one_second_to_an_hour() {
        assert!(SessionTtl::from_secs(0).is_err());
        assert!(SessionTtl::from_secs(3601).is_err());
        assert_eq!(
            "900".parse::<SessionTtl>().map(SessionTtl::as_duration),
            Ok(Duration::from_secs(900))
        );
        assert!(serde_json::from_str::<SessionRequest>(r#"{"ttl":0}"#).is_err());
        assert!(serde_json::from_str::<SessionRequest>(r#"{"ttl":5,"x":1}"#).is_err());
    }
}
