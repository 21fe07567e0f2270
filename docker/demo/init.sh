#!/bin/sh
# One-shot set-up for the compose demos: creates the agents' keys, the server's certificate and
# the three config files in $CONF (a volume the other services share), once. Later runs find
# them and change nothing, so `docker compose up` after `down` (without -v) keeps the keys.
#
# In a real deployment each machine makes its own key and only public keys travel; one shared
# volume keeps the demo to one command.
set -eu
CONF=${CONF:-/conf}
SIGNAL=${SIGNAL:-signal}   # the server's name as nas and laptop see it (compose extra_hosts)
# The cluster demo (docker/compose/cluster): several servers sharing presence through Redis.
#   CLUSTER         the servers' names, e.g. "signal-a signal-b": each gets NAME.toml, the same
#                   file as server.toml plus [cluster] name = NAME (one certificate, identity
#                   key, agents and ACL for all), and is NAME:7000 to the agents
#   CLUSTER_REDIS   the Redis URL, redis://IP:PORT
#   NAS_SERVERS, LAPTOP_SERVERS   each agent's server list, its home server first
#                   (server_order = "listed"); default: CLUSTER
CLUSTER=${CLUSTER:-}
cd "$CONF"

if [ -f laptop.toml ]; then
    echo "init: $CONF already set up"
    exit 0
fi

nas_pub=$(burrow keygen --force -o nas.key)
laptop_pub=$(burrow keygen --force -o laptop.key)

# SERVER_DUAL_STACK=1 (compose's ipv6.yml): one dual-stack socket per port ("[::]" takes IPv4
# too); without it IPv4 only, which works where the containers have IPv6 switched off.
if [ -n "${SERVER_DUAL_STACK:-}" ]; then
    listen='"[::]:7000"' stun='["[::]:3478", "[::]:3479"]'
else
    listen='"0.0.0.0:7000"' stun='["0.0.0.0:3478", "0.0.0.0:3479"]'
fi

cat >server.toml <<TOML
# Written by docker/demo/init.sh for the compose demo.
[server]
listen = $listen
stun = $stun
cert_file = "server.crt"
key_file = "server.key"
identity_key = "server-identity.key"

[[agents]]
name = "nas"
public_key = "$nas_pub"

[[agents]]
name = "laptop"
public_key = "$laptop_pub"

[[allow]]
from = "laptop"
to = "nas"
services = ["web"]
TOML

# Creates the certificate and prints its fingerprint for the agents to pin.
fingerprint=$(burrow server -c server.toml --print-fingerprint)

# One server: server = "signal:7000". A cluster: every server, the agent's home first.
server_line="server = \"$SIGNAL:7000\""
servers_of() {  # servers_of NAME... -> server = [...] and server_order
    list=""
    for s in "$@"; do list="$list${list:+, }\"$s:7000\""; done
    printf 'server = [%s]\nserver_order = "listed"' "$list"
}
nas_server=$server_line laptop_server=$server_line
if [ -n "$CLUSTER" ]; then
    : "${CLUSTER_REDIS:?set CLUSTER_REDIS to the Redis URL (redis://IP:PORT)}"
    # The identity key relay tokens derive from, made here: servers starting together would
    # each create one of their own.
    burrow keygen --force -o server-identity.key >/dev/null
    for name in $CLUSTER; do
        {
            cat server.toml
            printf '\n[cluster]\nredis = "%s"\nname = "%s"\n' "$CLUSTER_REDIS" "$name"
        } >"$name.toml"
        # The same certificate: every server prints the same fingerprint.
        [ "$(burrow server -c "$name.toml" --print-fingerprint)" = "$fingerprint" ] ||
            { echo "init: $name.toml has another certificate" >&2; exit 1; }
    done
    # shellcheck disable=SC2086
    nas_server=$(servers_of ${NAS_SERVERS:-$CLUSTER})
    # shellcheck disable=SC2086
    laptop_server=$(servers_of ${LAPTOP_SERVERS:-$CLUSTER})
fi

cat >nas.toml <<TOML
# Written by docker/demo/init.sh for the compose demo.
[agent]
name = "nas"
key_file = "nas.key"
$nas_server
server_fingerprint = "$fingerprint"
admin = "127.0.0.1:7070"

# The NAS's web page: busybox httpd, on loopback only (nothing outside the NAS reaches it
# except through burrow).
[[expose]]
service = "web"
target = "127.0.0.1:8000"
allow = ["laptop"]
TOML

# Written last: its presence means the set-up is complete (see the check above).
cat >laptop.toml.tmp <<TOML
# Written by docker/demo/init.sh for the compose demo.
[agent]
name = "laptop"
key_file = "laptop.key"
$laptop_server
server_fingerprint = "$fingerprint"
# The status page and burrow status on every address of the container, so that compose can
# publish it on the host (docker-compose.yml: laptop's ports). admin_remote says so on purpose:
# anyone who reaches the address can read the agent's status. burrow status inside the
# container still finds it at 127.0.0.1:7070.
admin = "0.0.0.0:7070"
admin_remote = true

[[forward]]
listen = "127.0.0.1:8080"
peer = "nas"
service = "web"
TOML
mv laptop.toml.tmp laptop.toml
echo "init: keys and configs written to $CONF (server fingerprint $fingerprint)"
