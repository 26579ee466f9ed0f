//! Every Redis key and channel name, built in one place.
//!
//! The names are a public contract (README, "Redis layout"): scrapers in
//! other languages and operators with redis-cli use them directly. An access's
//! keys share the hash tag `{<access>}`, so that every transition touches one
//! cluster slot.

use crate::model::{AccessId, CustomerId, Invalid, SessionDigest, is_key_char};

/// The key prefix, `2fa` by default. It must not contain braces, or it would
/// change the hash tag that keeps an access's keys in one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        if value.is_empty() || value.len() > 64 || !value.chars().all(is_key_char) {
            return Err(Invalid::new(
                "the key prefix must be 1 to 64 characters from [A-Za-z0-9._:-]",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Prefix {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::parse(s)
    }
}

/// The names of one access's keys and channel.
#[derive(Debug, Clone)]
pub struct AccessKeys {
    /// `2fa:access:{<access>}`, the HASH that holds the state.
    pub hash: String,
    /// `2fa:access:{<access>}:wake`, the LIST a raw-Redis scraper BLPOPs.
    pub wake: String,
    /// `2fa:access:{<access>}:events`, the STREAM of its audit trail.
    pub events: String,
    /// `2fa:access:{<access>}:changed`, the channel that gets every new status.
    pub changed: String,
    /// `2fa:access:{<access>}:submitted`, a STRING counting the token
    /// submissions of the current minute, for the rate limit.
    pub submitted: String,
}

/// The names of one customer session's key and channel.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub hash: String,
    pub ended: String,
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Prefix,
}

impl Keys {
    pub fn new(prefix: Prefix) -> Self {
        Self { prefix }
    }

    pub fn access(&self, access: &AccessId) -> AccessKeys {
        let hash = format!("{}:access:{{{}}}", self.prefix.as_str(), access.as_str());
        AccessKeys {
            wake: format!("{hash}:wake"),
            events: format!("{hash}:events"),
            changed: format!("{hash}:changed"),
            submitted: format!("{hash}:submitted"),
            hash,
        }
    }

    /// `2fa:customer:{<customer>}:<what>`: every customer key and channel.
    fn customer_key(&self, customer: &CustomerId, what: &str) -> String {
        format!(
            "{}:customer:{{{}}}:{what}",
            self.prefix.as_str(),
            customer.as_str()
        )
    }

    /// The channel alone, for the subscriber.
    pub fn changed(&self, access: &AccessId) -> String {
        self.access(access).changed
    }

    /// `2fa:customer:{<customer>}:pending`, a ZSET index of the customer's
    /// waiting accesses, scored by `started_at`.
    pub fn pending(&self, customer: &CustomerId) -> String {
        self.customer_key(customer, "pending")
    }

    /// `2fa:customer:{<customer>}:events`, the STREAM behind the customer's
    /// live feed.
    pub fn feed(&self, customer: &CustomerId) -> String {
        self.customer_key(customer, "events")
    }

    /// `2fa:customer:{<customer>}:changed`, the channel that gets the id of
    /// each new feed entry: the hint that wakes feed readers.
    pub fn feed_channel(&self, customer: &CustomerId) -> String {
        self.customer_key(customer, "changed")
    }

    /// `2fa:customer:{<customer>}:latest`, a HASH of the latest audit-trail
    /// id the feed announced for each access, which keeps the feed in order.
    pub fn feed_latest(&self, customer: &CustomerId) -> String {
        self.customer_key(customer, "latest")
    }

    /// `2fa:customer:{<customer>}:sessions`, a ZSET of the digests of the
    /// customer's sessions, scored by when each ends: what revoking them all
    /// reads.
    pub fn customer_sessions(&self, customer: &CustomerId) -> String {
        self.customer_key(customer, "sessions")
    }

    /// `2fa:session:{<digest>}`, the HASH of one session (`customer`,
    /// `expires_at`), and `…:ended`, the channel its live feeds hear its end
    /// on. Named after the digest alone, so a presented session is found
    /// with no other clue.
    pub fn session(&self, digest: &SessionDigest) -> SessionKeys {
        let hash = format!("{}:session:{{{}}}", self.prefix.as_str(), digest.as_str());
        SessionKeys {
            ended: format!("{hash}:ended"),
            hash,
        }
    }

    /// `2fa:expiring`, a ZSET index of waiting accesses scored by
    /// `expires_at`, that the sweeper reads to expire challenges on time.
    pub fn expiring(&self) -> String {
        format!("{}:expiring", self.prefix.as_str())
    }

