//! What operators' tools ask: liveness (`/healthz`), readiness (`/readyz`)
//! and the Prometheus text (`/metrics`), each also answering `HEAD`. On the
//! main address they sit among the API's routes; with `metrics_listen` set
//! they are also the whole of a second address ([`routes`]), and the main
//! one answers `/metrics` 404. Health stays on both: a balancer probes the
//! address it sends clients to, Prometheus and private probes the other.
//!
//! Invariant: nothing here needs a token, and nothing here changes state.

use std::convert::Infallible;
use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{error_reply, plain, Edge};
use crate::metrics::Metrics;

/// `GET` or `HEAD`: hyper sends `HEAD`'s headers without the body.
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

fn with_edge(edge: Arc<Edge>) -> impl Filter<Extract = (Arc<Edge>,), Error = Infallible> + Clone {
    warp::any().map(move || edge.clone())
}

/// `/healthz` and `/readyz`.
pub(super) fn health(
    edge: Arc<Edge>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let healthz = warp::path!("healthz")
        .and(get_or_head())
        .map(|| plain(StatusCode::OK, "ok"));
    let readyz = warp::path!("readyz")
        .and(get_or_head())
        .and(with_edge(edge))
        .then(|edge: Arc<Edge>| async move {
            // The key set's age is said, not judged: the last good set
            // keeps verifying while the provider is down.
            let keys = match edge.keys.jwks() {
                Some(jwks) => format!(
                    "\njwks: {} keys from {}, fetched {} s ago",
                    jwks.keys().len(),
                    jwks.url(),
                    jwks.age().as_secs()
                ),
                None => String::new(),
            };
            if edge.node.is_ready().await {
                plain(StatusCode::OK, format!("ready{keys}"))
            } else {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("NATS or the stream is unavailable{keys}"),
                )
            }
        });
    healthz.or(readyz).unify()
}

/// `/metrics`, on the address `here` says: the main address's routes pass
/// `false` when `metrics_listen` is set, and the path is then no route
/// there (404).
pub(super) fn metrics(
    edge: Arc<Edge>,
    here: bool,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(get_or_head())
        .and_then(move || async move {
            if here {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
        .and(with_edge(edge))
        .map(|edge: Arc<Edge>| {
            if let Some(jwks) = edge.keys.jwks() {
                jwks.record();
            }
            let mut response = Response::new(Metrics::render().into());
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        })
}

/// The routes of the `metrics_listen` address: these three, and a 404 or
/// 405 naming them for anything else.
pub fn routes(edge: Arc<Edge>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    health(edge.clone())
        .or(metrics(edge, true))
        .unify()
        .recover(|rejection: Rejection| async move {
            let (status, code) = if rejection.is_not_found() {
                (StatusCode::NOT_FOUND, "not_found")
            } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            } else {
                (StatusCode::BAD_REQUEST, "bad_request")
            };
            Ok::<_, Infallible>(error_reply(
                status,
                code,
                format!("this is the metrics address; its routes are {ROUTES}"),
            ))
        })
        .unify()
}

/// The routes of the metrics address, for its 404 and 405.
const ROUTES: &str = "GET /metrics, GET /healthz, GET /readyz (each also HEAD)";
