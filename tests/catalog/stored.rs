//! An added stored type: published through HTTP, the CLI and NATS; stored
//! once per route with one id; live, replayed, in history and in `replay
//! --summary`; listed by `GET /v1/catalog`.

use super::*;

#[tokio::test]
async fn an_added_stored_type_goes_everywhere_a_built_in_one_does() {
    let nats = nats();
    let dir = catalog_dir();
    let dir_arg = dir.path().to_str().expect("utf-8 path");
    let gateway = Gateway::start_with(&nats, &["--catalog-dir", dir_arg]);
    let (c, ann) = (Id::new_v4(), Id::new_v4());
    let ann_token = token(ann, Grant::All, &[]);
    let mut client = Client::connect(&gateway, &ann_token).await;
    subscribe(&mut client, Channel::Chat(c)).await;
    subscribe(&mut client, Channel::User(ann)).await;

    // HTTP: one copy per route, one id.
    let (status, reply) = post(
        &gateway,
        json!({"type": "reaction_added", "data": reaction(c, ann, "+1")}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let seqs = reply["seqs"]
        .as_array()
        .expect("seqs of both routes")
        .clone();
    assert_eq!(seqs.len(), 2, "{reply}");
    let mut got = Vec::new();
    while got.len() < 2 {
        let frame = client.next().await;
        if frame["type"] == "reaction_added" {
            got.push(frame);
        }
    }
    let channels: Vec<&str> = got
        .iter()
        .map(|f| f["channel"].as_str().unwrap_or(""))
        .collect();
    assert!(
        channels.contains(&Channel::Chat(c).to_string().as_str()),
        "{got:?}"
    );
    assert!(
        channels.contains(&Channel::User(ann).to_string().as_str()),
        "{got:?}"
    );
    assert_eq!(got[0]["id"], got[1]["id"]);
    assert_eq!(got[0]["id"], reply["id"]);
    assert_eq!(got[0]["data"]["emoji"], "+1");

    // Refused like a built-in type: its schema, and the body's shape.
    let (status, refused) = post(
        &gateway,
        json!({"type": "reaction_added", "data": {"channel_id": c, "emoji": 7}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let (status, _) = post(
        &gateway,
        json!({"type": "reaction_added", "data": reaction(c, ann, "x"), "extra": 1}),
    )
    .await;
    assert_eq!(status, 400);

    // The CLI, with the catalog, and its duplicate flag.
    let id = Id::new_v4().to_string();
    let data = reaction(c, ann, "tada").to_string();
    let publish = |id: &str| {
        let mut cmd = switchboard();
        cmd.args([
            "publish",
            "--nats-url",
            &nats.url(),
            "--catalog-dir",
            dir_arg,
            "--type",
            "reaction_added",
            "--data",
            &data,
            "--id",
            id,
        ]);
        cmd
    };
    let first: Value = serde_json::from_str(run(&mut publish(&id)).await.trim()).expect("reply");
    assert_eq!(first["seqs"].as_array().map(Vec::len), Some(2), "{first}");
    let again: Value = serde_json::from_str(run(&mut publish(&id)).await.trim()).expect("reply");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        next_of(&mut client, "reaction_added").await["data"]["emoji"],
        "tada"
    );

    // Straight to NATS, as another service does (the channel route only).
    let raw = async_nats::connect(nats.url()).await.expect("nats");
    let payload =
        json!({"id": Id::new_v4(), "type": "reaction_added", "data": reaction(c, ann, "eyes")});
    publish_raw(
        &raw,
        format!("chat.channel.{c}.reaction_added"),
        payload.to_string(),
    )
    .await;
    loop {
        let frame = next_of(&mut client, "reaction_added").await;
        if frame["data"]["emoji"] == "eyes" {
            assert!(frame["seq"].as_u64().is_some());
            break;
        }
    }

    // Replay from the start: the channel's three, in order.
    let mut later = Client::connect(&gateway, &ann_token).await;
    let (_, events, _) = later.subscribe_since(Channel::Chat(c), json!(0)).await;
    let emojis: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["emoji"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(emojis, ["+1", "tada", "eyes"]);

    // History and the audit summary.
    let lines = history_lines(&gateway, Channel::Chat(c)).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let summary = run(switchboard().args([
        "replay",
        "--nats-url",
        &nats.url(),
        "--catalog-dir",
        dir_arg,
        "--channel",
        &Channel::Chat(c).to_string(),
        "--summary",
    ]))
    .await;
    let summary: Value = serde_json::from_str(summary.trim()).expect("summary");
    assert_eq!(summary["by_type"]["reaction_added"], 3, "{summary}");
    // Without the catalog, the tool counts them as unknown, not invalid.
    let blind = run(switchboard().args([
        "replay",
        "--nats-url",
        &nats.url(),
        "--channel",
        &Channel::Chat(c).to_string(),
        "--summary",
    ]))
    .await;
    let blind: Value = serde_json::from_str(blind.trim()).expect("summary");
    assert_eq!(blind["unknown_types"]["reaction_added"], 3, "{blind}");
    assert_eq!(blind["invalid"], 0, "{blind}");

    // The catalog route: built-in and added types.
    let listing: Value = http()
        .get(gateway.http("/v1/catalog"))
        .bearer_auth(&ann_token)
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("json");
    let types = listing["types"].as_array().expect("types");
    assert_eq!(types.len(), 16, "{listing}");
    let added = types
        .iter()
        .find(|t| t["type"] == "reaction_added")
        .expect("listed");
    assert_eq!(added["stored"], true);
    assert_eq!(added["built_in"], false);
    assert_eq!(
        added["routes"],
        json!([{"channel": "channel_id"}, {"user": "user_id"}])
    );
    assert_eq!(added["schema"]["required"], reaction_schema()["required"]);
    let anonymous = http()
        .get(gateway.http("/v1/catalog"))
        .send()
        .await
        .expect("catalog");
    assert_eq!(anonymous.status().as_u16(), 401);
}
