//! The bucket itself: which sessions resume (live ones of their owner), and
//! a session read in one request with no consumer, whose removals leave no
//! key.

use super::*;

/// Writes `change` of session `id` through `sessions` and waits until it
/// is in the bucket.
async fn written(sessions: &Sessions, id: Id, change: Change) {
    let (written, done) = tokio::sync::oneshot::channel();
    sessions
        .save(id, change, Some(written))
        .expect("handed over");
    done.await.expect("written");
}

/// A session bucket on `nats` (a minute's max age), and sessions kept in
/// it with their writer.
async fn bucket_sessions(nats: &NatsServer) -> (Bucket, Sessions, Background) {
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let settings = BucketSettings {
        name: "test_sessions".into(),
        max_age: BUCKET_MAX_AGE,
        replicas: 1,
    };
    let bucket = Bucket::create_or_update(&js, &settings)
        .await
        .expect("bucket");
    let (sessions, background) = Sessions::kv(bucket.clone(), BUCKET_MAX_AGE, FLUSH, 64);
    (bucket, sessions, background)
}

const BUCKET_MAX_AGE: Duration = Duration::from_secs(60);

/// The bucket itself: fresh, resumed, another user's and expired sessions,
/// through the writer.
#[tokio::test]
async fn the_bucket_resumes_only_live_sessions_of_their_owner() {
    let nats = nats();
    let (bucket, sessions, background) = bucket_sessions(&nats).await;
    let (ann, bob) = (Id::new_v4(), Id::new_v4());

    let fresh = sessions.open(None, ann).await;
    assert!(!fresh.resumed);
    let mut subs = BTreeMap::new();
    subs.insert(chat(Id::new_v4()), at(7));
    let change = Change::whole(ann, sessions.expires_at(), subs.clone());
    written(&sessions, fresh.id, change).await;

    let again = sessions.open(Some(fresh.id), ann).await;
    assert!(again.resumed);
    assert_eq!(again.id, fresh.id);
    assert_eq!(again.subscriptions, subs);
    assert!(!again.legacy);

    let stolen = sessions.open(Some(fresh.id), bob).await;
    assert!(!stolen.resumed);
    assert_ne!(stolen.id, fresh.id);
    assert!(stolen.subscriptions.is_empty());

    let unknown = sessions.open(Some(Id::new_v4()), ann).await;
    assert!(!unknown.resumed);

    // A record past its expiry (a TTL of zero) is a fresh session.
    let (expired, expired_background) = Sessions::kv(bucket.clone(), Duration::ZERO, FLUSH, 64);
    let change = Change::whole(ann, expired.expires_at(), subs.clone());
    written(&expired, fresh.id, change).await;
    assert!(!sessions.open(Some(fresh.id), ann).await.resumed);
    expired_background
        .close(PATIENCE)
        .await
        .expect("an idle writer ends");

    // Changes of one session coalesce; closing drains what is pending.
    let id = Id::new_v4();
    let mut first = Change::new(ann);
    first.header = Some(sessions.expires_at());
    sessions.save(id, first, None).expect("handed over");
    for cursor in 0..100u64 {
        let mut change = Change::new(ann);
        change
            .subscriptions
            .insert(Channel::Global, Some(at(cursor)));
        sessions.save(id, change, None).expect("handed over");
    }
    background
        .close(PATIENCE)
        .await
        .expect("the writer drains in time");
    let last = bucket.get(id).await.expect("read").expect("written");
    assert_eq!(last.subscriptions.get(&Channel::Global), Some(&at(99)));
}

/// The consumers this test process created (the fallback read counts one).
fn consumers_created() -> f64 {
    switchboard::metrics::Metrics::render()
        .lines()
        .find(|l| l.starts_with("switchboard_log_consumers_created_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// A session is read with one batched get, no consumer; one of more keys
/// than a batched get may return is read whole with a consumer instead. An
/// ended subscription and a removed session leave no key behind (no
/// marker for later reads to wade through).
#[tokio::test]
async fn a_session_reads_in_one_request_and_removals_leave_no_key() {
    let nats = nats();
    let (bucket, sessions, background) = bucket_sessions(&nats).await;
    let ann = Id::new_v4();

    let small = Id::new_v4();
    let channels: Vec<Channel> = (0..3).map(|_| chat(Id::new_v4())).collect();
    let subs: BTreeMap<Channel, Cursor> = channels.iter().map(|c| (*c, at(5))).collect();
    written(
        &sessions,
        small,
        Change::whole(ann, sessions.expires_at(), subs.clone()),
    )
    .await;
    let before = consumers_created();
    let read = sessions.open(Some(small), ann).await;
    assert_eq!(read.subscriptions, subs);
    assert_eq!(consumers_created(), before, "no consumer for a hello");

    let big = Id::new_v4();
    let many: BTreeMap<Channel, Cursor> = (0..switchboard::session::kv::MULTI_GET_MOST + 50)
        .map(|i| (chat(Id::new_v4()), at(i as u64)))
        .collect();
    written(
        &sessions,
        big,
        Change::whole(ann, sessions.expires_at(), many.clone()),
    )
    .await;
    let read = sessions.open(Some(big), ann).await;
    assert!(read.resumed);
    assert_eq!(read.subscriptions.len(), many.len());
    assert_eq!(read.subscriptions, many);
    assert_eq!(consumers_created(), before + 1.0, "read with a consumer");

    // One subscription ends, then the session's last ones.
    let mut less = Change::new(ann);
    less.subscriptions.insert(channels[0], None);
    written(&sessions, small, less).await;
    let read = sessions.open(Some(small), ann).await;
    assert_eq!(read.subscriptions.len(), 2);
    written(&sessions, big, Change::remove(ann)).await;
    written(&sessions, small, Change::remove(ann)).await;
    assert!(!sessions.open(Some(small), ann).await.resumed);
    let keys = bucket.keys().await.expect("keys");
    assert_eq!(
        keys,
        Vec::<String>::new(),
        "nothing is left, the index neither"
    );
    assert_eq!(
        bucket.sessions_of(ann).await.expect("index"),
        Vec::<Id>::new()
    );
    background.close(PATIENCE).await.expect("the writer ends");
}
