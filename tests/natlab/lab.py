"""The natlab topology: network namespaces joined by veths and bridges, each NAT a namespace
with real iptables rules (docs/architecture.md §10, step 4). Python 3 stdlib plus `ip`, `iptables-restore`,
`sysctl` and `conntrack`; needs root.

    bl-inet      the "internet": one bridge, 198.51.100.0/24 (TEST-NET-2, never routed)
    bl-srv       the server, 198.51.100.1 on that bridge
    per agent    kind "none":  bl-AGENT directly on the internet, 198.51.100.1x
                 other kinds:  bl-AGENT-nat (WAN 198.51.100.1x, LAN 10.0.N.1) and bl-AGENT
                               (10.0.N.2, default route via the NAT)
    shared       both agents on one LAN (10.0.3.0/24, a bridge in bl-shared-nat) behind one
                 port-restricted NAT
    cgnat-symmetric  a double NAT: a home port-restricted NAT behind a carrier's symmetric
                 NAT: bl-AGENT-cgn (WAN 198.51.100.1x, LAN 100.64.N.1, RFC 6598's shared
                 address space), bl-AGENT-nat (WAN 100.64.N.2, LAN 10.0.N.1) and bl-AGENT

IPv6 (issue 17), per agent side, when its family is "dual" or "v6" (Lab(..., families)):
    bl-inet      also 2001:db8:100::/64 (RFC 3849 documentation space), server ::1
    per agent    kind "none": 2001:db8:100::1x on its WAN; other kinds: the NAT namespace
                 is also an IPv6 router (WAN 2001:db8:100::1x, LAN 2001:db8:N::1/64, agent
                 2001:db8:N::2) with an ip6tables stateful firewall that drops unsolicited
                 inbound (ESTABLISHED,RELATED accepted), as home routers do: it filters like a
                 port-restricted NAT but translates nothing. Every host on the internet gets a
                 route to every agent LAN's /64 through its router.
                 "v6": the agent side has no IPv4 address at all (v6-only access networks).
    Addresses are added "nodad" and every namespace has accept_dad=0: duplicate address
    detection would hold them "tentative" (unusable) for a second or more, the routers'
    link-local addresses too (which neighbour discovery for forwarded packets needs), and the
    lab cannot have duplicates.

Every name this file creates starts with PREFIX ("bl-"; use_prefix() picks another, as the soak
does) so that a crashed run's leftovers can be found and removed (remove_stale). Interfaces are created inside the namespaces, never in the root
namespace, so nothing here can clash with the host's interfaces.
"""
import fcntl, os, shutil, subprocess, threading

PREFIX = "bl-"
INET_NS = "bl-inet"
SERVER_NS = "bl-srv"


def use_prefix(prefix):
    """Names of another family (the soak's bs-*): a lab that neither waits for nor tears down
    the natlab's, under a lock of its own (lock(path))."""
    global PREFIX, INET_NS, SERVER_NS
    PREFIX, INET_NS, SERVER_NS = prefix, f"{prefix}inet", f"{prefix}srv"

INET_NET = "198.51.100"  # RFC 5737 TEST-NET-2: no real host can be hit by mistake
PREFIX_LEN = 24
SERVER_IP = f"{INET_NET}.1"
SERVER_TCP_PORT = 7000
SERVER_STUN_PORTS = (3478, 3479)
WAN_IPS = {"nas": f"{INET_NET}.11", "laptop": f"{INET_NET}.12", "shared": f"{INET_NET}.13"}
LAN_NETS = {"nas": "10.0.1", "laptop": "10.0.2", "shared": "10.0.3"}
SHARED_HOSTS = {"nas": 2, "laptop": 3}  # host part of each agent on the shared LAN

INET6_NET = "2001:db8:100"  # RFC 3849: documentation only, never routed
INET6_PREFIX_LEN = 64
SERVER_IP6 = f"{INET6_NET}::1"
WAN_IP6S = {"nas": f"{INET6_NET}::11", "laptop": f"{INET6_NET}::12"}
LAN6_NETS = {"nas": "2001:db8:1", "laptop": "2001:db8:2"}
FAMILIES = ("v4", "dual", "v6")

