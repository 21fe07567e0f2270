#!/usr/bin/env bash
# The docker demos, end to end (./run.sh docker-test runs this):
#   1. the base image: debian:bookworm-slim if present, else a local equivalent built from
#      Debian's archive (docker/base/make-base-image.sh; no registry needed)
#   2. the images from docker/Dockerfile: burrow (runtime), burrow-demo, burrow-router
#   3. each variant of docker/compose/nas-laptop (cone, symmetric, ipv6, upnp, udpblocked): up,
#      the NAS's page fetched by the laptop through the tunnel, the session's path checked, the
#      laptop's status page fetched on the host's published port, the lab checked for leaks (a
#      probe that must fail, and must succeed while a control opens the way), down (always,
#      failure included)
#   4. docker/compose/cluster (issue 21; cluster-cone, cluster-symmetric): the same checks with
#      two servers sharing Redis, the NAS on signal-a and the laptop on signal-b, then the
#      failover: signal-a is killed in the middle of a transfer through the tunnel, the NAS
#      moves to signal-b (burrow status --json connected_to), the transfer completes byte-exact,
#      a new fetch works and the path is still the expected one
# Timings are printed per step.

# The path the laptop's session with nas must be on, per variant: "direct" (any direct
# address), "relay-udp" or "relay-tcp". Behind two cone NATs the agents punch through; with
# symmetric NATs on both sides no punch can work and the session stays on the UDP relay.
EXPECT_PATH_CONE=${EXPECT_PATH_CONE:-direct}
EXPECT_PATH_SYMMETRIC=${EXPECT_PATH_SYMMETRIC:-relay-udp}
# ipv6.yml (issue 17): both agents dual-stack behind cone NATs and stateful IPv6 firewalls, the
# server named by both addresses: direct, and over IPv6 (status --json path.family).
EXPECT_PATH_IPV6=${EXPECT_PATH_IPV6:-direct}
# The cluster (issue 21): as with one server; the relay crosses the two servers over Redis.
EXPECT_PATH_CLUSTER_CONE=${EXPECT_PATH_CLUSTER_CONE:-direct}
EXPECT_PATH_CLUSTER_SYMMETRIC=${EXPECT_PATH_CLUSTER_SYMMETRIC:-relay-udp}
# upnp.yml (issue 16): both routers symmetric, the home router runs miniupnpd: the NAS's agent
# maps its port there (UPnP IGD), and the session goes direct to the mapped address.
EXPECT_PATH_UPNP=${EXPECT_PATH_UPNP:-direct}
# udpblocked.yml (issue 15): both routers drop UDP; the agents punch a direct TCP path.
EXPECT_PATH_UDPBLOCKED=${EXPECT_PATH_UDPBLOCKED:-direct-tcp}

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=$ROOT/docker/compose/nas-laptop   # run_variant's compose folder (DEMO=... for one call)
PAGE_DEADLINE=60   # s: containers start, agents register, the relayed session comes up
PATH_DEADLINE=${PATH_DEADLINE:-30}   # s: after the page, for the path to settle on the expected one
RELAY_HOLD=${RELAY_HOLD:-6}         # s: a relay variant must stay relayed this long (past the punch schedule)
# Which variants run (all by default; a subset while working on one says NOT RUN for the rest).
VARIANTS=${VARIANTS:-cone symmetric ipv6 upnp udpblocked cluster-cone cluster-symmetric}

