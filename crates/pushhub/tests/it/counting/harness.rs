//! pushhub nodes (N on one Redis, or one being upgraded), resuming clients spread over
//! them, a publisher that records what each node accepted and refused, and the tally of
//! lost and duplicated messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::clients::{ClusterClient, Dialect, Endpoint, APP, PUSHSERVE_PASSWORD};
use crate::util::TestServer;

/// How long the clients may take to receive everything after the last publish.
const SETTLE: Duration = Duration::from_secs(30);

/// History deep enough that no test's gap outgrows it: a `recovered:false` is then a bug.
const HISTORY_SIZE: &str = "10000";

/// pushhub nodes (sharing one Redis, or a single one), and the clients connected to them.
pub struct Cluster {
    nodes: Vec<Option<TestServer>>,
    /// Where each node listens (a killed node's addresses refuse connections).
    pub endpoints: Arc<Vec<Endpoint>>,
    clients: Vec<ClusterClient>,
    stop: CancellationToken,
}

impl Cluster {
    /// `count` nodes `serve --engine redis --redis-url url`, each with raw TCP and
    /// push-serve turned on.
    pub fn start(url: &str, count: usize) -> Self {
        let nodes = (0..count)
            .map(|_| {
                let mut env = Self::ENV.to_vec();
                env.push(("PUSHHUB_PUSHSERVE_PASSWORD", PUSHSERVE_PASSWORD));
                TestServer::start_with(&["--engine", "redis", "--redis-url", url], &env)
            })
            .collect();
        Self::of(nodes)
    }

    /// What every node needs for these tests: history deep enough, raw TCP on, and no
    /// request rate limit for the long-pollers (all from 127.0.0.1, one request per
    /// message at the publisher's rate).
    pub const ENV: [(&'static str, &'static str); 3] = [
        ("PUSHHUB_HISTORY_SIZE", HISTORY_SIZE),
        ("PUSHHUB_TCP_LISTEN", "127.0.0.1:0"),
        ("PUSHHUB_LIMITS_MAX_REQUESTS_PER_SECOND_PER_IP", "100000"),
    ];