CGNAT_NET = "100.64"  # RFC 6598: the carrier side of a double NAT, 100.64.N.0/24 per agent
KINDS = ("none", "fullcone", "portrestricted", "symmetric", "udpblocked", "serveronly", "shared",
         "cgnat-symmetric", "upnp-symmetric", "pcp-symmetric", "seqsym", "blocksym")
# A double NAT: the home NAT's kind (inside) and the carrier NAT's kind (outside).
DOUBLE_NATS = {"cgnat-symmetric": ("portrestricted", "symmetric")}
# Kinds whose router lets no UDP out (the agent's STUN probe and UDP relay fail).
UDP_BLOCKED_KINDS = ("udpblocked", "serveronly")


# A router that also runs miniupnpd (issue 16): its netfilter kind, and the MINIUPNPD chains
# miniupnpd fills. natlab.py starts miniupnpd itself (upnp_config()). upnp-symmetric speaks UPnP
# IGD, PCP and NAT-PMP, so the agent's first choice, UPnP IGD, maps; pcp-symmetric has UPnP off
# and answers PCP and NAT-PMP on port 5351, so the agent maps with PCP, its second choice.
UPNP_KINDS = {"upnp-symmetric": "symmetric", "pcp-symmetric": "symmetric"}
# The protocol the agent's "port mapping: ... gave" line must name behind each of them.
UPNP_PROTOCOLS = {"upnp-symmetric": "UPnP IGD", "pcp-symmetric": "PCP"}
# miniupnpd 2.3 refuses to map anything when its WAN address is reserved ("Reserved / private IP
# address ... Port forwarding is impossible"), and TEST-NET-2 is reserved; it has no switch to
# allow it before 2.3.4. So such a router's WAN gets an address outside every reserved block,
# alone in its /32 on the lab's internet bridge, with on-link routes both ways. The lab's
# internet has no uplink: no packet can reach the real owner of this address.
UPNP_WAN_IPS = {"nas": "100.128.0.11", "laptop": "100.128.0.12"}


# Kinds netfilter cannot show (issue 16): UDP goes through burrow-labnat, the simulator's NAT
# (tests/sim/net/nat.h) on real packets, started in the router's namespace with the kind's name
# (nat.h's nat_config() holds its settings: one definition for the lab and the simulator); TCP
# and ICMP stay with netfilter, MASQUERADE'd per destination as "symmetric" is (a NAT that
# maps UDP per destination does so for TCP too; an endpoint-independent TCP mapping would let
# a direct TCP path through where the UDP kind under test must be punched). The value is the
# behaviour class the internet sees until a technique of its own (port prediction) is used:
# both map per destination and filter by address and port, as "symmetric" does.
USERSPACE_KINDS = {"seqsym": "symmetric", "blocksym": "symmetric"}
LABNAT_TUN = "unat"
LABNAT_TABLE = "100"  # the policy routing table that sends UDP into the TUN
LABNAT_READY_S = 5.0
# build/burrow-labnat beside the burrow binary (set_labnat), or $BURROW_LABNAT.
LABNAT = os.environ.get("BURROW_LABNAT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "burrow-labnat")


def set_labnat(path):
    global LABNAT
    LABNAT = path


def labnat_missing():
    """"" when burrow-labnat can run, else why not (a user-space kind then cannot be built)."""
    return "" if os.access(LABNAT, os.X_OK) else f"{LABNAT} not built (ninja burrow-labnat)"


def outer_kind(kind):
    """The kind the internet sees: a double NAT maps and filters like its carrier NAT (the
    home NAT inside maps endpoint-independently and keeps ports, so it adds nothing). A
    router with miniupnpd is its netfilter kind until a client asks it for a mapping."""
    if kind in UPNP_KINDS:
        return UPNP_KINDS[kind]
    if kind in USERSPACE_KINDS:
        return USERSPACE_KINDS[kind]
    return DOUBLE_NATS[kind][1] if kind in DOUBLE_NATS else kind


def upnp_config(lan_net, pid_file, kind="upnp-symmetric"):
    """miniupnpd's config for a router of a UPNP_KINDS kind: UPnP IGD (not for pcp-symmetric),
    and PCP with NAT-PMP (miniupnpd's enable_natpmp switches on both) on the LAN side, mappings
    on the WAN, only for the LAN's hosts (secure_mode: each for itself)."""
    upnp = "no" if kind == "pcp-symmetric" else "yes"
    return f"""ext_ifname=wan
listening_ip=lan
port=0
enable_natpmp=yes
enable_upnp={upnp}
secure_mode=yes
system_uptime=yes
uuid=6f1c3b1e-16a0-4b57-9e9b-b1a4f5c0de16
upnp_forward_chain=MINIUPNPD
upnp_nat_chain=MINIUPNPD
upnp_nat_postrouting_chain=MINIUPNPD-POSTROUTING
allow 1024-65535 {lan_net}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
"""


def _copy_lines(src, dst):
    try:
        for line in src:
            dst.write(line)
            dst.flush()
    except ValueError:  # destroy() closed the log
        pass


def run(argv, stdin=None):
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def ns_exec(ns, *argv, stdin=None):
    return run(["ip", "netns", "exec", ns, *argv], stdin=stdin)


def have_netns():
    """"" when this process can build the lab, else why not."""
    if os.geteuid() != 0:
        return "not root"
    try:
        run(["ip", "netns", "list"])
    except (OSError, RuntimeError) as e:
        return f"ip netns unusable: {e}"
    return ""


LOCK_FILE = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                         "burrow-natlab.lock")


