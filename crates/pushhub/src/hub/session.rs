//! A connection attached to the hub: the rooms it joins (as a plain subscriber or as a
//! presence member with info), the user it may take after connecting, and what it must
//! undo in the engines when it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;

use super::registry::{Registry, Subscriber};
use super::{
    channel, conn_name, names, now_ms, replay_limit, AppSettings, ChannelState, ConnId, Grant, Hub,
    HubError, Origin, PublishReceipt,
};
use crate::backend::events::Event;
use crate::disconnect::Disconnect;
use crate::engine::{
    Entered, HistoryRequest, Left, Member, MemberChange, Recovery, StreamPosition,
};
use crate::sync::lock;

/// Where a connection starts in a room it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomStart {
    /// At the top: only what is published from now on.
    Top,
    /// After this position: what it missed since, then live (a reconnecting client).
    Since(StreamPosition),
    /// With the room's last `n` kept messages replayed first (Pusher's cache channels).
    Last(usize),
}

/// A presence member's identity in a room it joins: its user id and what it shows of
/// itself (JSON text), as every member's list and member events carry it.
#[derive(Debug, Clone)]
pub struct MemberJoin {
    /// The member's user id (one member however many connections it joins with).
    pub user: Arc<str>,
    /// Its info, JSON text.
    pub info: Arc<str>,
    /// The most members the room may hold: a new member past it is refused
    /// ([`HubError::RoomFull`]); one whose user is a member already always gets in.
    /// `None` for no limit.
    pub max_members: Option<usize>,
}

/// How a connection joins a room.
#[derive(Debug, Clone)]
pub struct RoomEntry {
    /// Where it starts.
    pub start: RoomStart,
    /// Set to join as a presence member: the room's other connections hear of a new
    /// member, and the answer lists the members.
    pub member: Option<MemberJoin>,
}

/// Who presence counts a connection as in one room it joined itself.
#[derive(Debug, Clone)]
pub(super) struct RoomPresence {
    /// The id it was counted under.
    id: Arc<str>,
    /// True when it joined as a member with info.
    member: bool,
}

/// A connection attached to the hub. Call [`Session::close`] when it ends; dropping it
/// without that still unsubscribes it, and finishes presence in the background.
pub struct Session {
    pub(super) hub: Hub,
    pub(super) id: ConnId,
    pub(super) app: Arc<AppSettings>,
    pub(super) user: Option<Arc<str>>,
    pub(super) channels: Vec<Arc<str>>,
    /// The registry shard of its channels and rooms: its user's, or for a connection that
    /// came without a user, its own.
    pub(super) home: u64,
    /// For a connection that took its user after connecting ([`Session::sign_in`]): the
    /// user's shard, where its user channel sits (deliveries to a user visit only that).
    pub(super) signed_in: Option<u64>,
    /// Who each room the connection joined itself counts it as in presence, and whether
    /// as a member with info; rooms a backend put it in count it as its user.
    pub(super) room_presence: Mutex<HashMap<Arc<str>, RoomPresence>>,
    /// The turn of this connection's presence announcements. A join announces its member
    /// (and an occupied room) in a task of its own, so the joiner's answer is written
    /// first rather than after the room's thousands of `member_added`; whatever the
    /// connection announces next (a leave, its close) waits for that, so others hear of
    /// it in order.
    pub(super) announcing: Arc<tokio::sync::Mutex<()>>,
    pub(super) subscriber: Arc<Subscriber>,
    pub(super) connected: std::time::Instant,
    pub(super) attached: bool,
    /// This connection's count in `pushhub_connections`, taken back when it detaches.
    pub(super) gauge: prometheus_client::metrics::gauge::Gauge,
    /// What its credential grants ([`Session::join`] and RPC calls read it).
    pub(super) grant: Grant,
}

impl Session {
    /// The app this connection belongs to.
    pub fn app(&self) -> &Arc<AppSettings> {
        &self.app
    }

    /// The hub it is attached to (for work that outlives a borrow of the session, like
    /// an RPC call's answer).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The user this connection belongs to; `None` until a connection that came without
    /// one signs in.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// Who presence counts this connection as where it names no member: its user, or its
    /// own name while it has none (so a room's connections are counted all the same).
    pub fn presence_id(&self) -> Arc<str> {
        match &self.user {
            Some(user) => user.clone(),
            None => conn_name(self.id).into(),
        }
    }

