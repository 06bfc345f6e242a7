//! What other services and tools do beside the gateway: publish straight
//! to the stream, read history as an auditor, speak HTTP, run the
//! `switchboard` CLI.

use std::process::Stdio;

use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role};

use crate::{binary, token, Gateway, PATIENCE};

/// An HTTP client with no connection pooling surprises.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .expect("http client")
}

/// Publishes a payload straight to the stream, as another service does.
pub async fn publish_raw(
    nats_client: &async_nats::Client,
    subject: String,
    payload: String,
) -> u64 {
    async_nats::jetstream::new(nats_client.clone())
        .publish(subject, payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack")
        .sequence
}

/// `GET /v1/history/{channel}` as an auditor: the NDJSON lines.
pub async fn history_lines(gateway: &Gateway, channel: Channel) -> Vec<String> {
    let auditor = token(Id::new_v4(), Grant::None, &[Role::Auditor]);
    let reply = http()
        .get(gateway.http(&format!("/v1/history/{channel}")))
        .bearer_auth(auditor)
        .send()
        .await
        .expect("history");
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.expect("history text");
    text.lines().map(str::to_string).collect()
}

/// The `switchboard` binary with no `SWITCHBOARD_*` from the environment.
pub fn switchboard() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWITCHBOARD_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

/// Runs the binary to its end and returns stdout; a failure on a nonzero exit.
pub async fn run(cmd: &mut tokio::process::Command) -> String {
    let output = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("the command finishes in time")
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `switchboard replay` of one channel: the NDJSON lines.
pub async fn cli_replay(nats_url: &str, channel: Channel) -> Vec<String> {
    let out = run(switchboard().args([
        "replay",
        "--nats-url",
        nats_url,
        "--channel",
        &channel.to_string(),
    ]))
    .await;
    out.lines().map(str::to_string).collect()
}

/// Reads until the server closes the socket (an error counts as the end: a
/// reset after the answer); the bytes read and when it ended. A failure if
/// it does not end within [`PATIENCE`].
pub async fn read_to_close(
    socket: &mut (impl tokio::io::AsyncRead + Unpin),
) -> (Vec<u8>, std::time::Instant) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the socket");
    (got, std::time::Instant::now())
}

/// Reads one HTTP response head (up to its blank line), and nothing after it.
pub async fn read_head(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut byte))
            .await
            .expect("a response head in time")
            .expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
