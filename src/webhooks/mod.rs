//! Signed webhooks, after the Standard Webhooks spec: where a customer's
//! endpoint may point, the secrets that sign for it, the signature header,
//! and when a failed delivery is tried again.
//!
//! These are the leaves: no Redis and no HTTP handlers. The outbox in the
//! store and the delivery workers build on them.
//!
//! - [`url`]: the endpoint's URL, checked once when it is registered, and
//!   the address check that keeps a delivery off internal networks;
//! - [`resolver`]: the delivery client, whose DNS resolver applies that
//!   check to the very addresses it connects to;
//! - [`secret`]: a `whsec_` signing secret that no log line can print;
//! - [`signing`]: the `webhook-signature` header, one value per secret;
//! - [`schedule`]: the retry schedule, with its jitter.

pub mod delivery;
pub mod resolver;
pub mod schedule;
pub mod secret;
pub mod signing;
pub mod url;

pub use self::url::{HostError, UrlPolicy, WebhookUrl, check_host, forbidden};
pub use resolver::{GuardedResolver, delivery_client};
pub use schedule::{MAX_TRIES, next_try};
pub use secret::WebhookSecret;
pub use signing::{SignError, signature_header};
