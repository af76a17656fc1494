//! The run-time damage latch: the first read or write that finds the store file damaged
//! trips it, and from then on every operation is refused at once.
//!
//! A file damaged under a running server (a failing disk, a stray `dd`) makes redb return
//! `Corrupted` or panic on the pages it reads. Left alone, every retry reads the same
//! pages again: a panic and a log line per timer per second, forever. Instead the store
//! stops using the file at the first sign: one error line says what happened and what to
//! do, later operations fail fast with [`StoreError::Damaged`] without touching the file,
//! and `GET /v1/stats` counts them. Nothing is lost by stopping: what the file held stays
//! there for `pushhub store repair` to salvage, and a restart refuses the damaged file
//! until then.

use std::any::Any;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use serde::Serialize;

use super::StoreError;

/// The latch of one store file.
#[derive(Debug)]
pub(super) struct DamageLatch {
    path: PathBuf,
    problem: OnceLock<String>,
    refused: AtomicU64,
}

/// The latch as `GET /v1/stats` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DamageSnapshot {
    /// The first damage found while running, if any: the store is no longer used.
    pub problem: Option<String>,
    /// Operations refused because of it.
    pub refused: u64,
}

impl DamageLatch {
    /// A latch for the store file at `path`, not tripped.
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            problem: OnceLock::new(),
            refused: AtomicU64::new(0),
        }
    }

    /// Record that the file is damaged; the first call logs it. Returns the error to
    /// answer with (naming the first problem found, whichever call found it).
    pub(super) fn trip(&self, problem: String) -> StoreError {
        let mut first = false;
        let problem = self.problem.get_or_init(|| {
            first = true;
            problem
        });
        if first {
            tracing::error!(
                path = %self.path.display(),
                %problem,
                "the timer store file is damaged: it is no longer read or written, and every timer and cron operation fails until the server is stopped and the store repaired (`pushhub store check`, `pushhub store repair`; see docs/operations.md)"
            );
        }
        self.refuse(problem)
    }

    /// `Err` once tripped (counted as a refused operation), else `Ok`.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self.problem.get() {
            Some(problem) => Err(self.refuse(problem)),
            None => Ok(()),
        }
    }

    /// Whether the latch has tripped.
    pub(super) fn tripped(&self) -> bool {
        self.problem.get().is_some()
    }

    /// The counters.
    pub(super) fn snapshot(&self) -> DamageSnapshot {
        DamageSnapshot {
            problem: self.problem.get().cloned(),
            refused: self.refused.load(Relaxed),
        }
    }

    fn refuse(&self, problem: &str) -> StoreError {
        self.refused.fetch_add(1, Relaxed);
        StoreError::Damaged {
            path: self.path.clone(),
            problem: problem.to_owned(),
        }
    }
}

/// What a caught panic said, for a report.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("redb panicked reading the file: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_problem_is_kept_and_every_later_operation_is_refused_and_counted() {
        let latch = DamageLatch::new(PathBuf::from("/data/timers.redb"));
        assert!(latch.check().is_ok());
        assert!(!latch.tripped());
        let first = latch.trip("page 7 does not verify".into());
        let second = latch.trip("another page".into());
        for error in [first, second, latch.check().unwrap_err()] {
            let StoreError::Damaged { path, problem } = error else {
                panic!("not Damaged: {error}");
            };
            assert_eq!(path, PathBuf::from("/data/timers.redb"));
            assert_eq!(problem, "page 7 does not verify");
        }
        let snapshot = latch.snapshot();
        assert_eq!(snapshot.refused, 3);
        assert_eq!(snapshot.problem.as_deref(), Some("page 7 does not verify"));
    }
}