say() { printf '==> docker-test: %s\n' "$*"; }
fail() { printf 'docker-test: FAIL: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

docker info >/dev/null 2>&1 || fail "no Docker engine (install docker.io and start it)"
if [ -n "${COMPOSE:-}" ]; then
    read -r -a compose_cmd <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose_cmd=(docker-compose)
else
    fail "neither 'docker compose' nor docker-compose (install docker-compose)"
fi
# Without the buildx plugin the docker CLI cannot use BuildKit; say so rather than fail.
if ! docker buildx version >/dev/null 2>&1; then
    export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
fi

t_all=$(now)

# --- 1. base image ---------------------------------------------------------------------------
t=$(now)
if [ -z "${BURROW_BASE_IMAGE:-}" ]; then
    if docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
        BURROW_BASE_IMAGE=debian:bookworm-slim
    else
        BURROW_BASE_IMAGE=burrow-base:bookworm-slim
        docker image inspect "$BURROW_BASE_IMAGE" >/dev/null 2>&1 ||
            "$ROOT/docker/base/make-base-image.sh" "$BURROW_BASE_IMAGE"
    fi
fi
export BURROW_BASE_IMAGE
say "base image $BURROW_BASE_IMAGE ($(since "$t"))"

# --- 2. images -------------------------------------------------------------------------------
for target in runtime demo router redis; do
    t=$(now)
    case $target in
        runtime) tag=burrow:latest ;;
        *) tag=burrow-$target:latest ;;
    esac
    log=$(mktemp)
    if ! docker build -f "$ROOT/docker/Dockerfile" --target "$target" \
        --build-arg BASE_IMAGE="$BURROW_BASE_IMAGE" -t "$tag" "$ROOT" >"$log" 2>&1; then
        tail -40 "$log" >&2
        rm -f "$log"
        fail "docker build --target $target"
    fi
    rm -f "$log"
    say "image $tag $(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=si)B ($(since "$t"))"
done

# --- 3. the demos ----------------------------------------------------------------------------
project=""
compose() { "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"; }
teardown() {
    [ -n "$project" ] || return 0
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    project=""
}
trap teardown EXIT

# "SOURCE PATH" for the laptop's session with nas (PATH empty while there is none): from
# `burrow status --json` (peers[].path: its kind, and the address when direct) where the agent
# answers it, else from the agent's log lines "session with nas up (relay-udp, ...)" and
# "path to nas: direct ADDR ...".
laptop_path() {
    local json
    if json=$(compose exec -T laptop burrow status --json 2>/dev/null); then
        printf 'status '
        python3 -c '
import json, sys
for p in json.load(sys.stdin).get("peers", []):
    if p.get("peer") == "nas":
        path = p.get("path") or {}
        words = [path.get("kind") or ""]
        if path.get("kind") in ("direct", "direct-tcp") and path.get("address"):
            words.append(path["address"])
        print(" ".join(words))' <<<"$json"
        return 0
    fi
    printf 'log '
    compose logs --no-color laptop 2>/dev/null |
        sed -n -e 's/.*session with nas up (\([^,)]*\).*/\1/p' \
            -e 's/.*path to nas: \(direct [^ ]*\|relay-[a-z]*\).*/\1/p' |
        tail -1
}

path_matches() {  # path_matches PATH EXPECTED: "direct" matches "direct ADDR"
    [ "$1" = "$2" ] || [[ "$1" == "$2 "* ]]
}

show_logs() {
    echo "---- logs ($project) ----" >&2
    compose logs --no-color --tail=40 >&2 || true
}

# The leak probe: can the laptop reach a service on the NAS other than through burrow? The
# demo's page server listens on the NAS's 127.0.0.1 only, which no routing mistake could ever
# expose, so the probe starts a listener of its own on the NAS's LAN address and tries it at
# that address and through the home router's public address. Prints each URL that answered.
# (The cluster variants' compose file has other subnets: their calls set both.)
NAS_LAN=192.168.77.10      # docker-compose.yml: home network
HOME_WAN=198.51.100.20     # home-router on internet
LEAK_PORT=8001
leak_probe() {
    # One exec for both (each costs a second or so); 2 s: an answer on this lab takes a few ms.
    compose exec -T laptop sh -c '
        for url in "$@"; do
            if curl -sf --connect-timeout 2 -m 3 -o /dev/null "$url"; then echo "$url"; fi
        done' probe "http://$NAS_LAN:$LEAK_PORT/" "http://$HOME_WAN:$LEAK_PORT/"
}