    /// The connection's id on this node.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The connection's name, as a `welcome` and the API show it.
    pub fn conn(&self) -> String {
        conn_name(self.id)
    }

    /// Whether the connection is in room `room` (joined itself, or put there by its
    /// backend).
    pub fn in_room(&self, room: &str) -> bool {
        self.subscriber
            .in_room(&channel::room(&self.app.name, room))
    }

    /// Make a connection that came without a user `user`'s (Pusher's `pusher:signin`,
    /// once the dialect has checked the app's signature over it): it joins the user's
    /// channel (a push to the user reaches it, live from now on), counts as the user's
    /// in presence, and closes when the backend disconnects the user. Signing in again as
    /// the same user changes nothing; as another user, or on a connection that came with
    /// a user, it is refused. The per-user connection limit does not apply to it.
    pub async fn sign_in(&mut self, user: &str) -> Result<(), HubError> {
        names::check_user(user)?;
        match &self.user {
            Some(current) if &**current == user && self.signed_in.is_some() => return Ok(()),
            Some(current) => {
                return Err(HubError::InvalidUser(format!(
                    "this connection is user {current:?}'s already"
                )))
            }
            None => {}
        }
        let inner = &self.hub.inner;
        let user: Arc<str> = user.into();
        let user_channel = channel::user(&self.app.name, &user);
        let home = Registry::home(&self.app.name, &user);
        inner
            .engine
            .presence
            .join(&self.app.name, &user, self.id, now_ms())
            .await?;
        if let Err(error) = inner
            .take_interest(std::slice::from_ref(&user_channel))
            .await
        {
            inner
                .drop_interest(std::slice::from_ref(&user_channel))
                .await;
            if let Err(error) = inner
                .engine
                .presence
                .leave(&self.app.name, &user, self.id)
                .await
            {
                tracing::warn!(%error, conn = self.id, "presence leave failed");
            }
            return Err(error.into());
        }
        inner
            .registry
            .subscribe(home, std::slice::from_ref(&user_channel), &self.subscriber);
        self.signed_in = Some(home);
        self.user = Some(user.clone());
        if let Some(events) = &self.app.events {
            events.emit(Event::Connect {
                user,
                conn: conn_name(self.id),
                ts: now_ms(),
            });
        }
        Ok(())
    }

    /// Join room `room` as [`Session::join_room`] does, starting where `entry` says and,
    /// for a member, as that member. For a dialect whose protocol decides itself who may
    /// join (Pusher: public channels are open to anyone, private and presence ones need
    /// the app's signature, checked before this): the app's room policy is not asked.
    pub async fn join_authorized(
        &mut self,
        room: &str,
        entry: RoomEntry,
        answer: impl FnOnce(&ChannelState),
    ) -> Result<ChannelState, HubError> {
        self.join_room(room, entry, answer).await
    }

    /// Publish `event` from this connection to room `room`, which it must be in, for
    /// every other connection there (never back to itself), marked as from `from` (a
    /// presence member's id). For a dialect whose protocol rules who may, as Pusher's
    /// client events do (private and presence channels, when the app enables them).
    pub async fn publish_to_room(
        &self,
        room: &str,
        event: String,
        data: Box<RawValue>,
        from: Option<Arc<str>>,
    ) -> Result<PublishReceipt, HubError> {
        if !self.in_room(room) {
            return Err(HubError::InvalidRoom(format!(
                "this connection is not in room {room:?}"
            )));
        }
        let origin = Origin {
            from,
            exclude: Some(self.conn().into()),
        };
        self.hub
            .send_to_room(&self.app.name, origin, room, Some(event), data)
            .await
    }

