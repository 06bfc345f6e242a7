//! The sessions' JetStream key-value bucket, for a deployment of several
//! nodes: any node reads a session another node wrote.
//!
//! One key per session (its id), holding the [`SessionRecord`] as JSON. The
//! bucket keeps one value per key (history 1) on file storage, replicated
//! like the stream, and forgets a key the session TTL after its last write
//! (the bucket's max age): a connected session is written at least every
//! `SESSION_REFRESH`, so only abandoned ones age out, and no sweep is needed.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::StorageType};

use crate::channel::Id;
use crate::store::SessionRecord;

/// Why the bucket failed.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("cannot create or update the session bucket `{bucket}`: {source}")]
    Create {
        bucket: String,
        source: jetstream::context::CreateKeyValueError,
    },
    #[error("session bucket read: {0}")]
    Read(#[from] kv::EntryError),
    #[error("session bucket write: {0}")]
    Write(#[from] kv::PutError),
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
        Ok(Bucket {
            store: Arc::new(store),
        })
    }

    /// The session's record, if the bucket has it.
    pub async fn get(&self, id: Id) -> Result<Option<SessionRecord>, BucketError> {
        let Some(bytes) = self.store.get(id.to_string()).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BucketError::Corrupt {
                key: id.to_string(),
                reason: e.to_string(),
            })
    }

    pub async fn put(&self, id: Id, record: &SessionRecord) -> Result<(), BucketError> {
        let bytes = serde_json::to_vec(record).map_err(|e| BucketError::Corrupt {
            key: id.to_string(),
            reason: e.to_string(),
        })?;
        self.store.put(id.to_string(), bytes.into()).await?;
        Ok(())
    }
}
