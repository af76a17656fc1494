//! Rooms resume like a connection's own channels: a client that rejoins a room with the
//! position it last saw there gets exactly what the room carried meanwhile, in order,
//! before live messages, or is told (`recovered:false`) that the history is gone.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{Client, Event, TestServer};

/// A client's position in one room: its epoch and offset.
#[derive(Debug, Clone, Default, PartialEq)]
struct Position {
    epoch: String,
    off: u64,
}

impl Position {
    fn of(frame: &Value) -> Self {
        Self {
            epoch: frame["epoch"].as_str().expect("epoch").to_owned(),
            off: frame["off"].as_u64().expect("off"),
        }
    }
}

/// Join `room`, from `since` when given; the `joined` answer.
async fn join(client: &mut Client, room: &str, since: Option<&Position>) -> Value {
    let mut frame = json!({"type": "join", "id": room, "room": room});
    if let Some(since) = since {
        frame["epoch"] = json!(since.epoch);
        frame["off"] = json!(since.off);
    }
    client.send(&frame.to_string()).await;
    let joined = client.json().await;
    assert_eq!(joined["type"], "joined", "{joined}");
    joined
}

/// Push `data` to room `room` of `demo`; the position it got there.
async fn push_room(server: &TestServer, room: &str, data: Value) -> Position {
    let (status, body) = server
        .post_json(
            "/v1/push",
            &json!({"app": "demo", "room": room, "event": "say", "data": data}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Position::of(&body["channels"][0])
}

/// A room message's position and data.
async fn room_msg(client: &mut Client) -> (Position, Value) {
    let msg = client.json().await;
    assert_eq!(msg["type"], "msg", "{msg}");
    (Position::of(&msg), msg["data"].clone())
}

#[tokio::test]
async fn a_rejoin_with_its_position_gets_exactly_what_it_missed_then_live() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "ann").await;
    let joined = join(&mut client, "r1", None).await;
    assert_eq!(
        (joined["recovered"].as_bool(), joined["off"].as_u64()),
        (Some(true), Some(0)),
        "a plain join starts at the top: {joined}"
    );
    push_room(&server, "r1", json!("before")).await;
    let (mut position, data) = room_msg(&mut client).await;
    assert_eq!(data, "before");
    drop(client);
    server.wait_connections(0).await;

    const MISSED: u64 = 25;
    for n in 0..MISSED {
        push_room(&server, "r1", json!(n)).await;
    }
    let (mut client, welcome) = server.native("demo", "ann").await;
    assert_eq!(welcome["recovered"], true);
    let joined = join(&mut client, "r1", Some(&position)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!(
        Position::of(&joined),
        position,
        "joined says where the client stands before the replay"
    );
    let mut replayed = Vec::new();
    for _ in 0..MISSED {
        let (at, data) = room_msg(&mut client).await;
        assert_eq!(at.off, position.off + 1, "in order, no gap");
        position = at;
        replayed.push(data.as_u64().unwrap());
    }
    assert_eq!(replayed, (0..MISSED).collect::<Vec<_>>());
    push_room(&server, "r1", json!("live")).await;
    let (at, data) = room_msg(&mut client).await;
    assert_eq!((at.off, data), (position.off + 1, json!("live")));
    assert!(client.silent_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_rejoin_the_history_no_longer_covers_says_recovered_false() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_HISTORY_SIZE", "2")]);
    let (mut client, _) = server.native("demo", "bo").await;
    join(&mut client, "r2", None).await;
    let first = push_room(&server, "r2", json!(0)).await;
    assert_eq!(room_msg(&mut client).await.0, first);
    drop(client);
    let mut top = first.clone();
    for n in 1..6 {
        top = push_room(&server, "r2", json!(n)).await;
    }

    let (mut client, _) = server.native("demo", "bo").await;
    let joined = join(&mut client, "r2", Some(&first)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(Position::of(&joined), top, "it stands at the top instead");
    push_room(&server, "r2", json!("live")).await;
    assert_eq!(
        room_msg(&mut client).await.1,
        "live",
        "no stale replay, straight to live"
    );

    // A position from another life of the room (its epoch changed) is not recovered
    // either; one within the history is, on the same connection's next room.
    let (mut other, _) = server.native("demo", "cy").await;
    let stale = Position {
        epoch: "zzzzzzzz".into(),
        off: 1,
    };
    let joined = join(&mut other, "r2", Some(&stale)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    let kept = push_room(&server, "r3", json!("kept")).await;
    let joined = join(&mut other, "r3", Some(&Position::default())).await;
    assert_eq!(joined["recovered"], true, "the empty position: {joined}");
    assert_eq!(room_msg(&mut other).await, (kept, json!("kept")));
}

#[tokio::test]
async fn a_malformed_position_is_refused_and_the_connection_stays() {
    let server = TestServer::start();
    let (mut client, _) = server.native("demo", "dee").await;
    for frame in [
        json!({"type": "join", "id": 1, "room": "r", "epoch": "NOPE", "off": 1}),
        json!({"type": "join", "id": 2, "room": "r", "epoch": "", "off": 3}),
        json!({"type": "join", "id": 3, "room": "r", "epoch": "abc"}),
    ] {
        client.send(&frame.to_string()).await;
        let error = client.json().await;
        assert_eq!(
            (error["type"].as_str(), error["code"].as_str()),
            (Some("error"), Some("invalid_position")),
            "{frame}: {error}"
        );
    }
    client
        .send(r#"{"type":"join","id":4,"room":"r","off":-1}"#)
        .await;
    assert_eq!(client.json().await["code"], "bad_frame");
    let (_, members) = server.get("/v1/apps/demo/rooms/r").await;
    assert_eq!(members["users"], json!([]), "a refused join joins nothing");
    assert_eq!(join(&mut client, "r", None).await["recovered"], true);
}

/// A gap larger than the connection's queue is replayed in parts, as at connect: the
/// connection gets what fits, then 4005, and the client rejoins from its new position.
#[tokio::test]
async fn a_large_room_gap_is_replayed_in_parts_without_loss() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_LIMITS_MAX_QUEUE_MESSAGES", "20")]);
    let (mut client, _) = server.native("demo", "ed").await;
    let mut position = Position::of(&join(&mut client, "big", None).await);
    drop(client);
    server.wait_connections(0).await;
    for n in 0..35 {
        push_room(&server, "big", json!(n)).await;
    }
    let mut received = Vec::new();
    let mut parts = 0;
    while received.len() < 35 {
        assert!(parts < 10, "no progress: {received:?}");
        parts += 1;
        let (mut client, _) = server.native("demo", "ed").await;
        let joined = join(&mut client, "big", Some(&position)).await;
        assert_eq!(joined["recovered"], true, "{joined}");
        while received.len() < 35 {
            match client.next().await {
                Event::Text(text) => {
                    let msg: Value = serde_json::from_str(&text).unwrap();
                    position = Position::of(&msg);
                    received.push(msg["data"].as_u64().unwrap());
                }
                Event::Close(code, _) => {
                    assert_eq!(code, 4005);
                    break;
                }
                Event::Ended => panic!("connection ended without a close frame"),
            }
        }
    }
    assert_eq!(received, (0..35).collect::<Vec<u64>>());
    assert!(parts >= 4, "35 messages at 10 per part: {parts} parts");
}

/// Pushes to a room race a client's (re)join, round after round: every message after the
/// position the `joined` answer names arrives exactly once and in order, after the answer,
/// whether it was replayed from the history or delivered live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_racing_the_join_arrives_exactly_once() {
    const ROUNDS: usize = 60;
    const PUBLISHERS: usize = 4;
    const PUSHES: u64 = 25;
    let server = Arc::new(TestServer::start_with(
        &[],
        &[("PUSHHUB_HISTORY_SIZE", "100000")],
    ));
    let mut position: Option<Position> = None;
    let (mut lost, mut duplicated, mut early, mut received) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..ROUNDS {
        let (mut client, _) = server.native("demo", &format!("racer{}", round % 3)).await;
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let server = server.clone();
                tokio::spawn(async move {
                    let mut last = Position::default();
                    for n in 0..PUSHES {
                        let data = json!({"round": round, "publisher": p, "n": n});
                        let at = push_room(&server, "race", data).await;
                        last = if at.off > last.off { at } else { last };
                    }
                    last
                })
            })
            .collect();
        // Let some pushes go first, so the join lands in the middle of the stream.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..20))).await;
        let mut frame = json!({"type": "join", "id": round, "room": "race"});
        if let Some(since) = &position {
            frame["epoch"] = json!(since.epoch);
            frame["off"] = json!(since.off);
        }
        client.send(&frame.to_string()).await;
        let joined = loop {
            let frame = client.json().await;
            match frame["type"].as_str() {
                Some("joined") => break frame,
                _ => early += 1,
            }
        };
        assert_eq!(joined["recovered"], true, "round {round}: {joined}");
        let mut at = Position::of(&joined);
        let mut last = Position::default();
        for publisher in publishers {
            let top = publisher.await.unwrap();
            if top.off > last.off {
                last = top;
            }
        }
        while at.off < last.off {
            let (next, _) = room_msg(&mut client).await;
            received += 1;
            assert_eq!(next.epoch, last.epoch, "round {round}");
            if next.off <= at.off {
                duplicated += 1;
                continue;
            }
            lost += next.off - at.off - 1;
            at = next;
        }
        if !client.silent_for(Duration::from_millis(30)).await {
            duplicated += 1;
        }
        // Every other round starts without a position (at the top); the others resume
        // from where the last client stopped.
        position = (round % 2 == 0).then_some(at);
    }
    println!(
        "rooms race: {ROUNDS} rounds, {received} received, lost {lost}, duplicated {duplicated}, before the answer {early}"
    );
    assert_eq!((lost, duplicated, early), (0, 0, 0));
}
