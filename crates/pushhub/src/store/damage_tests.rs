//! Damaged store files, made for real: a store is written through [`RedbStore`] and
//! closed, then its file is overwritten with random bytes, emptied, truncated, deleted or
//! replaced; the check, the open, the salvage and the run-time latch are then held to
//! what they promise.

use std::path::Path;
use std::sync::Arc;

use super::contract::{definition, new_timer};
use super::integrity::{self, Verdict};
use super::salvage::{self, Repair};
use super::state_file::{self, STATE_FILE_NAME};
use super::{JobStore, RedbStore, StoreError, Timer, TimerStore, FILE_NAME};

/// A URL unique to timer number `i`, to find its record in the file.
fn marker_url(i: usize) -> String {
    format!("http://127.0.0.1:9/marker-{i:05}")
}

/// A store in `dir` with `timers` timers (every tenth cancelled) and `jobs` cron jobs,
/// closed cleanly; the timers as stored.
async fn filled_store(dir: &Path, timers: usize, jobs: usize) -> Vec<Timer> {
    let store = Arc::new(RedbStore::open(dir).expect("open"));
    let creates: Vec<_> = (0..timers)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut timer = new_timer("shop", 4_000_000_000_000 + i as u64, None);
                timer.request.url = marker_url(i);
                timer.request.body = Some(format!("order={i}&{}", "x".repeat(200)));
                store.create(timer).await.expect("create").timer
            })
        })
        .collect();
    let mut created = Vec::new();
    for create in creates {
        created.push(create.await.unwrap());
    }
    for timer in created.iter().filter(|t| t.id % 10 == 0) {
        store.cancel(timer.id, 5).await.unwrap();
    }
    for j in 0..jobs {
        store
            .put_job(
                definition("shop", &format!("job-{j}"), "0 * * * *"),
                false,
                Some(7),
                1,
            )
            .await
            .unwrap();
    }
    let mut stored = Vec::new();
    for timer in &created {
        stored.push(store.get(timer.id).await.unwrap().unwrap());
    }
    store.close().await.unwrap();
    stored.sort_by_key(|t| t.id);
    stored
}

/// Overwrite `len` bytes at `offset` with random bytes (a fixed seed: the same damage on
/// every run).
fn scribble(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut rng = fastrand::Rng::with_seed(14);
    let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
}

/// Every page (4 KiB) holding `marker`, overwritten with random bytes: the live page of
/// the record that has it, and copies left in free pages by earlier commits (redb
/// writes a changed page to a new place). Damage that is sure to hit live data, and
/// only that record's page.
fn scribble_over(path: &Path, marker: &str) {
    let bytes = std::fs::read(path).unwrap();
    let pages: std::collections::BTreeSet<u64> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(at, _)| at as u64 / 4096)
        .collect();
    assert!(!pages.is_empty(), "the marker is in the file");
    for page in pages {
        scribble(path, page * 4096, 4096);
    }
}

fn damaged(verdict: Verdict) -> String {
    match verdict {
        Verdict::Damaged(damage) => damage.problem,
        other => panic!("expected damage, found {other:?}"),
    }
}

fn refused(dir: &Path) -> String {
    match RedbStore::open(dir) {
        Err(error @ StoreError::Damaged { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(&dir.join(FILE_NAME).display().to_string()),
                "{text}"
            );
            assert!(text.contains("pushhub store repair"), "{text}");
            text
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a damaged store was opened"),
    }
}

#[tokio::test]
async fn a_sound_store_checks_ok_with_exactly_the_counts_of_its_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 300, 2).await;
    let Verdict::Sound(contents) = integrity::check(dir.path()).unwrap() else {
        panic!("not sound");
    };
    assert_eq!(
        (contents.timers, contents.unfinished, contents.jobs),
        (300, 270, 2)
    );
    let expected = contents.expected.expect("a state file");
    assert!(!expected.open);
    assert_eq!((expected.timers, expected.jobs), (300, 2));
    RedbStore::open(dir.path()).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn a_first_start_is_fresh_and_records_the_store_it_creates() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(integrity::check(dir.path()).unwrap(), Verdict::Fresh);
    let store = RedbStore::open(dir.path()).unwrap();
    let open = state_file::read(dir.path())
        .unwrap()
        .expect("written at open");
    assert!(open.open);
    store.close().await.unwrap();
    let closed = state_file::read(dir.path()).unwrap().unwrap();
    assert!(!closed.open);
    assert_eq!((closed.timers, closed.jobs), (0, 0));
}

