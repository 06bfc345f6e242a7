//! A gateway on a three-node NATS cluster (R3 stream): when the server it
//! is connected to dies (SIGKILL) or enters lame-duck mode, it moves to
//! another server and its clients see every event exactly once, in order.
//! The stream's leader is put on that server first (the worst case: the
//! publishes and the gateway's consumer both move), and the publisher
//! talks to the other servers. And `serve` refuses more replicas than the
//! cluster has servers, and waits (bounded) for a forming cluster's last
//! server to join JetStream before it places an R3 stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::channel::Id;
use switchboard::log::StreamSettings;
use switchboard::token::Grant;
use switchboard_harness::*;

/// Events published in one run, one every [`PACE`].
const EVENTS: usize = 250;

/// The pace of the publisher (a steady 50 events/s).
const PACE: Duration = Duration::from_millis(20);

/// How many events are published before the fault.
const BEFORE_FAULT: usize = 60;

/// One cluster test at a time: three clusters electing leaders at once on
/// a 2-core machine take longer than any failover should.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long after the last publish every client must have every event.
const CATCH_UP: Duration = Duration::from_secs(20);

/// WebSocket clients subscribed to the channel.
const CLIENTS: usize = 3;

/// What happens to the gateway's NATS server.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    LameDuck,
    /// The stream's leader is on another server than the gateway's, and
    /// that server is killed: the gateway's connection stays, its
    /// consumer goes.
    KillLeaderElsewhere,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_nats_server_is_killed_moves_on_and_its_clients_miss_nothing() {
    failover(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_server_of_the_streams_leader_dies_the_gateway_on_another_one_misses_nothing() {
    failover(Fault::KillLeaderElsewhere).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_nats_server_goes_lame_duck_moves_on_promptly_and_its_clients_miss_nothing()
{
    failover(Fault::LameDuck).await;
}

async fn failover(fault: Fault) {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = cluster();
    let gateway = Gateway::start_on(&cluster.urls(), &["--replicas", "3"]);
    let mut holder = None;
    wait_until("the gateway's NATS connection to show in /connz", || {
        holder = cluster.holder_of("switchboard");
        std::future::ready(holder.is_some())
    })
    .await;
    let Some(holder) = holder else { return };
    // The server that fails: the gateway's, or another one.
    let failing = match fault {
        Fault::Kill | Fault::LameDuck => holder,
        Fault::KillLeaderElsewhere => (holder + 1) % 3,
    };

    // The publisher talks to the other servers only, so the fault hits the
    // gateway and not the publishing.
    let settings = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let log = log_named(&cluster.urls_except(failing), "publisher", settings).await;
    // The worst case: the stream's leader is on the server that fails, so
    // the publishes and the gateway's consumer both move.
    lead_stream_on(&log, cluster.name(failing)).await;
    let c = Id::new_v4();
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
        client.subscribe(chat(c)).await;
        readers.push(tokio::spawn(read_seqs(client, EVENTS)));
    }

    let published = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn({
        let published = published.clone();
        let log = log.clone();
        async move {
            let mut seqs = Vec::with_capacity(EVENTS);
            let mut pace = tokio::time::interval(PACE);
            for i in 0..EVENTS {
                pace.tick().await;
                let event = message(c, format!("event {i}"));
                // The log retries for 30 s; a publisher whose publish still
                // failed sends the same event (the same id) again, as an
                // HTTP publisher would, and it is stored once.
                let deadline = Instant::now() + PATIENCE;
                let receipt = loop {
                    match log.publish(&event).await {
                        Ok(receipt) => break receipt,
                        Err(e) if Instant::now() < deadline => {
                            eprintln!("event {i}: {e}; publishing it again");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => panic!("event {i} is published across the failover: {e}"),
                    }
                };
                seqs.push(receipt.stored.seq);
                published.fetch_add(1, Ordering::SeqCst);
            }
            seqs
        }
    });

    wait_until("the first events to be published", || {
        std::future::ready(published.load(Ordering::SeqCst) >= BEFORE_FAULT)
    })
    .await;
    let faulted = Instant::now();
    match fault {
        Fault::Kill | Fault::KillLeaderElsewhere => cluster.kill(failing),
        Fault::LameDuck => cluster.lame_duck(failing).expect("lame-duck signal"),
    }
    wait_until("the gateway to be on a live NATS server", || {
        let now = cluster.holder_of("switchboard");
        std::future::ready(now.is_some_and(|n| n != failing))
    })
    .await;
    let moved_after = faulted.elapsed();
    if let Fault::LameDuck = fault {
        // nats-server waits its grace period (10 s by default) before it
        // closes any client: moving earlier is the gateway's own doing.
        assert!(
            moved_after < Duration::from_secs(10),
            "the gateway left the lame-duck server after {moved_after:?}"
        );
    }

    let want = match publisher.await {
        Ok(want) => want,
        Err(e) => {
            for i in 0..3 {
                let log = cluster.log_text(i);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- {} (last lines) ---", cluster.name(i));
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            panic!("the publisher: {e}");
        }
    };
    let mut sorted = want.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, want, "the receipts are in publish order, each once");
    // A lost consumer is replaced within seconds, not after async-nats's
    // default 45 s: every client has everything soon after the last publish.
    let caught_up = tokio::time::Instant::now() + CATCH_UP;
    let mut clients = Vec::new();
    for (i, reader) in readers.into_iter().enumerate() {
        let (got, mut client) = tokio::time::timeout_at(caught_up, reader)
            .await
            .unwrap_or_else(|_| panic!("client {i} did not catch up within {CATCH_UP:?}"))
            .expect("a reader");
        assert_seqs(&got, &want, &format!("client {i} after a {fault:?}"));
        client.assert_silent(Duration::from_millis(300)).await;
        clients.push(client);
    }

    // The failed server comes back into the cluster; the next event
    // arrives once.
    cluster.restart(failing).expect("the server restarts");
    let next = log
        .publish(&message(c, "after the restart"))
        .await
        .expect("published after the restart");
    for client in &mut clients {
        let frame = client.next().await;
        assert_eq!(frame["seq"], next.stored.seq, "{frame}");
    }
}

/// Moves the stream's leadership to the server named `server` (a
/// leader stepdown with that server preferred) and waits until it is there.
async fn lead_stream_on(log: &switchboard::log::Log, server: &str) {
    let js = async_nats::jetstream::new(log.client().clone());
    let name = log.settings().name.clone();
    let leader = || async {
        let mut stream = js.get_stream(&name).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    };
    let deadline = Instant::now() + PATIENCE;
    while leader().await.as_deref() != Some(server) {
        assert!(
            Instant::now() < deadline,
            "the stream's leader did not move to {server}"
        );
        let body = serde_json::json!({"placement": {"preferred": server}}).to_string();
        let _ = log
            .client()
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
                body.into(),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The seqs of the next `n` events the client receives (fewer if they stop
/// coming for [`PATIENCE`]), and the client.
async fn read_seqs(mut client: Client, n: usize) -> (Vec<u64>, Client) {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let Ok(frame) = tokio::time::timeout(PATIENCE, client.next()).await else {
            break;
        };
        let seq = frame["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("expected an event, got {frame}"));
        seqs.push(seq);
    }
    (seqs, client)
}

#[test]
fn serve_refuses_more_replicas_than_a_single_server_holds() {
    let nats = nats();
    let stderr = refused_serve(&nats.url(), "3");
    assert!(
        stderr.contains("`replicas` setting is 3") && stderr.contains("1 JetStream server"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_more_replicas_than_the_cluster_has_servers() {
    let _one = ONE_CLUSTER.blocking_lock();
    let cluster = cluster();
    let stderr = refused_serve(&cluster.urls(), "5");
    assert!(
        stderr.contains("`replicas` setting is 5") && stderr.contains("3 JetStream server"),
        "{stderr}"
    );
}

/// A gateway started while the cluster's third server has not joined
/// JetStream yet (the race of a cluster and its gateways started
/// together): NATS cannot place the R3 stream, so `serve` says so and
/// tries again, and comes up once the server has joined.
#[test]
fn serve_waits_for_a_forming_cluster_to_place_its_stream() {
    let _one = ONE_CLUSTER.blocking_lock();
    let mut cluster = NatsCluster::start_temp_without_jetstream_on(2)
        .expect("a cluster starts (run `just tools`)");
    let data = tempfile::tempdir().expect("temp dir");
    let log = data.path().join("gateway.log");
    // On the two JetStream servers (the third, without it, would refuse
    // the connection's JetStream); the cluster still lists three.
    let urls = cluster.urls_except(2);
    let dir = data.path().to_path_buf();
    let starting =
        std::thread::spawn(move || Serve::new(&urls).args(&["--replicas", "3"]).start_in(&dir));
    let deadline = Instant::now() + PATIENCE;
    let waiting = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("NATS cannot place the stream's replicas yet") {
            break text;
        }
        assert!(
            Instant::now() < deadline && !starting.is_finished(),
            "serve did not say it waits for the placement:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        waiting
            .matches("cannot place the stream's replicas yet")
            .count(),
        1,
        "said once:\n{waiting}"
    );
    cluster
        .enable_jetstream(2)
        .expect("n2 restarts with JetStream");
    let gateway = starting.join().expect("serve came up");
    let info = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let client = async_nats::connect(cluster.url(0)).await.expect("NATS");
            let js = async_nats::jetstream::new(client);
            let mut stream = js
                .get_stream(StreamSettings::default().name)
                .await
                .expect("the stream exists");
            stream.info().await.expect("stream info").config.clone()
        });
    assert_eq!(info.num_replicas, 3);
    drop(gateway);
}

/// Runs `serve --replicas <replicas>` on `nats_url`, expects it to exit
/// non-zero within [`PATIENCE`] naming the setting, and returns its stderr.
fn refused_serve(nats_url: &str, replicas: &str) -> String {
    use std::io::Read;
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--nats-url", nats_url, "--replicas", replicas])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("serve's status") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("serve with --replicas {replicas} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(!status.success(), "serve exited 0; stderr:\n{stderr}");
    assert!(stderr.contains("--replicas"), "{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_server_of_the_list_down_serve_publish_and_replay_use_the_others() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = cluster();
    let urls = cluster.urls();
    let gateway = Gateway::start_on(&urls, &["--replicas", "3"]);
    let c = Id::new_v4();
    let mut client = Client::connect(&gateway, &token(Id::new_v4(), Grant::All, &[])).await;
    client.subscribe(chat(c)).await;
    // Not the stream's leader: this is about the list, not an election.
    let settings = StreamSettings {
        replicas: 3,
        ..StreamSettings::default()
    };
    let observer = log_named(&urls, "observer", settings).await;
    lead_stream_on(&observer, cluster.name(1)).await;
    cluster.kill(0);

    // Every tool gets the whole list; the dead server is skipped.
    let data = format!(
        r#"{{"channel_id":"{c}","message_id":"{}","user_id":"{}","username":"ann","content":"hi"}}"#,
        Id::new_v4(),
        Id::new_v4()
    );
    let published = tool(&[
        "publish",
        "--nats-url",
        &urls,
        "--type",
        "channel_message",
        "--data",
        &data,
    ]);
    let receipt: serde_json::Value = serde_json::from_str(published.trim()).expect("a receipt");
    let seq = receipt["seq"].as_u64().expect("seq");
    let frame = client.next().await;
    assert_eq!(frame["seq"], seq, "{frame}");
    let replayed = tool(&[
        "replay",
        "--nats-url",
        &urls,
        "--channel",
        &chat(c).to_string(),
    ]);
    assert!(replayed.contains(&format!("\"seq\":{seq}")), "{replayed}");

    // A second gateway starts on the same list with a server down.
    let second = Gateway::start_on(&urls, &["--replicas", "3"]);
    let user = token(Id::new_v4(), Grant::All, &[]);
    let mut late = Client::connect(&second, &user).await;
    // A read the degraded cluster cannot serve yet is `unavailable`: the
    // client tries again, as docs/protocol.md says ("Client frames"). A
    // replay whose read fails once it started says `unavailable` and
    // closes with 1011: the client connects again and resumes.
    let deadline = Instant::now() + PATIENCE;
    let unavailable = |frame: &serde_json::Value| {
        frame["type"] == "error" && frame["data"]["code"] == "unavailable"
    };
    let events = 'replay: loop {
        late.send(serde_json::json!({"type": "subscribe", "channel": chat(c).to_string(), "since_seq": 0}))
            .await;
        let first = late.next().await;
        if unavailable(&first) {
            assert!(Instant::now() < deadline, "the replay stayed unavailable");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(first["type"], "subscribed", "{first}");
        let mut events = Vec::new();
        loop {
            let frame = late.next().await;
            if unavailable(&frame) {
                assert_eq!(late.closed_with().await, 1011, "after {frame}");
                assert!(Instant::now() < deadline, "the replay stayed unavailable");
                late = Client::connect(&second, &user).await;
                continue 'replay;
            }
            if frame["type"] == "replayed" {
                break;
            }
            events.push(frame);
        }
        break events;
    };
    assert_eq!(seqs(&events), [seq]);
}

/// Runs a `switchboard` tool to its end (within [`PATIENCE`]); its stdout.
fn tool(args: &[&str]) -> String {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("SWITCHBOARD_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tool starts");
    let deadline = Instant::now() + PATIENCE;
    while child.try_wait().expect("the tool's status").is_none() {
        assert!(Instant::now() < deadline, "{args:?} kept running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the tool's output");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
