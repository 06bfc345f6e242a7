//! An ephemeral added type: delivered live, never stored, no `seq`.

use super::*;

#[tokio::test]
async fn an_ephemeral_added_type_is_live_only() {
    let nats = nats();
    let dir = catalog_dir();
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    // Two nodes: published through one, delivered by the other too.
    let a = Gateway::start_with(&nats, &["--catalog-dir", dir_arg]);
    let b = Gateway::start_with(&nats, &["--catalog-dir", dir_arg]);
    let c = Id::new_v4();
    let mut on_b = Client::connect(&b, &token(Id::new_v4(), Grant::All, &[])).await;
    subscribe(&mut on_b, Channel::Chat(c)).await;

    let (status, reply) = post(
        &a,
        json!({"type": "cursor_moved", "data": {"channel_id": c, "x": 7}}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["stored"], false, "{reply}");
    let frame = next_of(&mut on_b, "cursor_moved").await;
    assert_schema_free(&frame);
    assert_eq!(frame["data"]["x"], 7);
    assert!(frame.get("seq").is_none(), "{frame}");
    assert_eq!(frame["channel"], Channel::Chat(c).to_string());

    // Nothing stored: a replay from the start is empty.
    let mut later = Client::connect(&a, &token(Id::new_v4(), Grant::All, &[])).await;
    let (_, events, _) = later.subscribe_since(Channel::Chat(c), json!(0)).await;
    assert!(events.is_empty(), "{events:?}");
}

/// An added type's frame has the envelope's fields (its `data` schema is
/// the catalog's, not one of `schemas/`).
fn assert_schema_free(frame: &Value) {
    for field in ["type", "timestamp", "data", "channel", "id"] {
        assert!(frame.get(field).is_some(), "{field} in {frame}");
    }
}
