#!/usr/bin/env bash
# A local cluster in one command (`just cluster`): three nats-servers in one
# JetStream cluster (routes on loopback, stores under ./data/cluster/n0..n2)
# and two gateways on it (R3 stream, sessions in the R3 key-value bucket).
# Prints the gateways' addresses and a token; Ctrl-C stops everything.
#
# Environment: SWITCHBOARD_BIN (default ./target/release/switchboard),
# CLUSTER_DIR (default ./data/cluster), CLUSTER_PORT (first NATS client
# port, default 14222: clients on +0..2, routes on +10..12, monitoring on
# +20..22), GATEWAY_PORT (first gateway port, default 8081).
set -euo pipefail

bin="${SWITCHBOARD_BIN:-./target/release/switchboard}"
dir="${CLUSTER_DIR:-./data/cluster}"
base="${CLUSTER_PORT:-14222}"
gw_base="${GATEWAY_PORT:-8081}"
nodes=(n0 n1 n2)

command -v nats-server >/dev/null || { echo "cluster: nats-server not on PATH (run \`just tools\`)" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "cluster: $bin not found (cargo build --release)" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

pids=()
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

urls=()
for i in "${!nodes[@]}"; do urls+=("nats://127.0.0.1:$((base + i))"); done
nats_url="$(IFS=,; echo "${urls[*]}")"

for i in "${!nodes[@]}"; do
    name="${nodes[$i]}"
    routes=()
    for j in "${!nodes[@]}"; do
        [[ $j == "$i" ]] || routes+=("\"nats-route://127.0.0.1:$((base + 10 + j))\"")
    done
    cat >"$dir/$name.conf" <<CONF
server_name: $name
host: 127.0.0.1
port: $((base + i))
http: "127.0.0.1:$((base + 20 + i))"
jetstream { store_dir: "$dir/$name" }
cluster {
  name: switchboard
  listen: "127.0.0.1:$((base + 10 + i))"
  routes: [$(IFS=,; echo "${routes[*]}")]
}
CONF
    nats-server -c "$dir/$name.conf" >>"$dir/$name.log" 2>&1 &
    pids+=($!)
done

# wait_ready URL PID NAME: until URL answers 200 (60 s at most), or the process exits.
wait_ready() {
    for _ in $(seq 600); do
        curl -fs "$1" >/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { echo "cluster: $3 exited; see $dir/$3.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "cluster: $3 not ready after 60 s; see $dir/$3.log" >&2
    exit 1
}

# Ready: every server's health check passes (JetStream has a meta leader).
for i in "${!nodes[@]}"; do
    wait_ready "http://127.0.0.1:$((base + 20 + i))/healthz" "${pids[$i]}" "${nodes[$i]}"
done

gateways=(gw-a gw-b)
for k in "${!gateways[@]}"; do
    name="${gateways[$k]}"
    listen="127.0.0.1:$((gw_base + k))"
    # Sessions in the replicated key-value bucket: a resume works on either.
    "$bin" serve --dev --nats-url "$nats_url" --replicas 3 --session-store kv \
        --data-dir "$dir/$name" --listen "$listen" >>"$dir/$name.log" 2>&1 &
    pids+=($!)
    # One after the other: the first creates the stream, the second finds it.
    wait_ready "http://$listen/readyz" "${pids[-1]}" "$name"
done

sub="$(python3 -c 'import uuid;print(uuid.uuid4())')"
token="$("$bin" token --dev --sub "$sub" --channels '*' --roles publisher,auditor --name dev --ttl 24h)"
echo "NATS cluster: $nats_url (monitoring on 127.0.0.1:$((base + 20))..$((base + 22)), logs and stores in $dir)"
for k in "${!gateways[@]}"; do
    echo "gateway ${gateways[$k]}: ws://127.0.0.1:$((gw_base + k))/v1/ws  http://127.0.0.1:$((gw_base + k))  (log: $dir/${gateways[$k]}.log)"
done
echo "token: $token"
echo "publish: $bin publish --nats-url $nats_url --type channel_created --data '{\"channel_id\":\"$(python3 -c 'import uuid;print(uuid.uuid4())')\",\"channel_name\":\"general\"}'"
echo "Ctrl-C stops everything."

# Until Ctrl-C, or until one of them exits on its own.
set +e
wait -n "${pids[@]}"
echo "cluster: a process exited on its own; stopping the rest" >&2
exit 1
