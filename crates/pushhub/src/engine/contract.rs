//! The broker contract as tests: every engine runs these same functions through
//! [`contract_suite!`] (the memory engine in `memory::tests`, the Redis engine in
//! `redis::tests`), so each rule in [`super::Broker`]'s documentation is checked the same
//! way for all of them, and a rule added here runs on every engine.
//!
//! Each function takes a fresh broker and registers its own events handler. Hand-overs
//! may come after `publish` returns (a Redis engine's come from its subscription
//! connection), so the tests wait for them before they check them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    BatchPublish, Broker, BrokerEvents, HistoryPolicy, HistoryRequest, Message, Publication,
    StreamPosition,
};
use crate::sync::lock;

/// One `#[tokio::test]` per contract function, each on the broker `$make` gives: an
/// expression (it may `.await`, and `return` to skip when its service is missing) yielding
/// `(guard, broker)`, the guard kept alive for the test (the Redis server, say).
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::engine::contract::contract_suite!(@each $make;
            offsets_grow_by_one_per_channel_in_order,
            own_publications_reach_the_handler_exactly_once,
            subscriptions_are_counted,
            history_since_and_limit_in_one_call,
            epochs_name_one_life_of_a_stream,
            racing_publishers_keep_order_and_lose_nothing,
            recover_then_live_has_no_gap_and_no_duplicate,
            a_batch_keeps_each_channels_order_and_answers_each_publish,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_guard, broker) = $make;
            $crate::engine::contract::$name(broker).await;
        }
    )*};
}
pub(crate) use contract_suite;

/// History kept by most tests: three messages for a minute.
pub const KEEP: HistoryPolicy = HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(60),
    max_bytes: usize::MAX,
};

/// An events handler that records what it is handed, per channel, and notices two
/// publications of one channel handed over at once.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<HashMap<Arc<str>, Vec<u64>>>,
    busy: Mutex<Vec<Arc<str>>>,
    overlaps: Mutex<u64>,
}

impl Recorder {
    /// Offsets handed over for `channel`, in arrival order.
    pub fn offsets(&self, channel: &str) -> Vec<u64> {
        lock(&self.seen).get(channel).cloned().unwrap_or_default()
    }

    /// Wait (up to ten seconds) until `channel` has had `count` publications handed over:
    /// a Redis engine hands them over from its subscription connection, after `publish`
    /// returned; the memory engine already has.
    pub async fn wait_for(&self, channel: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.offsets(channel).len() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Times a channel's publication arrived while another of it was being handed over.
    pub fn overlaps(&self) -> u64 {
        *lock(&self.overlaps)
    }
}

impl BrokerEvents for Recorder {
    fn publication(&self, publication: &Arc<Publication>) {
        let channel = publication.channel.clone();
        {
            let mut busy = lock(&self.busy);
            if busy.contains(&channel) {
                *lock(&self.overlaps) += 1;
            }
            busy.push(channel.clone());
        }
        // Give a racing hand-over of the same channel the chance to show itself.
        std::thread::yield_now();
        lock(&self.seen)
            .entry(channel.clone())
            .or_default()
            .push(publication.position.offset);
        let mut busy = lock(&self.busy);
        if let Some(at) = busy.iter().position(|c| *c == channel) {
            busy.swap_remove(at);
        }
    }
}

fn channels(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|n| Arc::from(*n)).collect()
}

fn message(id: &str) -> Arc<Message> {
    Arc::new(Message {
        id: id.into(),
        ..Message::for_test("x")
    })
}

fn request(channel: &str, since: Option<StreamPosition>, limit: Option<usize>) -> HistoryRequest {
    HistoryRequest {
        channel: channel.into(),
        since,
        limit,
    }
}

fn registered(broker: &Arc<dyn Broker>) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    broker.register_events(recorder.clone());
    recorder
}

/// Offsets grow by one per channel, channels count independently, and a subscribed
/// channel's publications reach the handler in offset order.
pub async fn offsets_grow_by_one_per_channel_in_order(broker: Arc<dyn Broker>) {
    let recorder = registered(&broker);
    broker.subscribe(&channels(&["a", "b"])).await.unwrap();
    let mut positions = Vec::new();
    for name in ["a", "a", "b", "a"] {
        let at = broker
            .publish(&channels(&[name]), &message(name), KEEP)
            .await
            .unwrap();
        positions.push(at[0].offset);
    }
    assert_eq!(positions, [1, 2, 1, 3]);
    recorder.wait_for("a", 3).await;
    recorder.wait_for("b", 1).await;
    assert_eq!(recorder.offsets("a"), [1, 2, 3]);
    assert_eq!(recorder.offsets("b"), [1]);
}

