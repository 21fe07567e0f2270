#!/bin/sh
# Entrypoint of the demo image: one machine of the compose demos.
#
#   node.sh init      write keys and configs into $CONF (init.sh), then exit
#   node.sh nas       serve a page on 127.0.0.1:8000 and expose it with burrow agent
#   node.sh laptop    burrow agent forwarding 127.0.0.1:8080 to nas/web
#   node.sh CMD...    anything else runs as is (e.g. sh)
#
#   GATEWAY   if set, the default route goes through this address (the home or cafe router)
#             instead of Docker's bridge; this needs NET_ADMIN, so the script starts as root
#             and runs everything else as the burrow user without capabilities.
set -eu
CONF=${CONF:-/conf}

as_burrow() {
    exec setpriv --reuid=burrow --regid=burrow --init-groups --inh-caps=-all \
        --bounding-set=-all "$@"
}

if [ -n "${GATEWAY:-}" ]; then
    busybox ip route replace default via "$GATEWAY"
fi
#   GATEWAY6  the same for IPv6 (compose's ipv6.yml)
#   ROUTES6   "PREFIX via ADDR, ..." IPv6 routes to add (the server's way back to the LANs)
if [ -n "${GATEWAY6:-}" ]; then
    busybox ip -6 route replace default via "$GATEWAY6"
fi
if [ -n "${ROUTES6:-}" ]; then
    echo "$ROUTES6" | tr ',' '\n' | while read -r route; do
        # shellcheck disable=SC2086
        [ -z "$route" ] || busybox ip -6 route replace $route
    done
fi

wait_for_conf() {
    # The init service writes the configs; compose starts us after it, but a plain
    # `docker run` might not.
    for _ in $(seq 1 100); do
        [ -f "$CONF/$1" ] && return 0
        sleep 0.1
    done
    echo "node: no $CONF/$1 (did the init service run?)" >&2
    exit 1
}

case "${1:-}" in
    init)
        install -d -o burrow -g burrow -m 0750 "$CONF"
        as_burrow /usr/local/lib/burrow-demo/init.sh
        ;;
    nas)
        wait_for_conf nas.toml
        # A fixed folder, owned by burrow: docker/test.sh puts a large file there, and a CGI
        # script under cgi-bin/ that sends it slowly, for a transfer through the tunnel that
        # spans a server's failover (`docker compose exec -u burrow nas ...`).
        www=/srv/www
        install -d -o burrow -g burrow "$www"
        printf '<h1>Hello from %s</h1>\n<p>served on its 127.0.0.1:8000, behind home-router</p>\n' \
            "$(hostname)" >"$www/index.html"
        chown -R burrow:burrow "$www"
        # -f: foreground, so it stays our child; burrow agent becomes PID 1 below and the page
        # server ends with the container.
        setpriv --reuid=burrow --regid=burrow --init-groups --inh-caps=-all --bounding-set=-all \
            busybox httpd -f -p 127.0.0.1:8000 -h "$www" &
        as_burrow burrow agent -c "$CONF/nas.toml"
        ;;
    laptop)
        wait_for_conf laptop.toml
        as_burrow burrow agent -c "$CONF/laptop.toml"
        ;;
    "")
        echo "node: say init, nas, laptop or a command" >&2
        exit 2
        ;;
    *)
        as_burrow "$@"
        ;;
esac
