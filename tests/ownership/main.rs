//! No detached task: every place in `src/` that starts a task, a thread or a
//! process (any identifier starting with `spawn`, outside `#[cfg(test)]`
//! code and comments) is listed in [`OWNED`] with who awaits, joins, aborts
//! or ends what it starts. A new one fails this test until it is listed
//! with its owner; a listed one that is gone fails it too, so the list
//! stays the truth that ARCHITECTURE.md's Shutdown section states.
//!
//! A site is known by its file, the function it is in and the call as
//! written (`self.` dropped); `sites` is how many such calls that function
//! holds. The scan ([`scan`]) reads the source only (no build of the
//! crate).

mod scan;

use std::collections::BTreeMap;
use std::path::Path;

use scan::scan;

/// A spawning call and its owner.
struct Owned {
    file: &'static str,
    function: &'static str,
    call: &'static str,
    sites: usize,
    owner: &'static str,
}

/// Every spawning call in `src/`, with the reason it is owned.
const OWNED: &[Owned] = &[
    // The node's tasks: its `TaskTracker`, closed and awaited by
    // `Running::stop` (`Node::begin_shutdown`, `Node::tasks_ended`).
    Owned {
        file: "src/gateway/mod.rs",
        function: "spawn",
        call: "tasks.spawn",
        sites: 1,
        owner: "`Node::spawn`: the node's TaskTracker, awaited by `Running::stop`",
    },
    Owned {
        file: "src/gateway/mod.rs",
        function: "spawn_until_shutdown",
        call: "tasks.spawn",
        sites: 1,
        owner: "the node's TaskTracker; the task ends at the shutdown signal",
    },
    Owned {
        file: "src/server.rs",
        function: "start",
        call: "node.spawn",
        sites: 5,
        owner: "the router, typing, the operator's disconnects, the snapshot writer and the metrics upkeep: tasks of the node",
    },
    Owned {
        file: "src/server.rs",
        function: "start",
        call: "node.spawn_until_shutdown",
        sites: 3,
        owner: "the log's Reaper, the JWKS refresh and presence between the nodes: tasks of the node, ended by the shutdown signal",
    },
    Owned {
        file: "src/server/listener.rs",
        function: "run",
        call: "node.spawn",
        sites: 1,
        owner: "an HTTP connection: a task of the node",
    },
    Owned {
        file: "src/gateway/connection/mod.rs",
        function: "accept",
        call: "node.spawn",
        sites: 1,
        owner: "a WebSocket connection: a task of the node",
    },
    Owned {
        file: "src/gateway/front.rs",
        function: "history",
        call: "node.spawn",
        sites: 1,
        owner: "a history page's reader: a task of the node, ended with its page",
    },
    // Tasks with a handle of their own.
    Owned {
        file: "src/server.rs",
        function: "start",
        call: "tokio::spawn",
        sites: 2,
        owner: "the accept loops (clients, and metrics when `metrics_listen` is set): their JoinHandles are `Running::server` and `Running::metrics_server`, awaited (or aborted past the budget) by `Running::stop`",
    },
    Owned {
        file: "src/session/mod.rs",
        function: "kv",
        call: "tokio::spawn",
        sites: 1,
        owner: "the bucket writer: its JoinHandle is in `session::Background`, awaited by `Background::close` (aborted past the budget, or when dropped)",
    },
    Owned {
        file: "src/log/connection.rs",
        function: "dial",
        call: "tokio::spawn",
        sites: 1,
        owner: "the lame-duck watch: its JoinHandle is in `LameDuckWatch`, aborted when the last clone of the `Log` drops",
    },
    Owned {
        file: "src/gateway/housekeeping.rs",
        function: "write",
        call: "tokio::task::spawn_blocking",
        sites: 1,
        owner: "a projection snapshot's write: awaited at once by the snapshot writer (a task of the node)",
    },
    // Threads.
    Owned {
        file: "src/session/sled_thread.rs",
        function: "spawn",
        call: ".spawn",
        sites: 1,
        owner: "`Thread::spawn`: sled's session threads, their JoinHandles in `sled_thread::Threads` (in `session::Background`), joined by `Background::close`, told to stop when it drops",
    },
    Owned {
        file: "src/session/sled_thread.rs",
        function: "start",
        call: "Thread::spawn",
        sites: 3,
        owner: "sled's writing, reading and sweeping threads (see `Thread::spawn`)",
    },
    Owned {
        file: "src/local_nats.rs",
        function: "run_until_ready",
        call: "std::thread::spawn",
        sites: 1,
        owner: "a nats-server's log reader: ends with that process (the end of its stderr), which its `NatsServer` kills when dropped",
    },
    // Processes: not tasks, listed so that every `spawn` is accounted for.
    Owned {
        file: "src/local_nats.rs",
        function: "run_until_ready",
        call: ".spawn",
        sites: 1,
        owner: "the nats-server child process, killed when its `NatsServer` drops",
    },
    Owned {
        file: "src/tail/token.rs",
        function: "run",
        call: ".spawn",
        sites: 1,
        owner: "a `--token-command` child process: awaited, or killed on drop (`kill_on_drop`) when it overruns `TOKEN_COMMAND_TIMEOUT` or its output",
    },
];

#[test]
fn every_spawn_in_src_has_an_owner() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sites = scan(root);
    assert!(
        sites.len() >= OWNED.iter().map(|o| o.sites).sum::<usize>() / 2,
        "the scan found almost nothing: {sites:?}"
    );
    let mut found: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    for site in &sites {
        found
            .entry((site.file.clone(), site.function.clone(), site.call.clone()))
            .or_default()
            .push(site.line);
    }
    let mut problems = Vec::new();
    for ((file, function, call), lines) in &found {
        let listed = OWNED
            .iter()
            .find(|o| o.file == file && o.function == function && o.call == call);
        match listed {
            None => problems.push(format!(
                "{file}:{lines:?}: `{call}` in fn `{function}` has no owner: make what it \
                 starts owned (awaited, joined or aborted by whoever stops it) and list it \
                 in OWNED (tests/ownership/main.rs) with that owner"
            )),
            Some(owned) if owned.sites != lines.len() => problems.push(format!(
                "{file}:{lines:?}: fn `{function}` has {} `{call}` calls, OWNED lists {} ({}): \
                 make them agree (a new call is listed only once it is owned)",
                lines.len(),
                owned.sites,
                owned.owner
            )),
            Some(_) => {}
        }
    }
    for owned in OWNED {
        let key = (
            owned.file.to_string(),
            owned.function.to_string(),
            owned.call.to_string(),
        );
        if !found.contains_key(&key) {
            problems.push(format!(
                "OWNED lists `{}` in fn `{}` of {}, which is not there any more: remove it",
                owned.call, owned.function, owned.file
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
