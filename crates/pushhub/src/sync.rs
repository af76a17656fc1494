//! Locking helpers shared by every module that guards state with a std mutex.

use std::sync::{Mutex, MutexGuard};

/// Lock a mutex, recovering the data if another thread panicked while holding it. Every
/// structure pushhub guards this way is consistent between statements (no invariant spans
/// a panic point), so a poisoned lock carries no broken state, and one panicking task must
/// not take the whole server down with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
