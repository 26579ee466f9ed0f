//! The scripts that move one access, one typed wrapper each.
//!
//! They share one shape (`scripts/access.lua`): KEYS are the access's hash,
//! wake list, audit trail and submission count (and on a single Redis the
//! relay index), ARGV[1] its channel, and
//! the reply is `{ outcome, left_waiting, outbox count, own count, outbox
//! entries, field, value, ... }`: the outbox to relay, and the hash after
//! the step. Each wrapper below adds its own ARGV, and names every outcome
//! its script sends in its own enum; `Store::step` runs them
//! all the same way. The seven wrappers stay side by side in one file, a
//! little over the usual length, because they are read together: a change
//! to the shared shape shows in all of them at once.

use std::time::Duration;

use super::function::{Call, Function};
use super::hash::Fields;
use super::script::Scripts;
use super::{StoreError, millis};
use crate::model::{
    Access, AccessId, Actor, CustomerId, ImageUri, Instructions, Move, Moved, NewChallenge,
    Outcome, Reason, Status, Token, UnixMillis, Validation,
};

/// The argument that limits a step to one customer's accesses: a session's
/// customer, or '' for no limit.
fn scope(customer: Option<&CustomerId>) -> &str {
    customer.map_or("", CustomerId::as_str)
}

/// A script that moves one access.
pub(super) trait AccessStep {
    type Outcome;
    /// The step's name, for logs and the test-only fault point.
    const NAME: &'static str;
    /// Whether the step may record a move that needs a relay mark first, on
    /// a cluster (on a single Redis every step that records writes its own).
    /// Reads and the expiry sweep need none: they record a move only when
    /// they expire a challenge, whose expiring entry, due already, stands in
    /// for a mark.
    const MARKS: bool;
    /// Whether the step relays the whole outbox it is shown even when it
    /// recorded nothing itself. Steps that mark do (they remove their mark
    /// after), and so do the sweeps; a plain read leaves another step's
    /// outbox to that step, its mark and the sweep, rather than relay it
    /// again on a scraper's or a page's time.
    fn relays_all(&self) -> bool {
        Self::MARKS
    }
    fn script(scripts: &Scripts) -> &Function;
    /// ARGV[2], ...: everything after the access's channel.
    fn args(&self, invocation: &mut Call<'_>);
    /// Names the reply, or says why it is not one this script sends.
    fn outcome(reply: Reply) -> Result<Self::Outcome, String>;
}

/// An access script's reply, its outcome not named yet.
pub(super) struct Reply {
    outcome: String,
    access: Option<Access>,
    /// Only the scraper's read asks for it.
    token: Option<String>,
    /// Only a throttled submission carries it.
    retry_after_ms: Option<String>,
}

/// The parts of a reply every step shares: `left_waiting`, the outbox, and
/// the hash after the step; the rest goes to [`AccessStep::outcome`].
pub(super) struct Parsed {
    pub left_waiting: bool,
    /// Every trail entry not relayed yet, oldest first.
    pub outbox: Vec<Move>,
    /// How many of the last outbox entries this step recorded.
    pub own: usize,
    /// The hash's `relay:<id>` fields: the outbox's open relays, which the
    /// gateway deletes once it has relayed the outbox.
    pub relays: Vec<String>,
    pub reply: Reply,
}

impl Reply {
    pub fn access(&self) -> Option<&Access> {
        self.access.as_ref()
    }

    /// The hash, which this outcome must carry.
    fn with_access(self) -> Result<Access, String> {
        let outcome = self.outcome;
        self.access
            .ok_or_else(|| format!("outcome `{outcome}` came without the hash"))
    }

