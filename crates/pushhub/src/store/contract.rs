//! The behaviour every [`TimerStore`] must show, as one test run against each backend.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;

pub(super) fn new_timer(app: &str, due_ms: u64, key: Option<&str>) -> NewTimer {
    NewTimer {
        app: app.into(),
        request: CallbackRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:9/hook".into(),
            headers: vec![("X-A".into(), "1".into())],
            body: Some("a=1".into()),
            timeout_ms: 1000,
        },
        due_ms,
        created_ms: 1,
        retry: RetryPolicy {
            max_attempts: 3,
            base_ms: 10,
            max_ms: 100,
        },
        idempotency_key: key.map(Into::into),
        interval: None,
    }
}

fn attempt(number: u32, status: u16) -> Attempt {
    Attempt {
        number,
        started_ms: 5,
        duration_ms: 2,
        status: Some(status),
        error: None,
        response: Some("ok".into()),
    }
}

/// Run the whole contract against stores made by `open` in a fresh place (opening the
/// same place again must find what the previous store committed).
pub(crate) async fn check<F, Fut>(open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = Arc<dyn TimerStore>>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path().to_path_buf()).await;

    // Create: ids increase; the record is as given, pending.
    let a = store.create(new_timer("a", 100, None)).await.unwrap();
    let b = store.create(new_timer("a", 50, Some("k"))).await.unwrap();
    assert!(!a.existing && !b.existing);
    assert!(b.timer.id > a.timer.id);
    assert_eq!(a.timer.state, TimerState::Pending);
    assert_eq!(a.timer.attempts, 0);
    assert_eq!(store.get(a.timer.id).await.unwrap(), Some(a.timer.clone()));
    assert_eq!(store.get(999_999).await.unwrap(), None);
    assert_eq!(
        store
            .finish_attempt(999_999, attempt(1, 200), Next::Succeeded, 1)
            .await
            .unwrap(),
        None
    );

    // Idempotency: per app.
    let again = store.create(new_timer("a", 1, Some("k"))).await.unwrap();
    assert!(again.existing);
    assert_eq!(again.timer, b.timer);
    let other_app = store.create(new_timer("b", 1, Some("k"))).await.unwrap();
    assert!(!other_app.existing);

    // Concurrent creates all land, with distinct ids.
    let many = futures_util::future::join_all(
        (0..50).map(|i| store.create(new_timer("c", 1000 + i, None))),
    )
    .await;
    let mut ids: Vec<TimerId> = many.into_iter().map(|c| c.unwrap().timer.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 50);

    // Attempts: pending → running; retry back to pending; success is final.
    let running = store.begin_attempt(a.timer.id).await.unwrap().unwrap();
    assert_eq!((running.state, running.attempts), (TimerState::Running, 1));
    assert_eq!(store.begin_attempt(999_999).await.unwrap(), None);
    let after = store
        .finish_attempt(a.timer.id, attempt(1, 503), Next::Retry { due_ms: 200 }, 6)
        .await
        .unwrap();
    assert_eq!(after, Some(TimerState::Pending));
    let retried = store.get(a.timer.id).await.unwrap().unwrap();
    assert_eq!(
        (retried.state, retried.due_ms, retried.attempts),
        (TimerState::Pending, 200, 1)
    );
    assert_eq!(retried.last, Some(attempt(1, 503)));
    store.begin_attempt(a.timer.id).await.unwrap().unwrap();
    let after = store
        .finish_attempt(a.timer.id, attempt(2, 200), Next::Succeeded, 7)
        .await
        .unwrap();
    assert_eq!(after, Some(TimerState::Succeeded));
    let done = store.get(a.timer.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.attempts, done.finished_ms),
        (TimerState::Succeeded, 2, Some(7))
    );
    assert_eq!(store.begin_attempt(a.timer.id).await.unwrap(), None);

    // Cancel: pending or running; finished and unknown timers are reported.
    assert!(matches!(
        store.cancel(a.timer.id, 8).await.unwrap(),
        Cancel::Finished(t) if t.state == TimerState::Succeeded
    ));
    assert_eq!(store.cancel(999_999, 8).await.unwrap(), Cancel::NotFound);
    match store.cancel(other_app.timer.id, 8).await.unwrap() {
        Cancel::Cancelled { timer, was } => {
            assert_eq!(
                (timer.state, was),
                (TimerState::Cancelled, TimerState::Pending)
            );
        }
        other => panic!("{other:?}"),
    }
    store.begin_attempt(b.timer.id).await.unwrap().unwrap();
    assert!(matches!(
        store.cancel(b.timer.id, 9).await.unwrap(),
        Cancel::Cancelled {
            was: TimerState::Running,
            ..
        }
    ));
    let after = store
        .finish_attempt(b.timer.id, attempt(1, 500), Next::Retry { due_ms: 300 }, 10)
        .await
        .unwrap();
    assert_eq!(after, Some(TimerState::Cancelled));
    let cancelled = store.get(b.timer.id).await.unwrap().unwrap();
    assert_eq!(cancelled.state, TimerState::Cancelled, "a cancel sticks");
    assert_eq!(cancelled.last, Some(attempt(1, 500)));

    // Listing: one app, in id order, by state, in pages.
    let page = store
        .list(ListQuery {
            app: "a".into(),
            state: None,
            after: None,
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(page.timers.len(), 1);
    assert_eq!(page.timers[0].id, a.timer.id);
    let rest = store
        .list(ListQuery {
            app: "a".into(),
            state: None,
            after: page.next,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        rest.timers.iter().map(|t| t.id).collect::<Vec<_>>(),
        [b.timer.id]
    );
    assert_eq!(rest.next, None);
    let pending_c = store
        .list(ListQuery {
            app: "c".into(),
            state: Some(TimerState::Pending),
            after: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(pending_c.timers.len(), 50);
    let succeeded_c = store
        .list(ListQuery {
            app: "c".into(),
            state: Some(TimerState::Succeeded),
            after: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert!(succeeded_c.timers.is_empty());

    // Recovery: a running timer is pending again, with its due time; finished ones are
    // not scheduled.
    let first_c = ids[0];
    store.begin_attempt(first_c).await.unwrap().unwrap();
    let due = store.recover().await.unwrap();
    assert_eq!(due.len(), 50, "the 50 timers of app c");
    assert!(due.iter().any(|(_, id)| *id == first_c));
    assert_eq!(
        store.get(first_c).await.unwrap().unwrap().state,
        TimerState::Pending
    );

    // Purge: finished before the cut, and their idempotency keys with them.
    assert_eq!(store.purge(8, 100).await.unwrap(), 1, "a (finished at 7)");
    assert_eq!(store.get(a.timer.id).await.unwrap(), None);
    assert!(store.get(b.timer.id).await.unwrap().is_some());
    assert_eq!(store.purge(100, 100).await.unwrap(), 2);
    let ticking = Interval {
        every_ms: 250,
        times: Some(3),
    };
    let fresh = store
        .create(NewTimer {
            interval: Some(ticking),
            ..new_timer("a", 1, Some("k"))
        })
        .await
        .unwrap();
    assert!(!fresh.existing, "the key is free once its timer is purged");
    assert_eq!(fresh.timer.interval, Some(ticking));

    // Durability: a new store on the same place finds everything; ids keep increasing.
    store.close().await.unwrap();
    assert!(matches!(
        store.get(fresh.timer.id).await,
        Err(StoreError::Closed)
    ));
    let reopened = open(dir.path().to_path_buf()).await;
    assert_eq!(
        reopened.get(fresh.timer.id).await.unwrap(),
        Some(fresh.timer.clone())
    );
    let later = reopened.create(new_timer("a", 1, None)).await.unwrap();
    assert!(later.timer.id > fresh.timer.id);
    assert_eq!(later.timer.interval, None);

    // An interval timer's next tick is a `Retry`: pending again, its interval kept.
    reopened
        .begin_attempt(fresh.timer.id)
        .await
        .unwrap()
        .unwrap();
    let after = reopened
        .finish_attempt(
            fresh.timer.id,
            attempt(1, 200),
            Next::Retry { due_ms: 251 },
            2,
        )
        .await
        .unwrap();
    assert_eq!(after, Some(TimerState::Pending));
    let ticked = reopened.get(fresh.timer.id).await.unwrap().unwrap();
    assert_eq!(
        (ticked.due_ms, ticked.attempts, ticked.interval),
        (251, 1, Some(ticking))
    );
    assert_eq!(reopened.recover().await.unwrap().len(), 52);
    reopened.close().await.unwrap();
}

pub(super) fn definition(app: &str, name: &str, schedule: &str) -> JobDefinition {
    JobDefinition {
        app: app.into(),
        name: name.into(),
        schedule: schedule.into(),
        time_zone: "Europe/Paris".into(),
        request: new_timer(app, 0, None).request,
        overlap: Overlap::Skip,
    }
}

fn job_run(number: u64, succeeded: bool) -> JobRun {
    JobRun {
        number,
        trigger: Trigger::Schedule,
        scheduled_ms: 1000,
        started_ms: 1001,
        duration_ms: 2,
        status: Some(if succeeded { 200 } else { 503 }),
        error: (!succeeded).then(|| "HTTP 503".into()),
        response: Some("ok".into()),
        succeeded,
    }
}

/// Run the job contract against stores made by `open` in a fresh place; `open` gives the
/// job store and the timer store of one backend (closing the latter closes both).
pub(crate) async fn check_jobs<F, Fut>(open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = (Arc<dyn JobStore>, Arc<dyn TimerStore>)>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let (jobs, timers) = open(dir.path().to_path_buf()).await;

    // Create: a new id, the definition as given, no history.
    let put = jobs
        .put_job(
            definition("a", "b-job", "* * * * * *"),
            false,
            Some(5000),
            10,
        )
        .await
        .unwrap();
    assert!(put.created);
    let first = put.job;
    assert_eq!(
        (
            first.name.as_str(),
            first.next_ms,
            first.created_ms,
            first.runs
        ),
        ("b-job", Some(5000), 10, 0)
    );
    assert_eq!(
        jobs.get_job("a", "b-job").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(jobs.get_job("a", "nope").await.unwrap(), None);
    assert_eq!(
        jobs.get_job("other", "b-job").await.unwrap(),
        None,
        "per app"
    );
    jobs.put_job(definition("a", "a-job", "0 * * * *"), false, None, 11)
        .await
        .unwrap();
    jobs.put_job(definition("a.", "a-job", "0 * * * *"), false, None, 11)
        .await
        .unwrap();
    jobs.put_job(definition("b", "z", "0 * * * *"), false, None, 11)
        .await
        .unwrap();
    let names: Vec<String> = jobs
        .list_jobs("a")
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["a-job", "b-job"], "one app's jobs, in name order");
    assert!(jobs.list_jobs("none").await.unwrap().is_empty());

    // Changes: runs start, are skipped and finish; the id must match.
    let started = jobs
        .update_job(
            "a",
            "b-job",
            first.id,
            JobChange::Start {
                next_ms: Some(6000),
            },
            5001,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (started.runs, started.running, started.next_ms),
        (1, 1, Some(6000))
    );
    let skipped = jobs
        .update_job(
            "a",
            "b-job",
            first.id,
            JobChange::Skip {
                next_ms: Some(7000),
            },
            6001,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((skipped.skipped, skipped.last_skipped_ms), (1, Some(6001)));
    assert_eq!(
        jobs.update_job("a", "b-job", first.id + 1000, JobChange::Pause, 1)
            .await
            .unwrap(),
        None,
        "another job's id"
    );
    assert_eq!(
        jobs.update_job("a", "nope", first.id, JobChange::Pause, 1)
            .await
            .unwrap(),
        None
    );

    // Update: the definition changes, the history stays.
    let mut changed = definition("a", "b-job", "*/5 * * * * *");
    changed.overlap = Overlap::Allow;
    let put = jobs.put_job(changed, true, None, 20).await.unwrap();
    assert!(!put.created);
    assert_eq!((put.job.paused, put.job.next_ms), (true, None));
    assert_eq!(
        (put.job.id, put.job.runs, put.job.skipped, put.job.running),
        (first.id, 1, 1, 1)
    );
    assert_eq!(
        (
            put.job.schedule.as_str(),
            put.job.overlap,
            put.job.updated_ms
        ),
        ("*/5 * * * * *", Overlap::Allow, 20)
    );

    // Durability, and recovery of a run cut off by the stop.
    timers.close().await.unwrap();
    assert!(matches!(
        jobs.get_job("a", "b-job").await,
        Err(StoreError::Closed)
    ));
    let (jobs, timers) = open(dir.path().to_path_buf()).await;
    let recovered = jobs.recover_jobs().await.unwrap();
    assert_eq!(recovered.len(), 4);
    let cut = recovered
        .iter()
        .find(|r| r.job.app == "a" && r.job.name == "b-job")
        .unwrap();
    assert_eq!((cut.interrupted, cut.job.running), (1, 0));
    assert!(recovered
        .iter()
        .filter(|r| r.job.name != "b-job")
        .all(|r| r.interrupted == 0));
    assert_eq!(
        jobs.get_job("a", "b-job").await.unwrap().unwrap().running,
        0,
        "recovery is stored"
    );
    let finished = jobs
        .update_job(
            "a",
            "b-job",
            first.id,
            JobChange::Finish(job_run(1, false)),
            8000,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (finished.failed, finished.last_run),
        (1, Some(job_run(1, false)))
    );

    // Delete; a job created again under the name is another job.
    let deleted = jobs.delete_job("a", "b-job").await.unwrap().unwrap();
    assert_eq!(deleted.id, first.id);
    assert_eq!(jobs.delete_job("a", "b-job").await.unwrap(), None);
    let again = jobs
        .put_job(definition("a", "b-job", "* * * * *"), false, None, 30)
        .await
        .unwrap();
    assert!(again.created);
    assert!(again.job.id > first.id);
    assert_eq!(again.job.runs, 0);
    assert_eq!(
        jobs.update_job(
            "a",
            "b-job",
            first.id,
            JobChange::Finish(job_run(2, true)),
            9000
        )
        .await
        .unwrap(),
        None,
        "a run of the deleted job is not recorded on the new one"
    );
    timers.close().await.unwrap();
}
