//! The HTTP API (README "HTTP routes") and the WebSocket endpoint, as warp filters over
//! one [`Edge`]: the state the HTTP layer owns (tokens, origins, its
//! bounds), and the node's [`Front`](crate::gateway::Front), the only way
//! it reaches the node.
//!
//! A browser page's `Origin` is checked before any route runs
//! ([`crate::origins`]): a refused one gets 403, an allowed one CORS
//! answers, and an `OPTIONS` on a path some route serves is a preflight.
//! Then tokens: a WebSocket upgrade with a bad, missing or
//! expired token is refused with 401 and never becomes a socket.
//! So is one past the user's connection cap (429, `UserConnections`).
//! `POST /v1/events` decides on its head alone whether its body is read
//! (`http::publish`). Health and metrics are `http::operations`', which
//! also serves them alone on the `metrics_listen` address.
//! The time and size bounds of the connections themselves are the
//! listener's (`server::listener`). `GET /console` is [`crate::console`]'s,
//! `GET /` (a page naming the gateway) and its icon are `http::home`'s.
//!
//! One file, near 500 lines, on purpose: one warp filter per route, each
//! with its handler and its refusals, the origin gate around them, and the
//! refusals' words in one place; the routes are read as one table. The
//! publish route's body handling is a concept of its own (`http::publish`),
//! and so is what the layer owns (`http::edge`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::channel::{Channel, Id};
use crate::event::parse_timestamp;
use crate::gateway::upgrade;
use crate::log::{HistoryQuery, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT};
use crate::metrics::Metrics;
use crate::origins::Origins;
use crate::token::{Claims, Role, TokenError, Verifier};

mod catalog;
mod edge;
mod home;
pub mod operations;
mod operator;
mod presence;
mod publish;

pub use edge::{Bounds, Edge};
pub use publish::{MAX_PUBLISH_BODY, PUBLISH_RETRY_AFTER};

/// History events read ahead of a slow HTTP client.
pub const HISTORY_READ_AHEAD: usize = 64;

/// Every route, over one gateway's HTTP layer.
pub fn routes(edge: Arc<Edge>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let with_edge = {
        let edge = edge.clone();
        warp::any().map(move || edge.clone())
    };
    // Liveness, readiness and metrics (`http::operations`); `/metrics`
    // is a 404 here when it has an address of its own.
    let health = operations::health(edge.clone());
    let metrics = operations::metrics(edge.clone(), edge.metrics_here);
    // The body is taken, not polled: `publish` reads it only once the head
    // is authorized and it has room in the buffer.
    let publish = warp::path!("v1" / "events")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_edge.clone())
        .then(publish::publish);
    let disconnect = warp::path!("v1" / "users" / String / "disconnect")
        .and(warp::post())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_edge.clone())
        .then(operator::disconnect);
    let presence = warp::path!("v1" / "presence" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_edge.clone())
        .then(presence::presence);
    let catalog = warp::path!("v1" / "catalog")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with_edge.clone())
        .then(catalog::catalog);
    let history = warp::path!("v1" / "history" / String)
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_edge.clone())
        .then(history);
    // The keys reach the console only in `--dev`, to mint its tokens.
    let console = crate::console::routes(edge.dev_signer.clone());
    let home = home::routes();
    let ws = warp::path!("v1" / "ws")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(with_edge)
        .then(websocket);
    let api = health
        .or(metrics)
        .unify()
        .or(publish)
        .unify()
        .or(history)
        .unify()
        .or(disconnect)
        .unify()
        .or(presence)
        .unify()
        .or(catalog)
        .unify()
        .or(ws)
        .unify()
        .or(console)
        .unify()
        .or(home)
        .unify()
        .recover(rejection)
        .unify();
    // A browser page's origin is checked before any route runs (a refused
    // WebSocket upgrade never becomes a socket); an allowed one gets CORS
    // answers, preflights included.
    let origins = edge.origins.clone();
    let origin = warp::header::optional::<String>("origin")
        .and(warp::any().map(move || origins.clone()))
        .and_then(check_origin);
    origin
        .and(warp::method())
        .and(api)
        .map(
            |origin: Option<HeaderValue>, method: Method, mut response: Response| {
                // A path some route serves, with a method none of them takes:
                // an `OPTIONS` there is a preflight. Elsewhere it is a 404.
                if method == Method::OPTIONS && response.status() == StatusCode::METHOD_NOT_ALLOWED
                {
                    response = preflight();
                }
                if let Some(origin) = origin {
                    let headers = response.headers_mut();
                    headers.insert("access-control-allow-origin", origin);
                    headers.insert("vary", HeaderValue::from_static("Origin"));
                }
                response
            },
        )
        .recover(refused_origin)
        .unify()
}