    /// The members of room `room` on every node, as [`crate::engine::Presence::members`]
    /// lists them.
    pub async fn members(&self, room: &str) -> Result<Vec<Member>, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&self.app.name, room);
        Ok(self.hub.inner.engine.presence.members(&channel).await?)
    }

    /// Join room `room` and call `answer` with where the connection stands in it (so the
    /// answer is queued first), then queue what it missed there (as `entry.start` says)
    /// in order, then go live, as [`Hub::connect`] does for the connection's own
    /// channels: a message published to the room at any moment during this reaches the
    /// connection exactly once. Whether it may join was decided by the caller
    /// ([`Session::join`] asks the app's room policy). Joining a room the connection is
    /// in changes nothing: it has had the room's messages live, so the answer's start is
    /// its own `since` (or the top). A member's answer lists the members (itself
    /// included); the other connections in the room hear of it when it is its user's
    /// first there.
    pub(super) async fn join_room(
        &mut self,
        room: &str,
        entry: RoomEntry,
        answer: impl FnOnce(&ChannelState),
    ) -> Result<ChannelState, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&self.app.name, room);
        let inner = &self.hub.inner;
        let channels = std::slice::from_ref(&channel);
        // Held before it is a member, and subscribed before the history is read: whatever
        // is published to the room from here on is either in the history read below or
        // handed over live (held until room_live). Interest comes before membership, so a
        // join abandoned halfway never drops interest it did not take.
        self.subscriber.hold();
        if let Err(error) = inner.take_interest(channels).await {
            inner.drop_interest(channels).await;
            self.subscriber.release(&inner.renders);
            return Err(error.into());
        }
        if !inner
            .registry
            .join_room(self.home, &channel, &self.subscriber)
        {
            self.subscriber.release(&inner.renders);
            inner.drop_interest(channels).await;
            let top = self.top(&channel).await?;
            let members = match &entry.member {
                Some(_) => Some(inner.engine.presence.members(&channel).await?),
                None => None,
            };
            let state = ChannelState {
                channel,
                start: match entry.start {
                    RoomStart::Since(since) => since,
                    RoomStart::Top | RoomStart::Last(_) => top.clone(),
                },
                position: top,
                recovered: true,
                replayed: 0,
                members,
            };
            answer(&state);
            return Ok(state);
        }
        let limit = replay_limit(&self.subscriber, None);
        let (recovery, entered, members) = match self.enter_room(&channel, &entry, limit).await {
            Ok(entered) => entered,
            Err(error) => {
                inner
                    .registry
                    .leave_room(self.home, &channel, &self.subscriber);
                self.subscriber.release(&inner.renders);
                inner.drop_interest(channels).await;
                return Err(error);
            }
        };
        if let Some(members) = &members {
            self.subscriber
                .listed_members(&channel, members.iter().map(|member| member.user.as_str()));
        }
        let resuming = matches!(entry.start, RoomStart::Since(_));
        let counted_as = self.counted_as(&entry);
        let info = entry.member.as_ref().map(|member| member.info.clone());
        let (recovered, start) = match entry.start {
            RoomStart::Since(since) if recovery.complete => (true, since),
            RoomStart::Since(_) => (false, recovery.top.clone()),
            RoomStart::Top => (true, recovery.top.clone()),
            RoomStart::Last(_) => (
                true,
                recovery
                    .missed
                    .first()
                    .map(|first| StreamPosition {
                        epoch: first.position.epoch.clone(),
                        offset: first.position.offset - 1,
                    })
                    .unwrap_or_else(|| recovery.top.clone()),
            ),
        };
        let mut missed = recovery.missed;
        let encoded = self.hub.replay_bytes(&missed, &self.subscriber, limit);
        let more_to_replay = encoded.len() < missed.len()
            || (resuming
                && missed
                    .last()
                    .is_some_and(|last| last.position.offset < recovery.top.offset));
        missed.truncate(encoded.len());
        let state = ChannelState {
            channel,
            start,
            position: recovery.top,
            recovered,
            replayed: missed.len(),
            members,
        };
        answer(&state);
        for (publication, bytes) in missed.iter().zip(encoded) {
            self.subscriber.replay(publication, bytes);
        }
        inner.stats.replayed(missed.len() as u64);
        if more_to_replay {
            // As at connect: the client rejoins from its new position for the rest.
            self.subscriber.outbox.close(Disconnect::REPLAY_CONTINUES);
        }
        self.subscriber
            .room_live(&state.channel, state.position.clone(), &inner.renders);
        self.announce_entry(&state.channel, &counted_as, entered, info)
            .await;
        lock(&self.room_presence).insert(state.channel.clone(), counted_as.clone());
        room_event(&self.app, &counted_as.id, self.id, room, true);
        Ok(state)
    }

    /// Announce what this connection's entry into room channel `channel` changed (a
    /// member's with `info`), in a task that holds the connection's announcing turn (see
    /// [`Session::announcing`]).
    async fn announce_entry(
        &self,
        channel: &Arc<str>,
        counted_as: &RoomPresence,
        entered: Entered,
        info: Option<Arc<str>>,
    ) {
        let change = Announce::entered(entered);
        let member_news = counted_as.member && change.member.is_some();
        let room_news = change.room.is_some() && self.app.room_watch.is_some();
        if !member_news && !room_news {
            // Nobody to tell (a plain join, or a room nobody watches): no task.
            return;
        }
        let turn = self.announcing.clone().lock_owned().await;
        let (hub, app, channel) = (self.hub.clone(), self.app.clone(), channel.clone());
        let counted_as = counted_as.clone();
        let me: Arc<str> = self.conn().into();
        self.hub.inner.cleanups.spawn(async move {
            hub.inner
                .announce(
                    &app,
                    &channel,
                    &counted_as,
                    change,
                    info.as_deref(),
                    Some(me),
                )
                .await;
            drop(turn);
        });
    }

    /// Wait until what this connection's joins changed in presence has been announced
    /// (the room's other connections were handed their `member_added`).
    pub async fn announced(&self) {
        drop(self.announcing.lock().await);
    }

    /// Who presence counts this connection as in a room it joins as `entry` says.
    fn counted_as(&self, entry: &RoomEntry) -> RoomPresence {
        match &entry.member {
            Some(member) => RoomPresence {
                id: member.user.clone(),
                member: true,
            },
            None => RoomPresence {
                id: self.presence_id(),
                member: false,
            },
        }
    }

    /// Presence in room channel `channel` (the connection already a local member with
    /// broker interest), what the room holds from where `entry` starts (at most `limit`
    /// publications), whether this was the member's first connection there and the
    /// room's first, and for a member the room's members (itself among them).
    /// On an error, a room too full for a new member among them, no presence is left
    /// behind.
    async fn enter_room(
        &self,
        channel: &Arc<str>,
        entry: &RoomEntry,
        limit: usize,
    ) -> Result<(Recovery, Entered, Option<Vec<Member>>), HubError> {
        let inner = &self.hub.inner;
        let presence = &inner.engine.presence;
        let counted_as = self.counted_as(entry);
        let info = entry.member.as_ref().map(|member| &*member.info);
        let entered = presence
            .enter(channel, &counted_as.id, self.id, now_ms(), info)
            .await?;
        let read = async {
            let recovery = match &entry.start {
                RoomStart::Top => self.history(channel, None, 0).await?,
                RoomStart::Since(since) => {
                    self.history(channel, Some(since.clone()), limit).await?
                }
                RoomStart::Last(count) => self.last(channel, (*count).min(limit)).await?,
            };
            let Some(member) = &entry.member else {
                return Ok((recovery, None));
            };
            let members = presence.members(channel).await?;
            let full = member.max_members.filter(|max| members.len() > *max);
            match full {
                Some(max) if entered.first_of_user => Err(HubError::RoomFull {
                    room: channel::room_name(&self.app.name, channel)
                        .unwrap_or_default()
                        .to_owned(),
                    max,
                }),
                _ => Ok((recovery, Some(members))),
            }
        };
        match read.await {
            Ok((recovery, members)) => Ok((recovery, entered, members)),
            Err(error) => {
                self.give_up_entry(channel, &counted_as, entered, info)
                    .await;
                Err(error)
            }
        }
    }

    /// Take back the presence entry of a join given up halfway (`entered` is what it
    /// changed, announced to nobody yet). Only what the world sees change is announced:
    /// nothing when the member and the room go as they came, but a member or an occupied
    /// room another connection keeps (it came meanwhile, was not first, so announced
    /// nothing) is announced now, and one that another connection announced and left
    /// meanwhile is announced gone.
    async fn give_up_entry(
        &self,
        channel: &Arc<str>,
        counted_as: &RoomPresence,
        entered: Entered,
        info: Option<&str>,
    ) {
        let inner = &self.hub.inner;
        let left = match inner
            .engine
            .presence
            .exit(channel, &counted_as.id, self.id)
            .await
        {
            Ok(left) => left,
            Err(error) => {
                tracing::warn!(%error, conn = self.id, channel = &**channel, "presence leave failed");
                return;
            }
        };
        let change = Announce::given_up(entered, left);
        inner
            .announce(
                &self.app,
                channel,
                counted_as,
                change,
                info,
                Some(self.conn().into()),
            )
            .await;
    }

    /// What room channel `channel` holds after `since` (at most `limit`).
    async fn history(
        &self,
        channel: &Arc<str>,
        since: Option<StreamPosition>,
        limit: usize,
    ) -> Result<Recovery, HubError> {
        let request = HistoryRequest {
            channel: channel.clone(),
            since,
            limit: Some(limit),
        };
        let mut recoveries = self.hub.inner.engine.broker.history(&[request]).await?;
        Ok(recoveries.pop().unwrap_or_else(|| Recovery {
            top: StreamPosition::empty(),
            missed: Vec::new(),
            complete: false,
        }))
    }

    /// The last `count` publications room channel `channel` still keeps (fewer when its
    /// history holds fewer), oldest first.
    async fn last(&self, channel: &Arc<str>, count: usize) -> Result<Recovery, HubError> {
        let top = self.history(channel, None, 0).await?.top;
        if count == 0 || top.offset == 0 {
            return Ok(Recovery {
                top,
                missed: Vec::new(),
                complete: true,
            });
        }
        let since = StreamPosition {
            epoch: top.epoch.clone(),
            offset: top.offset.saturating_sub(count as u64),
        };
        let mut recovery = self.history(channel, Some(since), count).await?;
        if !recovery.complete {
            // Part of it expired: whatever is left after an older position is all there is.
            let oldest = StreamPosition {
                epoch: recovery.top.epoch.clone(),
                offset: 0,
            };
            recovery = self.history(channel, Some(oldest), count).await?;
            let keep = recovery.missed.len().saturating_sub(count);
            recovery.missed.drain(..keep);
        }
        Ok(recovery)
    }

    /// Where room channel `channel`'s stream stands.
    async fn top(&self, channel: &Arc<str>) -> Result<StreamPosition, HubError> {
        Ok(self.history(channel, None, 0).await?.top)
    }

    /// Leave room `room`. False when the connection was not in it.
    pub(super) async fn leave_room(&self, room: &str) -> Result<bool, HubError> {
        names::check_room(room)?;
        let channel = channel::room(&self.app.name, room);
        let inner = &self.hub.inner;
        if !inner
            .registry
            .leave_room(self.home, &channel, &self.subscriber)
        {
            return Ok(false);
        }
        inner.drop_interest(std::slice::from_ref(&channel)).await;
        let counted_as = lock(&self.room_presence)
            .remove(&channel)
            .unwrap_or_else(|| self.counted_as_user());
        let _turn = self.announcing.lock().await;
        inner
            .leave_presence(&self.app, &channel, &counted_as, self.id)
            .await;
        room_event(&self.app, &counted_as.id, self.id, room, false);
        Ok(true)
    }

    /// How presence counts the connection in a room its backend put it in.
    fn counted_as_user(&self) -> RoomPresence {
        RoomPresence {
            id: self.presence_id(),
            member: false,
        }
    }

    /// Leave every channel locally and tell the app's lifecycle webhook why; what is left
    /// to undo outside this node's memory follows, or `None` when this already happened.
    fn detach_local(&mut self, reason: &Disconnect) -> Option<Leftovers> {
        if !std::mem::take(&mut self.attached) {
            return None;
        }
        let inner = &self.hub.inner;
        let rooms = inner
            .registry
            .unsubscribe(self.home, &self.channels, &self.subscriber);
        let mut channels = self.channels.clone();
        if let (Some(home), Some(user)) = (self.signed_in, &self.user) {
            let user_channel = channel::user(&self.app.name, user);
            inner
                .registry
                .unsubscribe(home, std::slice::from_ref(&user_channel), &self.subscriber);
            channels.push(user_channel);
        }
        let notes = inner.conns.remove(self.id);
        inner.stats.connection_closed();
        inner.stats.outbox_closed(self.subscriber.outbox.tally());
        self.gauge.dec();
        if let (Some(events), Some(user)) = (&self.app.events, &self.user) {
            let prefix = channel::room(&self.app.name, "");
            events.emit(Event::Disconnect {
                user: user.clone(),
                conn: conn_name(self.id),
                ts: now_ms(),
                code: reason.code,
                reason: reason.reason.to_string(),
                duration_ms: self.connected.elapsed().as_millis() as u64,
                rooms: rooms
                    .iter()
                    .filter_map(|r| r.strip_prefix(&*prefix).map(str::to_owned))
                    .collect(),
                controllers: notes.controllers,
                close_keys: notes.close_keys,
            });
        }
        channels.extend(rooms.iter().cloned());
        let rooms = rooms
            .into_iter()
            .map(|room| {
                let counted_as = lock(&self.room_presence)
                    .remove(&room)
                    .unwrap_or_else(|| self.counted_as_user());
                (room, counted_as)
            })
            .collect();
        Some(Leftovers {
            hub: self.hub.clone(),
            app: self.app.clone(),
            channels,
            user: self.user.clone(),
            rooms,
            id: self.id,
            announcing: self.announcing.clone(),
        })
    }

    /// Leave every channel, room and presence; the connection ended for `reason`.
    pub async fn close(mut self, reason: &Disconnect) {
        if let Some(leftovers) = self.detach_local(reason) {
            leftovers.undo().await;
        }
    }
}

