//! Unit tests of the declarations, the parsers, the bounds and the file.

use super::*;

fn every() -> impl Iterator<Item = &'static Setting> {
    DECLARED.iter().flat_map(|group| group.iter())
}

#[test]
fn a_nats_url_may_list_a_clusters_servers_and_a_bad_one_is_named() {
    let list = NatsUrl::parse("nats://127.0.0.1:4222, 127.0.0.1:4223,tls://h:4224").unwrap();
    assert_eq!(list.0, "nats://127.0.0.1:4222,127.0.0.1:4223,tls://h:4224");
    assert_eq!(
        list.servers().collect::<Vec<_>>(),
        ["nats://127.0.0.1:4222", "127.0.0.1:4223", "tls://h:4224"]
    );
    let bad = NatsUrl::parse("nats://127.0.0.1:4222,http://x:1").unwrap_err();
    assert!(bad.contains("`http://x:1`"), "{bad}");
    let empty = NatsUrl::parse("nats://127.0.0.1:4222,,nats://127.0.0.1:4223").unwrap_err();
    assert!(empty.contains("empty server"), "{empty}");
}

#[test]
fn values_parse_and_bad_ones_are_named() {
    assert_eq!(
        Duration::parse("7d").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(Duration::parse("90s").unwrap(), Duration::from_secs(90));
    assert!(StreamName::parse("CHAT_EVENTS").is_ok());
    assert!(StreamName::parse("a.b").is_err());
    assert!(NatsUrl::parse("nats://127.0.0.1:4222").is_ok());
    assert!(NatsUrl::parse("http://x").is_err());
    assert_eq!(Optional::<NatsUrl>::parse(" ").unwrap(), None);
    assert!(bool::parse("maybe").unwrap_err().contains("maybe"));

    let retention = LogSettings::SETTINGS
        .iter()
        .find(|s| s.name == "retention")
        .unwrap();
    let file = FileSettings::parse("retention = \"7x\"").unwrap();
    let err = LogSettings::resolve(&LogFlags::default(), &file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`retention`") && err.contains("--retention") && err.contains(retention.env),
        "{err}"
    );
    assert!(err.contains("7x") && err.contains("config file"), "{err}");
}

#[test]
fn every_declared_default_and_bound_parses_and_fits() {
    for s in every() {
        assert!(!s.meaning.is_empty(), "{}", s.name);
        assert_eq!(
            s.env,
            format!("SWITCHBOARD_{}", s.name.to_uppercase()),
            "the variable follows the rule"
        );
    }
    let mut names: Vec<_> = every().map(|s| s.name).collect();
    names.sort();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "every name once");
    // The defaults resolve (each group's Default panics otherwise), and each
    // bound parses and is no smaller than the minimum.
    let _ = (
        LogSettings::default(),
        ServeOptions::default(),
        Limits::default(),
    );
    fn bounds<T: Value>(settings: &[Setting], name: &str) {
        let s = settings.iter().find(|s| s.name == name).unwrap();
        let (min, max) = s.range.unwrap();
        let (min, max, default) = (T::parse(min), T::parse(max), T::parse(s.default));
        assert!(min.is_ok() && max.is_ok(), "{name}: the bounds parse");
        assert!(min.clone().unwrap() <= max.clone().unwrap(), "{name}");
        let default = default.unwrap();
        assert!(min.unwrap() <= default && default <= max.unwrap(), "{name}");
    }
    for name in ["retention", "duplicate_window"] {
        bounds::<Duration>(LogSettings::SETTINGS, name);
    }
    bounds::<usize>(LogSettings::SETTINGS, "replicas");
    for name in ["session_ttl", "shutdown_timeout"] {
        bounds::<Duration>(ServeOptions::SETTINGS, name);
    }
    for name in ["stall_timeout", "heartbeat", "reconnect_base"] {
        bounds::<Duration>(Limits::SETTINGS, name);
    }
    for name in [
        "max_frame_bytes",
        "send_queue",
        "bad_frames_per_minute",
        "max_subscriptions",
    ] {
        bounds::<usize>(Limits::SETTINGS, name);
    }
    bounds::<u32>(Limits::SETTINGS, "typing_per_second");
    bounds::<usize>(ServeOptions::SETTINGS, "max_sessions_per_user");
    bounds::<Duration>(ServeOptions::SETTINGS, "jwks_refresh");
    // Every number and duration is bounded.
    for s in every() {
        let unbounded = [
            "nats_url",
            "data_dir",
            "stream",
            "listen",
            "metrics_listen",
            "log_format",
            "jwt_secret",
            "jwt_public_keys",
            "jwks_url",
            "jwt_issuer",
            "jwt_audience",
            "jwt_user_claim",
            "dev",
            "compression",
            "session_store",
            "session_bucket",
            "allowed_origins",
            "catalog_dir",
        ];
        assert_eq!(s.range.is_none(), unbounded.contains(&s.name), "{}", s.name);
    }
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let limits = Limits::default();
    assert_eq!(limits.max_frame_bytes, 64 * 1024);
    assert_eq!(limits.send_queue, 1024);
    assert_eq!(limits.stall_timeout, Duration::from_secs(60));
    assert_eq!(limits.heartbeat, Duration::from_secs(25));
    assert_eq!(limits.reconnect_base, Duration::from_secs(2));
    assert_eq!(limits.bad_frames_per_minute, 20);
    assert_eq!(limits.typing_per_second, 2);
    assert_eq!(limits.max_subscriptions, 1024);
    let serve = ServeOptions::default();
    assert_eq!(serve.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(serve.metrics_listen, None);
    assert_eq!(serve.log_format, crate::diagnostics::LogFormat::Text);
    assert_eq!((serve.jwt_secret, serve.dev), (None, false));
    assert_eq!(serve.session_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(serve.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(serve.session_store, crate::session::StoreKind::Sled);
    assert_eq!(serve.session_bucket.0, "switchboard_sessions");
    assert_eq!(serve.session_flush_interval, None);
    assert_eq!(serve.max_sessions_per_user, 64);
    // The log's defaults are `StreamSettings::default()`, which the tests
    // and benches use directly.
    let log = LogSettings::default();
    let (ours, theirs) = (log.stream_settings(), StreamSettings::default());
    assert_eq!(
        (
            ours.name,
            ours.retention,
            ours.replicas,
            ours.duplicate_window
        ),
        (
            theirs.name,
            theirs.retention,
            theirs.replicas,
            theirs.duplicate_window
        )
    );
    assert_eq!(
        (log.nats_url, log.data_dir),
        (None, PathBuf::from("./data"))
    );
}

#[test]
fn bounds_are_checked_for_flags_and_for_the_file() {
    let send_queue = parser::<usize>(Some(("1", "65536")));
    assert_eq!(send_queue("65536"), Ok(65536));
    assert!(send_queue("0").unwrap_err().contains("minimum 1"));
    assert!(send_queue("65537").unwrap_err().contains("maximum 65536"));
    // Far past usize: refused as a number, never overflowing.
    assert!(send_queue("99999999999999999999999").is_err());
    let heartbeat = parser::<Duration>(Some(("1ms", "1d")));
    assert!(heartbeat("500us").unwrap_err().contains("1ms"));

    let file = FileSettings::parse("send_queue = 1000000\n").unwrap();
    let err = Limits::resolve(&LimitFlags::default(), &file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("send_queue")
            && err.contains("SWITCHBOARD_SEND_QUEUE")
            && err.contains("65536"),
        "{err}"
    );
    let file = FileSettings::parse("max_frame_bytes = [1]\n").unwrap();
    let err = Limits::resolve(&LimitFlags::default(), &file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_frame_bytes"), "{err}");
}

#[test]
fn file_values_fill_in_and_flags_win() {
    let file =
        FileSettings::parse("listen = \"0.0.0.0:9\"\nsend_queue = 10\ndev = true\n").unwrap();
    let serve = ServeOptions::resolve(&ServeFlags::default(), &file).unwrap();
    assert_eq!(serve.listen, "0.0.0.0:9".parse().unwrap());
    assert!(serve.dev);
    let flags = ServeFlags {
        listen: Some("127.0.0.1:1".parse().unwrap()),
        ..ServeFlags::default()
    };
    let serve = ServeOptions::resolve(&flags, &file).unwrap();
    assert_eq!(serve.listen, "127.0.0.1:1".parse().unwrap());
    let limits = Limits::resolve(&LimitFlags::default(), &file).unwrap();
    assert_eq!(limits.send_queue, 10);
    assert_eq!(
        limits.max_subscriptions, 1024,
        "the rest stay at their defaults"
    );

    let err = FileSettings::parse("listen = \"x\"\nlisten_port = 9\n").unwrap_err();
    assert!(err.contains("listen_port"), "{err}");
    let err = FileSettings::parse("this is = not toml [").unwrap_err();
    assert!(err.contains("TOML"), "{err}");
}

#[test]
fn the_metrics_address_and_the_log_format_come_from_the_file_too() {
    use crate::diagnostics::LogFormat;
    let file = FileSettings::parse("log_format = \"json\"\nmetrics_listen = \"127.0.0.1:9090\"\n")
        .unwrap();
    let serve = ServeOptions::resolve(&ServeFlags::default(), &file).unwrap();
    assert_eq!(serve.log_format, LogFormat::Json);
    assert_eq!(
        serve.metrics_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    let file = FileSettings::parse("log_format = \"yaml\"\n").unwrap();
    let err = ServeOptions::resolve(&ServeFlags::default(), &file)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--log-format") && err.contains("text or json"),
        "{err}"
    );
}

#[test]
fn serve_needs_a_secret_unless_dev() {
    let none = FileSettings::default();
    let resolve = |serve: &ServeFlags| {
        ServeSettings::resolve(&LogFlags::default(), serve, &LimitFlags::default(), &none)
    };
    let err = resolve(&ServeFlags::default()).unwrap_err();
    assert_eq!(err.name, "jwt_secret");
    assert_eq!(err.env, "SWITCHBOARD_JWT_SECRET");
    let dev = ServeFlags {
        dev: Some(true),
        ..ServeFlags::default()
    };
    assert_eq!(resolve(&dev).unwrap().tokens.secrets, [DEV_SECRET]);
    let given = ServeFlags {
        jwt_secret: Some(Some("s, t,".into())),
        ..dev.clone()
    };
    assert_eq!(resolve(&given).unwrap().tokens.secrets, ["s", "t"]);
    let keys_only = ServeFlags {
        jwt_public_keys: Some(Some("a.pem,b.pem".into())),
        ..ServeFlags::default()
    };
    let tokens = resolve(&keys_only).unwrap().tokens;
    assert!(tokens.secrets.is_empty(), "no dev secret beside keys");
    assert_eq!(tokens.public_keys.len(), 2);
    let jwks = ServeFlags {
        jwks_url: Some(Some("ftp://idp/jwks".into())),
        ..ServeFlags::default()
    };
    assert_eq!(resolve(&jwks).unwrap_err().name, "jwks_url");
}

#[test]
fn the_cursor_interval_is_the_stores_own_unless_set() {
    use crate::session::StoreKind;
    let none = FileSettings::default();
    let interval = |serve: ServeFlags| {
        let serve = ServeFlags {
            dev: Some(true),
            ..serve
        };
        ServeSettings::resolve(&LogFlags::default(), &serve, &LimitFlags::default(), &none)
            .unwrap()
            .session_flush_interval
    };
    // With sled, a cursor reaches disk within a second of its move.
    let sled = interval(ServeFlags::default());
    assert_eq!(sled, Duration::from_millis(500));
    assert!(sled + Duration::from_millis(crate::store::FLUSH_EVERY_MS) <= Duration::from_secs(1));
    let kv = ServeFlags {
        session_store: Some(StoreKind::Kv),
        ..ServeFlags::default()
    };
    assert_eq!(interval(kv), Duration::from_secs(2));
    for store in [StoreKind::Sled, StoreKind::Kv] {
        let given = ServeFlags {
            session_store: Some(store),
            session_flush_interval: Some(Some(Duration::from_secs(5))),
            ..ServeFlags::default()
        };
        assert_eq!(interval(given), Duration::from_secs(5), "{store:?}");
    }
    // Set, it keeps its bounds.
    let setting = ServeOptions::SETTINGS
        .iter()
        .find(|s| s.name == "session_flush_interval")
        .unwrap();
    let within = |text: &str| parse_within::<Option<Duration>>(text, setting.range);
    assert_eq!(within("1s"), Ok(Some(Duration::from_secs(1))));
    assert!(within("10ms").unwrap_err().contains("minimum"));
    assert!(within("2m").unwrap_err().contains("maximum"));
}

#[test]
fn a_bad_flag_or_variable_is_reported_as_a_setting() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        crate::cli::Cli::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
    };
    let err = parse(&["serve", "--send-queue", "0"]).unwrap_err();
    let bad = from_clap(&err).expect("a setting");
    assert_eq!((bad.name, bad.flag.as_str()), ("send_queue", "send-queue"));
    assert_eq!(bad.env, "SWITCHBOARD_SEND_QUEUE");
    assert!(bad.reason.contains("minimum 1"), "{}", bad.reason);
    let err = parse(&["publish", "--retention", "7x"]).unwrap_err();
    assert_eq!(from_clap(&err).expect("a setting").name, "retention");
    let err = parse(&["serve", "--dev", "maybe"]).unwrap_err();
    assert!(from_clap(&err).expect("a setting").reason.contains("maybe"));
    // Not a setting: clap's own message.
    let err = parse(&["serve", "--no-such-flag"]).unwrap_err();
    assert!(from_clap(&err).is_none());
}
