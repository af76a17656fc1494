//! Many pushes in one call, and pushes that a retry publishes once.
//!
//! A backend notifying users one by one pays the per-request path for every push; a batch
//! pays it once and hands the engine every publish together ([`Broker::publish_batch`]).
//! Each push of a batch is answered on its own: one that fails (a bad key, an engine error
//! on its channel) fails alone. A broadcast is one message to many independent targets:
//! one message, published to all of their channels in one engine call, answered per target.
//!
//! An idempotency key makes a retried push publish once within
//! [`idempotency::WINDOW`](crate::engine::idempotency::WINDOW): the key is claimed
//! before the publish and settled with its answer, which every retry gets again.
//!
//! [`Broker::publish_batch`]: crate::engine::Broker::publish_batch

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::value::RawValue;

use super::{
    channels_of, names, AppSettings, Hub, HubError, PublishReceipt, PublishScope, Reached, Target,
    PUBLISHING,
};
use crate::engine::idempotency::{Claim, Outcome};
use crate::engine::{BatchPublish, EngineError, StreamPosition};

/// One push of a batch.
#[derive(Debug)]
pub struct PushSpec {
    /// Whom it goes to.
    pub targets: Vec<Target>,
    /// Its event name.
    pub event: Option<String>,
    /// Its payload (JSON text).
    pub data: Box<RawValue>,
    /// Makes a retry within the window answer with this push's first answer instead of
    /// publishing again.
    pub idempotency_key: Option<String>,
    /// The connection (its name, as a `welcome` or Pusher's `socket_id` shows it) this
    /// push must not reach: the one whose action the backend is echoing to the others.
    pub exclude: Option<String>,
}

/// The idempotency key `key` of `app` as the engine stores it (app names hold no `:`).
fn scoped(app: &str, key: &str) -> String {
    format!("{app}:{key}")
}

impl Hub {
    /// Publish `pushes` to `app` in one engine call; one answer per push, in order. Only
    /// an unknown app fails the whole call.
    pub async fn publish_batch(
        &self,
        app: &str,
        pushes: Vec<PushSpec>,
    ) -> Result<Vec<Result<PublishReceipt, HubError>>, HubError> {
        let app = self.app(app)?;
        // A key repeated within the batch is one push: the repeat gets the first's answer.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let repeats: Vec<Option<usize>> = pushes
            .iter()
            .enumerate()
            .map(|(index, push)| {
                let key = push.idempotency_key.as_deref()?;
                match first_of.get(key) {
                    Some(&first) => Some(first),
                    None => {
                        first_of.insert(key, index);
                        None
                    }
                }
            })
            .collect();
        let name = &app.name;
        let claims = join_all(
            pushes
                .iter()
                .zip(&repeats)
                .map(|(push, repeat)| async move {
                    if let Some(conn) = &push.exclude {
                        super::excluded_conn(conn)?;
                    }
                    match repeat {
                        Some(_) => Ok(None),
                        None => self.claim(name, push).await,
                    }
                }),
        )
        .await;
        let mut answers: Vec<Option<Result<PublishReceipt, HubError>>> =
            pushes.iter().map(|_| None).collect();
        let mut batch = Vec::with_capacity(pushes.len());
        let mut owners = Vec::with_capacity(pushes.len());
        for (index, (push, claim)) in pushes.into_iter().zip(claims).enumerate() {
            if repeats[index].is_some() {
                continue;
            }
            match claim {
                Err(error) => answers[index] = Some(Err(error)),
                Ok(Some(Claim::Done(outcome))) => answers[index] = Some(Ok(receipt(outcome))),
                Ok(Some(Claim::Busy)) => {
                    answers[index] = Some(Err(HubError::IdempotencyBusy(
                        push.idempotency_key.unwrap_or_default(),
                    )))
                }
                Ok(Some(Claim::First) | None) => {
                    // Checked before the claim: only a well-formed name gets here.
                    let exclude = push.exclude.map(Arc::from);
                    let channels = channels_of(&app.name, &push.targets);
                    let shared = channels.len() > 1;
                    let message = self.inner.new_message(
                        &app.name,
                        push.event,
                        push.data,
                        super::Origin {
                            exclude,
                            ..Default::default()
                        },
                        shared,
                    );
                    batch.push(BatchPublish {
                        channels,
                        message,
                        history: app.history,
                    });
                    owners.push((index, push.targets, push.idempotency_key));
                }
            }
        }
        let (published, reached) = self.publish_counted(&batch).await;
        let settled = join_all(batch.iter().zip(published).zip(&owners).map(
            |((publish, result), (_, targets, key))| {
                self.answer(&app, publish, result, targets, key.as_deref(), &reached)
            },
        ))
        .await;
        for ((index, _, _), answer) in owners.iter().zip(settled) {
            answers[*index] = Some(answer);
        }
        for (index, repeat) in repeats.into_iter().enumerate() {
            if let Some(first) = repeat {
                answers[index] = answers[first].as_ref().map(repeated);
            }
        }
        Ok(answers
            .into_iter()
            .map(|answer| {
                answer.unwrap_or_else(|| {
                    Err(EngineError::Unavailable("push not attempted".into()).into())
                })
            })
            .collect())
    }

