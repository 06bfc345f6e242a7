//! A local three-node nats-server cluster with JetStream, for tests of
//! failover (moved here from the library, which never runs one): each node has its own client, route and HTTP monitoring port
//! on loopback and its own store directory, and can be killed, restarted
//! on the same ports and store, or put in lame-duck mode.
//!
//! The ports are picked free before the servers start (each node's
//! configuration names the others' route ports); a start that loses a
//! port to another process is tried again with new ones. Dropping the
//! cluster kills every node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::local_nats::{find_binary, run_until_ready, LocalNatsError};

/// How many servers the cluster runs: the smallest that keeps an R3
/// stream writable with one of them down.
pub const CLUSTER_SIZE: usize = 3;

/// The `cluster.name` of the servers (what the client's server info shows).
pub const CLUSTER_NAME: &str = "switchboard";

/// How long the cluster may take until every running node is a current
/// peer of one JetStream meta leader.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a start is tried with fresh ports when one was taken
/// between picking it and the server binding it.
const START_ATTEMPTS: usize = 3;

/// How long one request to a node's monitoring port may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often readiness is asked while waiting.
const READY_POLL: Duration = Duration::from_millis(50);

/// One node: its ports, its configuration file and, while it runs, its process.
struct ClusterNode {
    name: String,
    client_port: u16,
    route_port: u16,
    http_port: u16,
    conf: PathBuf,
    log: PathBuf,
    /// Whether its configuration enables JetStream (see
    /// [`NatsCluster::start_temp_without_jetstream_on`]).
    jetstream: bool,
    child: Option<Child>,
}

/// Three nats-servers in one JetStream cluster on loopback.
pub struct NatsCluster {
    binary: PathBuf,
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
    /// Removed on drop when the cluster owns a temporary directory.
    _temp: Option<tempfile::TempDir>,
}

impl NatsCluster {
    /// Starts the cluster in a fresh temporary directory and waits until it
    /// is ready (see [`NatsCluster::wait_ready`]).
    pub fn start_temp() -> Result<NatsCluster, LocalNatsError> {
        NatsCluster::start_temp_with(None)
    }

    /// Starts the cluster with JetStream off on node `i` (routed like the
    /// others, so clients see three servers, but no peer of the JetStream
    /// meta group: a cluster whose last server has not joined JetStream
    /// yet) and waits until the other two are ready. See
    /// [`NatsCluster::enable_jetstream`].
    pub fn start_temp_without_jetstream_on(i: usize) -> Result<NatsCluster, LocalNatsError> {
        NatsCluster::start_temp_with(Some(i))
    }

    fn start_temp_with(without_jetstream: Option<usize>) -> Result<NatsCluster, LocalNatsError> {
        let temp = tempfile::Builder::new()
            .prefix("switchboard-cluster-")
            .tempdir()
            .map_err(|e| LocalNatsError::NotReady(format!("temp dir: {e}")))?;
        let dir = temp.path().to_path_buf();
        let mut cluster = NatsCluster::start_with(&dir, without_jetstream)?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Starts the cluster with its configuration, logs (`n0.log`…) and
    /// stores (`n0/`…) under `dir`, and waits until it is ready.
    pub fn start_in(dir: &Path) -> Result<NatsCluster, LocalNatsError> {
        NatsCluster::start_with(dir, None)
    }

    fn start_with(
        dir: &Path,
        without_jetstream: Option<usize>,
    ) -> Result<NatsCluster, LocalNatsError> {
        let binary = find_binary().ok_or(LocalNatsError::NotFound)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| LocalNatsError::NotReady(format!("creating {}: {e}", dir.display())))?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let mut cluster = NatsCluster {
                binary: binary.clone(),
                dir: dir.to_path_buf(),
                nodes: plan(dir, without_jetstream)?,
                _temp: None,
            };
            match cluster.start_all() {
                Ok(()) => {
                    cluster.wait_ready()?;
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LocalNatsError::NotReady("no attempt made".into())))
    }

    fn start_all(&mut self) -> Result<(), LocalNatsError> {
        for node in &self.nodes {
            write_conf(node, &self.nodes, &self.dir)?;
        }
        for i in 0..self.nodes.len() {
            self.launch(i)?;
        }
        Ok(())
    }