/// The node's own publications come back through the handler, once each, for every
/// channel of a multi-channel publish; a channel nobody subscribed is not handed over
/// but still keeps its history.
pub async fn own_publications_reach_the_handler_exactly_once(broker: Arc<dyn Broker>) {
    let recorder = registered(&broker);
    broker.subscribe(&channels(&["u1", "u2"])).await.unwrap();
    let positions = broker
        .publish(&channels(&["u1", "u2", "u3"]), &message("m"), KEEP)
        .await
        .unwrap();
    assert_eq!(positions.len(), 3, "one position per channel, in order");
    assert!(positions.iter().all(|p| p.offset == 1));
    recorder.wait_for("u1", 1).await;
    recorder.wait_for("u2", 1).await;
    assert_eq!(recorder.offsets("u1"), [1]);
    assert_eq!(recorder.offsets("u2"), [1]);
    assert!(recorder.offsets("u3").is_empty(), "u3 was never subscribed");
    let kept = broker
        .history(&[request("u3", Some(StreamPosition::empty()), None)])
        .await
        .unwrap();
    assert_eq!(kept[0].missed.len(), 1);
    assert_eq!(&*kept[0].missed[0].message.id, "m");
}

/// A batch answers each publish in order with its positions; publishes of one channel
/// (in one publish or across several) get consecutive offsets in the batch's order, reach
/// the handler in that order, and are kept in the history with their own messages.
pub async fn a_batch_keeps_each_channels_order_and_answers_each_publish(broker: Arc<dyn Broker>) {
    let recorder = registered(&broker);
    broker.subscribe(&channels(&["x", "y"])).await.unwrap();
    broker
        .publish(&channels(&["x"]), &message("before"), KEEP)
        .await
        .unwrap();
    let publish = |names: &[&str], id: &str| BatchPublish {
        channels: channels(names),
        message: message(id),
        history: KEEP,
    };
    let batch = [
        publish(&["x"], "b1"),
        publish(&["y", "x"], "b2"),
        publish(&["z"], "b3"),
        publish(&["x"], "b4"),
    ];
    let answers: Vec<Vec<StreamPosition>> = broker
        .publish_batch(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let offsets: Vec<Vec<u64>> = answers
        .iter()
        .map(|positions| positions.iter().map(|p| p.offset).collect())
        .collect();
    assert_eq!(offsets, [vec![2], vec![1, 3], vec![1], vec![4]]);
    recorder.wait_for("x", 4).await;
    recorder.wait_for("y", 1).await;
    assert_eq!(recorder.offsets("x"), [1, 2, 3, 4]);
    assert_eq!(recorder.offsets("y"), [1]);
    assert!(recorder.offsets("z").is_empty(), "z was never subscribed");
    let since = StreamPosition {
        epoch: answers[0][0].epoch.clone(),
        offset: 1,
    };
    let kept = broker
        .history(&[request("x", Some(since), None)])
        .await
        .unwrap();
    let ids: Vec<&str> = kept[0].missed.iter().map(|p| &*p.message.id).collect();
    assert_eq!(ids, ["b1", "b2", "b4"], "KEEP holds the last three");
    assert!(broker.publish_batch(&[]).await.is_empty());
}

/// Subscriptions are counted: two subscribes need two unsubscribes, and an unsubscribe of
/// a channel never subscribed does nothing.
pub async fn subscriptions_are_counted(broker: Arc<dyn Broker>) {
    let recorder = registered(&broker);
    let c = channels(&["c"]);
    broker.unsubscribe(&c).await.unwrap();
    broker.subscribe(&c).await.unwrap();
    broker.subscribe(&c).await.unwrap();
    broker.publish(&c, &message("1"), KEEP).await.unwrap();
    broker.unsubscribe(&c).await.unwrap();
    broker.publish(&c, &message("2"), KEEP).await.unwrap();
    broker.unsubscribe(&c).await.unwrap();
    broker.publish(&c, &message("3"), KEEP).await.unwrap();
    broker.subscribe(&c).await.unwrap();
    broker.publish(&c, &message("4"), KEEP).await.unwrap();
    recorder.wait_for("c", 3).await;
    assert_eq!(recorder.offsets("c"), [1, 2, 4]);
}

/// History since a position, bounded by size and by the request's limit, answered for
/// several channels in one call, in request order.
pub async fn history_since_and_limit_in_one_call(broker: Arc<dyn Broker>) {
    registered(&broker);
    let c = channels(&["h"]);
    let mut first = None;
    for i in 0..5 {
        let at = broker
            .publish(&c, &message(&format!("{i}")), KEEP)
            .await
            .unwrap();
        first.get_or_insert(at[0].clone());
    }
    let epoch = first.unwrap().epoch;
    let at = |offset| {
        Some(StreamPosition {
            epoch: epoch.clone(),
            offset,
        })
    };
    let other_epoch = Some(StreamPosition {
        epoch: "other".into(),
        offset: 4,
    });
    let answers = broker
        .history(&[
            request("h", at(2), None),
            request("h", at(2), Some(2)),
            request("h", at(5), None),
            request("h", at(1), None),
            request("h", at(9), None),
            request("h", other_epoch, None),
            request("h", None, None),
            request("fresh", Some(StreamPosition::empty()), None),
            request("h", Some(StreamPosition::empty()), Some(0)),
        ])
        .await
        .unwrap();
    let offsets = |i: usize| -> Vec<u64> {
        answers[i]
            .missed
            .iter()
            .map(|p| p.position.offset)
            .collect()
    };
    assert_eq!(answers.len(), 9);
    assert!(answers[0].complete);
    assert_eq!(offsets(0), [3, 4, 5]);
    assert!(answers[1].complete);
    assert_eq!(offsets(1), [3, 4], "limit keeps the oldest");
    assert_eq!(answers[1].top.offset, 5, "the top says more remain");
    assert!(answers[2].complete && answers[2].missed.is_empty());
    assert!(
        !answers[3].complete,
        "offset 2 fell out of a 3-message history"
    );
    assert!(
        !answers[4].complete,
        "a position from the future is not trusted"
    );
    assert!(
        !answers[5].complete,
        "another epoch's offsets mean nothing here"
    );
    assert!(answers[6].complete && answers[6].missed.is_empty());
    assert_eq!(answers[6].top.offset, 5);
    assert!(answers[7].complete);
    assert_eq!(answers[7].top, StreamPosition::empty());
    assert!(answers[8].missed.is_empty() && answers[8].top.offset == 5);
    assert!(answers
        .iter()
        .all(|a| a.top.epoch == epoch || a.top.epoch.is_empty()));
}

/// A channel keeps one epoch while its history lives, a client that saw nothing gets
/// everything still kept, and a channel never published to has the empty position.
pub async fn epochs_name_one_life_of_a_stream(broker: Arc<dyn Broker>) {
    registered(&broker);
    let c = channels(&["e"]);
    let one = broker.publish(&c, &message("1"), KEEP).await.unwrap();
    let two = broker.publish(&c, &message("2"), KEEP).await.unwrap();
    assert!(!one[0].epoch.is_empty());
    assert_eq!(one[0].epoch, two[0].epoch);
    let answers = broker
        .history(&[
            request("e", Some(StreamPosition::empty()), None),
            request("never", None, None),
        ])
        .await
        .unwrap();
    assert!(answers[0].complete);
    assert_eq!(answers[0].missed.len(), 2);
    assert_eq!(answers[0].top, two[0]);
    assert_eq!(answers[1].top, StreamPosition::empty());
}

/// Publishers racing on one channel (and on a multi-channel publish) get distinct,
/// gap-free offsets, and the handler sees each channel in order, one at a time.
pub async fn racing_publishers_keep_order_and_lose_nothing(broker: Arc<dyn Broker>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 50;
    let recorder = registered(&broker);
    broker.subscribe(&channels(&["r", "s"])).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let broker = broker.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let targets = if i % 2 == 0 {
                    channels(&["r"])
                } else {
                    channels(&["r", "s"])
                };
                let at = broker
                    .publish(&targets, &message(&format!("{t}-{i}")), KEEP)
                    .await
                    .unwrap();
                mine.push(at[0].offset);
            }
            mine
        }));
    }
    let mut assigned = Vec::new();
    for task in tasks {
        assigned.extend(task.await.unwrap());
    }
    assigned.sort_unstable();
    assert_eq!(assigned, (1..=TASKS * EACH).collect::<Vec<_>>());
    recorder.wait_for("r", (TASKS * EACH) as usize).await;
    recorder.wait_for("s", (TASKS * EACH / 2) as usize).await;
    assert_eq!(
        recorder.offsets("r"),
        (1..=TASKS * EACH).collect::<Vec<_>>()
    );
    assert_eq!(
        recorder.offsets("s"),
        (1..=TASKS * EACH / 2).collect::<Vec<_>>()
    );
    assert_eq!(
        recorder.overlaps(),
        0,
        "two hand-overs of one channel at once"
    );
}