    /// Outcomes this script never sends with or without a hash.
    fn unexpected<T>(self) -> Result<T, String> {
        Err(format!(
            "unexpected script outcome `{}`{}",
            self.outcome,
            if self.access.is_some() {
                " with the hash"
            } else {
                ""
            }
        ))
    }
}

impl Parsed {
    /// `{ outcome, left_waiting, outbox count, own count, (id, type,
    /// attempt, at, by, reason) * outbox count, field, value, ... }`.
    pub fn from_reply(access: &AccessId, mut reply: Vec<String>) -> Result<Parsed, StoreError> {
        let malformed = |problem: String| StoreError::malformed(access, problem);
        if reply.len() < HEADER {
            return Err(malformed("a script replied without its header".to_owned()));
        }
        let rest = reply.split_off(HEADER);
        let [outcome, left_waiting, outbox_count, own] = <[String; HEADER]>::try_from(reply)
            .map_err(|_| malformed("a script replied without its header".to_owned()))?;
        let left_waiting = match left_waiting.as_str() {
            "1" => true,
            "0" => false,
            other => return Err(malformed(format!("left_waiting is `{other}`"))),
        };
        let count = |value: &str, what: &str| {
            value
                .parse::<usize>()
                .map_err(|_| malformed(format!("{what} is `{value}`")))
        };
        let outbox_len = count(&outbox_count, "the outbox count")?;
        let own = count(&own, "the own count")?;
        let split = outbox_len
            .checked_mul(OUTBOX_ENTRY)
            .filter(|&len| len <= rest.len())
            .ok_or_else(|| {
                malformed(format!("the outbox count {outbox_len} overruns the reply"))
            })?;
        let mut rest = rest;
        let fields = rest.split_off(split);
        let outbox = rest
            .chunks_exact(OUTBOX_ENTRY)
            .map(parse_move)
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed)?;
        if own > outbox.len() {
            return Err(malformed(format!(
                "{own} own moves in an outbox of {}",
                outbox.len()
            )));
        }
        let mut fields = Fields::from_pairs(access, fields);
        let relays = fields.take_named(RELAY_FIELD);
        let token = fields.take("token");
        let retry_after_ms = fields.take("retry_after_ms");
        let hash = if fields.is_empty() {
            None
        } else {
            Some(fields.into_access()?)
        };
        Ok(Parsed {
            left_waiting,
            outbox,
            own,
            relays,
            reply: Reply {
                outcome,
                access: hash,
                token,
                retry_after_ms,
            },
        })
    }
}

/// What the name of every open relay's hash field starts with.
pub(super) const RELAY_FIELD: &str = "relay:";

/// The values before the outbox in every reply.
const HEADER: usize = 4;

/// The values of one outbox entry.
const OUTBOX_ENTRY: usize = 6;

/// `id, type, attempt, at, by, reason`, where type is `challenge` or a
/// status and an empty reason is none.
fn parse_move(entry: &[String]) -> Result<Move, String> {
    let [id, kind, attempt, at, by, reason] = entry else {
        return Err(format!("an outbox entry of {} values", entry.len()));
    };
    let bad = |what: &str| format!("outbox entry {id}: {what}");
    let to = match kind.as_str() {
        "challenge" => Moved::Challenge,
        status => Moved::To(Status::parse(status).ok_or_else(|| bad(&format!("type `{status}`")))?),
    };
    Ok(Move {
        audit_id: id.clone(),
        to,
        attempt: attempt
            .parse()
            .map_err(|_| bad("`attempt` is not a number"))?,
        at: UnixMillis(at.parse().map_err(|_| bad("`at` is not a number"))?),
        by: Actor::parse(by).ok_or_else(|| bad(&format!("unknown `by` `{by}`")))?,
        reason: (!reason.is_empty()).then(|| reason.clone()),
    })
}

/// How a step that ends in an answer to its caller went: shared by the
/// submission, the report and the cancel.
pub(super) enum Settled {
    Done(Access),
    /// The lifecycle forbids the step from the access's current status.
    Refused(Access),
    /// The step named an attempt the access has moved on from.
    AttemptMismatch(Access),
    NotFound,
}

