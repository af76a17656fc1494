//! The pages embedded in the binary (the demo page on the client listener, the admin
//! dashboard on the API listener): each page's files served from memory with one set of
//! security headers, and the stylesheet both pages share. No files on disk, no CDN, no
//! build step.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The look the demo page and the dashboard share (palette, header, cards, forms,
/// buttons), served beside each page's files as `base.css`.
pub const BASE_CSS: &str = include_str!("../../../clients/js/demo/base.css");

/// One file of a page: the path it is served at and its text.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// The request path (`/demo/demo.js`).
    pub path: &'static str,
    /// The file's text, embedded with `include_str!`.
    pub body: &'static str,
}

/// Routes that serve each of `assets` at its path, under the page's content security
/// policy `csp`.
pub fn routes<S: Clone + Send + Sync + 'static>(
    assets: &'static [Asset],
    csp: &'static str,
) -> Router<S> {
    assets.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move || async move { respond(StatusCode::OK, asset.path, csp, asset.body) }),
        )
    })
}

/// A page's file (named by `path`, whose extension gives its content type) as a response:
/// never cached stale, never sniffed, never framed, no referrer, under `csp`.
pub fn respond(
    status: StatusCode,
    path: &str,
    csp: &'static str,
    body: impl Into<Body>,
) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, content_type(path)),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        body.into(),
    )
        .into_response()
}

/// The content type of a page's file: scripts and stylesheets by their extension, pages
/// otherwise.
fn content_type(path: &str) -> &'static str {
    if path.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/html; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("/demo/pushhub.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/admin/base.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/admin/"), "text/html; charset=utf-8");
        assert_eq!(content_type("/demo"), "text/html; charset=utf-8");
    }
}