/// A client joining mid-stream (subscribe, then read history from where it stood) gets
/// every later publication exactly once: from the history up to the top it read, then
/// live above it.
pub async fn recover_then_live_has_no_gap_and_no_duplicate(broker: Arc<dyn Broker>) {
    const TOTAL: u64 = 400;
    let recorder = registered(&broker);
    let keep_all = HistoryPolicy {
        size: TOTAL as usize,
        ttl: Duration::from_secs(60),
        max_bytes: usize::MAX,
    };
    let c = channels(&["live"]);
    let publisher = tokio::spawn({
        let (broker, c) = (broker.clone(), c.clone());
        async move {
            for i in 0..TOTAL {
                broker
                    .publish(&c, &message(&format!("{i}")), keep_all)
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let mut stood = None;
    while stood.is_none() {
        let top = broker
            .history(&[request("live", None, None)])
            .await
            .unwrap()[0]
            .top
            .clone();
        if top.offset >= 20 {
            stood = Some(top);
        }
        tokio::task::yield_now().await;
    }
    let stood = stood.unwrap();
    broker.subscribe(&c).await.unwrap();
    let recovery = broker
        .history(&[request("live", Some(stood.clone()), None)])
        .await
        .unwrap()
        .remove(0);
    publisher.await.unwrap();
    assert!(recovery.complete);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !recorder.offsets("live").contains(&TOTAL) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut got: Vec<u64> = recovery.missed.iter().map(|p| p.position.offset).collect();
    got.extend(
        recorder
            .offsets("live")
            .into_iter()
            .filter(|o| *o > recovery.top.offset),
    );
    assert_eq!(got, (stood.offset + 1..=TOTAL).collect::<Vec<_>>());
}
