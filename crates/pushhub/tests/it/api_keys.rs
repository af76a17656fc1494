//! API keys: each app's backend uses its own key; no key, a wrong key or another app's key
//! is refused with a specific error.

use serde_json::json;

use crate::util::TestServer;

const CONFIG: &str = r#"
[apps.wms]
auth = "none"
api_keys = ["wms-key-0123456789", "wms-key-rotated-01"]

[apps.crm]
auth = "none"
api_keys = ["crm-key-0123456789"]

[apps.open]
auth = "none"
"#;

const ADMIN_KEY: &str = "admin-key-0123456789";

async fn push(server: &TestServer, app: &str, key: Option<&str>) -> (u16, String) {
    let mut request = crate::util::http()
        .post(server.api_url("/v1/push"))
        .json(&json!({"app": app, "to": "*", "data": 1}));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn each_app_answers_only_to_its_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let server = TestServer::start_with(&["--config", path.to_str().unwrap()], &[]);

    assert_eq!(
        push(&server, "wms", Some("wms-key-0123456789")).await,
        (200, String::new())
    );
    assert_eq!(
        push(&server, "wms", Some("wms-key-rotated-01")).await,
        (200, String::new())
    );
    assert_eq!(
        push(&server, "wms", None).await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        push(&server, "wms", Some("crm-key-0123456789")).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        push(&server, "wms", Some("guess")).await,
        (401, "invalid_api_key".into())
    );
    assert_eq!(push(&server, "open", None).await, (200, String::new()));

    let client = crate::util::http();
    let jd = client
        .get(server.api_url("/push?app=wms&user=1&msg=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(jd.status(), 401);
    let jd = client
        .get(server.api_url("/getUsers?app=wms"))
        .bearer_auth("wms-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(jd.status(), 200);
    let users = client
        .get(server.api_url("/v1/apps/crm/users"))
        .bearer_auth("wms-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 403);
    let stats = client
        .get(server.api_url("/v1/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 401);
    let stats = client
        .get(server.api_url("/v1/stats"))
        .bearer_auth("crm-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    assert_eq!(server.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn an_admin_key_acts_for_every_app() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.toml");
    std::fs::write(&path, format!("admin_keys = [\"{ADMIN_KEY}\"]\n{CONFIG}")).unwrap();
    let server = TestServer::start_with(&["--config", path.to_str().unwrap()], &[]);

    for app in ["wms", "crm", "open"] {
        assert_eq!(
            push(&server, app, Some(ADMIN_KEY)).await,
            (200, String::new()),
            "{app}"
        );
    }
    let client = crate::util::http();
    for path in ["/v1/apps/crm/users", "/v1/stats", "/getUsers?app=wms"] {
        let answer = client
            .get(server.api_url(path))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    assert_eq!(
        push(&server, "wms", Some("admin-key-012345678X")).await,
        (401, "invalid_api_key".into())
    );
}

#[test]
fn admin_keys_come_from_the_environment_too() {
    let server = TestServer::start_with(&[], &[("PUSHHUB_ADMIN_KEYS", ADMIN_KEY)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let answer = crate::util::http()
            .get(server.api_url("/v1/stats"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    });
}
