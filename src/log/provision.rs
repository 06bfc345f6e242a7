//! Creating the stream, or updating it to match the settings (`serve`),
//! or finding it as it is (the tools); and telling a stream that did not
//! answer from a missing one, and a refusal for want of servers to hold
//! its replicas from any other.

use std::time::Duration;

use async_nats::jetstream::{self, stream, ErrorCode};

use super::{subject, LogError, StreamSettings};

async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
    manage: bool,
) -> Result<stream::Stream, LogError> {
    let config = stream::Config {
        name: settings.name.clone(),
        subjects: subject::stream_subjects(),
        max_age: settings.retention,
        num_replicas: settings.replicas,
        duplicate_window: settings.duplicate_window,
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        allow_direct: true,
        description: Some("switchboard chat events".into()),
        ..Default::default()
    };
    let name = &settings.name;
    match find_stream(js, name).await? {
        Some(existing) if !manage => Ok(existing),
        Some(mut existing) => {
            let current = existing
                .info()
                .await
                .map_err(|e| LogError::stream(name, e))?
                .config
                .clone();
            // Subjects are only ever added: a node with an older catalog
            // (a rolling deploy) must not take a newer type's subjects
            // away from the stream the others already publish to.
            let mut subjects = config.subjects.clone();
            for kept in &current.subjects {
                if !subjects.contains(kept) {
                    subjects.push(kept.clone());
                }
            }
            let wanted = stream::Config {
                // Keep what operators may have set that we do not manage.
                max_bytes: current.max_bytes,
                max_messages: current.max_messages,
                subjects,
                ..config
            };
            let mut now = current.subjects.clone();
            now.sort();
            let mut want = wanted.subjects.clone();
            want.sort();
            if now != want
                || current.max_age != wanted.max_age
                || current.num_replicas != wanted.num_replicas
                || current.duplicate_window != wanted.duplicate_window
                || !current.allow_direct
            {
                js.update_stream(wanted)
                    .await
                    .map_err(|e| LogError::stream(name, format!("update: {e}")))?;
            }
            js.get_stream(name)
                .await
                .map_err(|e| LogError::stream(name, e))
        }
        None => match js.create_stream(config).await {
            Ok(created) => Ok(created),
            // Created meanwhile by another node or tool: use it as it is.
            Err(e) if !manage && is_jetstream_code(e.kind(), ErrorCode::STREAM_NAME_EXIST) => {
                find_stream(js, name)
                    .await?
                    .ok_or_else(|| LogError::stream(name, format!("create: {e}")))
            }
            Err(e) => Err(LogError::stream(name, format!("create: {e}"))),
        },
    }
}

/// How long a stream whose replicas NATS cannot place yet is tried again,
/// when the cluster lists at least as many servers as the stream has
/// replicas: servers of a cluster that has just started join its
/// JetStream meta group one by one, and until the last has joined, NATS
/// refuses an R3 stream ("no suitable peers for placement"). After it,
/// the refusal stands ([`LogError::Replicas`]). With fewer servers than
/// replicas, the refusal is at once.
pub const STREAM_PLACEMENT_RETRY_FOR: Duration = Duration::from_secs(30);

/// [`ensure_stream`], tried again for [`STREAM_PLACEMENT_RETRY_FOR`] while
/// NATS cannot place the stream's replicas on the `servers` the cluster
/// lists, though they are enough.
pub(super) async fn provision_placed(
    js: &jetstream::Context,
    settings: &StreamSettings,
    manage: bool,
    servers: usize,
) -> Result<stream::Stream, LogError> {
    let give_up = tokio::time::Instant::now() + STREAM_PLACEMENT_RETRY_FOR;
    let mut backoff = Duration::from_millis(250);
    let mut said = false;
    loop {
        let reason = match ensure_stream(js, settings, manage).await {
            Err(LogError::Stream { reason, .. })
                if is_replicas_refusal(&reason) && settings.replicas <= servers =>
            {
                reason
            }
            done => return done,
        };
        if tokio::time::Instant::now() + backoff >= give_up {
            return Err(LogError::stream(&settings.name, reason));
        }
        if !said {
            said = true;
            tracing::warn!(
                stream = %settings.name,
                replicas = settings.replicas,
                servers,
                nats = %reason,
                "NATS cannot place the stream's replicas yet (the cluster's servers may still \
                 be joining JetStream); trying again for up to {}s",
                STREAM_PLACEMENT_RETRY_FOR.as_secs()
            );
        } else {
            tracing::debug!(stream = %settings.name, nats = %reason, "stream placement retry");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// How long the stream is looked up before `serve` or a tool gives up
/// while NATS answers with a timeout or an unavailable JetStream (a
/// cluster electing a leader answers nothing for a few seconds).
pub const STREAM_LOOKUP_RETRY_FOR: Duration = Duration::from_secs(30);

/// The stream, or `None` when NATS says it does not exist. Any other
/// failure is retried for [`STREAM_LOOKUP_RETRY_FOR`] when it may pass: a
/// stream that merely did not answer must not be taken for a missing one
/// (and created again with other settings).
async fn find_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, LogError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let give_up = tokio::time::Instant::now() + STREAM_LOOKUP_RETRY_FOR;
    let mut backoff = Duration::from_millis(100);
    loop {
        let e = match js.get_stream(name).await {
            Ok(stream) => return Ok(Some(stream)),
            Err(e) => e,
        };
        let passing = match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                return Ok(None)
            }
            GetStreamErrorKind::Request => true,
            GetStreamErrorKind::JetStream(j) => j.code() >= 500,
            _ => false,
        };
        if !passing || tokio::time::Instant::now() + backoff >= give_up {
            return Err(LogError::stream(name, e));
        }
        tracing::debug!(stream = name, error = %e, "stream lookup retry");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn is_jetstream_code(
    kind: async_nats::jetstream::context::CreateStreamErrorKind,
    code: ErrorCode,
) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    matches!(kind, CreateStreamErrorKind::JetStream(j) if j.error_code() == code)
}

/// Whether NATS refused a stream for want of servers to hold its replicas:
/// `no suitable peers for placement` (10005), `insufficient resources`
/// (10023), `replicas > 1 not supported in non-clustered mode` (10074).
pub(super) fn is_replicas_refusal(reason: &str) -> bool {
    [
        "no suitable peers",
        "error code 10005",
        "insufficient resources",
        "error code 10023",
        "replicas > 1 not supported",
        "error code 10074",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}
