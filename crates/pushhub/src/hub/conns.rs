//! This node's connections by id: what a push or a close note addressed to one connection
//! (seed 002's `$serv->push($fd, …)`, MSwoole's `fdAddCloseKey`) finds it through, and
//! where the close notes a backend registered for it wait for its `disconnect` event.
//!
//! The channel registry finds connections by channel; a connection target names none, so
//! it gets its own small index, sharded by id so connects on different threads rarely
//! meet on one lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::outbox::Unsent;
use super::registry::{ConnId, Subscriber};
use super::render::RenderCache;
use crate::close_notes::{CloseNotes, CloseNotesChange, CloseNotesError};
use crate::engine::Publication;
use crate::sync::lock;

const SHARDS: usize = 16;

/// One attached connection of this node.
struct Local {
    app: Arc<str>,
    subscriber: Arc<Subscriber>,
    notes: CloseNotes,
}

/// What addressing one connection of this node came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Addressed {
    /// The connection took it.
    Done,
    /// No such connection of that app is attached here (or it is closing).
    Gone,
    /// The connection refused the change to its close notes.
    Refused(CloseNotesError),
}

/// This node's attached connections by id.
pub(super) struct LocalConns {
    shards: Box<[Mutex<HashMap<ConnId, Local>>]>,
}

impl LocalConns {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: ConnId) -> &Mutex<HashMap<ConnId, Local>> {
        &self.shards[(id % SHARDS as u64) as usize]
    }

    /// Record `subscriber`, a connection of `app`, as attached.
    pub(super) fn insert(&self, app: Arc<str>, subscriber: Arc<Subscriber>) {
        let local = Local {
            app,
            subscriber: subscriber.clone(),
            notes: CloseNotes::default(),
        };
        lock(self.shard(subscriber.id)).insert(subscriber.id, local);
    }

    /// Forget connection `id`; its close notes, for its `disconnect` event.
    pub(super) fn remove(&self, id: ConnId) -> CloseNotes {
        lock(self.shard(id))
            .remove(&id)
            .map(|local| local.notes)
            .unwrap_or_default()
    }

    /// Hand `publication` to connection `id` of `app` (queued for `unsent` to write, or
    /// held while the connection recovers, like any live publication).
    pub(super) fn offer(
        &self,
        app: &str,
        id: ConnId,
        publication: &Arc<Publication>,
        cache: &mut RenderCache<'_>,
        unsent: &mut Unsent,
    ) -> Addressed {
        let subscriber = match lock(self.shard(id)).get(&id) {
            Some(local) if &*local.app == app => local.subscriber.clone(),
            _ => return Addressed::Gone,
        };
        if subscriber.offer(publication, cache, unsent) {
            Addressed::Done
        } else {
            Addressed::Gone
        }
    }

    /// Apply `change` to the close notes of connection `id` of `app`.
    pub(super) fn change_notes(
        &self,
        app: &str,
        id: ConnId,
        change: &CloseNotesChange,
    ) -> Addressed {
        match lock(self.shard(id)).get_mut(&id) {
            Some(local) if &*local.app == app => match local.notes.apply(change) {
                Ok(()) => Addressed::Done,
                Err(error) => Addressed::Refused(error),
            },
            _ => Addressed::Gone,
        }
    }
}