    fn launch(&mut self, i: usize) -> Result<(), LocalNatsError> {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| LocalNatsError::NotReady(format!("{}: {e}", node.log.display())))?;
        let mut command = Command::new(&self.binary);
        command.arg("-c").arg(&node.conf);
        let (child, _) = run_until_ready(command, Some(log))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Every node's client URL, comma-separated (what `--nats-url` takes).
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The client URLs of every node but `i`, comma-separated.
    pub fn urls_except(&self, i: usize) -> String {
        (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| self.url(j))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s `server_name`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s HTTP monitoring port.
    pub fn http_port(&self, i: usize) -> u16 {
        self.nodes[i].http_port
    }

    /// Node `i`'s log so far (for a failing test's report).
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Whether node `i`'s process is running (not killed, not exited).
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills node `i` as a crash would (SIGKILL) and leaves it stopped.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (killed first if it runs) on the same ports
    /// and store, and waits until the cluster is ready.
    pub fn restart(&mut self, i: usize) -> Result<(), LocalNatsError> {
        self.kill(i);
        self.launch(i)?;
        self.wait_ready()
    }

    /// Turns JetStream on for node `i` (started without it): its
    /// configuration is rewritten and it restarts on the same ports; waits
    /// until it is a current peer of the meta group.
    pub fn enable_jetstream(&mut self, i: usize) -> Result<(), LocalNatsError> {
        self.nodes[i].jetstream = true;
        write_conf(&self.nodes[i], &self.nodes, &self.dir)?;
        self.restart(i)
    }

    /// Puts node `i` in lame-duck mode (`nats-server --signal ldm=PID`): it
    /// stops accepting clients, tells its clients so, hands its JetStream
    /// leaderships over and, after its grace period, closes its clients
    /// one by one and exits.
    pub fn lame_duck(&mut self, i: usize) -> Result<(), LocalNatsError> {
        let pid =
            self.nodes[i].child.as_ref().map(Child::id).ok_or_else(|| {
                LocalNatsError::NotReady(format!("{} is not running", self.name(i)))
            })?;
        let status = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("ldm={pid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| LocalNatsError::Spawn {
                binary: self.binary.display().to_string(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(LocalNatsError::NotReady(format!(
                "nats-server --signal ldm={pid} failed: {status}"
            )))
        }
    }

    /// Waits until the cluster can place replicated streams, within
    /// [`CLUSTER_READY_TIMEOUT`]: every running node with JetStream answers its health
    /// check (JetStream ready, a meta leader known) and names the same meta
    /// leader, and that leader counts every running node as a current peer
    /// of its meta group. (A health check alone passes as soon as two nodes
    /// have elected a leader, before the third has joined the meta group:
    /// an R3 stream created then is refused with "no suitable peers for
    /// placement".) Blocks the thread (a few requests on loopback every
    /// 50 ms).
    pub fn wait_ready(&mut self) -> Result<(), LocalNatsError> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let mut last: String;
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].jetstream && self.is_running(i))
                .collect();
            match self.meta_group_complete(&running) {
                Ok(()) if !running.is_empty() => return Ok(()),
                Ok(()) => last = "no node runs".into(),
                Err(why) => last = why,
            }
            if Instant::now() >= deadline {
                return Err(LocalNatsError::NotReady(format!(
                    "the cluster's JetStream meta group is not complete after \
                     {CLUSTER_READY_TIMEOUT:?}: {last}"
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Whether the `running` nodes are healthy and all current peers of one
    /// meta leader (from `/healthz` and `/jsz`); the reason when not.
    fn meta_group_complete(&self, running: &[usize]) -> Result<(), String> {
        let mut leader: Option<String> = None;
        let mut leader_view = None;
        for &i in running {
            let node = &self.nodes[i];
            match http_get(node.http_port, "/healthz") {
                Some((200, _)) => {}
                other => return Err(format!("{} is not healthy: {other:?}", node.name)),
            }
            let meta = meta_cluster(node.http_port)
                .ok_or_else(|| format!("{} has no meta group in /jsz", node.name))?;
            let named = meta["leader"].as_str().unwrap_or_default().to_string();
            if named.is_empty() {
                return Err(format!("{} knows no meta leader", node.name));
            }
            match &leader {
                Some(l) if *l != named => {
                    return Err(format!(
                        "the nodes name different meta leaders ({l}, {named})"
                    ))
                }
                _ => leader = Some(named.clone()),
            }
            if named == node.name {
                leader_view = Some(meta);
            }
        }
        let leader = leader.unwrap_or_default();
        let meta = leader_view.ok_or_else(|| format!("the meta leader {leader} is not running"))?;
        let peers = meta["replicas"].as_array().cloned().unwrap_or_default();
        for &i in running {
            let name = &self.nodes[i].name;
            if *name == leader {
                continue;
            }
            let current = peers.iter().any(|p| {
                p["name"].as_str() == Some(name.as_str())
                    && p["current"].as_bool() == Some(true)
                    && p["offline"].as_bool() != Some(true)
            });
            if !current {
                return Err(format!(
                    "the meta leader {leader} does not count {name} as a current peer \
                     (cluster_size {})",
                    meta["cluster_size"]
                ));
            }
        }
        Ok(())
    }

    /// The JetStream meta leader's name as node `i` sees it (`None` when it
    /// does not answer or knows none). Blocks the thread for one request.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let meta = meta_cluster(self.nodes[i].http_port)?;
        meta["leader"]
            .as_str()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
    }

    /// The running node a client connection named `client_name` is on,
    /// from each node's `/connz` (the gateway names its connection
    /// `switchboard`); `None` when no running node has one. Blocks the
    /// thread for a request per node.
    pub fn holder_of(&mut self, client_name: &str) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&i| self.is_running(i) && self.client_names(i).iter().any(|n| n == client_name))
    }

    /// The names of the client connections on node `i` (empty when it does
    /// not answer).
    pub fn client_names(&self, i: usize) -> Vec<String> {
        let Some((200, body)) = http_get(self.nodes[i].http_port, "/connz?limit=4096") else {
            return Vec::new();
        };
        let Ok(connz) = serde_json::from_str::<serde_json::Value>(&body) else {
            return Vec::new();
        };
        connz["connections"]
            .as_array()
            .map(|conns| {
                conns
                    .iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A three-node nats-server cluster with JetStream (temporary stores, free
/// ports), ready: every node a current peer of one JetStream meta leader.
pub fn cluster() -> NatsCluster {
    NatsCluster::start_temp().expect("a nats-server cluster starts (run `just tools`)")
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The nodes with free ports (each held until all are picked, so no two
/// are the same).
fn plan(dir: &Path, without_jetstream: Option<usize>) -> Result<Vec<ClusterNode>, LocalNatsError> {
    let held: Vec<TcpListener> = (0..CLUSTER_SIZE * 3)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| LocalNatsError::NotReady(format!("no free port: {e}")))?;
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| LocalNatsError::NotReady(format!("no free port: {e}")))?;
    drop(held);
    Ok((0..CLUSTER_SIZE)
        .map(|i| ClusterNode {
            name: format!("n{i}"),
            client_port: ports[3 * i],
            route_port: ports[3 * i + 1],
            http_port: ports[3 * i + 2],
            conf: dir.join(format!("n{i}.conf")),
            log: dir.join(format!("n{i}.log")),
            jetstream: without_jetstream != Some(i),
            child: None,
        })
        .collect())
}

fn write_conf(node: &ClusterNode, all: &[ClusterNode], dir: &Path) -> Result<(), LocalNatsError> {
    let routes: Vec<String> = all
        .iter()
        .filter(|other| other.name != node.name)
        .map(|other| format!("\"nats-route://127.0.0.1:{}\"", other.route_port))
        .collect();
    let store = dir.join(&node.name);
    let jetstream = if node.jetstream {
        format!("jetstream {{ store_dir: \"{}\" }}\n", store.display())
    } else {
        String::new()
    };
    let conf = format!(
        "server_name: {name}\n\
         host: 127.0.0.1\n\
         port: {client}\n\
         http: \"127.0.0.1:{http}\"\n\
         {jetstream}\
         cluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{route}\"\n  routes: [{routes}]\n}}\n",
        name = node.name,
        client = node.client_port,
        http = node.http_port,
        route = node.route_port,
        routes = routes.join(", "),
    );
    std::fs::write(&node.conf, conf)
        .map_err(|e| LocalNatsError::NotReady(format!("writing {}: {e}", node.conf.display())))
}

/// The `meta_cluster` section of a node's `/jsz` (its view of the
/// JetStream meta group: leader, peers, cluster size).
fn meta_cluster(port: u16) -> Option<serde_json::Value> {
    let (200, body) = http_get(port, "/jsz")? else {
        return None;
    };
    let mut jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
    match jsz["meta_cluster"].take() {
        serde_json::Value::Null => None,
        meta => Some(meta),
    }
}

/// A GET on loopback `port`: the status and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
