//! `GET /`: the gateway's home page, for a person who opens its address in
//! a browser: its name and version, and where to go from there (the
//! console, the WebSocket, the health and metrics routes, the docs). And the
//! icon that page and the console show, at `/favicon.svg` and at
//! `/favicon.ico`, where browsers look for one by default.
//!
//! Both are served like the console's files (`console::asset`):
//! no script at all, under the same Content-Security-Policy. Only `/` itself
//! is the page: any other unknown path stays a JSON 404.

use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::console::asset;

/// The page: static but for the version, which is the binary's.
pub const PAGE: &str = concat!(
    r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>switchboard "#,
    env!("CARGO_PKG_VERSION"),
    r#"</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
</head>
<body>
<h1>switchboard <small>"#,
    env!("CARGO_PKG_VERSION"),
    r#"</small></h1>
<p>"#,
    env!("CARGO_PKG_DESCRIPTION"),
    r#".</p>
<ul>
<li><a href="/console">/console</a>: the browser console: connect with a token, subscribe to channels, watch events live, publish.</li>
<li><code>/v1/ws</code>: the WebSocket, on this address (<code>ws://</code>, or <code>wss://</code> behind TLS), with the token as <code>?token=</code>.</li>
<li><a href="/healthz">/healthz</a>: whether the process is alive.</li>
<li><a href="/readyz">/readyz</a>: whether NATS and the stream answer.</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics (on the metrics address instead, when the gateway has one).</li>
</ul>
<p>The documentation is in the gateway's source repository: <code>README.md</code>
(running it, its settings, the HTTP routes) and <code>docs/protocol.md</code>
(the WebSocket protocol, frame by frame). <code>switchboard --help</code> lists the commands.</p>
</body>
</html>
"#
);

/// The gateway's icon.
pub const FAVICON: &str = include_str!("favicon.svg");

/// `/`, `/favicon.svg` and `/favicon.ico` (`GET`, `HEAD`).
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let get_or_head = || warp::get().or(warp::head()).unify();
    let page = warp::path::end()
        .and(get_or_head())
        .map(|| asset(PAGE, "text/html; charset=utf-8"));
    let icon = warp::path!("favicon.svg")
        .or(warp::path!("favicon.ico"))
        .unify()
        .and(get_or_head())
        .map(|| asset(FAVICON, "image/svg+xml"));
    page.or(icon).unify()
}
