//! The sessions' JetStream key-value bucket, for a deployment of several
//! nodes: any node reads a session another node wrote.
//!
//! A session is a header under its id and one record per subscription
//! under `{session}.{channel token}` (`channel=…`, `user=…`, `global`; see
//! [`super::record`]), each a JSON value. A subscribe, an unsubscribe or a
//! moved cursor writes one small record; a record of the previous format
//! (the whole session under its id) still reads.
//!
//! **Reads: one round trip, no consumer.** A hello reads the header and
//! every subscription record with one batched direct get
//! (`multi_last` over `$KV.{bucket}.{session}` and
//! `$KV.{bucket}.{session}.>`, nats-server 2.11 and newer), answered by any
//! replica from its store: a resume storm costs one request per hello, as
//! the whole record did, and creates nothing on the server. A server that
//! cannot answer it (2.10, or a session of more than
//! [`MULTI_GET_MOST`] keys) is read with an ordered consumer instead.
//!
//! **Removals leave nothing behind.** A subscription record is removed by a
//! stream purge of its subject, not a delete marker: markers would stay
//! for the bucket's max age, and every one would be read (and counted
//! against [`MULTI_GET_MOST`]) by each later hello of the session.
//!
//! **At most a bound of sessions per user.** The key `users.{user}` holds
//! the user's sessions with the time of their last header write (at most
//! the bound of entries), updated with a revision check and retried on a
//! conflict ([`INDEX_ATTEMPTS`]), so two nodes writing sessions of one user
//! at once both count. A header write that makes it exceed the bound
//! removes the user's oldest sessions, every record of them (purges, which
//! are not revision-checked: a connection still writing a removed session
//! brings back what it writes next, whole at its next refresh). An index
//! left empty is deleted.
//!
//! The bucket keeps one value per key (history 1) on file storage,
//! replicated like the stream, and forgets a key the session TTL after its
//! last write (the bucket's max age): a connected session writes its header
//! and every subscription record at least every `SESSION_REFRESH`, so only
//! abandoned ones age out, and no sweep is needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::{self, kv, stream::StorageType};
use futures::{StreamExt, TryStreamExt};

use super::record::{
    channel_of_token, channel_token, index_stamp, Applied, Change, Cursor, Header, Stored,
};
use crate::channel::Id;

/// The most keys one batched read returns: nats-server answers a
/// `multi_last` that matches more with 413, and the session is read with
/// an ordered consumer instead (a session of more subscriptions than that
/// is rare: one connection holds at most `max_subscriptions`, 1,024 by
/// default).
pub const MULTI_GET_MOST: usize = 1024;

/// How long a session read may take before the hello gives up on it (the
/// client gets a fresh session).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Revision-checked updates of a user's index tried before the write
/// fails (and the bucket writer retries it later): each conflict is
/// another node's update of the same user's index landing first.
pub const INDEX_ATTEMPTS: usize = 8;

/// Subscription records of one change written at once.
pub const RECORD_WRITES_AT_ONCE: usize = 16;

/// The prefix of the users' index keys (`users.{user}`), which no session
/// key (an id) starts with.
const USERS: &str = "users";