impl super::HubInner {
    /// Take connection `id` out of room channel `channel`'s presence as it was counted
    /// there; a member whose last connection this was is gone, and the room's other
    /// connections, on every node, hear of it. Failures are logged: the connection is
    /// leaving either way.
    pub(super) async fn leave_presence(
        &self,
        app: &AppSettings,
        channel: &Arc<str>,
        counted_as: &RoomPresence,
        id: ConnId,
    ) {
        let left = match self.engine.presence.exit(channel, &counted_as.id, id).await {
            Ok(left) => left,
            Err(error) => {
                tracing::warn!(%error, conn = id, channel = &**channel, "presence leave failed");
                return;
            }
        };
        self.announce(app, channel, counted_as, Announce::left(left), None, None)
            .await;
    }

    /// Tell `app`'s [`RoomWatch`](super::room_watch::RoomWatch) what a presence change
    /// did to room channel `channel` (room occupied first, vacated last), and the room's
    /// connections on every node but `exclude` of a member (`counted_as`, when it is
    /// counted as a member) added with `info` or removed.
    async fn announce(
        &self,
        app: &AppSettings,
        channel: &Arc<str>,
        counted_as: &RoomPresence,
        change: Announce,
        info: Option<&str>,
        exclude: Option<Arc<str>>,
    ) {
        let room = channel::room_name(&app.name, channel);
        let watch = app.room_watch.as_deref().zip(room);
        if let (Some((watch, room)), Some(true)) = (watch, change.room) {
            watch.occupied(room);
        }
        if let (true, Some(joined)) = (counted_as.member, change.member) {
            if let Some((watch, room)) = watch {
                if joined {
                    watch.member_added(room, &counted_as.id);
                } else {
                    watch.member_removed(room, &counted_as.id);
                }
            }
            let member = MemberChange {
                user: counted_as.id.clone(),
                joined,
            };
            let info = info.filter(|_| joined);
            self.member_change(&app.name, channel, member, info, exclude)
                .await;
        }
        if let (Some((watch, room)), Some(false)) = (watch, change.room) {
            watch.vacated(room);
        }
    }
}