#[tokio::test]
async fn random_bytes_in_the_middle_of_the_file_are_found_and_the_file_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 2000, 3).await;
    let path = dir.path().join(FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    scribble(&path, len / 2, 8192);
    let before = std::fs::read(&path).unwrap();
    let problem = damaged(integrity::check(dir.path()).unwrap());
    assert!(!problem.is_empty());
    refused(dir.path());
    assert!(
        before == std::fs::read(&path).unwrap(),
        "check and open changed the damaged file"
    );
}

#[tokio::test]
async fn a_damaged_record_page_is_found_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 2000, 3).await;
    scribble_over(&dir.path().join(FILE_NAME), &marker_url(1000));
    damaged(integrity::check(dir.path()).unwrap());
    refused(dir.path());
}

#[tokio::test]
async fn an_emptied_truncated_or_deleted_file_is_noticed_instead_of_starting_empty() {
    for (damage, expect) in [
        (
            "empty",
            "empty (0 bytes), but timers.redb.state says it held 50 timer(s) and 1 cron job(s)",
        ),
        ("truncated", ""),
        (
            "deleted",
            "missing, but timers.redb.state says it held 50 timer(s)",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 50, 1).await;
        let path = dir.path().join(FILE_NAME);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match damage {
            "empty" => file.set_len(0).unwrap(),
            "truncated" => file.set_len(file.metadata().unwrap().len() / 2).unwrap(),
            _ => std::fs::remove_file(&path).unwrap(),
        }
        drop(file);
        let problem = damaged(integrity::check(dir.path()).unwrap());
        assert!(problem.contains(expect), "{damage}: {problem}");
        refused(dir.path());
    }
}

#[tokio::test]
async fn a_file_replaced_after_a_clean_close_is_noticed() {
    let (ours, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    filled_store(ours.path(), 5, 1).await;
    filled_store(other.path(), 3, 0).await;
    std::fs::copy(other.path().join(FILE_NAME), ours.path().join(FILE_NAME)).unwrap();
    let problem = damaged(integrity::check(ours.path()).unwrap());
    assert!(
        problem.contains("holds 3 timer(s) and 0 cron job(s), but when it was last closed it held 5 timer(s) and 1 cron job(s)"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_store_without_a_state_file_is_accepted_and_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 20, 1).await;
    std::fs::remove_file(dir.path().join(STATE_FILE_NAME)).unwrap();
    assert!(matches!(
        integrity::check(dir.path()).unwrap(),
        Verdict::Sound(_)
    ));
    let store = RedbStore::open(dir.path()).unwrap();
    let state = state_file::read(dir.path())
        .unwrap()
        .expect("written at open");
    assert_eq!((state.open, state.timers, state.jobs), (true, 20, 1));
    store.close().await.unwrap();
}

#[tokio::test]
async fn repair_salvages_every_readable_record_keeps_the_damaged_file_and_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let original = filled_store(dir.path(), 2000, 3).await;
    let path = dir.path().join(FILE_NAME);
    scribble_over(&path, &marker_url(1000));
    let damaged_bytes = std::fs::read(&path).unwrap();

    let Repair::Repaired(salvage) = salvage::repair(dir.path()).unwrap() else {
        panic!("nothing repaired");
    };
    let kept = salvage.kept.clone().expect("the damaged file is kept");
    assert!(kept
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("timers.redb.damaged-"));
    assert!(
        damaged_bytes == std::fs::read(&kept).unwrap(),
        "the kept file is the damaged one"
    );
    assert_eq!(salvage.jobs, 3, "{salvage:?}");
    assert!(
        !salvage.lost_timers.is_empty(),
        "the damaged page held timers: {salvage:?}"
    );
    let hit = original
        .iter()
        .find(|t| t.request.url == marker_url(1000))
        .unwrap();
    assert!(
        salvage.lost_timers.contains(&hit.id),
        "the timer on the damaged page is lost: {salvage:?}"
    );
    assert_eq!(
        salvage.timers + salvage.lost_timers.len() as u64,
        2000,
        "every timer is recovered or reported lost by id: {salvage:?}"
    );
    let expected = salvage.expected.expect("the state file's counts");
    assert_eq!((expected.timers, expected.jobs), (2000, 3));

    let Verdict::Sound(contents) = integrity::check(dir.path()).unwrap() else {
        panic!("the repaired store is not sound");
    };
    assert_eq!(contents.timers, salvage.timers);
    let store = RedbStore::open(dir.path()).unwrap();
    for timer in &original {
        let now = store.get(timer.id).await.unwrap();
        match salvage.lost_timers.contains(&timer.id) {
            true => assert_eq!(now, None),
            false => assert_eq!(now.as_ref(), Some(timer), "timer {} is intact", timer.id),
        }
    }
    let jobs = store.list_jobs("shop").await.unwrap();
    assert_eq!(jobs.len(), 3);
    let due = store.recover().await.unwrap();
    assert_eq!(
        due.len() as u64,
        salvage.unfinished,
        "every pending timer is scheduled"
    );
    let next = store
        .create(new_timer("shop", 1, None))
        .await
        .unwrap()
        .timer;
    assert!(next.id > 2000, "ids are never reused: {}", next.id);
    store.close().await.unwrap();
}

#[tokio::test]
async fn repair_of_an_emptied_store_reports_the_loss_and_leaves_an_accepted_store() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 5, 1).await;
    let path = dir.path().join(FILE_NAME);
    std::fs::File::create(&path).unwrap();
    let Repair::Repaired(salvage) = salvage::repair(dir.path()).unwrap() else {
        panic!("nothing repaired");
    };
    assert_eq!((salvage.timers, salvage.jobs), (0, 0));
    let expected = salvage.expected.unwrap();
    assert_eq!((expected.timers, expected.jobs), (5, 1));
    assert_eq!(std::fs::metadata(salvage.kept.unwrap()).unwrap().len(), 0);
    assert!(matches!(
        integrity::check(dir.path()).unwrap(),
        Verdict::Sound(_)
    ));
    RedbStore::open(dir.path()).unwrap().close().await.unwrap();
}