/// Why the bucket failed.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("cannot create or update the session bucket `{bucket}`: {source}")]
    Create {
        bucket: String,
        source: jetstream::context::CreateKeyValueError,
    },
    #[error("session bucket read: {0}")]
    Read(String),
    #[error("session bucket entry: {0}")]
    Entry(#[from] kv::EntryError),
    #[error("session bucket write: {0}")]
    Write(#[from] kv::PutError),
    #[error("session bucket removal: {0}")]
    Purge(#[from] jetstream::stream::PurgeError),
    #[error("the sessions of user {user}: {reason}")]
    Index { user: Id, reason: String },
    #[error("corrupt session record `{key}`: {reason}")]
    Corrupt { key: String, reason: String },
}

/// The bucket's configuration, from the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSettings {
    pub name: String,
    /// The session TTL: the bucket's max age.
    pub max_age: Duration,
    /// The stream's replicas.
    pub replicas: usize,
}

impl BucketSettings {
    fn config(&self) -> kv::Config {
        kv::Config {
            bucket: self.name.clone(),
            description: "switchboard sessions: subscriptions and their cursors".into(),
            history: 1,
            max_age: self.max_age,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// The sessions' bucket (shared: the client's handle is large).
#[derive(Clone)]
pub struct Bucket {
    store: Arc<kv::Store>,
    client: async_nats::Client,
    /// `$JS.API.DIRECT.GET.{stream}` (the default JetStream API prefix,
    /// which the node's context uses).
    direct_get: Arc<str>,
    max_age: Duration,
}

/// One stored message of the bucket: its key, whether it is a value (not
/// a delete or purge marker), and its value.
struct Entry {
    key: String,
    value: Option<bytes::Bytes>,
}

impl Bucket {
    /// Creates the bucket, or updates it to match `settings` (what `serve`
    /// does).
    pub async fn create_or_update(
        js: &jetstream::Context,
        settings: &BucketSettings,
    ) -> Result<Bucket, BucketError> {
        let store = js
            .create_or_update_key_value(settings.config())
            .await
            .map_err(|source| BucketError::Create {
                bucket: settings.name.clone(),
                source,
            })?;
        let direct_get = format!("$JS.API.DIRECT.GET.{}", store.stream_name).into();
        Ok(Bucket {
            store: Arc::new(store),
            client: js.client(),
            direct_get,
            max_age: settings.max_age,
        })
    }

    fn subject(&self, key: &str) -> String {
        format!("{}{key}", self.store.prefix)
    }

    /// Session `id` as stored: its header and every subscription record.
    /// `None` without a header.
    pub async fn get(&self, id: Id) -> Result<Option<Stored>, BucketError> {
        let header_key = id.to_string();
        let filters = [
            self.subject(&header_key),
            self.subject(&format!("{header_key}.>")),
        ];
        let read = tokio::time::timeout(READ_TIMEOUT, async {
            match self.multi_last(&filters).await? {
                Some(entries) => Ok(entries),
                None => self.read_with_consumer(&filters).await,
            }
        })
        .await
        .map_err(|_| BucketError::Read(format!("no answer within {READ_TIMEOUT:?}")))??;
        let mut header = None;
        let mut records = Vec::new();
        for entry in read {
            let Some(value) = entry.value else {
                continue; // a marker
            };
            let corrupt = |reason: String| BucketError::Corrupt {
                key: entry.key.clone(),
                reason,
            };
            if entry.key == header_key {
                let decoded: Header =
                    serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
                header = Some(decoded);
                continue;
            }
            let token = entry
                .key
                .strip_prefix(&header_key)
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or_default();
            let channel = channel_of_token(token)
                .ok_or_else(|| corrupt("not a subscription's key".into()))?;
            let cursor: Cursor =
                serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))?;
            records.push((channel, cursor));
        }
        Ok(header.map(|header| Stored::assemble(header, records)))
    }

    /// The last message of every subject the filters match, with one
    /// batched direct get. `None`: this server cannot answer it (too old,
    /// too many keys, direct gets off); read another way.
    async fn multi_last(&self, filters: &[String]) -> Result<Option<Vec<Entry>>, BucketError> {
        let read = |e: &dyn std::fmt::Display| BucketError::Read(e.to_string());
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| read(&e))?;
        let request = serde_json::json!({ "multi_last": filters });
        self.client
            .publish_with_reply(
                self.direct_get.to_string(),
                inbox,
                request.to_string().into(),
            )
            .await
            .map_err(|e| read(&e))?;
        let mut entries = Vec::new();
        let outcome = loop {
            let Some(message) = replies.next().await else {
                break Err(BucketError::Read("the reply subscription ended".into()));
            };
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
            };
            match message.status.map(|code| code.as_u16()) {
                None | Some(200) => {
                    if header("Nats-Num-Pending").is_none() {
                        // A server that answers the first message only.
                        break Ok(None);
                    }
                    let Some(subject) = header("Nats-Subject") else {
                        break Err(BucketError::Read("a reply without its subject".into()));
                    };
                    entries.push(self.entry(&subject, header("KV-Operation"), message.payload));
                }
                Some(204) => {
                    // The end of the batch: anything still pending (a
                    // batch cut by the server's byte limit) is read again.
                    let more = header("Nats-Num-Pending").is_some_and(|n| n.trim() != "0");
                    break Ok((!more).then_some(entries));
                }
                Some(404) => break Ok(Some(Vec::new())),
                Some(code) => {
                    // 413: too many keys; 408: a server without batches;
                    // 503: no direct get responder.
                    tracing::debug!(%code, "batched session read refused; reading with a consumer");
                    break Ok(None);
                }
            }
        };
        let _ = replies.unsubscribe().await;
        outcome
    }

    /// The last message of every subject the filters match, with an
    /// ordered consumer (deleted by the server once left).
    async fn read_with_consumer(&self, filters: &[String]) -> Result<Vec<Entry>, BucketError> {
        let read = |e: &dyn std::fmt::Display| BucketError::Read(e.to_string());
        let config = pull::OrderedConfig {
            filter_subjects: filters.to_vec(),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        };
        let consumer = self
            .store
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| read(&e))?;
        crate::metrics::Metrics::get()
            .log_consumers_created
            .increment(1);
        let pending = consumer.cached_info().num_pending as usize;
        let mut entries = Vec::with_capacity(pending);
        if pending == 0 {
            return Ok(entries);
        }
        let mut messages = consumer.messages().await.map_err(|e| read(&e))?;
        while entries.len() < pending {
            let Some(message) = messages.try_next().await.map_err(|e| read(&e))? else {
                break;
            };
            let operation = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .map(|v| v.as_str().to_string());
            let subject = message.subject.to_string();
            entries.push(self.entry(&subject, operation, message.payload.clone()));
        }
        Ok(entries)
    }

    fn entry(&self, subject: &str, operation: Option<String>, payload: bytes::Bytes) -> Entry {
        let key = subject
            .strip_prefix(self.store.prefix.as_str())
            .unwrap_or(subject)
            .to_string();
        let marker = matches!(operation.as_deref(), Some("DEL") | Some("PURGE"));
        Entry {
            key,
            value: (!marker).then_some(payload),
        }
    }

    /// Applies a change to session `id`: a removal of the whole session,
    /// then its subscription records, then its header and the user's
    /// index (and the removal of the user's sessions beyond
    /// `most_per_user`). Every step is idempotent: a failed change is
    /// applied again whole.
    pub async fn apply(
        &self,
        id: Id,
        change: &Change,
        most_per_user: usize,
    ) -> Result<Applied, BucketError> {
        let mut applied = Applied::default();
        if change.remove_all {
            self.remove_session(id, &mut applied).await?;
        }
        let mut records = Vec::with_capacity(change.subscriptions.len());
        for (channel, cursor) in &change.subscriptions {
            let key = format!("{id}.{}", channel_token(*channel));
            let value = cursor.as_ref().map(|c| encode(&key, c)).transpose()?;
            records.push(self.write_record(key, value));
        }
        let written: Vec<Applied> = futures::stream::iter(records)
            .buffer_unordered(RECORD_WRITES_AT_ONCE)
            .try_collect()
            .await?;
        for one in written {
            applied.add(one);
        }
        if let Some(expires_at) = change.header {
            let key = id.to_string();
            let header = Header {
                user: Some(change.user),
                expires_at,
                ..Default::default()
            };
            let value = encode(&key, &header)?;
            applied.written(key.len() + value.len());
            self.store.put(&key, value.into()).await?;
            let evicted = self
                .update_index(change.user, &mut applied, |sessions, now| {
                    sessions.insert(id, now);
                    let mut oldest: Vec<(i64, Id)> = sessions
                        .iter()
                        .filter(|(s, _)| **s != id)
                        .map(|(s, at)| (*at, *s))
                        .collect();
                    oldest.sort();
                    let beyond = sessions.len().saturating_sub(most_per_user);
                    let evicted: Vec<Id> =
                        oldest.into_iter().take(beyond).map(|(_, s)| s).collect();
                    for s in &evicted {
                        sessions.remove(s);
                    }
                    evicted
                })
                .await?;
            for session in evicted {
                self.remove_session(session, &mut applied).await?;
                applied.evicted += 1;
            }
        } else if change.remove_all {
            self.update_index(change.user, &mut applied, |sessions, _| {
                sessions.remove(&id);
            })
            .await?;
        }
        Ok(applied)
    }

    /// Writes (`Some`) or removes one record.
    async fn write_record(
        &self,
        key: String,
        value: Option<Vec<u8>>,
    ) -> Result<Applied, BucketError> {
        let mut applied = Applied::default();
        match value {
            Some(value) => {
                applied.written(key.len() + value.len());
                self.store.put(&key, value.into()).await?;
            }
            None => {
                applied.removed(key.len());
                self.purge(&key).await?;
            }
        }
        Ok(applied)
    }

    /// Removes every message of the keys `filter` matches, leaving no
    /// marker.
    async fn purge(&self, filter: &str) -> Result<(), BucketError> {
        self.store
            .stream
            .purge()
            .filter(self.subject(filter))
            .await?;
        Ok(())
    }

    /// Removes every record of session `id` (not its index entry).
    async fn remove_session(&self, id: Id, applied: &mut Applied) -> Result<(), BucketError> {
        let header = id.to_string();
        for key in [header.clone(), format!("{header}.>")] {
            applied.removed(key.len());
            self.purge(&key).await?;
        }
        Ok(())
    }

    /// Updates `user`'s index with `edit` (given the sessions and a stamp,
    /// [`index_stamp`]), revision-checked: on a conflict it reads the
    /// index again and edits that. Entries older than the bucket's max age
    /// are dropped (their sessions are gone), and an index left empty is
    /// deleted.
    async fn update_index<T>(
        &self,
        user: Id,
        applied: &mut Applied,
        mut edit: impl FnMut(&mut BTreeMap<Id, i64>, i64) -> T,
    ) -> Result<T, BucketError> {
        let key = format!("{USERS}.{user}");
        let failed = |reason: String| BucketError::Index { user, reason };
        let max_age = self.max_age.as_millis().min(i64::MAX as u128 / 4) as i64;
        for _ in 0..INDEX_ATTEMPTS {
            let stamp = index_stamp();
            let entry = self.store.entry(key.as_str()).await?;
            let revision = entry.as_ref().map_or(0, |e| e.revision);
            let mut sessions: BTreeMap<Id, i64> = match entry {
                Some(e) if e.operation == kv::Operation::Put => serde_json::from_slice(&e.value)
                    .unwrap_or_else(|e| {
                        tracing::warn!(%user, error = %e, "a user's session index did not decode; starting it again");
                        BTreeMap::new()
                    }),
                _ => BTreeMap::new(),
            };
            let had = sessions.len();
            sessions.retain(|_, at| *at + max_age > stamp);
            let result = edit(&mut sessions, stamp);
            let outcome = if sessions.is_empty() {
                if had == 0 {
                    return Ok(result); // nothing there, nothing to write
                }
                match self
                    .store
                    .delete_expect_revision(key.as_str(), Some(revision))
                    .await
                {
                    Ok(()) => {
                        applied.removed(key.len());
                        Ok(())
                    }
                    Err(e) => Err((
                        e.kind() == kv::DeleteErrorKind::WrongLastRevision,
                        e.to_string(),
                    )),
                }
            } else {
                let value = encode(&key, &sessions)?;
                let len = value.len();
                // Revision 0: only if the key has no value yet.
                match self
                    .store
                    .update(key.as_str(), value.into(), revision)
                    .await
                {
                    Ok(_) => {
                        applied.written(key.len() + len);
                        Ok(())
                    }
                    Err(e) => Err((
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )),
                }
            };
            match outcome {
                Ok(()) => return Ok(result),
                Err((true, _)) => continue,
                Err((false, reason)) => return Err(failed(reason)),
            }
        }
        Err(failed(format!(
            "{INDEX_ATTEMPTS} updates lost to concurrent ones"
        )))
    }

    /// Every key of the bucket (a full scan: it creates a consumer). Public
    /// to inspect the bucket without knowing its layout, which is this
    /// module's alone: `tests/session_writes.rs` and `cluster_sessions` do.
    pub async fn keys(&self) -> Result<Vec<String>, BucketError> {
        let keys = self
            .store
            .keys()
            .await
            .map_err(|e| BucketError::Read(e.to_string()))?;
        keys.try_collect()
            .await
            .map_err(|e| BucketError::Read(e.to_string()))
    }

    /// The sessions in `user`'s index. Public for the same inspection as
    /// [`Bucket::keys`].
    pub async fn sessions_of(&self, user: Id) -> Result<Vec<Id>, BucketError> {
        let key = format!("{USERS}.{user}");
        match self.store.entry(key.as_str()).await? {
            Some(e) if e.operation == kv::Operation::Put => {
                let sessions: BTreeMap<Id, i64> =
                    serde_json::from_slice(&e.value).map_err(|e| BucketError::Corrupt {
                        key,
                        reason: e.to_string(),
                    })?;
                Ok(sessions.into_keys().collect())
            }
            _ => Ok(Vec::new()),
        }
    }
}

fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>, BucketError> {
    serde_json::to_vec(value).map_err(|e| BucketError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}
