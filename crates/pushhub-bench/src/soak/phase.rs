//! The soak's phases, told to every task through one watch channel.

use tokio::sync::watch;

/// Where the soak is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Resuming clients are connecting for the first time; nothing is published yet.
    Warmup,
    /// Everything runs: publishing, reconnects, storms, hostile and slow clients, timers.
    Chaos,
    /// Publishing and attacks have stopped; resuming clients stay connected (reconnecting
    /// only if the server closes them) until they have everything they are owed.
    Settle,
    /// Every task ends.
    Done,
}

/// Waits until the phase is no longer `phase` (or the sender is gone).
pub async fn left(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p != phase).await;
}

/// Waits until the phase is `phase` (or the sender is gone).
pub async fn reached(rx: &mut watch::Receiver<Phase>, phase: Phase) {
    let _ = rx.wait_for(|p| *p == phase).await;
}
