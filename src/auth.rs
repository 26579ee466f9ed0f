//! API keys and their roles.
//!
//! Only a SHA-256 digest of each key is kept in memory, and a presented key
//! is compared with every digest in constant time, so neither a memory dump
//! nor response timing gives a key away.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::SESSION_PREFIX;

/// Keys shorter than this are refused at start: they could be guessed.
pub const MIN_KEY_CHARS: usize = 32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Posts challenges, waits for tokens, reports outcomes, cancels.
    Scraper,
    /// Lists challenges, submits tokens, reads the live feed, cancels.
    Frontend,
    /// Both.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Scraper, Role::Frontend, Role::Admin];

    fn parse(value: &str) -> Option<Role> {
        match value {
            "scraper" => Some(Role::Scraper),
            "frontend" => Some(Role::Frontend),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scraper => "scraper",
            Role::Frontend => "frontend",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may call a route open to `allowed`.
    pub fn may(self, allowed: Allowed) -> bool {
        match (allowed, self) {
            (Allowed::SessionOnly, _) => false,
            (Allowed::Anyone, _) | (_, Role::Admin) => true,
            (Allowed::Scraper, role) => role == Role::Scraper,
            (Allowed::Frontend, role) => role == Role::Frontend,
            (Allowed::Admin, _) => false,
        }
    }
}

/// Who a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    Scraper,
    Frontend,
    /// The admin key only.
    Admin,
    /// Every role.
    Anyone,
    /// No key, not even admin: a customer session only (the route that
    /// ends the session calling it).
    SessionOnly,
}

/// Whether, and how, a route takes a customer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    /// A session gets 403.
    Refused,
    /// As `Authorization: Bearer tfs_…`.
    Header,
    /// Also as `?session=tfs_…`, for `EventSource`, which sends no headers.
    HeaderOrQuery,
}

/// Who a route is for: which keys, and whether a session.
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    pub keys: Allowed,
    pub sessions: Sessions,
}

/// A secret from the configuration, such as a list of keys or a Redis URL
/// with a password: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Why the configured keys were refused. It names where the bad key is,
/// never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{place}: expected role:key, with a role of scraper, frontend or admin")]
    Malformed { place: String },
    #[error("{place}: the key is {chars} characters long; keys must have at least {MIN_KEY_CHARS}")]
    TooShort { place: String, chars: usize },
    #[error("{place}: this key is configured twice")]
    Duplicate { place: String },
    #[error("{place}: keys may not start with {SESSION_PREFIX}, which marks a customer session")]
    SessionLike { place: String },
}

/// The configured keys, as digests. Empty means authentication is off.
#[derive(Default)]
pub struct ApiKeys {
    digests: Vec<([u8; 32], Role)>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

impl ApiKeys {
    /// From `TWOFA_API_KEYS` (`role:key,role:key`) and the lines of
    /// `TWOFA_API_KEYS_FILE` (one `role:key` a line, `#` comments).
    pub fn parse(list: Option<&str>, file: Option<&str>) -> Result<ApiKeys, KeyError> {
        let listed = list
            .into_iter()
            .flat_map(|list| list.split(','))
            .enumerate()
            .map(|(i, entry)| (format!("TWOFA_API_KEYS entry {}", i + 1), entry));
        let lines = file
            .into_iter()
            .flat_map(str::lines)
            .enumerate()
            .map(|(i, line)| (format!("API keys file line {}", i + 1), line))
            .filter(|(_, line)| {
                let line = line.trim();
                !line.is_empty() && !line.starts_with('#')
            });
        let mut keys = ApiKeys::default();
        for (place, entry) in listed.chain(lines) {
            let entry = entry.trim();
            let (role, key) = entry
                .split_once(':')
                .and_then(|(role, key)| Some((Role::parse(role.trim())?, key.trim())))
                .ok_or_else(|| KeyError::Malformed {
                    place: place.clone(),
                })?;
            if key.starts_with(SESSION_PREFIX) {
                return Err(KeyError::SessionLike { place });
            }
            let chars = key.chars().count();
            if chars < MIN_KEY_CHARS {
                return Err(KeyError::TooShort { place, chars });
            }
            let digest = digest(key);
            if keys.digests.iter().any(|(known, _)| *known == digest) {
                return Err(KeyError::Duplicate { place });
            }
            keys.digests.push((digest, role));
        }
        Ok(keys)
    }

    pub fn is_enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// The role of a presented key, if it is one of ours. Every digest is
    /// compared, with no early exit.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        let presented = digest(presented);
        let mut found = None;
        for (known, role) in &self.digests {
            if bool::from(known.ct_eq(&presented)) {
                found = Some(*role);
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPER: &str = "s-0123456789abcdef0123456789abcdef";
    const FRONTEND: &str = "f-0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_come_from_the_list_and_the_file() {
        let list = format!("scraper:{SCRAPER}");
        let file = format!("# front ends\n\nfrontend:{FRONTEND}\n");
        let keys = ApiKeys::parse(Some(&list), Some(&file)).expect("valid keys");
        assert_eq!(keys.role_of(SCRAPER), Some(Role::Scraper));
        assert_eq!(keys.role_of(FRONTEND), Some(Role::Frontend));
        assert_eq!(keys.role_of("f-0123456789abcdef0123456789abcdeF"), None);
        assert!(!format!("{keys:?}").contains("0123"));
    }

    #[test]
    fn short_malformed_or_duplicate_keys_are_refused_without_showing_them() {
        let short = ApiKeys::parse(Some("scraper:tooshort"), None).expect_err("short");
        assert!(short.to_string().contains("at least 32"), "{short}");
        assert!(!short.to_string().contains("tooshort"));
        assert!(ApiKeys::parse(Some(&format!("root:{SCRAPER}")), None).is_err());
        assert!(ApiKeys::parse(Some(SCRAPER), None).is_err());
        let twice = format!("scraper:{SCRAPER},admin:{SCRAPER}");
        assert!(ApiKeys::parse(Some(&twice), None).is_err());
        let session_like = format!("frontend:tfs_{SCRAPER}");
        let refused = ApiKeys::parse(Some(&session_like), None).expect_err("session-like");
        assert!(refused.to_string().contains("tfs_"), "{refused}");
    }

    #[test]
    fn admin_may_do_what_either_role_may() {
        assert!(Role::Admin.may(Allowed::Scraper) && Role::Admin.may(Allowed::Frontend));
        assert!(!Role::Frontend.may(Allowed::Scraper));
        assert!(!Role::Scraper.may(Allowed::Frontend));
        assert!(Role::Frontend.may(Allowed::Anyone));
        assert!(!Role::Admin.may(Allowed::SessionOnly));
    }
}