impl Settled {
    fn only(reply: Reply) -> Result<Settled, String> {
        match (reply.outcome.as_str(), reply.access.is_some()) {
            ("done", true) => reply.with_access().map(Settled::Done),
            ("refused", true) => reply.with_access().map(Settled::Refused),
            ("attempt_mismatch", true) => reply.with_access().map(Settled::AttemptMismatch),
            ("not_found", false) => Ok(Settled::NotFound),
            _ => reply.unexpected(),
        }
    }

    pub fn into_result(self, access: &AccessId) -> Result<Access, StoreError> {
        match self {
            Settled::Done(found) => Ok(found),
            Settled::Refused(found) => Err(StoreError::Refused(Box::new(found))),
            Settled::AttemptMismatch(found) => Err(StoreError::AttemptMismatch(Box::new(found))),
            Settled::NotFound => Err(StoreError::NotFound(access.clone())),
        }
    }
}

/// `post_challenge.lua`: attempt n+1, in status `need`.
pub(super) struct PostChallenge<'a> {
    pub challenge: &'a NewChallenge,
    /// The choices as JSON, as the hash keeps them.
    pub choices: Option<&'a str>,
    pub started_at: u64,
    pub expires_at: u64,
    pub retention: Duration,
    /// How long a post may take from its first index write to its hash.
    pub grace: Duration,
}

pub(super) enum Posted {
    Done(Access),
    /// A newer post wrote the hash first, or this one took too long: it
    /// wrote nothing, and posts again after the newer one, if any.
    Superseded(Option<Access>),
}

impl AccessStep for PostChallenge<'_> {
    type Outcome = Posted;
    const NAME: &'static str = "post";
    const MARKS: bool = true;

    fn script(scripts: &Scripts) -> &Function {
        &scripts.post_challenge
    }

    fn args(&self, invocation: &mut Call<'_>) {
        let challenge = self.challenge;
        let rule = challenge.rule();
        invocation
            .arg(challenge.customer.as_str())
            .arg(challenge.fin_entity_name.as_str())
            .arg(challenge.question.as_str())
            .arg(challenge.kind().as_str())
            .arg(self.started_at)
            .arg(self.expires_at)
            .arg(millis(self.retention))
            .arg(millis(self.grace));
        // The optional extras, as hash field and value pairs.
        let extras = [
            ("choices", self.choices),
            ("image", challenge.image().map(ImageUri::as_str)),
            (
                "validation",
                rule.validation.as_ref().map(Validation::as_str),
            ),
            ("validation_message", rule.validation_message.as_deref()),
            (
                "instructions",
                challenge.instructions.as_ref().map(Instructions::as_str),
            ),
        ];
        for (field, value) in extras {
            if let Some(value) = value {
                invocation.arg(field).arg(value);
            }
        }
    }

    fn outcome(reply: Reply) -> Result<Posted, String> {
        match reply.outcome.as_str() {
            "done" => reply.with_access().map(Posted::Done),
            "superseded" => Ok(Posted::Superseded(reply.access)),
            _ => reply.unexpected(),
        }
    }
}

/// `send_question.lua`: the front end is shown a challenge.
pub(super) struct SendQuestion<'a> {
    /// The customer who lists.
    pub customer: &'a crate::model::CustomerId,
    /// The entry's score in the customer's pending index; 0 for a reader
    /// that never drops an entry.
    pub score: &'a str,
    pub grace: Duration,
    /// The attempt to show, or `None` for the current one.
    pub attempt: Option<u32>,
}

pub(super) enum Shown {
    Done(Box<Access>),
    /// Not waiting for this customer, and the entry may be dropped.
    Stale,
    /// Not waiting for this customer, but a post may be between its index
    /// write and its hash write: the entry stays.
    Skip,
}

