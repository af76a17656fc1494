//! The admin dashboard, `GET /admin` on the API listener: one page of plain HTML, CSS and
//! JavaScript embedded in the binary (no files, no CDN, no build step), in the demo page's
//! visual language. The page holds no data and no credential: it asks the operator for an
//! admin key, keeps it in the tab's `sessionStorage`, and calls the API with it as a
//! bearer key, so every number it shows passes the API's own checks.
//!
//! On an API reachable beyond this host with no admin key configured, nobody could sign
//! in, and the page says so instead, with how to configure a key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::ApiState;
use crate::pages::{self, Asset};

const INDEX: &str = include_str!("../../admin/index.html");

/// The dashboard's script and stylesheets (the page itself is [`page`]'s answer).
static ASSETS: [Asset; 3] = [
    Asset {
        path: "/admin/admin.js",
        body: include_str!("../../admin/admin.js"),
    },
    Asset {
        path: "/admin/base.css",
        body: pages::BASE_CSS,
    },
    Asset {
        path: "/admin/admin.css",
        body: include_str!("../../admin/admin.css"),
    },
];

/// Scripts, styles and API calls from the page's own origin only; no framing (the page
/// carries buttons that disconnect users and cancel timers).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes, for the API router.
pub(super) fn routes() -> Router<ApiState> {
    pages::routes(&ASSETS, CSP)
        .route("/admin", get(page))
        .route("/admin/", get(page))
}

async fn page(State(state): State<ApiState>) -> Response {
    match state.keys.load().admin_disabled() {
        None => pages::respond(StatusCode::OK, "/admin", CSP, INDEX),
        Some(why) => pages::respond(StatusCode::FORBIDDEN, "/admin", CSP, disabled_page(why)),
    }
}

/// The page shown instead of the dashboard when no admin key could open it.
fn disabled_page(why: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>pushhub admin: no admin key configured</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/admin/base.css">
  <link rel="stylesheet" href="/admin/admin.css">
</head>
<body>
  <header><div class="brand"><span class="logo">◉</span> pushhub <span class="muted">admin</span></div></header>
  <main class="narrow">
    <section class="card" id="disabled">
      <h2>The dashboard is off: no admin key is configured</h2>
      <p>{why}, so the dashboard and the other server-wide operations need an admin key, and this server has none.</p>
      <p>Add one (16 or more characters) to the configuration file and restart:</p>
      <pre>admin_keys = ["a-long-random-admin-key"]</pre>
      <p>or set <code>PUSHHUB_ADMIN_KEYS=a-long-random-admin-key</code>. Then open this page again and sign in with that key.
      Generate one with <code>openssl rand -hex 24</code>. See docs/operations.md, "Admin dashboard".</p>
    </section>
  </main>
</body>
</html>
"#
    )
}