/// The answer to a preflight: what the API takes from another origin.
fn preflight() -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static(CORS_METHODS),
    );
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static(CORS_HEADERS),
    );
    headers.insert(
        "access-control-max-age",
        HeaderValue::from_static(CORS_MAX_AGE),
    );
    response
}

/// What a preflight allows: every method and request header the API reads.
const CORS_METHODS: &str = "GET, HEAD, POST, OPTIONS";
const CORS_HEADERS: &str = "authorization, content-type";
/// How long a browser may keep a preflight's answer, in seconds.
const CORS_MAX_AGE: &str = "600";

/// A request from a page whose origin is neither the gateway's own nor
/// allowed by `allowed_origins`; the origin (an excerpt) and the gateway's
/// own origins, for the message.
#[derive(Debug)]
struct OriginRefused {
    origin: String,
    own: String,
}

impl warp::reject::Reject for OriginRefused {}

/// Characters of a refused `Origin` quoted back.
const MAX_QUOTED_ORIGIN: usize = 100;

/// The origin to echo in CORS answers (`None`: not a browser page's
/// request), or a refusal.
async fn check_origin(
    origin: Option<String>,
    origins: Arc<Origins>,
) -> Result<Option<HeaderValue>, Rejection> {
    let Some(origin) = origin else {
        return Ok(None);
    };
    if !origins.allows(&origin) {
        return Err(warp::reject::custom(OriginRefused {
            origin: origin.chars().take(MAX_QUOTED_ORIGIN).collect(),
            own: origins.own().join(", "),
        }));
    }
    Ok(HeaderValue::from_str(&origin).ok())
}

async fn refused_origin(rejection: Rejection) -> Result<Response, Infallible> {
    let Some(refused) = rejection.find::<OriginRefused>() else {
        return rejection_reply(rejection).await;
    };
    let own = match refused.own.as_str() {
        "" => String::new(),
        own => format!(" (its own are {own})"),
    };
    Ok(error_reply(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "pages of {:?} may not use this gateway{own}: add that origin to allowed_origins \
             (--allowed-origins, SWITCHBOARD_ALLOWED_ORIGINS)",
            refused.origin
        ),
    ))
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut response = Response::new(text.into().into());
    *response.status_mut() = status;
    response
}

fn json_reply(status: StatusCode, value: &Value) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

/// Characters of an error message sent back, at most: messages quote short
/// excerpts of what they refuse, never a whole request.
pub const MAX_ERROR_MESSAGE: usize = 1024;

fn error_reply(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let mut message = message.to_string();
    if let Some((end, _)) = message.char_indices().nth(MAX_ERROR_MESSAGE) {
        message.truncate(end);
        message.push('…');
    }
    json_reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The bearer token from `Authorization`, else the `token` query parameter.
fn token_of<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a HashMap<String, String>>,
) -> Option<&'a str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| query.and_then(|q| q.get("token")).map(String::as_str))
}

/// Why a request is refused before it is looked at.
enum Refusal {
    Unauthorized(TokenError),
    Forbidden(Role),
}

impl Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized(e) => {
                // RFC 6750: `invalid_token` once a token was presented.
                let challenge = match e {
                    TokenError::Missing | TokenError::MissingHeader => "Bearer",
                    _ => "Bearer error=\"invalid_token\"",
                };
                let mut response = error_reply(StatusCode::UNAUTHORIZED, "unauthorized", e);
                response.headers_mut().insert(
                    "www-authenticate",
                    warp::http::HeaderValue::from_static(challenge),
                );
                response
            }
            Refusal::Forbidden(role) => error_reply(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the `{}` role", role.name()),
            ),
        }
    }
}

async fn authenticate(
    keys: &Verifier,
    headers: &HeaderMap,
    query: Option<&HashMap<String, String>>,
    role: Option<Role>,
) -> Result<Claims, Refusal> {
    let missing = match query {
        Some(_) => TokenError::Missing,
        None => TokenError::MissingHeader,
    };
    let token = token_of(headers, query).ok_or(missing);
    let claims = match token {
        Ok(token) => keys.verify(token).await,
        Err(missing) => Err(missing),
    }
    .map_err(Refusal::Unauthorized)?;
    match role {
        Some(role) if !claims.has_role(role) => Err(Refusal::Forbidden(role)),
        _ => Ok(claims),
    }
}