    /// The clients' view of `nodes`, already started (with [`Cluster::ENV`]).
    pub fn of(nodes: Vec<TestServer>) -> Self {
        let endpoints = nodes
            .iter()
            .map(|node| Endpoint {
                client: node.client,
                api: node.api,
                tcp: node.tcp.expect("the node's raw TCP listener"),
            })
            .collect();
        Self {
            nodes: nodes.into_iter().map(Some).collect(),
            endpoints: Arc::new(endpoints),
            clients: Vec::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Node `index`, which must still run.
    pub fn node(&self, index: usize) -> &TestServer {
        self.nodes[index].as_ref().expect("a running node")
    }

    /// kill -9 node `index`: no shutdown, no cleanup.
    pub fn kill(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            drop(node.crash());
        }
    }

    /// The end of every running node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                text.push_str(&format!(
                    "--- node {index} ---\n{}\n",
                    tail(&node.log(), 30)
                ));
            }
        }
        text
    }

    /// `per_node` clients of each dialect on each node in `on`.
    pub fn spawn_clients(&mut self, dialects: &[Dialect], on: &[usize], per_node: usize) {
        for &home in on {
            for &dialect in dialects {
                for _ in 0..per_node {
                    let index = self.clients.len();
                    self.clients.push(ClusterClient::spawn(
                        dialect,
                        index,
                        home,
                        self.endpoints.clone(),
                        self.stop.clone(),
                    ));
                }
            }
        }
    }

    /// The users of the clients, by dialect.
    pub fn users(&self) -> Vec<(Dialect, String)> {
        self.clients
            .iter()
            .map(|c| (c.dialect, c.user.clone()))
            .collect()
    }

    /// The clients homed on node `index`.
    pub fn users_on(&self, index: usize) -> Vec<String> {
        self.clients
            .iter()
            .filter(|c| c.home == index)
            .map(|c| c.user.clone())
            .collect()
    }

    /// Wait until every client has its first position (or live connection) and every
    /// node counts the connections held open on it.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self
            .clients
            .iter()
            .all(|c| c.seen.ready.load(Ordering::Relaxed))
        {
            let waiting: Vec<String> = self
                .clients
                .iter()
                .filter(|c| !c.seen.ready.load(Ordering::Relaxed))
                .map(|c| format!("{}: {}", c.user, c.seen.last_error.lock().unwrap()))
                .collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "clients not ready: {waiting:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let held = self
                .clients
                .iter()
                .filter(|c| c.home == index && c.dialect.holds_connection())
                .count() as u64;
            loop {
                let (_, stats) = node.get("/v1/stats").await;
                if stats["connections"].as_u64().unwrap_or(0) >= held {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {index} holds fewer than {held} connections: {stats}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Wait until every client has what `expected` says it must receive (or
    /// [`SETTLE`] passes), keep listening a moment for late duplicates, stop the clients
    /// and count.
    pub async fn finish(mut self, name: &str, expected: &Expected) -> Tally {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while tokio::time::Instant::now() < deadline
            && !self.clients.iter().all(|c| {
                let seqs: BTreeSet<u64> = c.seen.seqs.lock().unwrap().iter().copied().collect();
                expected.of(&c.user).is_subset(&seqs)
            })
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.cancel();
        let mut tally = Tally {
            name: name.to_owned(),
            rows: BTreeMap::new(),
            refused: expected.refused.len(),
            logs: self.logs(),
        };
        for client in std::mem::take(&mut self.clients) {
            tally.count(&client, expected);
            client.join().await;
        }
        tally
    }
}

/// What the publishers got back, by `seq`.
#[derive(Default, Debug, Clone)]
pub struct Expected {
    /// Broadcasts (`to: "*"`) answered 200: every client must receive each once.
    pub broadcast: BTreeSet<u64>,
    /// Pushes to one user answered 200: that user's clients must receive each once.
    pub to_user: HashMap<String, BTreeSet<u64>>,
    /// Publishes answered 503 `engine_unavailable`: may be received at most once (a
    /// refusal after the script ran), need not be.
    pub refused: BTreeSet<u64>,
    /// Answers that were neither 200 nor 503 `engine_unavailable`, with what they said.
    pub other: Vec<String>,
}

impl Expected {
    fn of(&self, user: &str) -> BTreeSet<u64> {
        let mut set = self.broadcast.clone();
        if let Some(own) = self.to_user.get(user) {
            set.extend(own);
        }
        set
    }

    /// Record the outcome of publishing `seq` to `to`.
    pub fn record(&mut self, to: &str, seq: u64, outcome: Outcome) {
        match outcome {
            Outcome::Accepted if to == "*" => {
                self.broadcast.insert(seq);
            }
            Outcome::Accepted => {
                self.to_user.entry(to.to_owned()).or_default().insert(seq);
            }
            Outcome::Refused => {
                self.refused.insert(seq);
            }
            Outcome::Other(what) => self.other.push(format!("seq {seq} to {to}: {what}")),
        }
    }
}

/// How a node answered one publish.
#[derive(Debug)]
pub enum Outcome {
    /// 200.
    Accepted,
    /// 503 with `engine_unavailable`.
    Refused,
    /// Anything else.
    Other(String),
}

/// `POST /v1/push` `{"to": to, "data": {"seq": seq}}` to the node whose API is `api`.
pub async fn publish(http: &reqwest::Client, api: SocketAddr, to: &str, seq: u64) -> Outcome {
    let request = http
        .post(format!("http://{api}/v1/push"))
        .json(&json!({"app": APP, "to": to, "event": "e", "data": {"seq": seq}}))
        .send();
    let response = match tokio::time::timeout(Duration::from_secs(15), request).await {
        Err(_) => return Outcome::Other("no answer within 15 s".into()),
        Ok(Err(e)) => return Outcome::Other(format!("request failed: {e}")),
        Ok(Ok(response)) => response,
    };
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        200 => Outcome::Accepted,
        503 if body["error"]["code"] == "engine_unavailable" => Outcome::Refused,
        _ => Outcome::Other(format!("{status} {body}")),
    }
}

/// A publisher that broadcasts `{"seq": N}` every `every` through the nodes in `via`,
/// in turn, until stopped; what each publish got back accumulates in `expected`.
pub struct Publisher {
    /// The outcomes so far.
    pub expected: Arc<Mutex<Expected>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Start publishing seqs from `first` on.
    pub fn start(endpoints: &[Endpoint], via: &[usize], first: u64, every: Duration) -> Self {
        let expected = Arc::new(Mutex::new(Expected::default()));
        let stop = CancellationToken::new();
        let apis: Vec<SocketAddr> = via.iter().map(|&i| endpoints[i].api).collect();
        let task = tokio::spawn({
            let (expected, stop) = (expected.clone(), stop.clone());
            async move {
                let http = crate::util::http();
                let mut seq = first;
                while !stop.is_cancelled() {
                    let api = apis[seq as usize % apis.len()];
                    let outcome = publish(&http, api, "*", seq).await;
                    expected.lock().unwrap().record("*", seq, outcome);
                    seq += 1;
                    tokio::time::sleep(every).await;
                }
            }
        });
        Self {
            expected,
            stop,
            task,
        }
    }

    /// Publishes answered so far, accepted or not.
    pub fn count(&self) -> usize {
        let expected = self.expected.lock().unwrap();
        expected.broadcast.len() + expected.refused.len() + expected.other.len()
    }

    /// Wait until `n` more publishes were answered, within `limit`.
    pub async fn wait_more(&self, n: usize, limit: Duration) {
        let target = self.count() + n;
        let deadline = tokio::time::Instant::now() + limit;
        while self.count() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the publisher made no progress: {:?}",
                self.expected.lock().unwrap().other
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop and hand over what every publish got back.
    pub async fn stop(self) -> Expected {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the publisher stops")
            .expect("the publisher ran");
        let expected = self.expected.lock().unwrap().clone();
        expected
    }
}

/// Lost and duplicated messages per dialect.
pub struct Tally {
    name: String,
    rows: BTreeMap<Dialect, Row>,
    refused: usize,
    logs: String,
}

/// One dialect's counts.
#[derive(Default, Debug)]
pub struct Row {
    /// Clients.
    pub clients: usize,
    /// Messages received (duplicates included).
    pub received: usize,
    /// Accepted messages a client never received.
    pub lost: usize,
    /// Messages a client received more than once.
    pub duplicated: usize,
    /// Messages nobody published to the client.
    pub unexpected: usize,
    /// Refused publishes that arrived anyway.
    pub refused_delivered: usize,
    /// Frames without a `seq`.
    pub malformed: usize,
    /// Connections that ended and were resumed.
    pub reconnects: usize,
    /// Resumes answered `recovered: false`.
    pub not_recovered: usize,
    /// Example of a client's loss, for the failure message.
    pub example: String,
}

impl Tally {
    fn count(&mut self, client: &ClusterClient, expected: &Expected) {
        let seqs = client.seen.seqs.lock().unwrap().clone();
        let got: BTreeSet<u64> = seqs.iter().copied().collect();
        let want = expected.of(&client.user);
        let row = self.rows.entry(client.dialect).or_default();
        row.clients += 1;
        row.received += seqs.len();
        let lost: Vec<u64> = want.difference(&got).copied().collect();
        row.lost += lost.len();
        row.duplicated += seqs.len() - got.len();
        let extra: BTreeSet<u64> = got.difference(&want).copied().collect();
        row.refused_delivered += extra.intersection(&expected.refused).count();
        row.unexpected += extra.difference(&expected.refused).count();
        row.malformed += client.seen.malformed.load(Ordering::Relaxed);
        row.reconnects += client.seen.reconnects.load(Ordering::Relaxed);
        row.not_recovered += client.seen.not_recovered.load(Ordering::Relaxed);
        if row.example.is_empty() && (!lost.is_empty() || seqs.len() != got.len()) {
            row.example = format!(
                "{} (home node {}, now node {}, last error {:?}): lost {:?}, received {:?}",
                client.user,
                client.home,
                client.seen.node.load(Ordering::Relaxed),
                client.seen.last_error.lock().unwrap(),
                &lost[..lost.len().min(20)],
                &seqs[seqs.len().saturating_sub(40)..]
            );
        }
    }

    /// The counts of one dialect.
    pub fn row(&self, dialect: Dialect) -> &Row {
        &self.rows[&dialect]
    }

    /// Print the table (straight to the terminal: it must be seen even when the test
    /// passes) and assert lost, duplicated, unexpected and malformed are all zero for
    /// every dialect; `resuming` also asserts no resume was refused.
    pub fn assert_clean(&self, resuming: bool) {
        use std::io::Write;
        let mut table = format!(
            "\n{}: publishes refused (503 engine_unavailable) {}\n\
             {:<10} {:>7} {:>8} {:>5} {:>10} {:>10} {:>17} {:>10} {:>13}\n",
            self.name,
            self.refused,
            "dialect",
            "clients",
            "received",
            "lost",
            "duplicated",
            "unexpected",
            "refused_delivered",
            "reconnects",
            "not_recovered"
        );
        for (dialect, row) in &self.rows {
            table.push_str(&format!(
                "{:<10} {:>7} {:>8} {:>5} {:>10} {:>10} {:>17} {:>10} {:>13}\n",
                format!("{dialect:?}"),
                row.clients,
                row.received,
                row.lost,
                row.duplicated,
                row.unexpected,
                row.refused_delivered,
                row.reconnects,
                row.not_recovered
            ));
        }
        let _ = std::io::stderr().lock().write_all(table.as_bytes());
        let dirty: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, r)| {
                r.lost + r.duplicated + r.unexpected + r.malformed > 0
                    || (resuming && r.not_recovered > 0)
            })
            .map(|(d, r)| format!("{d:?}: {r:?}"))
            .collect();
        assert!(
            dirty.is_empty(),
            "{table}\n{}\n{}",
            dirty.join("\n"),
            self.logs
        );
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