/// What a presence change did, to announce: for the member and for the room, `Some(true)`
/// added (occupied), `Some(false)` removed (vacated), `None` unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announce {
    member: Option<bool>,
    room: Option<bool>,
}

impl Announce {
    /// A room entry's: a member (a room) added when it was the first.
    fn entered(entered: Entered) -> Self {
        Self {
            member: entered.first_of_user.then_some(true),
            room: entered.first_in_scope.then_some(true),
        }
    }

    /// A room exit's: a member (a room) gone when it was the last.
    fn left(left: Left) -> Self {
        Self {
            member: left.last_of_user.then_some(false),
            room: left.last_in_scope.then_some(false),
        }
    }

    /// An entry taken back before anything of it was announced: what differs between
    /// before the entry and after the exit, as others may have come or gone between.
    fn given_up(entered: Entered, left: Left) -> Self {
        Self {
            member: (entered.first_of_user != left.last_of_user).then_some(entered.first_of_user),
            room: (entered.first_in_scope != left.last_in_scope).then_some(entered.first_in_scope),
        }
    }
}

/// What a detached connection still has to undo in the engines: its broker interest in
/// its channels, its presence in the app (when it had a user) and in each room, as it was
/// counted there.
struct Leftovers {
    hub: Hub,
    app: Arc<AppSettings>,
    channels: Vec<Arc<str>>,
    user: Option<Arc<str>>,
    rooms: Vec<(Arc<str>, RoomPresence)>,
    id: ConnId,
    /// The connection's announcing turn: its rooms are left once its joins are announced.
    announcing: Arc<tokio::sync::Mutex<()>>,
}

