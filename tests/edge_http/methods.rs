//! `OPTIONS` and `HEAD` answer as the routes do.

use super::*;

#[tokio::test]
async fn options_and_head_answer_as_the_routes_do() {
    let nats = nats();
    let gateway = Gateway::start(&nats);
    let http = http();

    // OPTIONS on a path no route serves: the same 404 as any other method.
    for path in ["/nope", "/v1/nope", "/console/nope"] {
        let reply = http
            .request(reqwest::Method::OPTIONS, gateway.http(path))
            .send()
            .await
            .expect("options");
        assert_eq!(reply.status(), 404, "OPTIONS {path}");
        let body: Value = reply.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
    // Another method on an unknown path is a 404 too, not a 405.
    let post = http
        .post(gateway.http("/nope"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 404);

    // On a route's path: a preflight.
    for path in ["/v1/events", "/v1/history/global", "/healthz", "/console"] {
        let reply = http
            .request(reqwest::Method::OPTIONS, gateway.http(path))
            .send()
            .await
            .expect("options");
        assert_eq!(reply.status(), 204, "OPTIONS {path}");
        assert!(
            reply.headers().contains_key("access-control-allow-methods"),
            "OPTIONS {path}"
        );
    }

    // HEAD /metrics answers as GET does, without the body.
    let get = http
        .get(gateway.http("/metrics"))
        .send()
        .await
        .expect("get");
    let head = http
        .head(gateway.http("/metrics"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers().get("content-type"),
        get.headers().get("content-type")
    );
    assert!(head.bytes().await.expect("no body").is_empty());
}
