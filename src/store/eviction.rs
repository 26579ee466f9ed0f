//! Whether Redis may evict our keys. Every key here has a TTL, so under
//! `volatile-*` as under `allkeys-*` Redis may drop a waiting challenge or a
//! token to make room: only `noeviction` keeps the promise that nothing is
//! lost (a full Redis then refuses writes, which is a 503, and loses nothing).

use super::{Store, StoreError};

/// What `maxmemory-policy` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionPolicy {
    /// `noeviction`.
    Safe,
    /// Any other policy, named.
    Evicting(String),
    /// Redis would not say (`CONFIG` is refused on some managed services).
    Unknown(String),
}

impl Store {
    pub async fn eviction_policy(&self) -> Result<EvictionPolicy, StoreError> {
        let mut conn = self.link.get();
        let read: Result<Vec<String>, StoreError> = self
            .bounded(
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut conn),
            )
            .await;
        match read {
            Ok(pair) => Ok(match pair.get(1).map(String::as_str) {
                Some("noeviction") => EvictionPolicy::Safe,
                Some(policy) => EvictionPolicy::Evicting(policy.to_owned()),
                None => EvictionPolicy::Unknown("CONFIG GET returned no policy".to_owned()),
            }),
            Err(error) if error.is_unavailable() => Err(error),
            Err(error) => Ok(EvictionPolicy::Unknown(error.to_string())),
        }
    }
}
