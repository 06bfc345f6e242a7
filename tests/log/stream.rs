//! The stream itself: its settings, applied and updated by `connect` only,
//! and the refusal of a server without JetStream.

use super::*;

#[tokio::test]
async fn stream_settings_are_applied_and_updated_by_connect_only() {
    let nats = nats();
    let js_info = |log: &Log, name: &'static str| {
        let js = async_nats::jetstream::new(log.client().clone());
        async move {
            js.get_stream(name)
                .await
                .expect("the stream exists")
                .info()
                .await
                .expect("stream info")
                .config
                .clone()
        }
    };
    // Streams may not share subjects: the defaults get a server of their own.
    let other_nats = switchboard_harness::nats();
    let defaults = log(&other_nats).await;
    let config = js_info(&defaults, "CHAT_EVENTS").await;
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(120));

    let settings = StreamSettings {
        name: "LOG_TEST".into(),
        retention: Duration::from_secs(90),
        replicas: 1,
        duplicate_window: Duration::from_secs(30),
    };
    let log = log_with(&nats, settings.clone()).await;
    let config = js_info(&log, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(90));
    assert_eq!(config.duplicate_window, Duration::from_secs(30));
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.subjects, subject::stream_subjects());
    assert!(config.allow_direct, "direct gets resolve times");
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(
        config.retention,
        async_nats::jetstream::stream::RetentionPolicy::Limits
    );
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::Old
    );

    // `connect` (serve) brings an existing stream to the settings.
    let changed = StreamSettings {
        retention: Duration::from_secs(2 * 3600),
        duplicate_window: Duration::from_secs(60),
        ..settings.clone()
    };
    let connected = Log::connect(&nats.url(), changed).await.expect("connects");
    let config = js_info(&connected, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(60));

    // `open` (the tools) never reconfigures it.
    let other = StreamSettings {
        retention: Duration::from_secs(5 * 3600),
        duplicate_window: Duration::from_secs(10),
        ..settings
    };
    let opened = Log::open(&nats.url(), other).await.expect("opens");
    let config = js_info(&opened, "LOG_TEST").await;
    assert_eq!(config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(60));
}

/// A nats-server without JetStream, killed on drop.
struct PlainNats(std::process::Child);

impl Drop for PlainNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn connect_refuses_a_server_without_jetstream() {
    use std::io::{BufRead, BufReader};
    let binary = switchboard::local_nats::find_binary().expect("nats-server (run `just tools`)");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("addr").port()
    };
    let mut child = std::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nats-server starts");
    let stderr = child.stderr.take().expect("stderr");
    let _server = PlainNats(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(PATIENCE).expect("nats-server is ready");
    let url = format!("nats://127.0.0.1:{port}");
    assert!(matches!(
        Log::connect(&url, StreamSettings::default()).await,
        Err(LogError::NoJetStream)
    ));
    assert!(matches!(
        Log::open(&url, StreamSettings::default()).await,
        Err(LogError::NoJetStream)
    ));
}
