//! A damaged timer store is never half-used: timers and cron jobs are written through a
//! real server, the server is stopped, `timers.redb` is damaged on disk (random bytes
//! over live records, emptied), and then `serve`, `pushhub store check` and `pushhub
//! store repair` are run as an operator would. And a file damaged under a running server
//! is answered with `store_damaged`, logged once, and never retried in a loop.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::backend::{Answer, Backend};
use crate::util::{TestServer, WAIT};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The path a timer's callback goes to: unique per timer, so its record can be found in
/// the file.
fn marker(i: usize) -> String {
    format!("/t/marker-{i:05}")
}

/// Create `n` timers due at `due_ms`, calling `backend` at [`marker`] paths with a 1 KiB
/// body; their ids by number.
async fn create_timers(server: &TestServer, backend: &Backend, n: usize, due_ms: u64) -> Vec<u64> {
    let client = crate::util::http();
    let api = server.api_url("/v1/timers");
    let created: HashMap<usize, u64> = futures_util::stream::iter(0..n)
        .map(|i| {
            let request = client
                .post(&api)
                .json(&json!({
                    "app": "demo",
                    "url": backend.url(&marker(i)),
                    "at": due_ms,
                    "body": "x".repeat(1024),
                }))
                .send();
            async move {
                let response = request.await.expect("create");
                assert_eq!(response.status(), 201);
                let timer: Value = response.json().await.expect("json");
                (i, timer["id"].as_u64().unwrap())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    (0..n).map(|i| created[&i]).collect()
}

/// A cron job that will not run during the test.
async fn create_job(server: &TestServer, backend: &Backend) {
    let response = crate::util::http()
        .put(server.api_url("/v1/cron/yearly"))
        .json(&json!({"app": "demo", "schedule": "0 0 1 1 *", "url": backend.url("/cron")}))
        .send()
        .await
        .expect("put job");
    assert_eq!(response.status(), 201);
}

/// Every 4 KiB page of `path` holding one of `texts` (live records, and stale copies that
/// earlier commits left in free pages), overwritten with random bytes.
fn scribble_over(path: &Path, texts: &[String]) {
    use std::io::{Seek, SeekFrom, Write};
    let bytes = std::fs::read(path).unwrap();
    let mut pages = BTreeSet::new();
    for text in texts {
        let holding: Vec<u64> = bytes
            .windows(text.len())
            .enumerate()
            .filter(|(_, w)| *w == text.as_bytes())
            .map(|(at, _)| at as u64 / 4096)
            .collect();
        assert!(!holding.is_empty(), "{text} is in the file");
        pages.extend(holding);
    }
    let mut rng = fastrand::Rng::with_seed(14);
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for page in pages {
        let noise: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
        file.seek(SeekFrom::Start(page * 4096)).unwrap();
        file.write_all(&noise).unwrap();
    }
    file.sync_all().unwrap();
}

/// Run `pushhub ARGS`, killed after [`WAIT`] (a server that starts never exits itself).
fn pushhub(args: &[&str], data: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushhub"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pushhub");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `serve` on `data` exits with an error naming the file and what to do; its stderr.
fn refused_to_serve(data: &Path) -> String {
    let output = pushhub(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ],
        data,
    );
    let stderr = text(&output.stderr);
    assert!(
        !output.status.success() && output.status.code().is_some(),
        "serve did not refuse the damaged store: {:?}\n{stderr}",
        output.status
    );
    let file = data.join("timers.redb").display().to_string();
    assert!(
        stderr.contains(&format!("the timer store {file} is damaged")),
        "{stderr}"
    );
    assert!(stderr.contains("pushhub store repair"), "{stderr}");
    assert!(!stderr.contains("' panicked at"), "{stderr}");
    stderr
}

#[tokio::test]
async fn random_bytes_over_live_records_make_serve_refuse_and_repair_brings_back_the_rest() {
    const TIMERS: usize = 40;
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    // Due soon, so that after the repair the recovered ones fire at once (overdue).
    let ids = create_timers(&server, &backend, TIMERS, unix_ms() + 5000).await;
    create_job(&server, &backend).await;
    let mut server = server;
    assert!(server.terminate().success());
    let data = server.crash();
    let damaged_id = ids[7];
    scribble_over(&data.path().join("timers.redb"), &[marker(7)]);

    refused_to_serve(data.path());

    let check = pushhub(&["store", "check"], data.path());
    let report = text(&check.stdout);
    assert_eq!(
        check.status.code(),
        Some(1),
        "{report}{}",
        text(&check.stderr)
    );
    assert!(report.contains("DAMAGED"), "{report}");
    assert!(
        report.contains(&format!(
            "closed cleanly holding {TIMERS} timer(s) and 1 cron job(s)"
        )),
        "{report}"
    );

    let repair = pushhub(&["store", "repair"], data.path());
    let report = text(&repair.stdout);
    assert_eq!(
        repair.status.code(),
        Some(0),
        "{report}{}",
        text(&repair.stderr)
    );
    assert!(report.contains("kept the damaged file as"), "{report}");
    let lost: Vec<u64> = report
        .lines()
        .find_map(|l| l.strip_prefix("lost timers: "))
        .and_then(|l| {
            l.split_once("(ids ")
                .map(|(_, ids)| ids.trim_end_matches(')'))
        })
        .expect("lost ids in the report")
        .split(", ")
        .map(|id| id.parse().unwrap())
        .collect();
    assert!(lost.contains(&damaged_id), "{report}");
    let recovered = TIMERS - lost.len();
    assert!(
        report.contains(&format!("recovered: {recovered} timer(s)")),
        "{report}"
    );
    assert!(report.contains("1 cron job(s)"), "{report}");
    let kept = std::fs::read_dir(data.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("timers.redb.damaged-")
        })
        .count();
    assert_eq!(kept, 1, "the damaged file is kept");
    let check = pushhub(&["store", "check"], data.path());
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stdout));

    let server = TestServer::start_in(data, &[], &[]);
    let deadline = Instant::now() + WAIT;
    while backend.seen().len() < recovered {
        assert!(
            Instant::now() < deadline,
            "{} of {recovered} fired",
            backend.seen().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fired: Vec<u64> = backend
        .seen()
        .iter()
        .map(|r| {
            r.headers["x-pushhub-timer-id"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let expected: BTreeSet<u64> = ids
        .iter()
        .copied()
        .filter(|id| !lost.contains(id))
        .collect();
    assert_eq!(fired.len(), recovered, "each recovered timer fires once");
    assert_eq!(fired.into_iter().collect::<BTreeSet<_>>(), expected);
    let (status, _) = server.get(&format!("/v1/timers/{damaged_id}")).await;
    assert_eq!(status, 404, "a lost timer is gone, not half there");
    let (status, jobs) = server.get("/v1/cron?app=demo").await;
    assert_eq!(status, 200, "{jobs}");
    assert_eq!(jobs["jobs"][0]["name"], "yearly", "{jobs}");
}

#[tokio::test]
async fn an_emptied_store_is_refused_instead_of_starting_empty() {
    let server = TestServer::start();
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    create_timers(&server, &backend, 5, unix_ms() + 3_600_000).await;
    create_job(&server, &backend).await;
    let mut server = server;
    assert!(server.terminate().success());
    let data = server.crash();
    std::fs::File::create(data.path().join("timers.redb")).unwrap();

    let stderr = refused_to_serve(data.path());
    assert!(
        stderr.contains(
            "empty (0 bytes), but timers.redb.state says it held 5 timer(s) and 1 cron job(s)"
        ),
        "{stderr}"
    );
    let check = pushhub(&["store", "check"], data.path());
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stdout));

    let repair = pushhub(&["store", "repair"], data.path());
    let report = text(&repair.stdout);
    assert_eq!(repair.status.code(), Some(0), "{report}");
    assert!(report.contains("recovered: 0 timer(s)"), "{report}");
    assert!(
        report.contains(
            "expected (timers.redb.state, at its last clean close): 5 timer(s) and 1 cron job(s)"
        ),
        "{report}"
    );
    let server = TestServer::start_in(data, &[], &[]);
    assert_eq!(server.get("/v1/timers?app=demo").await.0, 200);
}

#[tokio::test]
async fn a_store_damaged_under_a_running_server_is_answered_store_damaged_logged_once_and_never_retried(
) {
    const TIMERS: usize = 2000;
    // A page cache far smaller than the file, so reads go to the disk.
    let cache = [("PUSHHUB_TIMERS_STORE_CACHE_MB", "1")];
    let server = TestServer::start_with(&[], &cache);
    let backend = Backend::start(|_| Answer::new(200, "ok")).await;
    let ids = create_timers(&server, &backend, TIMERS, unix_ms() + 3_600_000).await;
    let mut server = server;
    assert!(server.terminate().success());
    let data = server.crash();
    let server = TestServer::start_in(data, &[], &cache);
    // Timers due now: the scheduler reads them from the damaged file.
    // Due after the damage is found (generous, for a busy machine): the scheduler then
    // reads them from a store it no longer uses.
    let soon_due = unix_ms() + 8000;
    let soon = create_timers(&server, &backend, 5, soon_due).await;
    // The records of timers 0 to 199: the first pages the server read at start, so the
    // first its small cache let go of.
    let early = ["/t/marker-000".to_owned(), "/t/marker-001".to_owned()];
    scribble_over(&server.data_dir().join("timers.redb"), &early);

    for _ in 0..20 {
        let (status, body) = server.get(&format!("/v1/timers/{}", ids[3])).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "store_damaged", "{body}");
    }
    let (status, body) = server.get("/v1/timers?app=demo").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("store_damaged"))
    );
    assert!(
        unix_ms() < soon_due,
        "the damage was found only after the timers came due: the machine is too busy for this test"
    );
    tokio::time::sleep(Duration::from_millis(soon_due + 3000 - unix_ms())).await;
    let (_, stats) = server.get("/v1/stats").await;
    let timers = &stats["timers"];
    assert_eq!(timers["store_damaged"], true, "{stats}");
    assert!(
        timers["store_damage_refusals"].as_u64().unwrap() >= 21,
        "{stats}"
    );
    let errors = timers["store_errors"].as_u64().unwrap();
    assert!(
        errors <= soon.len() as u64,
        "the due timers are not retried: {stats}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, later) = server.get("/v1/stats").await;
    assert_eq!(
        later["timers"]["store_errors"], errors,
        "nothing retries: {later}"
    );
    let log = server.log();
    assert_eq!(
        log.matches("the timer store file is damaged").count(),
        1,
        "logged once:\n{log}"
    );
    assert!(
        !log.contains("' panicked at"),
        "no panic message per read:\n{log}"
    );
    assert!(
        backend.seen().is_empty(),
        "nothing fired from a damaged store"
    );
}
