//! The hub's side of Pusher-style connections: no user at connect, signing in later,
//! presence members with info and their changes, publishes that skip one connection, and
//! joins that replay a room's last message.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::tests::hub;
use super::*;

/// Renders a message as its data, a member change as `+user`/`-user`; shows members.
struct Members(FormatId);

impl Render for Members {
    fn format(&self) -> FormatId {
        self.0
    }
    fn kind(&self) -> (&'static str, &'static str) {
        ("test", "test")
    }
    fn render(&self, publication: &Publication) -> Bytes {
        let message = &publication.message;
        match &message.member {
            Some(change) if change.joined => format!("+{}", change.user).into(),
            Some(change) => format!("-{}", change.user).into(),
            None => message.data.get().to_owned().into(),
        }
    }
    fn shows_members(&self) -> bool {
        true
    }
}

async fn connect(hub: &Hub, user: Option<&str>) -> (Session, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new(OutboxLimits {
        max_messages: 100,
        max_bytes: 100_000,
    }));
    let request = ConnectRequest {
        app: hub.app("demo").unwrap(),
        user: user.map(str::to_owned),
        groups: Vec::new(),
        grant: Grant::default(),
        outbox: outbox.clone(),
        renderer: Arc::new(Members(FormatId::unique())),
        since: None,
        max_replay: None,
        addr: None,
    };
    (hub.connect(request, |_| {}).await.unwrap(), outbox)
}

/// What `outbox` holds, as text, emptied.
fn taken(outbox: &Outbox) -> Vec<String> {
    let mut frames = Vec::new();
    outbox.drain(&mut frames);
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
        .collect()
}

fn data(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap()
}

fn plain() -> RoomEntry {
    RoomEntry {
        start: RoomStart::Top,
        member: None,
    }
}