impl AccessStep for SendQuestion<'_> {
    type Outcome = Shown;
    const NAME: &'static str = "show";
    const MARKS: bool = true;

    fn script(scripts: &Scripts) -> &Function {
        &scripts.send_question
    }

    fn args(&self, invocation: &mut Call<'_>) {
        invocation
            .arg(self.customer.as_str())
            .arg(self.score)
            .arg(millis(self.grace))
            .arg(self.attempt.map(|a| a.to_string()).unwrap_or_default());
    }

    fn outcome(reply: Reply) -> Result<Shown, String> {
        match reply.outcome.as_str() {
            "done" => reply
                .with_access()
                .map(|shown| Shown::Done(Box::new(shown))),
            "stale" => Ok(Shown::Stale),
            "skip" => Ok(Shown::Skip),
            _ => reply.unexpected(),
        }
    }
}

/// `submit_token.lua`: the customer's token arrives.
pub(super) struct SubmitToken<'a> {
    pub token: &'a Token,
    /// The attempt the customer answered, or `None` for any.
    pub attempt: Option<u32>,
    /// The `started_at` of the challenge whose rule the token passed, or
    /// `None` when none was checked yet.
    pub checked: Option<UnixMillis>,
    /// Submissions allowed per window, or `None` not to count this call (a
    /// second call within one request).
    pub limit: Option<u64>,
    pub window: Duration,
    /// The customer a session limits the caller to.
    pub scope: Option<&'a CustomerId>,
}

pub(super) enum Submitted {
    Settled(Settled),
    /// Too many submissions: the next may come after this long.
    Throttled(Duration),
    /// The challenge has a rule the gateway has not checked the token
    /// against yet.
    CheckRule(Access),
    /// A new challenge was posted since the rule was checked.
    RuleChanged(Access),
}

impl AccessStep for SubmitToken<'_> {
    type Outcome = Submitted;
    const NAME: &'static str = "submit";
    const MARKS: bool = true;

    fn script(scripts: &Scripts) -> &Function {
        &scripts.submit_token
    }

    fn args(&self, invocation: &mut Call<'_>) {
        let optional = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
        invocation
            .arg(self.token.expose())
            .arg(optional(self.attempt.map(u64::from)))
            .arg(optional(self.checked.map(|at| at.0)))
            .arg(optional(self.limit))
            .arg(millis(self.window))
            .arg(scope(self.scope));
    }

    fn outcome(reply: Reply) -> Result<Submitted, String> {
        match reply.outcome.as_str() {
            "throttled" => {
                let wait = reply.retry_after_ms.as_deref().map(str::parse::<u64>);
                match wait {
                    Some(Ok(ms)) => Ok(Submitted::Throttled(Duration::from_millis(ms))),
                    _ => Err("a throttled submission came without retry_after_ms".to_owned()),
                }
            }
            "check_rule" => reply.with_access().map(Submitted::CheckRule),
            "rule_changed" => reply.with_access().map(Submitted::RuleChanged),
            _ => Settled::only(reply).map(Submitted::Settled),
        }
    }
}

/// `report.lua`: the scraper's verdict on the token.
pub(super) struct Verdict<'a> {
    pub outcome: Outcome,
    pub reason: Option<&'a Reason>,
}

impl AccessStep for Verdict<'_> {
    type Outcome = Settled;
    const NAME: &'static str = "report";
    const MARKS: bool = true;

    fn script(scripts: &Scripts) -> &Function {
        &scripts.report
    }

    fn args(&self, invocation: &mut Call<'_>) {
        invocation
            .arg(self.outcome.status().as_str())
            .arg(self.reason.map_or("", Reason::as_str));
    }

    fn outcome(reply: Reply) -> Result<Settled, String> {
        Settled::only(reply)
    }
}

/// `cancel.lua`: a challenge that is not final yet ends.
pub(super) struct Cancel<'a> {
    pub by: Actor,
    /// The customer a session limits the caller to.
    pub scope: Option<&'a CustomerId>,
}

