#!/bin/sh
# A home or cafe router: forwards between its LAN and the "internet" network and NATs what
# leaves, like a consumer router.
#
#   WAN_SUBNET   the internet network's prefix, e.g. 198.51.100.0/24 (finds the WAN interface)
#   NAT          cone (default): MASQUERADE, endpoint-independent mapping;
#                symmetric: MASQUERADE --random-fully, a new port per destination;
#                udpblocked: cone, and no UDP leaves the LAN (issue 15: the agents punch a
#                direct TCP path)
#   UPNP         1: also run miniupnpd (UPnP IGD, NAT-PMP and PCP) for the LAN, as many home
#                routers do: a LAN host may map a port of the WAN address to itself, and keeps
#                its port going out (compose's upnp.yml). The WAN address must not be reserved:
#                miniupnpd 2.3 maps nothing behind one.
#
# Needs NET_ADMIN and net.ipv4.ip_forward=1 (compose sets both). Runs until stopped.
set -eu

: "${WAN_SUBNET:?set WAN_SUBNET to the internet network's prefix}"
NAT=${NAT:-cone}

wan=$(ip -o -4 route show "$WAN_SUBNET" | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1)}')
[ -n "$wan" ] || { echo "router: no interface on $WAN_SUBNET" >&2; exit 1; }

# Docker gives the router a default route through the LAN bridge's host side; the demo's
# internet is only WAN_SUBNET, and nothing may leave through the host.
ip route del default 2>/dev/null || true

UPNP=${UPNP:-0}
if [ "$UPNP" = 1 ]; then
    # miniupnpd-iptables edits its chains through libiptc, which sees only the legacy tables
    # ("chain MINIUPNPD not found" in iptables-nft's): this router's whole ruleset is legacy,
    # the same netfilter NAT under the older interface (and so is every later `iptables` here).
    update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy
    update-alternatives --quiet --set ip6tables /usr/sbin/ip6tables-legacy
    # Its chains, consulted first (as its iptables_init.sh inserts them): the DNAT of mapped
    # ports, their FORWARD accept, and the SNAT that keeps a mapped socket's port going out.
    iptables -t nat -N MINIUPNPD
    iptables -t nat -N MINIUPNPD-POSTROUTING
    iptables -t nat -A PREROUTING -i "$wan" -j MINIUPNPD
    iptables -t nat -A POSTROUTING -o "$wan" -j MINIUPNPD-POSTROUTING
    iptables -N MINIUPNPD
fi

case "$NAT" in
    cone) masquerade="-j MASQUERADE" ;;
    symmetric) masquerade="-j MASQUERADE --random-fully" ;;
    udpblocked) masquerade="-j MASQUERADE" ;;
    *) echo "router: NAT must be cone, symmetric or udpblocked, not $NAT" >&2; exit 2 ;;
esac
if [ "$NAT" = udpblocked ]; then
    iptables -A FORWARD ! -i "$wan" -o "$wan" -p udp -j DROP
fi

# shellcheck disable=SC2086
iptables -t nat -A POSTROUTING -o "$wan" $masquerade
# Drop unsolicited inbound on the WAN side, as real routers do (docs/architecture.md section 8): without
# it an early punch packet from the peer is delivered to the router itself, conntrack keeps
# an entry for it and the NAT remaps our next outgoing packet to another port.
for chain in INPUT FORWARD; do
    iptables -A "$chain" -i "$wan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    if [ "$UPNP" = 1 ] && [ "$chain" = FORWARD ]; then
        iptables -A FORWARD -i "$wan" ! -o "$wan" -j MINIUPNPD   # mapped ports
    fi
    iptables -A "$chain" -i "$wan" -j DROP
done
echo "router: $NAT NAT on $wan ($(ip -o -4 addr show dev "$wan" | awk '{print $4}'))"

if [ "$UPNP" = 1 ]; then
    lan=$(ip -o -4 addr show scope global | awk -v wan="$wan" '$2 != wan {print $2; exit}')
    lan_net=$(ip -o -4 route show dev "$lan" scope link | awk '{print $1; exit}')
    [ -n "$lan" ] && [ -n "$lan_net" ] || { echo "router: no LAN interface for miniupnpd" >&2; exit 1; }
    # Mappings only for the LAN's own hosts, each for itself (secure_mode), of unprivileged ports.
    cat >/run/miniupnpd.conf <<EOF2
ext_ifname=$wan
listening_ip=$lan
port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
uuid=2b7c9d4e-5f60-4a1b-8c2d-3e4f5a6b7c8d
upnp_forward_chain=MINIUPNPD
upnp_nat_chain=MINIUPNPD
upnp_nat_postrouting_chain=MINIUPNPD-POSTROUTING
allow 1024-65535 $lan_net 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF2
    # -d: in the foreground, logging to stderr (the container's log); our child until we stop.
    miniupnpd -d -f /run/miniupnpd.conf -P /run/miniupnpd.pid &
    echo "router: miniupnpd (UPnP IGD, NAT-PMP, PCP) on $lan for $lan_net"
fi

# IPv6 (compose's ipv6.yml): routed, not translated. The other LANs' prefixes go through their
# routers (ROUTES6: "PREFIX via ADDR, ..."); a stateful firewall lets in only what answers
# traffic from inside, as consumer routers do for IPv6.
if [ -n "${ROUTES6:-}" ]; then
    ip -6 route del default 2>/dev/null || true
    echo "$ROUTES6" | tr ',' '\n' | while read -r route; do
        # shellcheck disable=SC2086
        [ -z "$route" ] || ip -6 route replace $route
    done
    for chain in INPUT FORWARD; do
        ip6tables -A "$chain" -i "$wan" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        ip6tables -A "$chain" -i "$wan" -p ipv6-icmp -j ACCEPT   # neighbour discovery
        ip6tables -A "$chain" -i "$wan" -j DROP
    done
    echo "router: IPv6 stateful firewall on $wan, routes: $ROUTES6"
fi

# Sleep until docker stops the container; a shell as PID 1 ignores SIGTERM unless trapped.
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
