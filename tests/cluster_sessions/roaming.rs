//! A session moving between gateways: resumed on another one after a
//! crash, and clients roaming through a rolling restart under load, on a
//! three-node cluster.

use super::*;

/// A seq frame's channel id.
fn channel_of(frame: &Value) -> Option<String> {
    frame["channel"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_gateway_after_a_crash() {
    let cluster = cluster();
    let (mut deployment, log) = on_cluster(&cluster, 2).await;
    let (acked, quiet) = (Id::new_v4(), Id::new_v4());
    let user = token(Id::new_v4(), Grant::All, &[]);

    let mut client = Client::connect(&deployment.gateways[0], &user).await;
    let session = client.session_id();
    client.subscribe(chat(acked)).await;
    client.subscribe(chat(quiet)).await;

    // 100 events/s, half on each channel.
    let (stop, publisher) =
        publish_steadily(log.clone(), vec![acked, quiet], Duration::from_millis(10));

    // Read (and ack every 10th event of one channel) past a few flushes.
    let mut before: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let until = tokio::time::Instant::now() + FLUSH * 2 + Duration::from_millis(500);
    while let Ok(frame) = tokio::time::timeout_at(until, client.next()).await {
        let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) else {
            continue;
        };
        let seen = before.entry(channel.clone()).or_default();
        seen.push(seq);
        if channel == chat(acked).to_string() && seen.len().is_multiple_of(10) {
            client
                .send(json!({"type": "ack", "channel": channel, "seq": seq}))
                .await;
        }
    }
    // A crashes while events flow; what reached the client counts as seen.
    deployment.gateways[0].kill9();
    while let Some(frame) = client.try_next().await {
        if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
            before.entry(channel).or_default().push(seq);
        }
    }

    let mut client = Client::connect_session(&deployment.gateways[1], &user, &session).await;
    assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
    let channels: BTreeSet<String> = client.hello["data"]["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = [chat(acked), chat(quiet)]
        .iter()
        .map(Channel::to_string)
        .collect();
    assert_eq!(channels, want);

    // Restored and caught up; then the publisher stops.
    let mut after: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut replayed = BTreeSet::new();
    while replayed.len() < 2 {
        let frame = client.next().await;
        if frame["type"] == "replayed" {
            replayed.insert(frame["data"]["channel"].as_str().map(str::to_string));
        } else if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
            after.entry(channel).or_default().push(seq);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    let published = publisher.await.expect("publisher");
    for c in [acked, quiet] {
        let last = *published[&c].last().expect("published");
        let name = chat(c).to_string();
        while after.get(&name).and_then(|s| s.last()).copied() < Some(last) {
            let frame = client.next().await;
            if let (Some(seq), Some(channel)) = (frame["seq"].as_u64(), channel_of(&frame)) {
                after.entry(channel).or_default().push(seq);
            }
        }
    }

    for c in [acked, quiet] {
        let name = chat(c).to_string();
        let before = before.get(&name).cloned().unwrap_or_default();
        let after = after.get(&name).cloned().unwrap_or_default();
        assert!(
            before.windows(2).all(|w| w[0] < w[1]),
            "{name}: in order before"
        );
        assert!(
            after.windows(2).all(|w| w[0] < w[1]),
            "{name}: in order after"
        );
        let first = *before.first().expect("events before the crash");
        let got: BTreeSet<u64> = before.iter().chain(&after).copied().collect();
        let want: BTreeSet<u64> = published[&c]
            .iter()
            .copied()
            .filter(|s| *s >= first)
            .collect();
        let missing: Vec<u64> = want.difference(&got).copied().collect();
        assert!(missing.is_empty(), "{name}: missing {missing:?}");
        let seen_before: BTreeSet<u64> = before.iter().copied().collect();
        let again = after.iter().filter(|s| seen_before.contains(s)).count();
        // The cursor is at most a flush interval (plus a receipt probe and
        // a round trip) old: at 50 events/s per channel, 4 s is 200.
        assert!(again <= 200, "{name}: {again} events came again");
        println!(
            "{name}: {} before, {} after, {again} again",
            before.len(),
            after.len()
        );
    }
}

/// One client of the rolling restart: reads its channel, and when its
/// gateway closes, reconnects with its session to the gateway `target`
/// names. Returns the seqs it received, once it has the last published.
async fn roaming_client(
    c: Id,
    target: tokio::sync::watch::Receiver<String>,
    moved: Arc<AtomicUsize>,
    last: tokio::sync::watch::Receiver<Option<BTreeMap<Id, Vec<u64>>>>,
) -> Vec<u64> {
    let url = target.borrow().clone();
    let mut client = Client::connect_url(&url).await;
    let session = client.session_id();
    client.subscribe(chat(c)).await;
    let mut seqs: Vec<u64> = Vec::new();
    loop {
        let end = last
            .borrow()
            .as_ref()
            .map(|published| published.get(&c).and_then(|s| s.last()).copied());
        if let (Some(end), Some(seen)) = (end, seqs.last()) {
            if Some(*seen) >= end {
                return seqs;
            }
        }
        let frame = tokio::time::timeout(Duration::from_millis(200), client.try_next()).await;
        match frame {
            Err(_) => continue, // look at `last` again
            Ok(Some(frame)) => {
                if let Some(seq) = frame["seq"].as_u64() {
                    seqs.push(seq);
                }
            }
            Ok(None) => {
                // Closed (1001): back on the other gateway, with the session.
                // A refused connect (a gateway between stop and start) is
                // tried again after a pause, as a real client does.
                let mut attempts = 0;
                client = loop {
                    let url = format!("{}&session={session}", target.borrow().clone());
                    match Client::try_connect_url(&url).await {
                        Ok(client) => break client,
                        Err(e) => {
                            attempts += 1;
                            assert!(attempts < 100, "reconnect refused 100 times: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                assert_eq!(client.hello["data"]["resumed"], true, "{}", client.hello);
                moved.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    const CLIENTS: usize = 20;
    let cluster = cluster();
    let (mut deployment, log) = on_cluster(&cluster, 2).await;
    let channels: Vec<Id> = (0..4).map(|_| Id::new_v4()).collect();
    let user = token(Id::new_v4(), Grant::All, &[]);
    let started = Instant::now();

    // Half the clients on each gateway.
    let (to_a, target_a) = tokio::sync::watch::channel(deployment.gateways[0].ws_url(&user));
    let (to_b, target_b) = tokio::sync::watch::channel(deployment.gateways[1].ws_url(&user));
    let (set_last, last) = tokio::sync::watch::channel(None);
    let moved = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c = channels[i % channels.len()];
        let target = if i % 2 == 0 { &target_a } else { &target_b };
        let task = tokio::spawn(roaming_client(
            c,
            target.clone(),
            moved.clone(),
            last.clone(),
        ));
        clients.push((c, task));
    }
    // 200 events/s over the channels.
    let (stop, publisher) =
        publish_steadily(log.clone(), channels.clone(), Duration::from_millis(5));
    tokio::time::sleep(FLUSH).await;

    // A restarts: its clients go to B (and come back to the new A later).
    let b_url = deployment.gateways[1].ws_url(&user);
    to_a.send_replace(b_url);
    let mut a = deployment.gateways.remove(0);
    let mut a = tokio::task::spawn_blocking(move || {
        a.terminate();
        a.restart();
        a
    })
    .await
    .expect("A restarts");
    wait_until("A's clients on B", || async {
        moved.load(Ordering::SeqCst) >= CLIENTS / 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Then B: every client goes to A.
    let a_url = a.ws_url(&user);
    to_a.send_replace(a_url.clone());
    to_b.send_replace(a_url);
    let mut b = deployment.gateways.remove(0);
    let b_writes = b.metric("switchboard_session_writes_total").await;
    let b = tokio::task::spawn_blocking(move || {
        b.terminate();
        b
    })
    .await
    .expect("B stops");
    wait_until("every client on A", || async {
        moved.load(Ordering::SeqCst) >= CLIENTS + CLIENTS / 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop.send(());
    let published = publisher.await.expect("publisher");
    set_last.send_replace(Some(published.clone()));
    // Each client stops at its channel's last event.
    let mut lost = 0;
    let mut again = 0;
    for (c, task) in clients {
        let seqs = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("client in time")
            .expect("client");
        let first = *seqs.first().expect("events");
        let got: BTreeSet<u64> = seqs.iter().copied().collect();
        again += seqs.len() - got.len();
        lost += published[&c]
            .iter()
            .filter(|s| **s >= first && !got.contains(s))
            .count();
    }
    a.kill9();
    drop(b);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{CLIENTS} clients, two restarts: {lost} lost, {again} again; B wrote {b_writes} session records in {elapsed:.1} s"
    );
    assert_eq!(lost, 0, "events lost");
}