# The two leaks the controls make on purpose, each undone at once (-D / disconnect):
# forward_home -I|-D   the home router forwards LEAK_PORT on its public address to the NAS
# attach_laptop connect|disconnect   the laptop gets an interface on the home LAN
forward_home() {
    compose exec -T home-router sh -ec "
        iptables -t nat $1 PREROUTING -d $HOME_WAN -p tcp --dport $LEAK_PORT \
            -j DNAT --to-destination $NAS_LAN
        iptables $1 FORWARD -d $NAS_LAN -p tcp --dport $LEAK_PORT -j ACCEPT" >/dev/null
}
attach_laptop() {
    local home
    home=$(docker inspect -f '{{range $net, $_ := .NetworkSettings.Networks}}{{$net}}{{end}}' \
        "$(compose ps -q nas)")
    docker network "$1" "$home" "$(compose ps -q laptop)" >/dev/null
}

# leak_control NAME WHAT URL ON OFF: with the leak ON, the probe must reach URL; OFF undoes it.
leak_control() {
    local name=$1 what=$2 url=$3 on=$4 off=$5 reached
    $on || { $off || true; fail "$name: could not make the control leak ($what)"; }
    reached=$(leak_probe)
    $off || fail "$name: could not undo the control leak ($what)"
    grep -qxF "$url" <<<"$reached" ||
        fail "$name: the leak probe did not see $what (reached: ${reached:-nothing})"
}

leak_check() {  # leak_check NAME: fails when the probe gets through, or could not have
    local name=$1 reached
    compose exec -T -u burrow nas sh -ec "mkdir -p /tmp/leak && echo leak >/tmp/leak/index.html
        busybox httpd -p $NAS_LAN:$LEAK_PORT -h /tmp/leak" ||
        { show_logs; fail "$name: could not start the leak probe's listener on the NAS"; }
    compose exec -T nas curl -sf -m 2 -o /dev/null "http://$NAS_LAN:$LEAK_PORT/" ||
        { show_logs; fail "$name: the leak probe's listener does not answer on the NAS itself"; }
    reached=$(leak_probe)
    [ -z "$reached" ] ||
        fail "$name: the laptop reaches the NAS without burrow ($reached): the NAT lab leaks"
    # Controls: a probe that cannot fire proves nothing.
    leak_control "$name" "a port forward on the home router" "http://$HOME_WAN:$LEAK_PORT/" \
        "forward_home -I" "forward_home -D"
    leak_control "$name" "the laptop on the home LAN" "http://$NAS_LAN:$LEAK_PORT/" \
        "attach_laptop connect" "attach_laptop disconnect"
    reached=$(leak_probe)
    [ -z "$reached" ] || fail "$name: a control leak was not undone ($reached)"
    say "$name: no way to the NAS but burrow (and the probe sees a port forward, a shared LAN)"
}

