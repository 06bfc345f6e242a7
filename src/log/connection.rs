//! The connection to NATS: one server or a cluster's list of them, the
//! move off a server in lame-duck mode, and the connection's events in the
//! log at the level they deserve.

use std::time::Duration;

use super::{LogError, CONNECT_TIMEOUT, REQUEST_TIMEOUT};

/// Connects to `url`: one server, or a comma-separated list of a
/// cluster's servers. The client connects to one of them and, once
/// connected, moves to another by itself when its server is lost (and
/// learns the cluster's other servers from it). A server entering
/// lame-duck mode is left at once for another one (see
/// [`LAME_DUCK_RECONNECT`]).
pub(super) async fn dial(url: &str) -> Result<(async_nats::Client, LameDuckWatch), LogError> {
    let servers: Vec<&str> = url.split(',').map(str::trim).collect();
    // No retry on the first connect: a wrong URL is reported at once
    // (after every server of the list was tried once).
    let (lame_duck_tx, lame_duck_rx) = tokio::sync::mpsc::channel(1);
    let client = async_nats::ConnectOptions::new()
        .name("switchboard")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .event_callback(move |event| {
            let lame_duck_tx = lame_duck_tx.clone();
            async move {
                if matches!(event, async_nats::Event::LameDuckMode) {
                    let _ = lame_duck_tx.try_send(());
                }
                log_connection_event(event)
            }
        })
        .connect(servers)
        .await
        .map_err(|source| LogError::Connect {
            url: url.to_string(),
            source,
        })?;
    let watch = tokio::spawn(leave_lame_ducks(client.clone(), lame_duck_rx));
    Ok((client, LameDuckWatch(watch)))
}

/// [`leave_lame_ducks`], stopped (and its clone of the client dropped, so
/// the connection can end) when this is dropped.
pub(super) struct LameDuckWatch(tokio::task::JoinHandle<()>);

impl Drop for LameDuckWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long after a lame-duck notice the client reconnects. A server in
/// lame-duck mode refuses new connections at once and closes its clients
/// one by one over its `lame_duck_duration` (2 minutes by default): the
/// client reconnects now, so it lands on another server of the cluster
/// instead of waiting its turn to be cut. The pause lets the notice of a
/// server that is merely restarting its listener settle.
pub const LAME_DUCK_RECONNECT: Duration = Duration::from_millis(100);

/// Moves the client off a server that entered lame-duck mode (async-nats
/// only reports it). Owned by the log's [`LameDuckWatch`].
async fn leave_lame_ducks(
    client: async_nats::Client,
    mut notices: tokio::sync::mpsc::Receiver<()>,
) {
    while notices.recv().await.is_some() {
        tokio::time::sleep(LAME_DUCK_RECONNECT).await;
        tracing::info!("leaving the lame-duck NATS server for another one of the cluster");
        if let Err(e) = client.force_reconnect().await {
            tracing::debug!(error = %e, "NATS connection already closed");
            return;
        }
    }
}

/// The NATS connection's events, at the level they deserve: a lost
/// connection is a warning, its return news; the client errors that come
/// with a lost or closed connection add nothing (async-nats would log every
/// event at INFO).
fn log_connection_event(event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Disconnected => {
            crate::metrics::Metrics::get().nats_disconnects.increment(1);
            tracing::warn!("lost the connection to NATS; reconnecting")
        }
        Event::Connected => tracing::info!("connected to NATS"),
        Event::LameDuckMode => {
            tracing::warn!("the NATS server is entering lame-duck mode; moving to another one")
        }
        Event::ServerError(e) => tracing::warn!(error = %e, "NATS server error"),
        Event::SlowConsumer(sid) => tracing::warn!(sid, "NATS slow consumer"),
        event @ (Event::Draining | Event::Closed | Event::ClientError(_)) => {
            tracing::debug!(%event, "NATS connection")
        }
    }
}