fn member(user: &str, info: &str) -> RoomEntry {
    RoomEntry {
        start: RoomStart::Top,
        member: Some(MemberJoin {
            user: user.into(),
            info: info.into(),
            max_members: None,
        }),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_without_a_user_joins_rooms_then_signs_in_and_is_disconnected_as_the_user() {
    let hub = hub();
    let (mut session, outbox) = connect(&hub, None).await;
    assert!(session.user().is_none());
    assert!(hub.users("demo").await.unwrap().is_empty(), "nobody yet");
    session
        .join_authorized("news", plain(), |_| {})
        .await
        .unwrap();
    hub.publish("demo", &[Target::Room("news".into())], None, data("1"))
        .await
        .unwrap();
    hub.publish("demo", &[Target::All], None, data("2"))
        .await
        .unwrap();
    assert_eq!(taken(&outbox), ["1"], "in its room, in no app-wide channel");

    session.sign_in("ann").await.unwrap();
    session.sign_in("ann").await.unwrap();
    assert!(
        session.sign_in("bob").await.is_err(),
        "one user per connection"
    );
    assert_eq!(hub.users("demo").await.unwrap(), [("ann".to_owned(), 1)]);
    let receipt = hub
        .publish("demo", &[Target::User("ann".into())], None, data("3"))
        .await
        .unwrap();
    assert_eq!(receipt.delivered, 1);
    assert_eq!(taken(&outbox), ["3"]);
    assert_eq!(hub.user_conns("demo", "ann").len(), 1);

    let closed = hub
        .disconnect("demo", "ann", None, &Disconnect::KICKED)
        .await
        .unwrap();
    assert_eq!(closed, 1);
    let closing = outbox.drain(&mut Vec::new());
    assert_eq!(closing.map(|d| d.code), Some(Disconnect::KICKED.code));
    session.close(&Disconnect::KICKED).await;
    assert!(hub.users("demo").await.unwrap().is_empty());
    assert!(hub.room_members("demo", "news").await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn members_are_told_once_per_user_and_listed_with_their_info() {
    let hub = hub();
    let (mut watcher, watched) = connect(&hub, None).await;
    let (mut ann1, ann1_out) = connect(&hub, None).await;
    let (mut ann2, _ann2_out) = connect(&hub, None).await;
    watcher
        .join_authorized("presence-x", member("w", r#"{"n":"w"}"#), |_| {})
        .await
        .unwrap();
    let state = ann1
        .join_authorized("presence-x", member("ann", r#"{"n":"Ann"}"#), |_| {})
        .await
        .unwrap();
    ann1.announced().await;
    let members = state.members.unwrap();
    let listed: Vec<(&str, usize, Option<&str>)> = members
        .iter()
        .map(|m| (m.user.as_str(), m.conns, m.info.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            ("ann", 1, Some(r#"{"n":"Ann"}"#)),
            ("w", 1, Some(r#"{"n":"w"}"#))
        ]
    );
    assert!(
        taken(&ann1_out).is_empty(),
        "a member is not told of itself"
    );
    ann2.join_authorized("presence-x", member("ann", r#"{"n":"other"}"#), |_| {})
        .await
        .unwrap();
    assert_eq!(
        taken(&watched),
        ["+ann"],
        "one member however many connections"
    );
    let members = ann2.members("presence-x").await.unwrap();
    assert_eq!(members[0].conns, 2);
    assert_eq!(
        members[0].info.as_deref(),
        Some(r#"{"n":"Ann"}"#),
        "the first's info"
    );

    ann1.leave("presence-x").await.unwrap();
    assert!(taken(&watched).is_empty(), "ann is still there");
    ann2.close(&Disconnect::NORMAL).await;
    assert_eq!(taken(&watched), ["-ann"]);
    ann1.close(&Disconnect::NORMAL).await;
    let members = watcher.members("presence-x").await.unwrap();
    assert_eq!(members.len(), 1);

    // A format that does not show members never gets a member change.
    let (mut native, native_out) = {
        let outbox = Arc::new(Outbox::new(OutboxLimits {
            max_messages: 10,
            max_bytes: 10_000,
        }));
        struct Plain(FormatId);
        impl Render for Plain {
            fn format(&self) -> FormatId {
                self.0
            }
            fn kind(&self) -> (&'static str, &'static str) {
                ("test", "plain")
            }
            fn render(&self, publication: &Publication) -> Bytes {
                publication.message.data.get().to_owned().into()
            }
        }
        let request = ConnectRequest {
            app: hub.app("demo").unwrap(),
            user: Some("n".into()),
            groups: Vec::new(),
            grant: Grant::default(),
            outbox: outbox.clone(),
            renderer: Arc::new(Plain(FormatId::unique())),
            since: None,
            max_replay: None,
            addr: None,
        };
        (hub.connect(request, |_| {}).await.unwrap(), outbox)
    };
    native
        .join_authorized("presence-x", plain(), |_| {})
        .await
        .unwrap();
    let (mut late, _late_out) = connect(&hub, None).await;
    late.join_authorized("presence-x", member("zed", "{}"), |_| {})
        .await
        .unwrap();
    late.announced().await;
    assert!(taken(&native_out).is_empty());
    assert_eq!(taken(&watched), ["+zed"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_publish_skips_the_excluded_connection_only() {
    let hub = hub();
    let (mut one, one_out) = connect(&hub, None).await;
    let (mut two, two_out) = connect(&hub, None).await;
    for session in [&mut one, &mut two] {
        session
            .join_authorized("room", plain(), |_| {})
            .await
            .unwrap();
    }
    let targets = [Target::Room("room".into())];
    hub.publish_excluding("demo", &targets, None, data("1"), Some(&one.conn()))
        .await
        .unwrap();
    assert!(taken(&one_out).is_empty());
    assert_eq!(taken(&two_out), ["1"]);
    assert!(matches!(
        hub.publish_excluding("demo", &targets, None, data("2"), Some("not a conn"))
            .await,
        Err(HubError::InvalidConn(_))
    ));
    two.publish_to_room("room", "client-x".into(), data("3"), None)
        .await
        .unwrap();
    assert_eq!(taken(&one_out), ["3"]);
    assert!(taken(&two_out).is_empty(), "never back to the sender");
    assert!(one
        .publish_to_room("elsewhere", "client-x".into(), data("4"), None)
        .await
        .is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn a_cache_join_replays_the_rooms_last_message_or_says_there_is_none() {
    let hub = hub();
    let last = || RoomEntry {
        start: RoomStart::Last(1),
        member: None,
    };
    let (mut early, early_out) = connect(&hub, None).await;
    let state = early
        .join_authorized("cache-a", last(), |_| {})
        .await
        .unwrap();
    assert_eq!(state.replayed, 0);
    assert!(taken(&early_out).is_empty());
    for n in ["1", "2"] {
        hub.publish("demo", &[Target::Room("cache-a".into())], None, data(n))
            .await
            .unwrap();
    }
    let (mut late, late_out) = connect(&hub, None).await;
    let state = late
        .join_authorized("cache-a", last(), |_| {})
        .await
        .unwrap();
    assert_eq!(state.replayed, 1);
    assert_eq!(taken(&late_out), ["2"]);
    hub.publish("demo", &[Target::Room("cache-a".into())], None, data("3"))
        .await
        .unwrap();
    assert_eq!(taken(&late_out), ["3"], "then live, nothing twice");
}

/// A room whose members are as many as the join allows refuses a new member, and nobody
/// hears of the refused one (neither added nor removed); the members' own users still
/// get in with more connections.
#[tokio::test(flavor = "current_thread")]
async fn a_full_room_refuses_a_new_member_without_announcing_it() {
    let hub = hub();
    let limited = |user: &str| {
        let mut entry = member(user, "{}");
        if let Some(member) = entry.member.as_mut() {
            member.max_members = Some(1);
        }
        entry
    };
    let (mut ann, ann_out) = connect(&hub, None).await;
    ann.join_authorized("presence-x", limited("ann"), |_| {})
        .await
        .unwrap();
    let (mut bob, _bob_out) = connect(&hub, None).await;
    let refused = bob
        .join_authorized("presence-x", limited("bob"), |_| {})
        .await;
    assert!(
        matches!(refused, Err(HubError::RoomFull { max: 1, .. })),
        "{refused:?}"
    );
    assert!(!bob.in_room("presence-x"));
    let (mut ann2, _ann2_out) = connect(&hub, None).await;
    let state = ann2
        .join_authorized("presence-x", limited("ann"), |_| {})
        .await
        .unwrap();
    assert_eq!(state.members.map(|m| m.len()), Some(1));
    assert!(taken(&ann_out).is_empty(), "bob was never announced");
    let members = hub.room_members("demo", "presence-x").await.unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
}
