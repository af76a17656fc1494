use std::time::Duration;

use super::*;
use crate::engine::Message;

const OPTIONS: LogOptions = LogOptions {
    fsync: FsyncPolicy::Always,
    segment_bytes: SEGMENT_BYTES,
};

const KEEP3: HistoryPolicy = HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(60),
    max_bytes: usize::MAX,
};

fn body(channel: &str, epoch: &str, offset: u64) -> Vec<u8> {
    let publication = Publication::new(
        channel.into(),
        StreamPosition {
            epoch: epoch.into(),
            offset,
        },
        Arc::new(Message::for_test(&format!("{channel}/{offset}"))),
    );
    HistoryLog::body(&publication, KEEP3, 1_000 + offset)
}

fn offsets(stream: &RestoredStream) -> Vec<u64> {
    stream.kept.iter().map(|(_, p)| p.position.offset).collect()
}

fn stream<'a>(restored: &'a Restored, channel: &str) -> &'a RestoredStream {
    restored
        .streams
        .iter()
        .find(|s| &*s.channel == channel)
        .unwrap()
}

#[tokio::test]
async fn records_come_back_after_a_clean_close_and_the_lock_passes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, restored) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    assert!(restored.streams.is_empty());
    assert!(HistoryLog::open(dir.path(), OPTIONS).is_err(), "locked");
    for offset in 1..=5 {
        log.append(vec![body("a", "e1", offset)]).await.unwrap();
    }
    log.append(vec![body("b", "e2", 1)]).await.unwrap();
    assert_eq!(log.problem(), None);
    log.close().await.unwrap();
    assert!(log.append(vec![body("a", "e1", 6)]).await.is_err());
    assert_eq!(
        log.problem().as_deref(),
        Some("history log: the log is closed"),
        "a failing append is the log's health"
    );
    let (_log, restored) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    assert_eq!(restored.records, 6);
    let a = stream(&restored, "a");
    assert_eq!((a.top.offset, &*a.top.epoch), (5, "e1"));
    assert_eq!(offsets(a), [3, 4, 5], "history_size 3");
    assert_eq!(a.last_wall_ms, 1_005);
    assert_eq!(offsets(stream(&restored, "b")), [1]);
}

/// The newest record names the epoch: an older epoch's records are not restored.
#[tokio::test]
async fn a_new_epoch_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    log.append(vec![body("a", "old", 1), body("a", "old", 2)])
        .await
        .unwrap();
    log.append(vec![body("a", "new", 1)]).await.unwrap();
    drop(log);
    let (_log, restored) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    let a = stream(&restored, "a");
    assert_eq!((&*a.top.epoch, offsets(a)), ("new", vec![1]));
}

fn newest_segment(dir: &Path) -> PathBuf {
    segments::list(&dir.join(DIR_NAME))
        .unwrap()
        .into_iter()
        .rfind(|(_, path)| std::fs::metadata(path).unwrap().len() > 8)
        .unwrap()
        .1
}

#[tokio::test]
async fn a_torn_last_record_is_cut_off_and_damage_before_it_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    log.append(vec![body("a", "e", 1), body("a", "e", 2)])
        .await
        .unwrap();
    drop(log);
    // The process dies halfway through writing record 3.
    let segment = newest_segment(dir.path());
    let mut torn = Vec::new();
    record::frame(&mut torn, 9, &mut body("a", "e", 3));
    let mut bytes = std::fs::read(&segment).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&segment, &bytes).unwrap();
    let (log, restored) = HistoryLog::open(dir.path(), OPTIONS).unwrap();
    assert_eq!(offsets(stream(&restored, "a")), [1, 2]);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), whole as u64);
    drop(log);
    // A flipped bit in the first record, with a whole record after it, is damage.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[segments::MAGIC.len() + record::FRAME_HEADER + 3] ^= 1;
    std::fs::write(&segment, &bytes).unwrap();
    let Err(error) = HistoryLog::open(dir.path(), OPTIONS) else {
        panic!("opened a damaged log");
    };
    assert!(matches!(error, HistoryError::Damaged { .. }), "{error}");
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[tokio::test]
async fn an_unclean_stop_under_another_boot_starts_every_channel_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        fsync: FsyncPolicy::EverySecond,
        ..OPTIONS
    };
    let (log, _) = HistoryLog::open(dir.path(), options).unwrap();
    log.append(vec![body("a", "e", 1)]).await.unwrap();
    drop(log);
    let history = dir.path().join(DIR_NAME);
    let mut crashed = state::read(&history).unwrap().unwrap();
    assert!(!crashed.clean);
    let (log, restored) = HistoryLog::open(dir.path(), options).unwrap();
    assert_eq!(
        restored.streams.len(),
        1,
        "same boot: the page cache survived"
    );
    drop(log);
    crashed.boot_id = "another boot".into();
    state::write(&history, &crashed).unwrap();
    let (_log, restored) = HistoryLog::open(dir.path(), options).unwrap();
    assert!(restored.streams.is_empty());
}

/// Compaction keeps what is live and drops the rest, and the log shrinks.
#[tokio::test]
async fn compaction_copies_live_records_and_deletes_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_bytes: 1_000,
        ..OPTIONS
    };
    let (log, _) = HistoryLog::open(dir.path(), options).unwrap();
    for offset in 1..=100 {
        log.append(vec![body("a", "e", offset)]).await.unwrap();
    }
    let before = log.bytes();
    assert!(log.needs_compaction(0));
    let report = log
        .compact(|r| r.publication.position.offset > 97)
        .await
        .unwrap();
    assert_eq!(report.copied, 3);
    assert!(log.bytes() < before / 10, "{} of {before}", log.bytes());
    let on_disk: u64 = segments::list(&dir.path().join(DIR_NAME))
        .unwrap()
        .iter()
        .map(|(_, path)| std::fs::metadata(path).unwrap().len())
        .sum();
    assert_eq!(on_disk, log.bytes());
    log.close().await.unwrap();
    let (_log, restored) = HistoryLog::open(dir.path(), options).unwrap();
    assert_eq!(offsets(stream(&restored, "a")), [98, 99, 100]);
}