impl Leftovers {
    async fn undo(self) {
        let inner = &self.hub.inner;
        inner.drop_interest(&self.channels).await;
        if let Some(user) = &self.user {
            if let Err(error) = inner
                .engine
                .presence
                .leave(&self.app.name, user, self.id)
                .await
            {
                tracing::warn!(%error, conn = self.id, "presence leave failed");
            }
        }
        let _turn = self.announcing.lock().await;
        for (room, counted_as) in &self.rooms {
            inner
                .leave_presence(&self.app, room, counted_as, self.id)
                .await;
        }
    }
}

/// Tell `app`'s lifecycle webhook, if it has one, that connection `id` of `user` joined
/// or left `room`.
pub(super) fn room_event(app: &AppSettings, user: &Arc<str>, id: ConnId, room: &str, joined: bool) {
    let Some(events) = &app.events else { return };
    let (user, conn, ts, room) = (user.clone(), conn_name(id), now_ms(), room.to_owned());
    events.emit(if joined {
        Event::Join {
            user,
            conn,
            ts,
            room,
        }
    } else {
        Event::Leave {
            user,
            conn,
            ts,
            room,
        }
    });
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(leftovers) = self.detach_local(&Disconnect::ABNORMAL) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let cleanups = self.hub.inner.cleanups.clone();
                cleanups.spawn_on(leftovers.undo(), &runtime);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entered(first_of_user: bool, first_in_scope: bool) -> Entered {
        Entered {
            first_of_user,
            first_in_scope,
        }
    }

    fn left(last_of_user: bool, last_in_scope: bool) -> Left {
        Left {
            last_of_user,
            last_in_scope,
        }
    }

    /// A join given up announces only what others see change between its entry and its
    /// exit: nothing when it came and went first and last, what another connection that
    /// came meanwhile keeps, and the end of what another announced and left meanwhile.
    #[test]
    fn a_given_up_entry_announces_only_what_others_see_change() {
        let nothing = Announce {
            member: None,
            room: None,
        };
        assert_eq!(
            Announce::given_up(entered(true, true), left(true, true)),
            nothing
        );
        assert_eq!(
            Announce::given_up(entered(false, false), left(false, false)),
            nothing
        );
        assert_eq!(
            Announce::given_up(entered(true, true), left(false, false)),
            Announce {
                member: Some(true),
                room: Some(true)
            },
            "another connection of the user came meanwhile and stays"
        );
        assert_eq!(
            Announce::given_up(entered(false, false), left(true, true)),
            Announce {
                member: Some(false),
                room: Some(false)
            },
            "the connections that announced them left meanwhile"
        );
        assert_eq!(
            Announce::given_up(entered(true, false), left(true, false)),
            nothing,
            "a new member in an occupied room, refused"
        );
    }
}
