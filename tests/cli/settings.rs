//! `serve`'s settings: refusals that name the setting (also numbers out of
//! their bounds, a sub-millisecond heartbeat), config file keys, and
//! flag-over-file and environment-over-file precedence.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use switchboard::channel::{Channel, Id};
use switchboard::token::{Grant, Role, Signer};

use crate::{block, expect_exit, run, serve, switchboard, temp, Served};

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).expect("config written");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn serve_refuses_bad_settings_naming_them() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let serve_with = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = switchboard(dir.path());
        cmd.arg("serve").args(args).envs(env.iter().copied());
        // Usable defaults for every flag the case does not set itself.
        for (flag, value) in [("--listen", "127.0.0.1:0"), ("--nats-url", url.as_str())] {
            if !args.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.arg("--data-dir").arg(dir.path().join("data"));
        expect_exit(serve(&mut cmd))
    };

    serve_with(&[], &[]).usage_error(&["jwt_secret", "SWITCHBOARD_JWT_SECRET"]);
    serve_with(&["--jwt-secret", ""], &[]).usage_error(&["jwt_secret"]);
    serve_with(&["--retention", "7x", "--dev"], &[]).usage_error(&[
        "retention",
        "SWITCHBOARD_RETENTION",
        "7x",
    ]);
    serve_with(&["--dev"], &[("SWITCHBOARD_RETENTION", "7x")])
        .usage_error(&["retention", "SWITCHBOARD_RETENTION"]);
    serve_with(&["--retention", "0s", "--dev"], &[]).usage_error(&["retention"]);
    serve_with(&["--listen", "nowhere", "--dev"], &[]).usage_error(&["listen", "nowhere"]);
    serve_with(&["--stream", "a.b", "--dev"], &[]).usage_error(&["stream"]);
    serve_with(&["--nats-url", "http://x", "--dev"], &[]).usage_error(&["nats_url"]);
    serve_with(&["--send-queue", "0", "--dev"], &[]).usage_error(&["send_queue"]);
    serve_with(&["--heartbeat", "0s", "--dev"], &[]).usage_error(&["heartbeat"]);
    serve_with(&["--dev", "maybe"], &[]).usage_error(&["dev", "maybe"]);

    let config = write_config(dir.path(), "listen = \"127.0.0.1:0\"\nlisten_port = 9\n");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["config", "listen_port"]);
    let config = write_config(dir.path(), "retention = \"7x\"\n");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["retention"]);
    let config = write_config(dir.path(), "this is = not toml [");
    serve_with(&["--dev", "--config", &config], &[]).usage_error(&["config", "TOML"]);
    let missing = dir.path().join("missing.toml");
    serve_with(
        &["--dev", "--config", missing.to_str().expect("utf-8")],
        &[],
    )
    .usage_error(&["config", "missing.toml"]);
}

// Regression: every number has bounds. A send queue of a billion used to
// overflow the transport's buffer size (`send_queue * 1024`) or panic in
// `mpsc::channel`; now it stops `serve` at once, wherever it comes from,
// and no NATS is needed to find out.
#[test]
fn serve_refuses_numbers_outside_their_bounds_from_flags_env_and_file() {
    let dir = temp();
    let serve_with = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = switchboard(dir.path());
        cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .args(["--nats-url", "nats://127.0.0.1:1"])
            .args(args)
            .envs(env.iter().copied());
        cmd.arg("--data-dir").arg(dir.path().join("data"));
        expect_exit(serve(&mut cmd))
    };
    let huge = "1000000000";
    let words = [
        "send_queue",
        "--send-queue",
        "SWITCHBOARD_SEND_QUEUE",
        "maximum 65536",
    ];
    serve_with(&["--send-queue", huge], &[]).usage_error(&words);
    serve_with(&[], &[("SWITCHBOARD_SEND_QUEUE", huge)]).usage_error(&words);
    let config = write_config(dir.path(), &format!("send_queue = {huge}\n"));
    serve_with(&["--config", &config], &[]).usage_error(&words);
    serve_with(&["--max-frame-bytes", "18446744073709551616"], &[])
        .usage_error(&["max_frame_bytes", "whole number"]);
    serve_with(&["--max-subscriptions", "0"], &[]).usage_error(&["max_subscriptions", "minimum 1"]);
    serve_with(&["--replicas", "6"], &[]).usage_error(&["replicas", "maximum 5"]);
    serve_with(&["--session-ttl", "1000y"], &[]).usage_error(&["session_ttl", "maximum 100y"]);
    // The bounds and the precedence are in `--help`.
    let help = run(switchboard(dir.path()).args(["serve", "--help"]), None).ok();
    assert!(
        help.stdout.contains("[range: 1 to 65536]")
            && help.stdout.contains("in order of precedence"),
        "{}",
        help.stdout
    );
}

