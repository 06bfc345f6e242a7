//! `GET /console`: the browser console (`clients/typescript/console`),
//! embedded in the binary at build time (`build.rs`), and, in `--dev`
//! only, `GET /console/dev-token`, which mints a development token for it.
//!
//! The page needs no token to load (it asks for one) and nothing but the
//! gateway: its script and style sheet are served beside it, under a
//! Content-Security-Policy that allows nothing else (no inline script, no
//! other origin except WebSockets). The page learns whether the gateway is
//! in `--dev` from the page itself: its `switchboard-dev` meta tag, which
//! this module fills in, so that it asks for a development token only
//! where there is one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::channel::Id;
use crate::token::{dev_claims, Grant, Role, Signer};

/// The page, as `build-console.mjs` wrote it (or a page saying it was not
/// built, and why).
pub const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/console-index.html"));
/// The page's script: the SDK and the console, bundled.
pub const SCRIPT: &str = include_str!(concat!(env!("OUT_DIR"), "/console-console.js"));
/// The page's style sheet.
pub const STYLE: &str = include_str!(concat!(env!("OUT_DIR"), "/console-console.css"));
/// Whether the real console was built into this binary.
pub const BUILT: bool = matches!(env!("SWITCHBOARD_CONSOLE_BUILT").as_bytes(), b"true");
/// Why it was not (empty when it was): Node.js missing or too old, or its
/// build failed, as `build.rs` found.
pub const MISSING: &str = env!("SWITCHBOARD_CONSOLE_MISSING");

/// Logs a warning when this binary has no console: `serve` calls it at
/// startup, so a binary built without Node says so where it runs, not only
/// in the build's output.
pub fn warn_if_not_built() {
    if !BUILT {
        tracing::warn!(
            why = MISSING,
            "this binary has no console: GET /console serves a page saying so; \
             build again with Node.js >= 20 and npm on PATH (./x run, or cargo build)"
        );
    }
}

/// The page's `--dev` marker as built (`false`), and as served by a
/// gateway in `--dev`.
pub const DEV_MARKER: &str = r#"<meta name="switchboard-dev" content="false">"#;
const DEV_MARKER_ON: &str = r#"<meta name="switchboard-dev" content="true">"#;

/// What the console's responses allow a browser to load and connect to:
/// its own script and style sheet, requests to the gateway, WebSockets.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// How long a development token from `/console/dev-token` is valid.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// `/console`, `/console/`, its script and style sheet, and the dev token,
/// minted with `dev_keys`: a signer with the gateway's first secret in
/// `--dev`, else `None` (and no dev token).
pub fn routes(
    dev_keys: Option<Arc<Signer>>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // Each path before its method: another method on one of these paths is
    // a 405 (an `OPTIONS`, a preflight), and on any other path a 404.
    let get_or_head = || warp::get().or(warp::head()).unify();
    // Made once: the page says whether to ask for a development token.
    let body = match dev_keys {
        Some(_) => Bytes::from(PAGE.replacen(DEV_MARKER, DEV_MARKER_ON, 1)),
        None => Bytes::from_static(PAGE.as_bytes()),
    };
    let page = warp::path("console")
        .and(warp::path::end())
        .and(get_or_head())
        .map(move || asset(body.clone(), "text/html; charset=utf-8"));
    let script = warp::path!("console" / "console.js")
        .and(get_or_head())
        .map(|| asset(SCRIPT, "text/javascript; charset=utf-8"));
    let style = warp::path!("console" / "console.css")
        .and(get_or_head())
        .map(|| asset(STYLE, "text/css; charset=utf-8"));
    let files = page.or(script).unify().or(style).unify();
    let dev_token = warp::path!("console" / "dev-token")
        .and(warp::get())
        .and(warp::any().map(move || dev_keys.clone()))
        .and_then(dev_token);
    files.or(dev_token).unify()
}

/// One of the gateway's own files for a browser (the console's, the home
/// page, the icon), under [`CONTENT_SECURITY_POLICY`].
pub(crate) fn asset(body: impl Into<Bytes>, content_type: &'static str) -> Response {
    let mut response = Response::new(body.into().into());
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // The files change with the binary: always revalidated.
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// A token for every channel, with every role, for a fresh user; only in
/// `--dev` (anyone who can reach the gateway can get one), else no route.
async fn dev_token(dev_keys: Option<Arc<Signer>>) -> Result<Response, Rejection> {
    let Some(keys) = dev_keys else {
        return Err(warp::reject::not_found());
    };
    let sub = Id::new_v4();
    let claims = dev_claims(
        sub,
        DEV_TOKEN_TTL,
        Some("console".to_string()),
        Grant::All,
        vec![Role::Publisher, Role::Auditor, Role::Admin],
    );
    let mut response = match keys.mint(&claims) {
        Ok(token) => warp::reply::json(&json!({
            "token": token,
            "user_id": sub.to_string(),
            "exp": claims.exp,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot mint a development token");
            let body = json!({"error": {"code": "internal", "message": e.to_string()}});
            warp::reply::with_status(warp::reply::json(&body), StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    };
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}