impl AccessStep for Cancel<'_> {
    type Outcome = Settled;
    const NAME: &'static str = "cancel";
    const MARKS: bool = true;

    fn script(scripts: &Scripts) -> &Function {
        &scripts.cancel
    }

    fn args(&self, invocation: &mut Call<'_>) {
        invocation.arg(self.by.as_str()).arg(scope(self.scope));
    }

    fn outcome(reply: Reply) -> Result<Settled, String> {
        Settled::only(reply)
    }
}

/// `expire.lua`: the sweeper's step for one entry of the expiring index.
pub(super) struct Expire {
    /// The entry's `started_at`.
    pub started_at: u64,
    pub grace: Duration,
    /// How long a token waits in `token_received` for its report.
    pub token_ttl: Duration,
}

pub(super) enum Expiry {
    /// This call expired the challenge.
    Expired,
    /// Its deadline is still ahead by this node's clock (or the entry was
    /// scored early): look again at the hash's deadline.
    Waiting { expires_at: UnixMillis },
    /// A token stored at `since` has not waited its time for the report.
    TokenWaiting { since: UnixMillis },
    /// The post that wrote the entry may not have written the hash yet.
    InFlight,
    /// The entry is no longer needed: that challenge ended or was
    /// superseded.
    Gone,
}

impl AccessStep for Expire {
    type Outcome = Expiry;
    const NAME: &'static str = "expire";
    const MARKS: bool = false;

    fn relays_all(&self) -> bool {
        true
    }

    fn script(scripts: &Scripts) -> &Function {
        &scripts.expire
    }

    fn args(&self, invocation: &mut Call<'_>) {
        invocation
            .arg(self.started_at)
            .arg(millis(self.grace))
            .arg(millis(self.token_ttl));
    }

    fn outcome(reply: Reply) -> Result<Expiry, String> {
        match (reply.outcome.as_str(), reply.access.is_some()) {
            ("done", true) => Ok(Expiry::Expired),
            ("waiting", true) => reply.with_access().map(|waiting| Expiry::Waiting {
                expires_at: waiting.expires_at,
            }),
            ("token_waiting", true) => reply.with_access().map(|stored| Expiry::TokenWaiting {
                since: stored.updated_at,
            }),
            ("in_flight", false) => Ok(Expiry::InFlight),
            // With the hash when there is one, for its outbox.
            ("gone", _) => Ok(Expiry::Gone),
            _ => reply.unexpected(),
        }
    }
}

/// `read.lua`: an access as it is, expired first if its deadline passed.
pub(super) enum Read<'a> {
    /// With the token, for the scraper's own read.
    WithToken,
    /// With the image, for `GET`, by a caller a session may limit to one
    /// customer.
    WithImage(Option<&'a CustomerId>),
    /// The hash alone, for the relay sweep, which wants the outbox.
    Plain,
}

pub(super) enum Found {
    Access {
        access: Box<Access>,
        /// Present only for [`Read::WithToken`], when there is a token.
        token: Option<String>,
    },
    NotFound,
}

impl AccessStep for Read<'_> {
    type Outcome = Found;
    const NAME: &'static str = "read";
    const MARKS: bool = false;

    fn relays_all(&self) -> bool {
        matches!(self, Read::Plain)
    }

    fn script(scripts: &Scripts) -> &Function {
        &scripts.read
    }

    fn args(&self, invocation: &mut Call<'_>) {
        let (field, limit) = match self {
            Read::WithToken => ("token", None),
            Read::WithImage(limit) => ("image", *limit),
            Read::Plain => ("", None),
        };
        invocation.arg(field).arg(scope(limit));
    }

    fn outcome(mut reply: Reply) -> Result<Found, String> {
        match (reply.outcome.as_str(), reply.access.is_some()) {
            ("done", true) => {
                let token = reply.token.take();
                let access = Box::new(reply.with_access()?);
                Ok(Found::Access { access, token })
            }
            ("not_found", false) => Ok(Found::NotFound),
            _ => reply.unexpected(),
        }
    }
}

#[cfg(test)]
mod tests;
