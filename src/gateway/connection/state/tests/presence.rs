//! Presence on a subscription: the snapshot after `subscribed` (after
//! `replayed` for a replay), then only later batches; nothing without
//! asking; a snapshot again after presence deliveries were lost; the flag
//! kept in the session.

use super::*;

fn subscribe_with_presence(channel: Channel, since_seq: Option<u64>) -> ClientFrame {
    match subscribe(channel, since_seq, "p") {
        ClientFrame::Subscribe {
            channel,
            since,
            epoch,
            request_id,
            ..
        } => ClientFrame::Subscribe {
            channel,
            since,
            epoch,
            presence: true,
            request_id,
        },
        other => other,
    }
}

/// A presence delivery of `generation` (the model's snapshots are of
/// generation 7).
fn presence(channel: Channel, generation: u64) -> Arc<Delivery> {
    let frame = format!(r#"{{"type":"user_presence","generation":{generation}}}"#);
    Arc::new(Delivery {
        presence: Some(generation),
        ..Delivery::bare(channel, None, frame.into())
    })
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn the_snapshot_follows_subscribed_then_only_later_batches() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    written(&mut conn);
    let (with, without) = (chat(), chat());
    conn.on_frame(&mut node, subscribe_with_presence(with, None))
        .unwrap();
    conn.on_frame(&mut node, subscribe(without, None, "q"))
        .unwrap();
    let frames = written(&mut conn);
    assert_eq!(types(&frames), ["subscribed", "presence", "subscribed"]);
    assert_eq!(frames[1]["data"]["channel"], with.to_string());
    assert!(frames[1]["data"].get("request_id").is_none());

    // A batch the snapshot covers is dropped; a later one is written; the
    // subscription that did not ask gets neither.
    for d in [presence(with, 6), presence(with, 7), presence(without, 8)] {
        conn.on_delivery(&mut node, d);
    }
    assert!(written(&mut conn).is_empty());
    conn.on_delivery(&mut node, presence(with, 8));
    let frames = written(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["generation"], 8);

    // Deliveries were lost: a new snapshot, for the one that asked only.
    conn.on_presence_lost(&mut node);
    let frames = written(&mut conn);
    assert_eq!(types(&frames), ["presence"]);
    assert_eq!(frames[0]["data"]["channel"], with.to_string());
}

#[test]
fn a_replay_ends_with_replayed_then_the_snapshot() {
    let mut node = Model::new(true);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    written(&mut conn);
    let channel = chat();
    for _ in 0..3 {
        node.publish(channel);
    }
    conn.on_frame(&mut node, subscribe_with_presence(channel, Some(0)))
        .unwrap();
    // Presence meanwhile is not written before the snapshot.
    conn.on_delivery(&mut node, presence(channel, 9));
    let mut frames = written(&mut conn);
    for event in node
        .of_channel_after(channel, 0)
        .cloned()
        .collect::<Vec<_>>()
    {
        let pending = node.of_channel_after(channel, event.seq).count() as u64;
        let step = Step::Window(Arc::new(Recent::encode(event)), pending);
        conn.on_read_step(&mut node, channel, Ok(step)).unwrap();
        frames.extend(written(&mut conn));
    }
    let kinds = types(&frames);
    assert_eq!(
        kinds,
        [
            "subscribed",
            "channel_message",
            "channel_message",
            "channel_message",
            "replayed",
            "presence"
        ],
        "{frames:?}"
    );
}

#[test]
fn the_session_keeps_whether_a_subscription_asked_for_presence() {
    let mut node = Model::new(false);
    let mut conn = state();
    conn.open(&mut node, opened(BTreeMap::new()));
    let (with, without) = (chat(), chat());
    conn.on_frame(&mut node, subscribe_with_presence(with, None))
        .unwrap();
    conn.on_frame(&mut node, subscribe(without, None, "q"))
        .unwrap();
    let kept: BTreeMap<Channel, bool> = node
        .saves
        .iter()
        .flat_map(|change| change.subscriptions.iter())
        .filter_map(|(channel, cursor)| Some((*channel, cursor.as_ref()?.presence)))
        .collect();
    assert_eq!(kept.get(&with), Some(&true));
    assert_eq!(kept.get(&without), Some(&false));
}
