//! The demo page, `GET /demo` on the client listener: a page that drives the JavaScript
//! SDK (`clients/js`) with forms, embedded in the binary, so it needs no files, no CDN and no
//! build step. `/demo/pushhub.js` is the SDK itself, byte for byte.
//!
//! The page's push panel calls the API listener, which is another origin (another port).
//! [`cors`] lets exactly that page do so, and only while the API listens on
//! loopback: the one case where the browser showing the page already runs on the machine
//! whose API it calls. Nothing here knows about apps, users or the hub.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

use crate::http_error::ApiError;
use crate::pages::{self, Asset};

const INDEX: &str = include_str!("../../../../clients/js/demo/index.html");

/// The page, its script and stylesheets, and the SDK.
static ASSETS: [Asset; 6] = [
    Asset {
        path: "/demo",
        body: INDEX,
    },
    Asset {
        path: "/demo/",
        body: INDEX,
    },
    Asset {
        path: "/demo/demo.js",
        body: include_str!("../../../../clients/js/demo/demo.js"),
    },
    Asset {
        path: "/demo/base.css",
        body: pages::BASE_CSS,
    },
    Asset {
        path: "/demo/demo.css",
        body: include_str!("../../../../clients/js/demo/demo.css"),
    },
    Asset {
        path: "/demo/pushhub.js",
        body: include_str!("../../../../clients/js/src/pushhub.js"),
    },
];

/// Scripts and styles from the page's own origin only (the page shows pushed data with
/// `textContent`; this is the second line of defence); connections to any pushhub
/// transport or API; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The demo's routes, for the client listener's router.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    pages::routes(&ASSETS, CSP)
}

/// API paths the demo's push panel calls: push, kick, online users and rooms, stats.
fn demo_path(path: &str) -> bool {
    matches!(path, "/v1/push" | "/v1/disconnect" | "/v1/stats") || path.starts_with("/v1/apps/")
}

/// The origins the demo page has when a browser on this machine opens it from the client
/// listener on `client` (by IP or as `localhost`, plain or TLS); `None` unless `api`, the
/// API listener, is on loopback.
fn demo_origins(client: SocketAddr, api: SocketAddr) -> Option<Vec<HeaderValue>> {
    if !api.ip().is_loopback() {
        return None;
    }
    let port = client.port();
    let mut origins = Vec::new();
    for (scheme, default_port) in [("http", 80), ("https", 443)] {
        for host in ["127.0.0.1", "localhost", "[::1]"] {
            origins.push(format!("{scheme}://{host}:{port}"));
            if port == default_port {
                origins.push(format!("{scheme}://{host}"));
            }
        }
    }
    Some(
        origins
            .into_iter()
            .filter_map(|o| HeaderValue::from_str(&o).ok())
            .collect(),
    )
}

/// The origins the demo page on the `client` listener may call the API listener on
/// `api` from, for [`cors`]: `None` (no CORS at all) unless the API listens on loopback.
pub fn allowed_origins(client: &TcpListener, api: &TcpListener) -> Option<Arc<[HeaderValue]>> {
    let (Ok(client), Ok(api)) = (client.local_addr(), api.local_addr()) else {
        return None;
    };
    demo_origins(client, api).map(Into::into)
}

/// What the demo's CORS rule makes of one API request.
#[derive(Debug)]
pub enum Cors {
    /// Not a cross-origin request (no `Origin`, or the dashboard's own): served as it is.
    Pass,
    /// The demo page calling one of its paths: served, the page's origin allowed in the
    /// answer (with [`allow`]).
    Allow(HeaderValue),
    /// Answered without serving: a refused cross-origin request or the demo's preflight.
    Answer(Response),
}

/// Let the demo page on the client listener call the API: CORS for the page's own
/// loopback `origins` (never `*`, never credentials) on the paths its push panel uses.
/// The API's own checks (API keys) are unchanged.
///
/// Requests of the API listener's own pages (the admin dashboard) pass as they are. Any
/// other request from a web page (one with an `Origin` header) is refused with 403
/// `cross_origin`: a loopback API serves apps without keys, and a page on any site could
/// otherwise make a visiting developer's browser push through it with a "simple" request
/// (a form or `text/plain` POST needs no preflight). Backends send no `Origin`.
pub fn cors(origins: &[HeaderValue], request: &Request) -> Cors {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Cors::Pass;
    };
    if same_origin(request.headers()) {
        return Cors::Pass;
    }
    if !(origins.contains(origin) && demo_path(request.uri().path())) {
        return Cors::Answer(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "the API does not take requests from web pages (only the demo page may call it): call it from your backend",
            )
            .into_response(),
        );
    }
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !preflight {
        return Cors::Allow(origin.clone());
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    allow(headers, origin.clone());
    Cors::Answer(response)
}

/// A request the browser made for a page of the API listener's own origin: the admin
/// dashboard (`/admin`), the only page that origin serves. Browsers set `Sec-Fetch-Site`
/// themselves and no page can forge it, so a page on another site never passes as this.
fn same_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"same-origin")
}

/// Allow `origin` in an answer to the demo page.
pub fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_loopback_api_lets_the_demo_in() {
        assert!(demo_origins(addr("127.0.0.1:8081"), addr("0.0.0.0:8082")).is_none());
        assert!(demo_origins(addr("127.0.0.1:8081"), addr("10.1.2.3:8082")).is_none());
        let origins = demo_origins(addr("0.0.0.0:8081"), addr("[::1]:8082")).unwrap();
        let texts: Vec<_> = origins.iter().map(|o| o.to_str().unwrap()).collect();
        assert!(texts.contains(&"http://127.0.0.1:8081"));
        assert!(texts.contains(&"http://localhost:8081"));
        assert!(texts.contains(&"https://[::1]:8081"));
        assert!(!texts
            .iter()
            .any(|o| o.ends_with(":8082") || !o.contains(":8081")));
    }

    #[test]
    fn default_ports_have_origins_without_a_port() {
        let origins = demo_origins(addr("127.0.0.1:443"), addr("127.0.0.1:8082")).unwrap();
        assert!(origins.iter().any(|o| o == "https://localhost"));
        assert!(!origins.iter().any(|o| o == "http://localhost"));
    }

    #[test]
    fn only_the_panels_paths() {
        for path in [
            "/v1/push",
            "/v1/disconnect",
            "/v1/stats",
            "/v1/apps/demo/users",
        ] {
            assert!(demo_path(path), "{path}");
        }
        for path in ["/push", "/v1/timers", "/access", "/metrics", "/v1/pushx"] {
            assert!(!demo_path(path), "{path}");
        }
    }
}