def lock(path=LOCK_FILE, who="natlab"):
    """The lab's names are machine-wide: two runs at once (two worktrees' ctest) would tear
    down each other's namespaces, so the second waits for the first. Keep the returned file
    open for as long as the lab is in use."""
    f = open(path, "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{who}: another {who} run holds {path}; waiting", flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def lab_namespaces():
    out = run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines()
            if line.strip() and line.split()[0].startswith(PREFIX)]


def kill_namespace_processes(ns):
    """Kills, by pid, whatever still runs inside one of our namespaces: only this harness
    starts processes there, so they are a previous run's leftovers."""
    try:
        pids = run(["ip", "netns", "pids", ns]).split()
    except RuntimeError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale():
    """Removes every bl-* namespace (and what runs in it). Returns their names."""
    stale = lab_namespaces()
    for ns in stale:
        kill_namespace_processes(ns)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return stale


_iptables = None


def iptables_backend():
    """("iptables-restore", ...) for whichever backend works here, found once with a probe
    namespace: nf_tables is the Debian 12 default, legacy is the fallback."""
    global _iptables
    if _iptables:
        return _iptables
    probe = f"{PREFIX}probe"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    run(["ip", "netns", "add", probe])
    try:
        rules = "*nat\n-A POSTROUTING -o lo -j MASQUERADE --random-fully\nCOMMIT\n"
        errors = []
        for restore in ("iptables-restore", "iptables-legacy-restore"):
            try:
                ns_exec(probe, restore, stdin=rules)
                ns_exec(probe, "iptables-save" if restore == "iptables-restore"
                        else "iptables-legacy-save")
                _iptables = restore
                return _iptables
            except (OSError, RuntimeError) as e:
                errors.append(str(e))
        raise RuntimeError("no working iptables backend: " + "; ".join(errors))
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def firewall6_rules():
    """ip6tables-restore input for an IPv6 router: stateful filtering on the WAN side, nothing
    translated. Neighbour discovery (ICMPv6) must pass INPUT or the router cannot answer for
    its own WAN address."""
    return "\n".join([
        "*filter",
        "-A INPUT -i wan -p ipv6-icmp -j ACCEPT",
        "-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i wan -j DROP",
        "-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A FORWARD -i wan -j DROP",
        "COMMIT", ""])


def ip6tables_restore():
    return "ip6tables-restore" if iptables_backend() == "iptables-restore" \
        else "ip6tables-legacy-restore"


