//! Lua scripts run the cheap way: `EVALSHA` after one `SCRIPT LOAD`, and `EVAL` whenever
//! a server answers `NOSCRIPT` (after a restart, a failover, a `SCRIPT FLUSH`, or on a
//! cluster node that never saw it). Shared by the Redis engine and the Redis timer store,
//! whose every read-modify-write is a script.

use std::borrow::Cow;
use std::sync::OnceLock;

use fred::clients::Client;
use fred::error::Error;
use fred::interfaces::{ClientLike, LuaInterface};
use fred::types::config::Options;
use fred::types::{ClusterHash, CustomCommand, Value};

/// A Lua script and its SHA-1, learnt from Redis when first loaded.
pub struct Script {
    lua: Cow<'static, str>,
    sha: OnceLock<String>,
}

impl Script {
    /// A script built at run time.
    pub fn new(lua: String) -> Self {
        Self {
            lua: Cow::Owned(lua),
            sha: OnceLock::new(),
        }
    }

    /// A script fixed at compile time, for a `static`.
    pub const fn fixed(lua: &'static str) -> Self {
        Self {
            lua: Cow::Borrowed(lua),
            sha: OnceLock::new(),
        }
    }

    /// Run the script on `client`: `EVALSHA`, and `EVAL` when the server answering does
    /// not have it (after a restart, a failover, a `SCRIPT FLUSH`, or on a cluster node
    /// that never saw it), which caches it there again.
    pub async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, Error> {
        let sha = match self.sha.get() {
            Some(sha) => sha.clone(),
            None => self.load(client).await?,
        };
        match client
            .evalsha::<Value, _, _, _>(sha, keys.clone(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                client.eval(self.lua.as_ref(), keys, args).await
            }
            result => result,
        }
    }

    /// Run the script on `client`, refused at once while the connection is down or
    /// reconnecting instead of queued until Redis returns. For writes whose caller answers
    /// "refused" on an error (a publish answered 503 `engine_unavailable`): a command fred
    /// kept queued through an outage would otherwise run after the caller gave up, and a
    /// backend retrying the refused push would publish it twice.
    pub async fn run_once(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, Error> {
        let once = client.with_options(&Options {
            fail_fast: true,
            ..Options::default()
        });
        let sha = match self.sha.get() {
            Some(sha) => sha.clone(),
            None => self.load(client).await?,
        };
        // EVALSHA sha numkeys key…: the first key (offset 2) picks the cluster slot.
        let call = |command: &'static str, script: String| {
            let mut all = Vec::with_capacity(2 + keys.len() + args.len());
            all.push(script);
            all.push(keys.len().to_string());
            all.extend(keys.iter().cloned());
            all.extend(args.iter().cloned());
            once.custom::<Value, String>(
                CustomCommand::new_static(command, ClusterHash::Offset(2), false),
                all,
            )
        };
        match call("EVALSHA", sha).await {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                call("EVAL", self.lua.to_string()).await
            }
            result => result,
        }
    }

    /// `SCRIPT LOAD` once, to learn the script's SHA-1 (the same on every server).
    async fn load(&self, client: &Client) -> Result<String, Error> {
        let sha: String = client.script_load(self.lua.as_ref()).await?;
        let _ = self.sha.set(sha.clone());
        Ok(sha)
    }
}