#[tokio::test]
async fn repair_changes_nothing_in_a_sound_store() {
    let dir = tempfile::tempdir().unwrap();
    filled_store(dir.path(), 10, 0).await;
    let names = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let (before, files) = (std::fs::read(dir.path().join(FILE_NAME)).unwrap(), names());
    assert!(matches!(
        salvage::repair(dir.path()).unwrap(),
        Repair::NotNeeded(Verdict::Sound(_))
    ));
    assert!(before == std::fs::read(dir.path().join(FILE_NAME)).unwrap());
    assert_eq!(names(), files, "no file added or removed");
}

#[tokio::test]
async fn a_file_damaged_under_an_open_store_fails_every_operation_after_the_first_and_never_retries_it(
) {
    let dir = tempfile::tempdir().unwrap();
    let original = filled_store(dir.path(), 2000, 1).await;
    let path = dir.path().join(FILE_NAME);
    // No read cache, so every read goes to the disk: with one, the marker's page may still
    // be cached from opening (a debug build of redb reads every page at open, and which
    // pages stay depends on where the concurrent creates put the marker), and the first
    // read of it would not see the damage.
    let store = RedbStore::open_with_cache(dir.path(), 0).unwrap();
    scribble_over(&path, &marker_url(1000));
    let hit = original
        .iter()
        .find(|t| t.request.url == marker_url(1000))
        .unwrap();
    let first = store.get(hit.id).await;
    assert!(
        matches!(first, Err(StoreError::Damaged { .. })),
        "{first:?}"
    );
    for _ in 0..3 {
        assert!(matches!(
            store.get(1500).await,
            Err(StoreError::Damaged { .. })
        ));
        assert!(matches!(
            store.create(new_timer("shop", 1, None)).await,
            Err(StoreError::Damaged { .. })
        ));
        assert!(matches!(
            store.list_jobs("shop").await,
            Err(StoreError::Damaged { .. })
        ));
    }
    let damage = store.damage();
    assert!(damage.problem.is_some());
    assert!(damage.refused >= 10, "{damage:?}");
    store.close().await.unwrap();
    let state = state_file::read(dir.path()).unwrap().unwrap();
    assert!(
        state.open,
        "a damaged store's close is not recorded as clean"
    );
    damaged(integrity::check(dir.path()).unwrap());
}