    /// The relay index: ZSETs of relay marks, removed once their outbox is
    /// relayed and scored by when they were written, which the sweep takes
    /// over from a gateway that died in between. On a single Redis each step
    /// that records writes one, `<access>|<audit id>`; on a cluster the
    /// gateway writes `<access>|<ms>-<nonce>` before each step that may
    /// record. On a single Redis it is
    /// one key, `2fa:relay`; on a cluster it is `buckets` keys,
    /// `2fa:relay:{0}` to `2fa:relay:{<buckets - 1>}`, on several shards, so
    /// that one failed shard does not stop every step.
    pub fn relay(&self, bucket: usize, buckets: usize) -> String {
        if buckets <= 1 {
            format!("{}:relay", self.prefix.as_str())
        } else {
            format!("{}:relay:{{{bucket}}}", self.prefix.as_str())
        }
    }
}

/// The names of one webhook endpoint's keys, which share the hash tag
/// `{<id>}`: one slot per endpoint, so its queue moves in one step.
#[derive(Debug, Clone)]
pub struct WebhookKeys {
    /// `2fa:webhook:{<id>}`, the HASH of its settings and secrets.
    pub endpoint: String,
    /// `2fa:webhook:{<id>}:queue`, a ZSET of its lanes (one per access with
    /// messages pending), scored by when the head is due or its lease ends.
    pub queue: String,
    /// `2fa:webhook:{<id>}:lanes`, a HASH of each lane's pending message
    /// ids, oldest first.
    pub lanes: String,
    /// `2fa:webhook:{<id>}:messages`, a HASH of message id to its record.
    pub messages: String,
    /// `2fa:webhook:{<id>}:history`, a ZSET of message ids by creation.
    pub history: String,
}

impl Keys {
    /// `2fa:webhooks`, the ZSET registry of endpoint ids, scored by creation.
    pub fn webhooks(&self) -> String {
        format!("{}:webhooks", self.prefix.as_str())
    }

    pub fn webhook(&self, id: &str) -> WebhookKeys {
        let endpoint = format!("{}:webhook:{{{id}}}", self.prefix.as_str());
        WebhookKeys {
            queue: format!("{endpoint}:queue"),
            lanes: format!("{endpoint}:lanes"),
            messages: format!("{endpoint}:messages"),
            history: format!("{endpoint}:history"),
            endpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_layout() {
        let keys = Keys::new(Prefix::parse("2fa").expect("valid prefix"));
        let access = AccessId::parse("001").expect("valid id");
        let names = keys.access(&access);
        assert_eq!(names.hash, "2fa:access:{001}");
        assert_eq!(names.wake, "2fa:access:{001}:wake");
        assert_eq!(names.events, "2fa:access:{001}:events");
        assert_eq!(names.changed, "2fa:access:{001}:changed");
        let customer = CustomerId::parse("c1").expect("valid id");
        assert_eq!(keys.pending(&customer), "2fa:customer:{c1}:pending");
        assert_eq!(keys.feed(&customer), "2fa:customer:{c1}:events");
        assert_eq!(keys.feed_channel(&customer), "2fa:customer:{c1}:changed");
        assert_eq!(keys.feed_latest(&customer), "2fa:customer:{c1}:latest");
        assert_eq!(keys.expiring(), "2fa:expiring");
        assert_eq!(keys.relay(0, 1), "2fa:relay");
        assert_eq!(keys.relay(3, 8), "2fa:relay:{3}");
        assert_eq!(keys.webhooks(), "2fa:webhooks");
        let hook = keys.webhook("wh_1");
        assert_eq!(hook.endpoint, "2fa:webhook:{wh_1}");
        assert_eq!(hook.queue, "2fa:webhook:{wh_1}:queue");
        assert_eq!(hook.lanes, "2fa:webhook:{wh_1}:lanes");
        assert_eq!(hook.messages, "2fa:webhook:{wh_1}:messages");
        assert_eq!(hook.history, "2fa:webhook:{wh_1}:history");
        assert_eq!(names.submitted, "2fa:access:{001}:submitted");
        assert_eq!(
            keys.customer_sessions(&customer),
            "2fa:customer:{c1}:sessions"
        );
        let digest = SessionDigest::parse(&"ab".repeat(32)).expect("a digest");
        let session = keys.session(&digest);
        assert_eq!(session.hash, format!("2fa:session:{{{}}}", "ab".repeat(32)));
        assert_eq!(
            session.ended,
            format!("2fa:session:{{{}}}:ended", "ab".repeat(32))
        );
    }

    #[test]
    fn a_prefix_cannot_move_the_hash_tag() {
        assert!(Prefix::parse("{x}").is_err());
        assert!(Prefix::parse("").is_err());
        assert!(Prefix::parse("prod:2fa").is_ok());
    }
}
