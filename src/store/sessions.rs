//! Customer sessions in Redis: a hash per session, named after its digest,
//! that lives exactly as long as the session, and a ZSET per customer that
//! lists them for revoking them all.
//!
//! A presented session must be found from its string alone, so its hash
//! has the digest as its own hash tag, and the customer's list is in the
//! customer's slot: minting writes the two in that order, each in one step.
//! A gateway that dies between them leaves a session that nobody holds (its
//! string was never answered), which its TTL ends.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Store, StoreError, millis};
use crate::model::{CustomerId, SessionDigest, SessionString, SessionTtl, UnixMillis};

/// A live session, as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub customer: CustomerId,
    pub expires_at: UnixMillis,
    /// Its TTL when it was read: how long it has left by Redis's clock,
    /// whatever the gateway's says.
    pub left: Duration,
}

/// How many sessions one revocation ends at once.
const ENDING_AT_ONCE: usize = 16;

impl Store {
    /// Mints a session for `customer`, and returns it with its end.
    pub async fn open_session(
        &self,
        customer: &CustomerId,
        ttl: SessionTtl,
    ) -> Result<(SessionString, UnixMillis), StoreError> {
        let session = SessionString::generate();
        let digest = session.digest();
        let mut open = self
            .scripts
            .session_open
            .key(self.keys().session(&digest).hash);
        open.arg(customer.as_str()).arg(millis(ttl.as_duration()));
        let expires_at: u64 = self.run(&open).await?;
        let mut index = self
            .scripts
            .session_index
            .key(self.keys().customer_sessions(customer));
        index.arg(digest.as_str()).arg(expires_at);
        self.run::<()>(&index).await?;
        Ok((session, UnixMillis(expires_at)))
    }

    /// The session a digest names, if it is live.
    pub async fn session(&self, digest: &SessionDigest) -> Result<Option<Session>, StoreError> {
        let hash = self.keys().session(digest).hash;
        let mut conn = self.link.get();
        let ((customer, expires_at), left_ms): ((Option<String>, Option<String>), i64) = self
            .bounded(
                redis::pipe()
                    .cmd("HMGET")
                    .arg(&hash)
                    .arg("customer")
                    .arg("expires_at")
                    .cmd("PTTL")
                    .arg(&hash)
                    .query_async(&mut conn),
            )
            .await?;
        let (Some(customer), Some(expires_at)) = (customer, expires_at) else {
            return Ok(None);
        };
        let malformed = |problem: &str| StoreError::malformed_in("a session", problem);
        Ok(Some(Session {
            customer: CustomerId::parse(customer)
                .map_err(|_| malformed("field `customer` is not a customer id"))?,
            expires_at: UnixMillis(
                expires_at
                    .parse()
                    .map_err(|_| malformed("field `expires_at` is not a number"))?,
            ),
            // -1 (no TTL: a hand edit) counts as ending now.
            left: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
        }))
    }

    /// Ends a session, and tells its live feeds. `false` when it had already
    /// ended.
    pub async fn end_session(&self, digest: &SessionDigest) -> Result<bool, StoreError> {
        let names = self.keys().session(digest);
        let mut end = self.scripts.session_end.key(&names.hash);
        end.arg(&names.ended);
        Ok(self.run::<i64>(&end).await? == 1)
    }

    /// Ends every session of `customer`, and returns how many were live.
    /// A session minted meanwhile may outlive the call: it came after.
    pub async fn end_sessions(&self, customer: &CustomerId) -> Result<usize, StoreError> {
        let index = self.keys().customer_sessions(customer);
        let mut conn = self.link.get();
        let listed: Vec<String> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn),
            )
            .await?;
        if listed.is_empty() {
            return Ok(0);
        }
        let digests = listed
            .iter()
            .map(|digest| SessionDigest::parse(digest))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                StoreError::malformed_in(index.as_str(), "a member is not a session digest")
            })?;
        // Each session is in its own slot: one step each, a few at a time.
        let ending = digests
            .into_iter()
            .map(|digest| async move { self.end_session(&digest).await });
        let ended: Vec<bool> = stream::iter(ending)
            .buffer_unordered(ENDING_AT_ONCE)
            .try_collect()
            .await?;
        // Only what was read goes from the list, so one listed meanwhile
        // stays there for the next revocation.
        self.bounded(
            redis::cmd("ZREM")
                .arg(&index)
                .arg(&listed)
                .exec_async(&mut conn),
        )
        .await?;
        Ok(ended.into_iter().filter(|ended| *ended).count())
    }
}
