//! Serving a future's wakes from its own poll by polling it again at once.
//!
//! Hyper's HTTP/1.1 connection wakes its own task on every request with a body: the
//! handler taking the body's bytes out of hyper's channel wakes the channel's sender,
//! which is the connection task itself, polling the handler. Tokio then treats the task
//! as having yielded: it goes to the back of the run queue and an idle worker thread is
//! woken (a futex wake, and that worker's park again) to run a poll that finds nothing to
//! do. At a steady rate of single pushes that was one thread wake-up per request on top
//! of the socket's own (docs/benchmarks.md, "Pushes to online users"). [`Repoll`] hands
//! the future a waker of its own: a wake while the future is being polled only marks it,
//! and the future is polled again before [`Repoll::poll`] returns; a wake at any other
//! time goes to the task, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls in a row for wakes during a poll, before the task is woken and yields to the
/// others instead (a future that keeps waking itself must not hold its thread).
const MAX_REPOLLS: usize = 4;

/// Not being polled: a wake goes to the task.
const IDLE: u8 = 0;
/// Being polled: a wake is marked and served by polling again.
const POLLING: u8 = 1;
/// Being polled, and woken meanwhile.
const WOKEN: u8 = 2;

/// `F`, polled again within the same poll when it wakes itself (see the module's doc).
pub struct Repoll<F> {
    inner: F,
    shared: Arc<Shared>,
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) | Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

impl<F: Future + Unpin> Repoll<F> {
    /// Wrap `inner`. `F` is `Unpin`: pin a future in place (`std::pin::pin!`) and pass the
    /// pinned reference.
    pub fn new(inner: F) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(shared.clone());
        Self {
            inner,
            shared,
            waker,
        }
    }
}

impl<F: Future + Unpin> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        this.shared.task.register(cx.waker());
        let state = &this.shared.state;
        for _ in 0..MAX_REPOLLS {
            state.store(POLLING, Ordering::Release);
            let polled = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
            let woken = state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_err();
            if polled.is_ready() || !woken {
                state.store(IDLE, Ordering::Release);
                return polled;
            }
        }
        state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Pending `wakes` times, waking itself each time (as hyper's connection does), then
    /// ready with the number of polls it took.
    struct WakesItself {
        wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future + Unpin>(future: &mut Repoll<F>, count: &Arc<Count>) -> Poll<F::Output> {
        let waker = Waker::from(count.clone());
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_wake_during_the_poll_is_served_by_polling_again_without_the_task() {
        let count = Arc::new(Count::default());
        let mut future = Repoll::new(WakesItself { wakes: 2, polls: 0 });
        assert_eq!(poll_once(&mut future, &count), Poll::Ready(3));
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "the task was not woken");
    }

    #[test]
    fn a_future_that_keeps_waking_itself_yields_to_the_task() {
        let count = Arc::new(Count::default());
        let mut future = Repoll::new(WakesItself {
            wakes: usize::MAX,
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &count), Poll::Pending);
        assert_eq!(future.inner.polls, MAX_REPOLLS);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken to be polled again"
        );
    }

    #[test]
    fn a_wake_after_the_poll_reaches_the_task() {
        let count = Arc::new(Count::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut future = Repoll::new(rx);
        assert!(poll_once(&mut future, &count).is_pending());
        tx.send(7).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll_once(&mut future, &count), Poll::Ready(Ok(7))));
    }

    #[tokio::test]
    async fn a_wake_from_another_thread_after_the_poll_reaches_the_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(9)
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), Repoll::new(rx)).await;
        assert!(matches!(got, Ok(Ok(9))));
        assert!(sender.join().unwrap().is_ok());
    }
}
