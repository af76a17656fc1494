//! The demo page on the client listener (`/demo`, the SDK at `/demo/pushhub.js`), and the
//! CORS allowance that lets that page, and only it, call a loopback API.

use reqwest::header::HeaderMap;
use reqwest::Method;

use crate::util::TestServer;

const SDK: &str = include_str!("../../../../clients/js/src/pushhub.js");

async fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let mut request = crate::util::http().request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn the_page_and_the_sdk_are_served_from_the_binary() {
    let server = TestServer::start();
    let base = format!("http://{}", server.client);
    let (status, headers, body) = request(Method::GET, &format!("{base}/demo"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    let csp = header(&headers, "content-security-policy").expect("csp");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        body.contains(r#"<script type="module" src="/demo/demo.js">"#),
        "{body}"
    );

    let (status, headers, body) =
        request(Method::GET, &format!("{base}/demo/pushhub.js"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(body, SDK, "the demo runs the SDK itself");

    for (path, kind) in [
        ("/demo/demo.js", "text/javascript"),
        ("/demo/base.css", "text/css"),
        ("/demo/demo.css", "text/css"),
    ] {
        let (status, headers, _) = request(Method::GET, &format!("{base}{path}"), &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    let (status, _, _) = request(Method::GET, &format!("{base}/demo/nope.js"), &[]).await;
    assert_eq!(status, 404);
    // Not on the API listener.
    let (status, _, _) = request(Method::GET, &server.api_url("/demo"), &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_demo_origin_may_call_a_loopback_api() {
    let server = TestServer::start();
    let push = server.api_url("/v1/push");
    let body_headers = [("content-type", "application/json")];
    for origin in [
        format!("http://{}", server.client),
        format!("http://localhost:{}", server.client.port()),
    ] {
        let preflight = [
            ("origin", origin.as_str()),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,authorization",
            ),
        ];
        let (status, headers, _) = request(Method::OPTIONS, &push, &preflight).await;
        assert_eq!(status, 204, "{origin}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(origin.as_str())
        );
        assert_eq!(
            header(&headers, "access-control-allow-headers"),
            Some("authorization, content-type")
        );
        assert!(header(&headers, "access-control-allow-credentials").is_none());
        assert_eq!(header(&headers, "vary"), Some("origin"));

        let mut request_headers = body_headers.to_vec();
        request_headers.push(("origin", origin.as_str()));
        let mut builder = crate::util::http().post(&push);
        for (name, value) in &request_headers {
            builder = builder.header(*name, *value);
        }
        let response = builder
            .body(r#"{"app":"demo","to":"100","data":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(response.headers(), "access-control-allow-origin"),
            Some(origin.as_str())
        );
        let users = server.api_url("/v1/apps/demo/users");
        let (status, headers, _) =
            request(Method::GET, &users, &[("origin", origin.as_str())]).await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(origin.as_str())
        );
    }
}

#[tokio::test]
async fn other_web_pages_may_not_call_the_api() {
    let server = TestServer::start();
    let demo_origin = format!("http://{}", server.client);
    let cases = [
        ("http://evil.example".to_owned(), "/v1/push"),
        ("null".to_owned(), "/push"),
        (format!("http://{}", server.api), "/v1/push"),
        (
            format!("http://{}:{}", "192.168.1.2", server.client.port()),
            "/v1/push",
        ),
        (demo_origin.clone(), "/v1/timers"),
        (demo_origin.clone(), "/push"),
    ];
    for (origin, path) in cases {
        let url = server.api_url(path);
        let preflight = [
            ("origin", origin.as_str()),
            ("access-control-request-method", "POST"),
        ];
        let (status, headers, body) = request(Method::OPTIONS, &url, &preflight).await;
        assert_eq!(status, 403, "{origin} {path}");
        assert!(body.contains("\"cross_origin\""), "{body}");
        assert!(
            header(&headers, "access-control-allow-origin").is_none(),
            "{origin} {path}"
        );
    }
    // A "simple" cross-site POST (no preflight) pushes nothing.
    let (_client, _) = server.native("demo", "1").await;
    let response = crate::util::http()
        .post(server.api_url("/v1/push"))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body(r#"{"app":"demo","to":"*","data":"csrf"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, stats) = server.get("/v1/stats").await;
    assert_eq!(stats["messages_published"], 0, "{stats}");
}