fn serve_args(cmd: &mut Command, data: &Path, url: &str) {
    cmd.args(["--nats-url", url, "--data-dir"]).arg(data);
}

#[test]
fn flags_override_the_config_file_and_the_environment_overrides_it_too() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    let url = nats.url();
    let config = write_config(
        dir.path(),
        "listen = \"127.0.0.1:1\"\nstream = \"FROM_FILE\"\njwt_secret = \"file-secret\"\n",
    );

    // The flag wins over the file's `listen`; the file's other keys apply.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config, "--listen", "127.0.0.1:0"]);
    serve_args(&mut cmd, &dir.path().join("one"), &url);
    let Served::Up { proc, addr, .. } = serve(&mut cmd) else {
        panic!("serve did not come up")
    };
    assert_ne!(
        addr.port(),
        1,
        "the flag's port 0 was used, not the file's 1"
    );
    assert_ne!(addr.port(), 0);
    block(async {
        let client = async_nats::connect(&url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        js.get_stream("FROM_FILE")
            .await
            .expect("the file's stream name was used");
        // The file's secret is the gateway's: an auditor token signed with
        // it reads history, one signed otherwise is refused.
        let http = switchboard_harness::http();
        let user = Id::new_v4();
        let token = |secret: &[u8]| {
            let claims = switchboard::token::dev_claims(
                user,
                Duration::from_secs(600),
                None,
                Grant::None,
                vec![Role::Auditor],
            );
            Signer::hs256(secret).mint(&claims).expect("mint")
        };
        let history = format!("http://{addr}/v1/history/{}", Channel::Global);
        let ok = http
            .get(&history)
            .bearer_auth(token(b"file-secret"))
            .send()
            .await
            .expect("history answers");
        assert_eq!(ok.status(), 200);
        let refused = http
            .get(&history)
            .bearer_auth(token(b"other"))
            .send()
            .await
            .expect("history answers");
        assert_eq!(refused.status(), 401);
    });
    drop(proc);

    // The environment wins over the file as well.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config])
        .env("SWITCHBOARD_LISTEN", "127.0.0.1:0");
    serve_args(&mut cmd, &dir.path().join("two"), &url);
    let Served::Up { addr, .. } = serve(&mut cmd) else {
        panic!("serve did not come up with SWITCHBOARD_LISTEN")
    };
    assert_ne!(addr.port(), 1);

    // Without either, the file's `listen` (port 1) is the one serve uses:
    // it listens there when allowed to, or names it when it cannot.
    let mut cmd = switchboard(dir.path());
    cmd.args(["serve", "--config", &config]);
    serve_args(&mut cmd, &dir.path().join("three"), &url);
    match serve(&mut cmd) {
        Served::Up { addr, .. } => assert_eq!(addr.port(), 1, "the file's listen applies"),
        Served::Exited(out) => assert!(
            out.stderr.contains("127.0.0.1:1"),
            "the failure names the file's address:\n{}",
            out.stderr
        ),
    }
}

// Regression: `serve` refuses a heartbeat below one millisecond (its declared
// minimum, src/settings/declared.rs) (`--heartbeat 500us`), like zero: the hello frame announces
// the heartbeat in whole milliseconds, and `heartbeat_ms: 0` would fail
// schemas/server/hello.json (`minimum: 1`) and read as "no heartbeat".
#[test]
fn a_sub_millisecond_heartbeat_is_refused() {
    let nats = switchboard_harness::nats();
    let dir = temp();
    for heartbeat in ["500us", "999us"] {
        let mut cmd = switchboard(dir.path());
        cmd.args(["serve", "--heartbeat", heartbeat, "--listen", "127.0.0.1:0"])
            .args(["--jwt-secret", switchboard_harness::SECRET]);
        serve_args(&mut cmd, &dir.path().join("data"), &nats.url());
        expect_exit(serve(&mut cmd)).usage_error(&["heartbeat", "1ms"]);
    }
}
