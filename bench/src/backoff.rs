//! How long a closed-loop connection waits before it tries to connect
//! again after a refused or failed connect: doubling from 1 ms to 100 ms,
//! back to 1 ms after a success. Without it, a run against a target that
//! is down spins a core on connect attempts (each counted as an error),
//! stealing the CPU the target needs to come back. Open-loop runs are
//! paced by their schedule and do not back off.

use std::time::Duration;

/// The first wait after a failure.
pub const FIRST: Duration = Duration::from_millis(1);
/// The longest wait.
pub const MAX: Duration = Duration::from_millis(100);

/// One connection's backoff state.
#[derive(Debug, Clone, Copy)]
pub struct ConnectBackoff {
    next: Duration,
}

impl Default for ConnectBackoff {
    fn default() -> Self {
        ConnectBackoff { next: FIRST }
    }
}

impl ConnectBackoff {
    /// A connect failed: how long to wait before the next one.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX);
        wait
    }

    /// A connect worked: the next failure waits [`FIRST`] again.
    pub fn succeeded(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_on_success() {
        let mut b = ConnectBackoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
        b.succeeded();
        assert_eq!(b.failed(), FIRST);
    }
}