# The laptop agent's admin endpoint, published on the host (docker-compose.yml, laptop's ports):
# GET / is the status page (HTML), GET /status names peer nas on the expected path kind.
# A free port of the host's, so that an agent on the host (7070) does not clash with the demo.
BURROW_STATUS_PORT=${BURROW_STATUS_PORT:-$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export BURROW_STATUS_PORT
status_page_check() {  # status_page_check NAME EXPECTED_PATH
    local name=$1 expect=$2 base="http://127.0.0.1:$BURROW_STATUS_PORT" type kind
    type=$(curl -sf -m 5 -o /dev/null -w '%{content_type}' "$base/") ||
        { show_logs; fail "$name: no status page on $base/ (the published admin port)"; }
    [[ "$type" == text/html* ]] || fail "$name: $base/ is '$type', not text/html"
    kind=$(curl -sf -m 5 "$base/status" | python3 -c '
import json, sys
print(next((p["path"]["kind"] for p in json.load(sys.stdin)["peers"] if p["peer"] == "nas"),
           ""))') || fail "$name: no status JSON on $base/status"
    [ "$kind" = "$expect" ] || fail "$name: $base/status says path '$kind', expected '$expect'"
}

# path.family of the laptop's session with nas in `burrow status --json` ("ipv4", "ipv6").
laptop_family() {
    compose exec -T laptop burrow status --json 2>/dev/null | python3 -c '
import json, sys
print(next(((p.get("path") or {}).get("family") or "" for p in json.load(sys.stdin)["peers"]
            if p["peer"] == "nas"), ""))'
}

# --- the cluster's checks (docker/compose/cluster) ---------------------------------------------
SIGNAL_A=203.0.113.10:7000   # the cluster's docker-compose.yml: signal-a on internet
SIGNAL_B=203.0.113.11:7000   # signal-b
# The transfer through the failover: BIG_CHUNKS of 128 KiB, one every 0.1 s, so that it spans
# the switch. The NAS paces it (a CGI script of busybox httpd): curl 7.88's --limit-rate held a
# transfer to 1 MiB/s once and let the next run at full speed.
BIG_CHUNKS=${BIG_CHUNKS:-64}
FAILOVER_DEADLINE=${FAILOVER_DEADLINE:-30}   # s: for the NAS to register with signal-b

# server.connected_to in `burrow status --json` of agent SERVICE (nas or laptop).
connected_to() {
    compose exec -T "$1" burrow status --json 2>/dev/null | python3 -c '
import json, sys
print((json.load(sys.stdin).get("server") or {}).get("connected_to") or "")'
}

homes_check() {  # homes_check NAME: each agent on its home server (server_order = "listed")
    local name=$1 nas laptop
    nas=$(connected_to nas) || true
    laptop=$(connected_to laptop) || true
    [ "$nas" = "$SIGNAL_A" ] ||
        { show_logs; fail "$name: nas is connected to '${nas:-nothing}', not signal-a $SIGNAL_A"; }
    [ "$laptop" = "$SIGNAL_B" ] || { show_logs
        fail "$name: laptop is connected to '${laptop:-nothing}', not signal-b $SIGNAL_B"; }
    # Their presence in Redis, which signal-b read to send the laptop's connect request to
    # signal-a (docs/architecture.md: burrow:agent:NAME holds the agent's server).
    local presence
    presence=$(compose exec -T redis sh -c \
        'redis-cli GET burrow:agent:nas; redis-cli GET burrow:agent:laptop' | tr -d '\r' |
        paste -sd ' ') || true
    [ "$presence" = "signal-a signal-b" ] ||
        { show_logs; fail "$name: Redis says nas and laptop are on '$presence'"; }
    say "$name: nas on signal-a ($nas), laptop on signal-b ($laptop), as Redis says too"
}

# failover_check NAME EXPECTED_PATH PAGE: kill signal-a during a transfer through the tunnel;
# the NAS moves to signal-b, the transfer completes byte-exact, a new fetch gets PAGE, the path
# is still EXPECTED_PATH.
failover_check() {
    local name=$1 expect=$2 page=$3 t want got out rc pid found path
    t=$(now)
    # /srv/www/big.bin, and /cgi-bin/slow sending it a chunk at a time (node.sh's page server
    # runs CGI scripts of cgi-bin/).
    want=$(compose exec -T -u burrow nas sh -ec "
        head -c $((BIG_CHUNKS << 17)) /dev/urandom >/srv/www/big.bin
        mkdir -p /srv/www/cgi-bin
        cat >/srv/www/cgi-bin/slow <<'CGI'
#!/bin/sh
printf 'Content-Type: application/octet-stream\r\n\r\n'
i=0
while [ \$i -lt $BIG_CHUNKS ]; do
    dd if=/srv/www/big.bin bs=131072 skip=\$i count=1 2>/dev/null
    sleep 0.1
    i=\$((i + 1))
done
CGI
        chmod +x /srv/www/cgi-bin/slow
        sha256sum </srv/www/big.bin" | awk '{print $1}')
    [ ${#want} -eq 64 ] || fail "$name: could not put a large file on the NAS"
    local mib=$((BIG_CHUNKS / 8))
    out=$(mktemp)
    local t_transfer
    t_transfer=$(now)
    compose exec -T laptop sh -c "curl -sSf -m 120 -o /tmp/big.bin \
        http://127.0.0.1:8080/cgi-bin/slow && sha256sum </tmp/big.bin" >"$out" 2>&1 &
    pid=$!
    # Killed once the transfer has bytes in flight (its first second).
    sleep 1.5
    compose kill signal-a >/dev/null 2>&1 || fail "$name: docker kill signal-a"
    # A transfer that ended before the kill would prove nothing about the switch.
    kill -0 "$pid" 2>/dev/null ||
        fail "$name: the transfer had ended before signal-a's kill (raise BIG_CHUNKS)"
    local t_kill nas="" deadline=$((SECONDS + FAILOVER_DEADLINE))
    t_kill=$(now)
    until nas=$(connected_to nas) && [ "$nas" = "$SIGNAL_B" ]; do
        [ $SECONDS -lt $deadline ] || { kill "$pid" 2>/dev/null || true; show_logs
            fail "$name: after signal-a's kill nas is connected to '${nas:-nothing}'"; }
        sleep 0.2
    done
    say "$name: signal-a killed; nas registered with signal-b $nas ($(since "$t_kill"))"
    say "$name: nas's burrow status: $(compose exec -T nas burrow status 2>/dev/null |
        grep '^server' | tr -s ' ')"
    got=$(compose exec -T laptop curl -sf -m 10 http://127.0.0.1:8080/) ||
        { kill "$pid" 2>/dev/null || true; show_logs; fail "$name: no page after the failover"; }
    [ "$got" = "$page" ] || fail "$name: the page after the failover differs: '$got'"
    found=$(laptop_path) || true
    path=${found#* }
    path_matches "$path" "$expect" ||
        { kill "$pid" 2>/dev/null || true; show_logs
          fail "$name: path after the failover '${path:-none}', expected '$expect'"; }
    say "$name: a new fetch after the failover, path $path"
    rc=0
    wait "$pid" || rc=$?
    got=$(awk '{print $1}' "$out")
    [ "$rc" -eq 0 ] && [ "$got" = "$want" ] || { show_logs
        fail "$name: the $mib MiB transfer through the failover: exit $rc: $(cat "$out")"; }
    rm -f "$out"
    say "$name: $mib MiB started before the kill arrived byte-exact (transfer $(since \
        "$t_transfer"); $(since "$t") in all)"
}

run_variant() {  # run_variant NAME EXPECTED_PATH NAT_NAME [compose -f files...]
    # Environment of the call: EXPECT_FAMILY, the direct path's family must be this one;
    # EXPECT_MAPPED, the NAS's router maps its port with this protocol ("UPnP IGD") and the
    # direct path leads to the mapped address; HOME_WAN, the home router's public address.
    local name=$1 expect=$2 nat=$3 family=${EXPECT_FAMILY:-} mapped=${EXPECT_MAPPED:-}
    shift 3
    if [[ " $VARIANTS " != *" $name "* ]]; then
        say "$name: NOT RUN (VARIANTS=\"$VARIANTS\")"
        return 0
    fi
    files=()
    local f
    for f in "$@"; do files+=(-f "$DEMO/$f"); done
    # CLUSTER_FAILOVER (environment of the call): the cluster checks (failover_check below).
    local failover=${CLUSTER_FAILOVER:-}
    project=burrow-test-$name
    local t_variant t
    t_variant=$(now)
    compose down -v --remove-orphans >/dev/null 2>&1 || true  # leftovers of an aborted run

    t=$(now)
    compose up -d --no-build >/dev/null 2>&1 || { show_logs; fail "$name: compose up"; }
    say "$name: up ($(since "$t"))"

    # The page as the NAS serves it locally, and as the laptop gets it through the tunnel.
    t=$(now)
    local served got="" deadline=$((SECONDS + PAGE_DEADLINE))
    until served=$(compose exec -T nas curl -sf -m 2 http://127.0.0.1:8000/ 2>/dev/null); do
        [ $SECONDS -lt $deadline ] || { show_logs; fail "$name: the NAS serves no page"; }
        sleep 0.5
    done
    until got=$(compose exec -T laptop curl -sf -m 5 http://127.0.0.1:8080/ 2>/dev/null) &&
        [ -n "$got" ]; do
        [ $SECONDS -lt $deadline ] || { show_logs; fail "$name: no page through the tunnel"; }
        sleep 0.5
    done
    [ "$got" = "$served" ] || { show_logs; fail "$name: the page differs: '$got' != '$served'"; }
    say "$name: page through the tunnel ($(since "$t"))"
    if [ -n "$failover" ]; then
        homes_check "$name"
    fi

    # The lab itself: NATs of the kind the variant says (and, at the end, no way from the cafe
    # to the NAS except burrow).
    local logs
    logs=$(compose logs --no-color laptop)
    grep -q "registered with the server as laptop (nat $nat" <<<"$logs" ||
        { show_logs; fail "$name: the laptop did not see a $nat NAT"; }

    t=$(now)
    local found="" source path=""
    deadline=$((SECONDS + PATH_DEADLINE))
    while :; do
        found=$(laptop_path) || true
        source=${found%% *}
        path=${found#* }
        path_matches "$path" "$expect" && break
        [ $SECONDS -lt $deadline ] ||
            { show_logs; fail "$name: path '${path:-none}', expected '$expect'"; }
        sleep 0.5
    done
    say "$name: path $path, as expected (from the $source; $(since "$t"))"
    if [ -n "$family" ]; then
        local got_family=""
        deadline=$((SECONDS + PATH_DEADLINE))
        until got_family=$(laptop_family) && [ "$got_family" = "$family" ]; do
            [ $SECONDS -lt $deadline ] ||
                { show_logs; fail "$name: path family '${got_family:-none}', expected '$family'"; }
            sleep 0.5
        done
        say "$name: burrow status --json: path family $got_family, as expected"
    fi
    if [ -n "$mapped" ]; then
        # The direct path is the address the NAS's router mapped, and the laptop says it found
        # it there ("path to nas: direct ADDR (..., mapped, ...)").
        local granted address
        granted=$(compose logs --no-color nas |
            grep -o "port mapping: $mapped at [^ ]* gave [^ ]*" | tail -1) ||
            { show_logs; fail "$name: the NAS's log has no mapping by $mapped"; }
        address=${granted##* }
        [ "$path" = "direct $address" ] ||
            { show_logs; fail "$name: path '$path', expected the mapped address $address"; }
        compose logs --no-color laptop | grep -q "path to nas: direct $address (.*, mapped, " ||
            { show_logs; fail "$name: the laptop's log does not say it went direct by the mapping"; }
        say "$name: ${granted#port mapping: }; the path leads there"
    fi
    if [[ "$expect" == relay-* ]]; then
        # Not merely "not punched yet": every session starts on the relay, so the path must
        # stay relayed through the whole fast punching schedule (3.2 s from the session's
        # start, tunnel/path_manager.h) and after one more fetch through the tunnel.
        compose exec -T laptop curl -sf -m 5 -o /dev/null http://127.0.0.1:8080/ ||
            { show_logs; fail "$name: second fetch through the tunnel"; }
        local hold_until=$((SECONDS + RELAY_HOLD))
        while [ $SECONDS -lt $hold_until ]; do
            found=$(laptop_path) || true
            path=${found#* }
            path_matches "$path" "$expect" || { show_logs; fail "$name: path became '$path'"; }
            sleep 0.5
        done
    fi

    # The laptop's status page, as a user opens it on the host (the published admin port).
    t=$(now)
    status_page_check "$name" "$expect"
    say "$name: status page on http://127.0.0.1:$BURROW_STATUS_PORT/ ($(since "$t"))"

    # burrow doctor on the laptop: the server's two-sided verdict names the same path, and for
    # the symmetric variant both symmetric NATs. In the cluster variants the laptop asks its own
    # server about the NAS on the other: both servers record the rendezvous, and the NAS's
    # PunchReport comes through Redis (docs/architecture.md, [cluster]).
    t=$(now)
    local verdict
    verdict=$(compose exec -T laptop burrow doctor nas 2>&1) ||
        { show_logs; fail "$name: burrow doctor nas failed: $verdict"; }
    # A direct TCP path reads "direct-tcp (tcp-srflx, ...)" (control version 6).
    case "$expect" in
        direct) [[ "$verdict" == "direct ("* ]] ;;
        direct-tcp) [[ "$verdict" == "direct-tcp (tcp-"* ]] ;;
        *) [[ "$verdict" == "relayed ($expect)"* ]] ;;
    esac || fail "$name: burrow doctor says '${verdict%%$'\n'*}', expected $expect"
    if [ -n "$mapped" ]; then
        [[ "$verdict" == "direct (mapped,"* ]] ||
            fail "$name: burrow doctor does not say the mapping made the path: $verdict"
    elif [ "$nat" = per-destination ]; then
        grep -q "both NATs map per destination" <<<"$verdict" ||
            fail "$name: burrow doctor does not name both symmetric NATs: $verdict"
    fi
    say "$name: burrow doctor: ${verdict%%$'\n'*} ($(since "$t"))"

    # Last: its controls change the network for a moment, which must not touch the path checks.
    t=$(now)
    leak_check "$name"
    say "$name: leak probe and its controls ($(since "$t"))"

    if [ -n "$mapped" ]; then
        # A clean stop deletes the mapping: the NAS's log says so, and miniupnpd's DNAT chain
        # on the home router is empty again.
        t=$(now)
        compose stop -t 10 nas >/dev/null 2>&1 || fail "$name: could not stop the NAS"
        compose logs --no-color nas | grep -q "port mapping: deleted UDP port" ||
            { show_logs; fail "$name: the NAS did not delete its mapping as it stopped"; }
        local left
        left=$(compose exec -T home-router iptables -t nat -S MINIUPNPD | grep -c -- '-A' || true)
        [ "$left" = 0 ] || fail "$name: $left mapping(s) left on the home router after the stop"
        say "$name: the NAS's stop deleted its mapping ($(since "$t"))"
    fi

    # Last of all: it kills a server.
    if [ -n "$failover" ]; then
        failover_check "$name" "$expect" "$served"
    fi

    t=$(now)
    teardown
    say "$name: down ($(since "$t")); variant total $(since "$t_variant")"
}

run_variant cone "$EXPECT_PATH_CONE" endpoint-independent docker-compose.yml
run_variant symmetric "$EXPECT_PATH_SYMMETRIC" per-destination docker-compose.yml symmetric.yml
EXPECT_FAMILY=ipv6 run_variant ipv6 "$EXPECT_PATH_IPV6" endpoint-independent docker-compose.yml ipv6.yml
EXPECT_MAPPED="UPnP IGD" HOME_WAN=100.128.0.20 \
    run_variant upnp "$EXPECT_PATH_UPNP" per-destination docker-compose.yml upnp.yml
run_variant udpblocked "$EXPECT_PATH_UDPBLOCKED" unknown docker-compose.yml udpblocked.yml
# Two servers and Redis (issue 21): their own compose folder and subnets (the leak probe's
# addresses too), then the failover.
run_cluster_variant() {  # as run_variant, in docker/compose/cluster
    local DEMO=$ROOT/docker/compose/cluster NAS_LAN=192.168.78.10 HOME_WAN=203.0.113.20
    CLUSTER_FAILOVER=1 run_variant "$@"
}
run_cluster_variant cluster-cone "$EXPECT_PATH_CLUSTER_CONE" endpoint-independent \
    docker-compose.yml
run_cluster_variant cluster-symmetric "$EXPECT_PATH_CLUSTER_SYMMETRIC" per-destination \
    docker-compose.yml symmetric.yml

say "passed ($(since "$t_all") in all)"
