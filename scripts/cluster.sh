#!/usr/bin/env bash
# A local cluster in one command (`just cluster`): three nats-servers in one
# JetStream cluster (routes on loopback, stores under ./data/cluster/n0..n2)
# and two gateways on it (R3 stream, sessions in the R3 key-value bucket).
# Prints the gateways' addresses, a token, and ready-to-paste `tail` and
# `publish` commands; Ctrl-C stops everything. A process that exits early
# is named with the last lines of its log.
#
# Environment: SWITCHBOARD_BIN (default ./target/release/switchboard),
# CLUSTER_DIR (default ./data/cluster), CLUSTER_PORT (first NATS port:
# clients on +0..2, routes on +10..12, monitoring on +20..22; unset: free
# loopback ports picked at start), GATEWAY_PORT (first gateway port, the
# second on +1; unset: each gateway binds a free port and the script reads
# it from the gateway's log).
set -euo pipefail

bin="${SWITCHBOARD_BIN:-./target/release/switchboard}"
dir="${CLUSTER_DIR:-./data/cluster}"
nodes=(n0 n1 n2)
# How many lines of a log are shown when its process exits early.
log_lines=20

command -v nats-server >/dev/null || { echo "cluster: nats-server not on PATH (run \`just tools\`)" >&2; exit 1; }
command -v curl >/dev/null || { echo "cluster: curl not found (Debian: apt-get install curl)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "cluster: python3 not found (Debian: apt-get install python3)" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "cluster: $bin not found (cargo build --release)" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

# free_ports N: N distinct free loopback ports, one a line (all held open
# until all are picked, then released for the servers to bind).
free_ports() {
    python3 -c '
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print("\n".join(str(s.getsockname()[1]) for s in held))
' "$1"
}

client_ports=() route_ports=() http_ports=()
if [[ -n "${CLUSTER_PORT:-}" ]]; then
    for i in "${!nodes[@]}"; do
        client_ports+=($((CLUSTER_PORT + i)))
        route_ports+=($((CLUSTER_PORT + 10 + i)))
        http_ports+=($((CLUSTER_PORT + 20 + i)))
    done
else
    mapfile -t ports < <(free_ports $((3 * ${#nodes[@]})))
    client_ports=("${ports[@]:0:3}")
    route_ports=("${ports[@]:3:3}")
    http_ports=("${ports[@]:6:3}")
fi

pids=()
names=()
# Where this run's lines start in each log (the logs are appended to).
declare -A log_start
stopping=0
# Gateways first (SIGTERM: they close their clients with 1001), then the
# servers; each waited for, so nothing outlives the script.
stop() {
    [[ $stopping == 1 ]] && return
    stopping=1
    trap '' INT TERM
    echo
    echo "stopping..."
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
    done
    echo "stopped"
}
trap stop EXIT
trap 'exit 0' INT  # Ctrl-C is how it is stopped
trap 'exit 143' TERM

# start NAME COMMAND...: runs it in the background, its output appended to NAME.log.
start() {
    local name="$1"
    shift
    local log="$dir/$name.log"
    touch "$log"
    log_start[$name]=$(($(stat -c %s "$log") + 1))
    "$@" >>"$log" 2>&1 &
    pids+=($!)
    names+=("$name")
}

# this_run NAME: what NAME logged in this run.
this_run() {
    tail -c "+${log_start[$1]}" "$dir/$1.log"
}

# exited NAME: says that NAME exited, with the end of its log, and exits
# (the EXIT trap stops the rest).
exited() {
    echo "cluster: $1 exited; the last lines of $dir/$1.log:" >&2
    this_run "$1" | tail -n "$log_lines" | sed 's/^/  /' >&2
    exit 1
}

# wait_ready URL K: until URL answers 200 (60 s at most), or process K exits.
wait_ready() {
    for _ in $(seq 600); do
        curl -fs "$1" >/dev/null && return 0
        kill -0 "${pids[$2]}" 2>/dev/null || exited "${names[$2]}"
        sleep 0.1
    done
    echo "cluster: ${names[$2]} not ready after 60 s; see $dir/${names[$2]}.log" >&2
    exit 1
}

urls=()
for i in "${!nodes[@]}"; do urls+=("nats://127.0.0.1:${client_ports[$i]}"); done
nats_url="$(IFS=,; echo "${urls[*]}")"

for i in "${!nodes[@]}"; do
    name="${nodes[$i]}"
    routes=()
    for j in "${!nodes[@]}"; do
        [[ $j == "$i" ]] || routes+=("\"nats-route://127.0.0.1:${route_ports[$j]}\"")
    done
    cat >"$dir/$name.conf" <<CONF
server_name: $name
host: 127.0.0.1
port: ${client_ports[$i]}
http: "127.0.0.1:${http_ports[$i]}"
jetstream { store_dir: "$dir/$name" }
cluster {
  name: switchboard
  listen: "127.0.0.1:${route_ports[$i]}"
  routes: [$(IFS=,; echo "${routes[*]}")]
}
CONF
    start "$name" nats-server -c "$dir/$name.conf"
done

# Ready: every server's health check passes (JetStream has a meta leader).
# (A gateway whose R3 stream NATS cannot place yet, the third server still
# joining, tries again for a while.)
for i in "${!nodes[@]}"; do
    wait_ready "http://127.0.0.1:${http_ports[$i]}/healthz" "$i"
done

# listening K: the address process K's `serve` printed it listens on (60 s at most).
listening() {
    local addr
    for _ in $(seq 600); do
        addr="$(this_run "${names[$1]}" | sed -n 's|^switchboard listening on http://||p' | head -n 1)"
        [[ -n "$addr" ]] && { echo "$addr"; return 0; }
        kill -0 "${pids[$1]}" 2>/dev/null || exited "${names[$1]}"
        sleep 0.1
    done
    echo "cluster: ${names[$1]} not listening after 60 s; see $dir/${names[$1]}.log" >&2
    exit 1
}

gateways=(gw-a gw-b)
addrs=()
for k in "${!gateways[@]}"; do
    name="${gateways[$k]}"
    if [[ -n "${GATEWAY_PORT:-}" ]]; then
        listen="127.0.0.1:$((GATEWAY_PORT + k))"
    else
        listen="127.0.0.1:0"
    fi
    # Sessions in the replicated key-value bucket: a resume works on either.
    start "$name" "$bin" serve --dev --nats-url "$nats_url" --replicas 3 --session-store kv \
        --data-dir "$dir/$name" --listen "$listen"
    addr="$(listening $((${#pids[@]} - 1)))"
    addrs+=("$addr")
    # One after the other: the first creates the stream, the second finds it.
    wait_ready "http://$addr/readyz" $((${#pids[@]} - 1))
done

sub="$(python3 -c 'import uuid;print(uuid.uuid4())')"
token="$("$bin" token --dev --sub "$sub" --channels '*' --roles publisher,auditor --name dev --ttl 24h)"
monitoring="$(IFS=,; echo "${http_ports[*]}")"
echo "NATS cluster: $nats_url (monitoring on 127.0.0.1 ports $monitoring; logs and stores in $dir)"
for k in "${!gateways[@]}"; do
    echo "gateway ${gateways[$k]}: ws://${addrs[$k]}/v1/ws  http://${addrs[$k]}  (log: $dir/${gateways[$k]}.log)"
done
echo "token: $token"
echo "follow (another terminal): $bin tail --url ws://${addrs[0]} --token $token global"
echo "publish (another terminal): $bin publish --nats-url $nats_url --type channel_created --data '{\"channel_id\":\"$(python3 -c 'import uuid;print(uuid.uuid4())')\",\"channel_name\":\"general\"}'"
for k in "${!gateways[@]}"; do
    echo "console of ${gateways[$k]} (a browser; 'Use dev token'): http://${addrs[$k]}/console"
done
echo "Ctrl-C stops everything."

# Until Ctrl-C, or until one of them exits on its own.
set +e
wait -n -p gone "${pids[@]}"
for k in "${!pids[@]}"; do
    [[ "${pids[$k]}" == "$gone" ]] && exited "${names[$k]}"
done
exit 1