/// Parses the history query; every bad parameter is named.
pub fn history_query(
    channel: &str,
    params: &HashMap<String, String>,
) -> Result<HistoryQuery, String> {
    let channel = Channel::parse(channel).map_err(|e| e.to_string())?;
    let time = |name: &str| -> Result<_, String> {
        params
            .get(name)
            .map(|v| {
                parse_timestamp(v).map_err(|e| format!("`{name}` is not an RFC 3339 time: {e}"))
            })
            .transpose()
    };
    let after_seq = params
        .get("after_seq")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| "`after_seq` must be a non-negative integer".to_string())
        })
        .transpose()?;
    let limit = match params.get("limit") {
        None => HISTORY_DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=HISTORY_MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("`limit` must be between 1 and {HISTORY_MAX_LIMIT}")),
        },
    };
    Ok(HistoryQuery {
        channels: vec![channel],
        after_seq,
        since: time("since")?,
        until: time("until")?,
        limit: Some(limit),
    })
}

async fn history(
    channel: String,
    headers: HeaderMap,
    params: HashMap<String, String>,
    edge: Arc<Edge>,
) -> Response {
    if let Err(refusal) = authenticate(&edge.keys, &headers, None, Some(Role::Auditor)).await {
        return refusal.into_response();
    }
    let query = match history_query(&channel, &params) {
        Ok(q) => q,
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    // A task of the node reads the page a few events ahead of the client:
    // memory stays at a consumer batch plus a few lines, however large the
    // page.
    let events = match edge.node.history(&query, HISTORY_READ_AHEAD).await {
        Ok(events) => events,
        Err(e) => return error_reply(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    };
    let lines = events.map(|item| match item {
        Ok(event) => {
            let mut line = event.encode().to_vec();
            line.push(b'\n');
            Ok(Bytes::from(line))
        }
        Err(e) => Err(std::io::Error::other(e.to_string())),
    });
    let mut response = warp::reply::stream(lines).into_response();
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

async fn websocket(
    headers: HeaderMap,
    query: HashMap<String, String>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    edge: Arc<Edge>,
) -> Response {
    // The token before anything else: a refused upgrade never reaches the
    // node, and never becomes a socket.
    let claims = match authenticate(&edge.keys, &headers, Some(&query), None).await {
        Ok(claims) => claims,
        Err(refusal) => return refusal.into_response(),
    };
    let (response, deflate) = match upgrade::handshake(&headers, edge.bounds.compression) {
        Ok(response) => response,
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let Some(on_upgrade) = on_upgrade else {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this connection cannot be upgraded",
        );
    };
    if edge.node.is_shutting_down() {
        return error_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        );
    }
    let max = edge.bounds.max_connections_per_user;
    let Some(slot) = edge.users.take(claims.sub, max) else {
        Metrics::get().shed_user_cap.increment(1);
        return error_reply(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this user already has {max} connections open on this node; close one first"),
        );
    };
    // An unknown or malformed session id is not an error: a fresh session.
    let session = query.get("session").and_then(|s| Id::parse(s).ok());
    edge.node.accept(
        on_upgrade,
        claims,
        edge.keys.clone(),
        session,
        deflate,
        slot,
    );
    response
}

/// The routes, for a 404 or a 405.
const ROUTES: &str = "GET /healthz, GET /readyz, GET /metrics (each also HEAD; \
/metrics is on the metrics address instead when one is set), \
POST /v1/events, GET /v1/history/{channel}, GET /v1/presence/{channel}, \
POST /v1/users/{user_id}/disconnect, GET /v1/ws, \
GET /console, GET / (a page naming the gateway), GET /favicon.ico";

/// A request no route took, answered in words a person can act on (never
/// warp's type names).
async fn rejection(rejection: Rejection) -> Result<Response, Infallible> {
    rejection_reply(rejection).await
}

async fn rejection_reply(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject::{InvalidHeader, InvalidQuery, MethodNotAllowed, MissingHeader};
    let (status, code, message) = if rejection.is_not_found() {
        let message = format!("no such route; the routes are {ROUTES}");
        (StatusCode::NOT_FOUND, "not_found", message)
    } else if rejection.find::<InvalidQuery>().is_some() {
        let message = "the query string is not URL-encoded `name=value` pairs".to_string();
        (StatusCode::BAD_REQUEST, "bad_request", message)
    } else if let Some(header) = rejection.find::<MissingHeader>() {
        let message = format!("the `{}` header is missing", header.name());
        (StatusCode::BAD_REQUEST, "bad_request", message)
    } else if let Some(header) = rejection.find::<InvalidHeader>() {
        let message = format!("the `{}` header is not valid", header.name());
        (StatusCode::BAD_REQUEST, "bad_request", message)
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        let message = format!("this route does not take this method; the routes are {ROUTES}");
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    } else {
        tracing::debug!(?rejection, "request refused");
        let message = "the request could not be read".to_string();
        (StatusCode::BAD_REQUEST, "bad_request", message)
    };
    Ok(error_reply(status, code, message))
}
