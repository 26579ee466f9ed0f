//! The lifecycle of a challenge: post, show, submit, report, cancel, and
//! the two reads, each one access step, with the retries a step needs when
//! another step on the same access overtakes it.

use std::time::Duration;

use super::indexes::expiring_member;
use super::script::{ExpiringAdd, IndexAdd};
use super::steps::{
    Cancel, Found, PostChallenge, Posted, Read, SendQuestion, Settled, Shown, SubmitToken,
    Submitted, Verdict,
};
use super::{Store, StoreError, TokenView};
use crate::model::{
    Access, AccessId, Actor, AnswerRule, CustomerId, NewChallenge, Outcome, Reason, Token,
};

/// How many times a step overtaken by another step on the same access (a
/// newer post) starts over before it gives up with a 503.
const POST_ATTEMPTS: usize = 3;

/// The window of the rate limit on token submissions.
const SUBMISSION_WINDOW: Duration = Duration::from_secs(60);

impl Store {
    /// Starts attempt n+1 of a challenge, in status `need`.
    ///
    /// The two indexes live in other slots, so they are written first, each
    /// by its own call: a crash can leave a stale entry but never a missing
    /// one (see `indexes`).
    pub async fn post_challenge(
        &self,
        access: &AccessId,
        challenge: &NewChallenge,
    ) -> Result<Access, StoreError> {
        // Another post of the same access can overtake this one between its
        // index writes and its hash write; then it starts over, as if it had
        // come second.
        let mut after = 0;
        for _ in 0..POST_ATTEMPTS {
            match self.try_post_challenge(access, challenge, after).await? {
                Posted::Done(posted) => return Ok(posted),
                Posted::Superseded(newer) => {
                    after = newer.map_or(0, |newer| newer.started_at.0 + 1);
                }
            }
        }
        Err(StoreError::Contended(access.clone()))
    }

    /// One try, started no earlier than `after` (Unix ms).
    async fn try_post_challenge(
        &self,
        access: &AccessId,
        challenge: &NewChallenge,
        after: u64,
    ) -> Result<Posted, StoreError> {
        let expires_in = challenge.expires_in.as_duration();
        let pending = self.keys().pending(&challenge.customer);
        let started_at = self
            .index_add(IndexAdd {
                index: &pending,
                access,
                keep: expires_in + self.options.retention,
                after,
            })
            .await?;
        let expires_at = started_at + super::millis(expires_in);
        self.expiring_add(ExpiringAdd {
            index: &self.keys().expiring(),
            member: &expiring_member(access, started_at),
            deadline: expires_at,
        })
        .await?;
        let choices = challenge
            .rule()
            .choices
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::malformed(access, format!("choices do not serialise: {e}")))?;
        let post = PostChallenge {
            challenge,
            choices: choices.as_deref(),
            started_at,
            expires_at,
            retention: self.options.retention,
            grace: self.options.in_flight_grace(),
        };
        Ok(self.step(access, post).await?.observed())
    }

    /// Stores the customer's token: a waiting challenge becomes
    /// `token_received`. With `attempt`, only that attempt may be answered.
    ///
    /// The token is first checked against the challenge's rule (its kind,
    /// choices and validation), so a wrong one is refused before it burns
    /// one of the bank's attempts, and the challenge keeps waiting. The store
    /// step then makes sure the rule checked is still the current attempt's.
    /// With a `scope`, only one of that customer's accesses is answered:
    /// another's is not found, and not even counted against its limit.
    pub async fn submit_token(
        &self,
        access: &AccessId,
        token: &Token,
        attempt: Option<u32>,
        scope: Option<&CustomerId>,
    ) -> Result<Access, StoreError> {
        // The started_at of the challenge whose rule the token passed.
        let mut checked = None;
        for look in 0..POST_ATTEMPTS {
            let submit = SubmitToken {
                token,
                attempt,
                checked,
                // Counted once per request, on its first call.
                limit: (look == 0).then_some(self.options.submissions_per_minute),
                window: SUBMISSION_WINDOW,
                scope,
            };
            let current = match self.step(access, submit).await?.observed() {
                Submitted::Settled(settled) => return settled.into_result(access),
                Submitted::Throttled(wait) => return Err(StoreError::Throttled(wait)),
                Submitted::CheckRule(current) | Submitted::RuleChanged(current) => current,
            };
            // A wrong token is refused before it burns one of the bank's
            // attempts, and the challenge keeps waiting.
            let rule = AnswerRule::of(&current)
                .map_err(|e| StoreError::malformed(access, format!("field `validation`: {e}")))?;
            rule.check(token)
                .map_err(|refused| StoreError::InvalidAnswer(refused.to_string()))?;
            checked = Some(current.started_at);
        }
        Err(StoreError::Contended(access.clone()))
    }

    /// The scraper's verdict on the token: `ok` or `rejected`.
    pub async fn report(
        &self,
        access: &AccessId,
        outcome: Outcome,
        reason: Option<&Reason>,
    ) -> Result<Access, StoreError> {
        let verdict = Verdict { outcome, reason };
        let settled: Settled = self.step(access, verdict).await?.observed();
        settled.into_result(access)
    }

    /// Ends a challenge that is not final yet. With a `scope`, only one of
    /// that customer's: another's is not found.
    pub async fn cancel(
        &self,
        access: &AccessId,
        by: Actor,
        scope: Option<&CustomerId>,
    ) -> Result<Access, StoreError> {
        let settled = self.step(access, Cancel { by, scope }).await?.observed();
        settled.into_result(access)
    }

    /// Shows the customer one attempt of a challenge, as a list would:
    /// `need` becomes `question_sent`. `None` when that attempt is no longer
    /// waiting for this customer.
    pub async fn show_challenge(
        &self,
        customer: &CustomerId,
        access: &AccessId,
        attempt: u32,
    ) -> Result<Option<Access>, StoreError> {
        let show = SendQuestion {
            customer,
            // The score only matters to a reader that may drop an index
            // entry; this one never does.
            score: "0",
            grace: self.options.in_flight_grace(),
            attempt: Some(attempt),
        };
        Ok(match self.step(access, show).await?.observed() {
            Shown::Done(access) => Some(*access),
            Shown::Stale | Shown::Skip => None,
        })
    }

    /// The access as it is, with its image but without its token; `None`
    /// when it has no challenge. A challenge found past its deadline is
    /// expired first. With a `scope`, another customer's access is `None`.
    pub async fn access(
        &self,
        access: &AccessId,
        scope: Option<&CustomerId>,
    ) -> Result<Option<Access>, StoreError> {
        Ok(
            match self.step(access, Read::WithImage(scope)).await?.observed() {
                Found::Access { access, .. } => Some(*access),
                Found::NotFound => None,
            },
        )
    }

    /// The status, attempt, deadline and token, read in one step for a
    /// waiter. A challenge found past its deadline is expired first.
    pub async fn token_view(&self, access: &AccessId) -> Result<Option<TokenView>, StoreError> {
        let (found, token) = match self.step(access, Read::WithToken).await?.observed() {
            Found::Access { access, token } => (access, token),
            Found::NotFound => return Ok(None),
        };
        let token = token
            .map(Token::parse)
            .transpose()
            .map_err(|_| StoreError::malformed(access, "field `token` is not a valid token"))?;
        Ok(Some(TokenView {
            status: found.status,
            attempt: found.attempt,
            expires_at: found.expires_at,
            updated_at: found.updated_at,
            token,
        }))
    }
}