def nat_rules(kind, lan_hosts, wan_ip):
    """iptables-restore input for a NAT namespace of this kind. WAN is "wan", LAN is "lan".

    Every kind drops unsolicited inbound on the WAN side, in INPUT and in FORWARD, as
    docs/architecture.md §10 requires: otherwise the peer's early punch packet is delivered to the NAT
    box itself, conntrack keeps an entry for it, and the NAT remaps our outgoing port.
    """
    filt = [
        "*filter",
        "-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i wan -j DROP",
        "-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    nat = ["*nat"]
    if kind in UPNP_KINDS:
        # miniupnpd's chains, consulted first (as its iptables_init.sh inserts them): DNAT of
        # mapped ports, their FORWARD accept, and the SNAT that keeps a mapped socket's port.
        filt.insert(1, ":MINIUPNPD - [0:0]")
        filt.append("-A FORWARD -i wan ! -o wan -j MINIUPNPD")
        nat += [":MINIUPNPD - [0:0]", ":MINIUPNPD-POSTROUTING - [0:0]",
                "-A PREROUTING -i wan -j MINIUPNPD",
                "-A POSTROUTING -o wan -j MINIUPNPD-POSTROUTING"]
        kind = UPNP_KINDS[kind]
    if kind in USERSPACE_KINDS:
        # UDP is burrow-labnat's (Lab._userspace_nat): untracked, so netfilter neither maps
        # nor remaps it (a null binding could change a port the user-space NAT chose), and let
        # through to the TUN from the WAN (the user-space NAT filters it). Everything else is
        # MASQUERADE'd per destination, as by the "symmetric" kind.
        filt.append(f"-A FORWARD -i wan -o {LABNAT_TUN} -p udp -j ACCEPT")
        nat.append("-A POSTROUTING -o wan ! -p udp -j MASQUERADE --random-fully")
        filt.append("-A FORWARD -i wan -j DROP")
        raw = ["*raw", "-A PREROUTING -p udp -j CT --notrack",
               "-A OUTPUT -p udp -j CT --notrack", "COMMIT"]
        return "\n".join(raw + filt + ["COMMIT"] + nat + ["COMMIT", ""])
    if kind == "fullcone":
        # A full-cone NAT forwards any inbound packet to the mapped address: that is its
        # definition. The static 1:1 DNAT below *is* that mapping, so a packet it translates
        # (ctstate DNAT) is not unsolicited and passes; every other inbound packet is still
        # dropped, and INPUT still drops everything unsolicited. The hazard §8 names cannot
        # arise: the inbound packet never reaches the NAT box itself, and its conntrack
        # entry is the reverse of our own 1:1 mapping, so our next outgoing packet matches
        # it unchanged instead of being remapped.
        (host,) = lan_hosts
        filt.append("-A FORWARD -i wan -m conntrack --ctstate DNAT -j ACCEPT")
        nat.append(f"-A POSTROUTING -o wan -s {host} -j SNAT --to-source {wan_ip}")
        nat.append(f"-A PREROUTING -i wan -d {wan_ip} -j DNAT --to-destination {host}")
    elif kind == "symmetric":
        # A fresh random port per conntrack entry, so per destination: symmetric (§8).
        nat.append("-A POSTROUTING -o wan -j MASQUERADE --random-fully")
    else:  # portrestricted, udpblocked, serveronly, shared: endpoint-independent mapping (§8)
        nat.append("-A POSTROUTING -o wan -j MASQUERADE")
    filt.append("-A FORWARD -i wan -j DROP")
    if kind == "udpblocked":
        # No UDP leaves (no STUN, no UDP relay, no UDP punching); TCP does, to anyone: the
        # agents punch a direct TCP path (issue 15).
        filt.append("-A FORWARD -i lan -p udp -j DROP")
    if kind == "serveronly":
        # Only the TLS control connection to the server leaves: no UDP at all, and no TCP to
        # the peer either, so the pair can only meet on the server's TLS relay.
        filt.append(f"-A FORWARD -i lan -p tcp -d {SERVER_IP} --dport {SERVER_TCP_PORT} "
                    "-j ACCEPT")
        filt.append("-A FORWARD -i lan -j DROP")
    return "\n".join(filt + ["COMMIT"] + nat + ["COMMIT", ""])


class Lab:
    """One lab: the internet, the server, and the two agents' sides. build() then
    destroy(); destroy() is safe to call any number of times, after a half-done build too."""

    def __init__(self, nas_kind, laptop_kind, families=None):
        if (nas_kind == "shared") != (laptop_kind == "shared"):
            raise ValueError("shared puts both agents behind one NAT: use the pair shared/shared")
        for k in (nas_kind, laptop_kind):
            if k not in KINDS:
                raise ValueError(f"unknown NAT kind {k!r} (one of {', '.join(KINDS)})")
        self.kinds = {"nas": nas_kind, "laptop": laptop_kind}
        self.families = dict(families or {"nas": "v4", "laptop": "v4"})
        for agent, family in self.families.items():
            if family not in FAMILIES:
                raise ValueError(f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
            if family != "v4" and self.kinds[agent] in ("shared", "udpblocked", "serveronly") or \
                    family != "v4" and self.kinds[agent] in DOUBLE_NATS or \
                    family != "v4" and self.kinds[agent] in USERSPACE_KINDS:
                raise ValueError(f"{self.kinds[agent]} has no IPv6 variant in this lab")
        self.ipv6 = any(f != "v4" for f in self.families.values())
        self.agent_ip6 = {}
        self.etc_netns = []  # /etc/netns/NS folders name_server() made
        self.routers6 = {}  # agent -> (router's WAN IPv6, the agent LAN's /64)
        self.namespaces = []
        self.agent_ns = {"nas": f"{PREFIX}nas", "laptop": f"{PREFIX}laptop"}
        self.nat_ns = {}  # agent -> its NAT namespace (both the same one when shared)
        self.agent_ip = {}
        self.on_internet = []  # (namespace, address) of every host on the internet bridge
        self.labnat = {}  # NAT namespace -> (burrow-labnat process, its log file)

    def _add_ns(self, ns):
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        ip_ = lambda *a: run(["ip", "-n", ns, *a])  # noqa: E731
        ip_("link", "set", "lo", "up")
        # Loose or strict reverse-path filtering drops the asymmetric first packets that NAT
        # traversal is made of; every namespace here turns it off before its interfaces exist
        # ("default" covers them).
        for conf in ("all", "default"):
            ns_exec(ns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")
            if self.ipv6:
                # No duplicate address detection on any interface, the automatic link-local
                # addresses included: a router whose link-local address is still "tentative"
                # cannot send the neighbour solicitation a forwarded packet needs, and the
                # first second of every IPv6 flow through it is lost.
                ns_exec(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=0",
                        f"net.ipv6.conf.{conf}.accept_dad=0")

    def _link(self, ns_a, name_a, ns_b, name_b):
        """A veth with one end in each namespace (never in the root one)."""
        run(["ip", "-n", ns_a, "link", "add", "name", name_a, "type", "veth", "peer", "name",
             name_b, "netns", ns_b])
        for ns, name in ((ns_a, name_a), (ns_b, name_b)):
            run(["ip", "-n", ns, "link", "set", name, "up"])

    def _on_internet(self, ns, port_name, addr, addr6=None):
        self._link(INET_NS, port_name, ns, "wan")
        run(["ip", "-n", INET_NS, "link", "set", port_name, "master", "br0"])
        if addr6:
            run(["ip", "-n", ns, "addr", "add", f"{addr6}/{INET6_PREFIX_LEN}", "dev", "wan",
                 "nodad"])
            self.internet6.append(ns)
        if not addr:
            return
        self.on_internet.append((ns, addr))
        if addr.startswith(INET_NET + "."):
            run(["ip", "-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", "wan"])
            return
        # An address outside the internet's prefix (UPNP_WAN_IPS): alone, with the prefix on-link.
        run(["ip", "-n", ns, "addr", "add", f"{addr}/32", "dev", "wan"])
        run(["ip", "-n", ns, "route", "add", f"{INET_NET}.0/{PREFIX_LEN}", "dev", "wan"])

    def build(self):
        self.internet6 = []  # namespaces with an IPv6 address on the internet
        self._add_ns(INET_NS)
        run(["ip", "-n", INET_NS, "link", "add", "name", "br0", "type", "bridge"])
        run(["ip", "-n", INET_NS, "link", "set", "br0", "up"])
        self._add_ns(SERVER_NS)
        self._on_internet(SERVER_NS, "p-srv", SERVER_IP, SERVER_IP6 if self.ipv6 else None)
        if self.kinds["nas"] == "shared":
            self._build_shared()
        else:
            for agent in ("nas", "laptop"):
                self._build_side(agent, self.kinds[agent])
        # Every host on the internet reaches every agent LAN through its router.
        for ns in self.internet6:
            for agent, (router, net) in self.routers6.items():
                if ns != self.nat_ns.get(agent):
                    run(["ip", "-n", ns, "-6", "route", "add", f"{net}::/64", "via", router])
        # Every other host on the bridge reaches an out-of-prefix address on-link.
        for ns, addr in self.on_internet:
            for other_ns, other in self.on_internet:
                if other_ns != ns and not other.startswith(INET_NET + "."):
                    run(["ip", "-n", ns, "route", "add", f"{other}/32", "dev", "wan"])
        return self

    def _build_side(self, agent, kind):
        ans = self.agent_ns[agent]
        self._add_ns(ans)
        family = self.families[agent]
        v4, v6 = family != "v6", family != "v4"
        if kind == "none":
            self._on_internet(ans, f"p-{agent}", WAN_IPS[agent] if v4 else None,
                              WAN_IP6S[agent] if v6 else None)
            if v4:
                self.agent_ip[agent] = WAN_IPS[agent]
            if v6:
                self.agent_ip6[agent] = WAN_IP6S[agent]
            return
        nns = f"{PREFIX}{agent}-nat"
        self._add_ns(nns)
        net = LAN_NETS[agent]
        if kind in DOUBLE_NATS:
            home, carrier = DOUBLE_NATS[kind]
            self._build_carrier(agent, nns, carrier)
            home_wan = f"{CGNAT_NET}.{net.split('.')[-1]}.2"
        else:
            home = kind
            home_wan = UPNP_WAN_IPS[agent] if kind in UPNP_KINDS else WAN_IPS[agent]
            self._on_internet(nns, f"p-{agent}", home_wan, WAN_IP6S[agent] if v6 else None)
            self.nat_ns[agent] = nns
        self._link(nns, "lan", ans, "eth0")
        run(["ip", "-n", nns, "addr", "add", f"{net}.1/24", "dev", "lan"])
        if v4:
            run(["ip", "-n", ans, "addr", "add", f"{net}.2/24", "dev", "eth0"])
            run(["ip", "-n", ans, "route", "add", "default", "via", f"{net}.1"])
            self.agent_ip[agent] = f"{net}.2"
        self._nat(nns, home, [f"{net}.2"], home_wan)
        if v6:
            net6 = LAN6_NETS[agent]
            run(["ip", "-n", nns, "addr", "add", f"{net6}::1/64", "dev", "lan", "nodad"])
            run(["ip", "-n", ans, "addr", "add", f"{net6}::2/64", "dev", "eth0", "nodad"])
            run(["ip", "-n", ans, "-6", "route", "add", "default", "via", f"{net6}::1"])
            ns_exec(nns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            ns_exec(nns, ip6tables_restore(), stdin=firewall6_rules())
            self.routers6[agent] = (WAN_IP6S[agent], net6)
            self.agent_ip6[agent] = f"{net6}::2"

    def _build_carrier(self, agent, home_ns, kind):
        """The carrier NAT of a double NAT, between the home NAT's WAN and the internet. It is
        the one the fault helpers act on (nat_ns): a carrier's conntrack flush or block is
        what a home user cannot fix."""
        cns = f"{PREFIX}{agent}-cgn"
        self._add_ns(cns)
        self._on_internet(cns, f"p-{agent}", WAN_IPS[agent])
        sub = f"{CGNAT_NET}.{LAN_NETS[agent].split('.')[-1]}"
        self._link(cns, "lan", home_ns, "wan")
        run(["ip", "-n", cns, "addr", "add", f"{sub}.1/24", "dev", "lan"])
        run(["ip", "-n", home_ns, "addr", "add", f"{sub}.2/24", "dev", "wan"])
        run(["ip", "-n", home_ns, "route", "add", "default", "via", f"{sub}.1"])
        self._nat(cns, kind, [f"{sub}.2"], WAN_IPS[agent])
        self.nat_ns[agent] = cns

    def _build_shared(self):
        nns = f"{PREFIX}shared-nat"
        self._add_ns(nns)
        self._on_internet(nns, "p-shared", WAN_IPS["shared"])
        net = LAN_NETS["shared"]
        run(["ip", "-n", nns, "link", "add", "name", "lan", "type", "bridge"])
        run(["ip", "-n", nns, "link", "set", "lan", "up"])
        run(["ip", "-n", nns, "addr", "add", f"{net}.1/24", "dev", "lan"])
        hosts = []
        for agent, host in SHARED_HOSTS.items():
            ans = self.agent_ns[agent]
            self._add_ns(ans)
            self._link(nns, f"l-{agent}", ans, "eth0")
            run(["ip", "-n", nns, "link", "set", f"l-{agent}", "master", "lan"])
            run(["ip", "-n", ans, "addr", "add", f"{net}.{host}/24", "dev", "eth0"])
            run(["ip", "-n", ans, "route", "add", "default", "via", f"{net}.1"])
            self.nat_ns[agent] = nns
            self.agent_ip[agent] = f"{net}.{host}"
            hosts.append(f"{net}.{host}")
        self._nat(nns, "shared", hosts, WAN_IPS["shared"])

    def _nat(self, ns, kind, lan_hosts, wan_ip):
        ns_exec(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # miniupnpd-iptables edits its chains through libiptc, which sees only the legacy
        # tables ("chain MINIUPNPD not found" in iptables-nft's): such a router's whole ruleset
        # is legacy, the same netfilter NAT under the older interface.
        restore = "iptables-legacy-restore" if kind in UPNP_KINDS else iptables_backend()
        ns_exec(ns, restore, stdin=nat_rules(kind, lan_hosts, wan_ip))
        if kind in USERSPACE_KINDS:
            self._userspace_nat(ns, kind, lan_hosts, wan_ip)

    def _userspace_nat(self, ns, kind, lan_hosts, wan_ip):
        """burrow-labnat in the router's namespace, and the policy routing that hands it every
        UDP packet arriving from the LAN or the WAN (the local table's rule moves behind ours,
        or UDP to the router's own WAN address would be delivered to the router). What it
        writes back is routed by the main table; its source may be the router's own address,
        which the kernel accepts from the TUN only with accept_local."""
        why = labnat_missing()
        if why:
            raise RuntimeError(f"NAT kind {kind}: {why}")
        lan_prefix = lan_hosts[0].rsplit(".", 1)[0] + ".0/24"
        log = open(f"/tmp/{PREFIX}labnat-{ns}.log", "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns, LABNAT, LABNAT_TUN, wan_ip, lan_prefix,
                              kind], stdout=subprocess.PIPE, stderr=log, text=True)
        ready = p.stdout.readline()
        if not ready.startswith("ready"):
            p.kill()
            p.wait()
            log.close()
            with open(log.name) as f:
                raise RuntimeError(f"burrow-labnat did not start in {ns}: {f.read().strip()}")
        log.write(ready)
        log.flush()
        self.labnat[ns] = (p, log)
        # The mapping lines go on to the log file, read by a thread (a full pipe would block
        # the NAT).
        threading.Thread(target=_copy_lines, args=(p.stdout, log), daemon=True).start()
        for conf in ("all", "default"):
            ns_exec(ns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.accept_local=1")
        r = lambda *a: run(["ip", "-n", ns, *a])  # noqa: E731
        r("link", "set", LABNAT_TUN, "up")
        r("route", "add", "default", "dev", LABNAT_TUN, "table", LABNAT_TABLE)
        for dev in ("lan", "wan"):
            r("rule", "add", "pref", "10", "iif", dev, "ipproto", "udp", "lookup", LABNAT_TABLE)
        r("rule", "add", "pref", "20", "lookup", "local")
        r("rule", "del", "pref", "0")

    def labnat_log(self, agent):
        """The mapping lines burrow-labnat printed for the agent's router so far ("" if none)."""
        entry = self.labnat.get(self.nat_ns.get(agent))
        if not entry:
            return ""
        entry[1].flush()
        with open(entry[1].name) as f:
            return f.read()

    def name_server(self, name):
        """Makes `name` resolve to the server's IPv4 and IPv6 addresses inside each agent's
        namespace: `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts (the
        control connection's Happy Eyeballs needs a name with both)."""
        for ns in self.agent_ns.values():
            d = os.path.join("/etc/netns", ns)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "hosts"), "w") as f:
                f.write(f"127.0.0.1 localhost\n{SERVER_IP6} {name}\n{SERVER_IP} {name}\n")
            self.etc_netns.append(d)

    def blackhole_server6(self, agent, port):
        """Silently drops the agent's TCP to the server's IPv6 address and `port` (a broken
        IPv6 path: no answer, no reset), at its router or in its own namespace."""
        ns = self.nat_ns.get(agent, self.agent_ns[agent])
        chain = "FORWARD" if agent in self.nat_ns else "OUTPUT"
        ns_exec(ns, "ip6tables" if iptables_backend() == "iptables-restore"
                else "ip6tables-legacy", "-I", chain, "-p", "tcp", "-d", SERVER_IP6,
                "--dport", str(port), "-j", "DROP")

    def destroy(self):
        for p, log in getattr(self, "labnat", {}).values():
            p.kill()
            p.wait()
            log.close()
        self.labnat = {}
        for d in getattr(self, "etc_netns", []):
            shutil.rmtree(d, ignore_errors=True)
        self.etc_netns = []
        for ns in reversed(self.namespaces):
            kill_namespace_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []

    # Fault helpers for later tests (issue 6): each acts on one live lab.

    def flush_conntrack(self, agent):
        """Forgets every mapping of the NAT in front of agent, as a router reboot would."""
        ns_exec(self.nat_ns[agent], "conntrack", "-F")

    def set_udp_timeout(self, seconds):
        """Every NAT forgets a UDP mapping idle for `seconds`, replied to or not, as routers
        with short UDP timeouts do (conntrack's timeouts are per namespace)."""
        for ns in sorted(set(self.nat_ns.values())):
            ns_exec(ns, "sysctl", "-qw", f"net.netfilter.nf_conntrack_udp_timeout={seconds}",
                    f"net.netfilter.nf_conntrack_udp_timeout_stream={seconds}")

    def block_direct(self, agent, proto="udp"):
        """Drops the agent's UDP (proto "tcp": TCP, a direct TCP path's) to and from anything
        but the server at its NAT (or, with no NAT, in its own namespace): the direct path dies,
        the relay lives."""
        ns, rules = self._block_target(agent, proto)
        for rule in rules:
            ns_exec(ns, self._iptables(), "-I", *rule)

    def unblock_direct(self, agent, proto="udp"):
        ns, rules = self._block_target(agent, proto)
        for rule in rules:
            ns_exec(ns, self._iptables(), "-D", *rule)

    def block_direct6(self, agent):
        """Drops the agent's IPv6 UDP to and from anything but the server at its router (an
        IPv6 blackhole between the agents: the IPv6 direct path dies, IPv4 and the server live).
        Not undone: the lab is destroyed after the pair."""
        ns = self.nat_ns.get(agent, self.agent_ns[agent])
        routed = agent in self.nat_ns
        ip6tables = "ip6tables" if iptables_backend() == "iptables-restore" else "ip6tables-legacy"
        for chain, direction in (("FORWARD" if routed else "OUTPUT", "-d"),
                                 ("FORWARD" if routed else "INPUT", "-s")):
            ns_exec(ns, ip6tables, "-I", chain, "-p", "udp", "!", direction, SERVER_IP6,
                    "-j", "DROP")

    def block_server_stun(self, agent):
        """Drops the agent's STUN requests to the server's STUN ports at its router (or in its
        own namespace): IPv4 datagrams whose UDP payload carries the STUN magic cookie (RFC 8489
        §5: bytes 4-7 are 0x2112A442), matched with xt_u32 past the IP header. Bind and relayed
        packets still pass, so only the reflexive address must come from elsewhere."""
        ns = self.nat_ns.get(agent, self.agent_ns[agent])
        chain = "FORWARD" if agent in self.nat_ns else "OUTPUT"
        for port in SERVER_STUN_PORTS:
            ns_exec(ns, self._iptables(), "-I", chain, "-p", "udp", "-d", SERVER_IP, "--dport",
                    str(port), "-m", "u32", "--u32", "0>>22&0x3C@12=0x2112A442", "-j", "DROP")

    def _block_target(self, agent, proto="udp"):
        if agent in self.nat_ns:
            # FORWARD sees both directions: one rule for packets neither from nor to the server.
            # A pair of rules "! -d SERVER" and "! -s SERVER" would also drop the server's own
            # packets (its replies on their way in, the agent's requests on their way out), and
            # with them the UDP relay or the control connection the fall back needs.
            return self.nat_ns[agent], [["FORWARD", "-p", proto, "!", "-s", SERVER_IP, "!",
                                         "-d", SERVER_IP, "-j", "DROP"]]
        return self.agent_ns[agent], [["OUTPUT", "-p", proto, "!", "-d", SERVER_IP, "-j", "DROP"],
                                      ["INPUT", "-p", proto, "!", "-s", SERVER_IP, "-j", "DROP"]]

    @staticmethod
    def _iptables():
        return "iptables" if iptables_backend() == "iptables-restore" else "iptables-legacy"