    /// Publish one message with `event` and `data` to each of `targets` of `app` (one
    /// message, its payload held and encoded once, published to all of their channels in
    /// one engine call); one answer per target, in order, with the message's positions in
    /// that target's channels. A connection reached through several targets gets the
    /// message once, and is counted for the first target that reached it.
    pub async fn broadcast(
        &self,
        app: &str,
        targets: &[Vec<Target>],
        event: Option<String>,
        data: Box<RawValue>,
    ) -> Result<Vec<PublishReceipt>, HubError> {
        let app = self.app(app)?;
        let all: Vec<Target> = targets.iter().flatten().cloned().collect();
        let channels = channels_of(&app.name, &all);
        let shared = channels.len() > 1;
        let message =
            self.inner
                .new_message(&app.name, event, data, super::Origin::default(), shared);
        let batch = [BatchPublish {
            channels,
            message,
            history: app.history,
        }];
        let (mut published, reached) = self.publish_counted(&batch).await;
        let positions: HashMap<Arc<str>, StreamPosition> = batch[0]
            .channels
            .iter()
            .cloned()
            .zip(published.pop().unwrap_or_else(|| Ok(Vec::new()))?)
            .collect();
        let seq = batch[0].message.seq;
        let app = &app;
        // A channel two targets share is counted for the first of them.
        let mut counted = HashSet::new();
        let answers = targets.iter().map(|targets| {
            let channels = channels_of(&app.name, targets);
            let here = channels
                .iter()
                .filter(|channel| counted.insert((*channel).clone()))
                .filter_map(|channel| reached.get(&(seq, channel.clone())))
                .sum();
            let positions: Vec<_> = channels
                .into_iter()
                .filter_map(|channel| {
                    let position = positions.get(&channel)?.clone();
                    Some((channel, position))
                })
                .collect();
            let id = batch[0].message.id.clone();
            async move {
                PublishReceipt {
                    id,
                    delivered: self.reached(&app.name, targets, here).await,
                    positions,
                }
            }
        });
        Ok(join_all(answers).await)
    }

    /// Claim `push`'s idempotency key, when it has one.
    async fn claim(&self, app: &str, push: &PushSpec) -> Result<Option<Claim>, HubError> {
        let Some(key) = &push.idempotency_key else {
            return Ok(None);
        };
        names::check_idempotency_key(key)?;
        let claim = self
            .inner
            .engine
            .idempotency
            .claim(&scoped(app, key))
            .await?;
        Ok(Some(claim))
    }

    /// Hand `batch` to the engine in one call, counting what each publication reached on
    /// this node.
    async fn publish_counted(
        &self,
        batch: &[BatchPublish],
    ) -> (Vec<Result<Vec<StreamPosition>, EngineError>>, Reached) {
        if batch.is_empty() {
            return (Vec::new(), Reached::new());
        }
        let scope = PublishScope::default();
        scope.per_publication.replace(Some(Reached::new()));
        let broker = &self.inner.engine.broker;
        let (published, reached) = PUBLISHING
            .scope(scope, async {
                let published = broker.publish_batch(batch).await;
                let reached = PUBLISHING.with(|s| s.per_publication.take().unwrap_or_default());
                (published, reached)
            })
            .await;
        let accepted = published
            .iter()
            .filter_map(|result| result.as_ref().ok())
            .map(|positions| positions.len() as u64)
            .sum();
        self.inner.stats.accepted(accepted);
        (published, reached)
    }

    /// One push's answer from what its publish did, recorded for its retries (or its key
    /// given up when the publish failed, so a retry publishes).
    async fn answer(
        &self,
        app: &AppSettings,
        publish: &BatchPublish,
        result: Result<Vec<StreamPosition>, EngineError>,
        targets: &[Target],
        key: Option<&str>,
        reached: &Reached,
    ) -> Result<PublishReceipt, HubError> {
        let idempotency = &self.inner.engine.idempotency;
        let positions = match result {
            Ok(positions) => positions,
            Err(error) => {
                if let Some(key) = key {
                    if let Err(error) = idempotency.release(&scoped(&app.name, key)).await {
                        tracing::warn!(%error, "an idempotency key of a failed push stays claimed until it runs out");
                    }
                }
                return Err(error.into());
            }
        };
        let seq = publish.message.seq;
        let here = publish
            .channels
            .iter()
            .filter_map(|channel| reached.get(&(seq, channel.clone())))
            .sum();
        let receipt = PublishReceipt {
            id: publish.message.id.clone(),
            delivered: self.reached(&app.name, targets, here).await,
            positions: publish.channels.iter().cloned().zip(positions).collect(),
        };
        if let Some(key) = key {
            let outcome = Outcome {
                id: receipt.id.to_string(),
                delivered: receipt.delivered,
                positions: receipt
                    .positions
                    .iter()
                    .map(|(channel, position)| (channel.to_string(), position.clone()))
                    .collect(),
            };
            if let Err(error) = idempotency.settle(&scoped(&app.name, key), &outcome).await {
                tracing::warn!(%error, "a push's idempotency answer was not kept: a retry will publish again");
            }
        }
        Ok(receipt)
    }
}

/// The answer of a push that repeats an earlier key of its batch: the earlier push's.
fn repeated(answer: &Result<PublishReceipt, HubError>) -> Result<PublishReceipt, HubError> {
    match answer {
        Ok(receipt) => Ok(receipt.clone()),
        Err(HubError::InvalidIdempotencyKey(why)) => {
            Err(HubError::InvalidIdempotencyKey(why.clone()))
        }
        Err(HubError::IdempotencyBusy(key)) => Err(HubError::IdempotencyBusy(key.clone())),
        Err(error) => Err(EngineError::Unavailable(error.to_string()).into()),
    }
}

/// A kept answer as the hub gives it.
fn receipt(outcome: Outcome) -> PublishReceipt {
    PublishReceipt {
        id: outcome.id.into(),
        delivered: outcome.delivered,
        positions: outcome
            .positions
            .into_iter()
            .map(|(channel, position)| (channel.into(), position))
            .collect(),
    }
}
