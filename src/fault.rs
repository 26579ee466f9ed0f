//! Test-only fault points, compiled in only with the `fault-points` feature
//! (which README's test command turns on), so a production build has none.
//!
//! `TWOFA_TEST_WEBHOOK_DELAY_DIVISOR=<n>` (or the config field) divides the
//! webhook retry delays.
//!
//! `TWOFA_TEST_HALT_AFTER=<step>` (`post`, `show`, `submit`, `report`,
//! `cancel`, `read`, `expire`) halts every request that runs that step, right
//! after the step committed in Redis and before its outbox is relayed. The
//! gateway logs `fault point reached` first, so a test waits for that line,
//! then SIGKILLs the process: the crash lands exactly between the commit and
//! the relay, with no sleep.

/// Halts here, for good, if this step is the configured fault point.
#[cfg(feature = "fault-points")]
pub async fn after_commit(step: &'static str) {
    use std::sync::OnceLock;
    static HALT_AFTER: OnceLock<Option<String>> = OnceLock::new();
    let halt = HALT_AFTER.get_or_init(|| std::env::var("TWOFA_TEST_HALT_AFTER").ok());
    if halt.as_deref() == Some(step) {
        tracing::warn!(
            step,
            "fault point reached: halted after the step committed, before its relay"
        );
        std::future::pending::<()>().await;
    }
}

/// Without the feature, nothing.
#[cfg(not(feature = "fault-points"))]
pub async fn after_commit(_step: &'static str) {}

/// What the webhook retry delays are divided by: 1 but in tests.
#[cfg(feature = "fault-points")]
pub fn webhook_delay_divisor(config: &crate::config::Config) -> u32 {
    config.test_webhook_delay_divisor
}

#[cfg(not(feature = "fault-points"))]
pub fn webhook_delay_divisor(_config: &crate::config::Config) -> u32 {
    1
}
