//! When a failed delivery is tried again.
//!
//! The first try is immediate. After it fails, retries follow after 1 s,
//! 5 s, 30 s, 2 min, 10 min, 30 min and 1 h: eight tries in all, spread over
//! about 1 h 43 min, long enough to ride out a receiver's deploy or a short
//! outage. When the eighth try (the seventh retry) fails, the message is
//! failed for good.
//!
//! Each delay is stretched or shrunk by up to 20 % at random, so that the
//! messages that failed together, when a receiver went down, do not all
//! come back in the same second when it returns.

use std::time::Duration;

/// The waits before the retries, in order.
pub const DELAYS: [Duration; 7] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];

/// Tries in all before a message is failed: the first, and one per delay.
pub const MAX_TRIES: u32 = 1 + DELAYS.len() as u32;

/// How far a delay may move either way, as a share of it.
pub const JITTER: f64 = 0.2;

/// How long to wait before the next try, when `tries_so_far` tries have been
/// made and failed; `None` once [`MAX_TRIES`] have failed, and the message is
/// to be marked failed. With no try made yet, the answer is zero: the first
/// try is immediate.
///
/// The jitter comes from `rng`; the thread's generator, `rand::rng()`, is
/// enough, since nothing here is secret.
pub fn next_try<R: rand::Rng + ?Sized>(tries_so_far: u32, rng: &mut R) -> Option<Duration> {
    use rand::RngExt;
    delay_after(tries_so_far, rng.random::<f64>())
}

/// [`next_try`] with the random draw given: `fraction` in `[0, 1]` places
/// the delay from 20 % short (0) to 20 % long (1). Apart, so that tests can
/// pin the bounds.
pub fn delay_after(tries_so_far: u32, fraction: f64) -> Option<Duration> {
    let Some(retry) = tries_so_far.checked_sub(1) else {
        return Some(Duration::ZERO);
    };
    let base = DELAYS.get(usize::try_from(retry).ok()?)?;
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.5
    };
    Some(base.mul_f64(1.0 - JITTER + 2.0 * JITTER * fraction))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const SECS: [f64; 7] = [1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0];

    #[test]
    fn the_first_try_is_immediate() {
        assert_eq!(delay_after(0, 0.0), Some(Duration::ZERO));
        assert_eq!(delay_after(0, 1.0), Some(Duration::ZERO));
    }

    #[test]
    fn each_retry_waits_its_delay_within_twenty_percent() {
        for (retry, secs) in SECS.iter().enumerate() {
            let tries = u32::try_from(retry).unwrap() + 1;
            let at = |f: f64| delay_after(tries, f).unwrap().as_secs_f64();
            assert!((at(0.0) - secs * 0.8).abs() < 1e-6, "after try {tries}");
            assert!((at(0.5) - secs).abs() < 1e-6, "after try {tries}");
            assert!((at(1.0) - secs * 1.2).abs() < 1e-6, "after try {tries}");
            // A draw out of range is held to the bounds.
            assert!((at(-3.0) - secs * 0.8).abs() < 1e-6);
            assert!((at(7.0) - secs * 1.2).abs() < 1e-6);
            assert!((at(f64::NAN) - secs).abs() < 1e-6);
        }
    }

    #[test]
    fn random_draws_stay_in_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        for (retry, secs) in SECS.iter().enumerate() {
            let tries = u32::try_from(retry).unwrap() + 1;
            for _ in 0..200 {
                let delay = next_try(tries, &mut rng).unwrap().as_secs_f64();
                assert!(delay >= secs * 0.8 - 1e-9 && delay <= secs * 1.2 + 1e-9);
            }
        }
    }

    #[test]
    fn the_message_fails_after_eight_tries() {
        assert_eq!(MAX_TRIES, 8);
        let mut rng = StdRng::seed_from_u64(1);
        assert!(next_try(MAX_TRIES - 1, &mut rng).is_some());
        assert_eq!(next_try(MAX_TRIES, &mut rng), None);
        assert_eq!(next_try(MAX_TRIES + 1, &mut rng), None);
        assert_eq!(next_try(u32::MAX, &mut rng), None);
    }
}
