#!/usr/bin/env python3
"""Checks that each NAT kind of the lab (lab.py) behaves as its name says, with plain UDP
sockets and no burrow at all: if the lab is wrong, the matrix proves nothing.

Usage: nat_kinds.py [KIND ...]   (default: every kind but none; exit 77 when not root)

For a kind K the lab is K/none: the prober sits behind K, the server namespace is the STUN-like
observer (two ports, plus a third the prober never talks to), and the laptop namespace (on the
internet) is a stranger. For shared (both agents behind one NAT) the stranger is a host added
to the internet bridge for the check, and the other agent on the LAN is a neighbour. Checked:
  mapping    same public address towards two ports of the server: endpoint-independent
  filtering  does a packet from the server's other port / from a stranger get in?
  hazard     docs/architecture.md §10: the stranger sends first (an early punch packet), then the prober
             answers it: the stranger must see the mapping the server saw, and get through.
  neighbour  (shared only) the other agent reaches us at our LAN address.
  allocation the public ports of ALLOC_PROBES more sends from the same socket to fresh server
             ports, in order: "same" (one mapping), "sequential D" (every step D), "block"
             (inside one aligned block of lab's BLOCK ports, not sequential) or "random"
  hairpin    (user-space kinds) a second LAN socket sending to our public mapping: in or not
"""
import json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab  # noqa: E402

SKIP_CODE = 77
WAIT_S = 0.3  # on these veths a datagram arrives in well under a millisecond

# A UDP helper living in one namespace, driven over stdin/stdout one JSON line at a time:
#   ["bind", port] | ["send", port, host, dport, msg]
#   ["recv", port, seconds] -> [[msg, host, port], ...]
HELPER = r"""
import json, select, socket, sys, time
socks = {}
for line in sys.stdin:
    cmd = json.loads(line)
    out = None
    if cmd[0] == "bind":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", cmd[1]))
        socks[cmd[1]] = s
    elif cmd[0] == "send":
        socks[cmd[1]].sendto(cmd[4].encode(), (cmd[2], cmd[3]))
    elif cmd[0] == "recv":
        s, out, end = socks[cmd[1]], [], time.monotonic() + cmd[2]
        while select.select([s], [], [], max(0, end - time.monotonic()))[0]:
            data, src = s.recvfrom(2048)
            out.append([data.decode(), src[0], src[1]])
    print(json.dumps(out), flush=True)
"""

EXPECT = {  # kind: (mapping, from the server's other port, from a stranger, hazard holds,
            #        allocation)
    "fullcone": ("endpoint-independent", True, True, True, "same"),
    "portrestricted": ("endpoint-independent", False, False, True, "same"),
    "shared": ("endpoint-independent", False, False, True, "same"),
    "symmetric": ("per-destination", False, False, False, "random"),
    "cgnat-symmetric": ("per-destination", False, False, False, "random"),  # its carrier NAT
    # Its router's rules are legacy iptables with miniupnpd's (empty) chains first; until a
    # client asks for a mapping it must be the symmetric NAT it is named after.
    "upnp-symmetric": ("per-destination", False, False, False, "random"),
    "pcp-symmetric": ("per-destination", False, False, False, "random"),
    # burrow-labnat (issue 16): the simulator's NAT on real packets.
    "seqsym": ("per-destination", False, False, False, "sequential 1"),
    "blocksym": ("per-destination", False, False, False, "block"),
}
HAIRPIN = {"seqsym": False, "blocksym": False}  # user-space kinds: hairpinning
ALLOC_PROBES = 6
ALLOC_FIRST_PORT = 3490  # the server's ports for them: above the three the checks use
BLOCK = 512  # nat.h's NatConfig::block_size, blocks counted from port 1024


def allocation(ports):
    """How a NAT gave out these public ports, in the order it gave them."""
    if len(set(ports)) == 1:
        return "same"
    steps = {(b - a) % 65536 for a, b in zip(ports, ports[1:])}
    if len(steps) == 1:
        return f"sequential {steps.pop()}"
    if len({(p - 1024) // BLOCK for p in ports}) == 1:
        return "block"
    return "random"
# shared: a stranger on the internet beside the server and the NAT (TEST-NET-2, as the lab).
SHARED_STRANGER_IP = f"{lab.INET_NET}.99"


class Helper:
    def __init__(self, ns):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", HELPER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self, *cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"helper died on {cmd}")
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=5)


def check(kind):
    """[] when kind behaves as EXPECT says, else what differs."""
    the_lab = lab.Lab(kind, "shared" if kind == "shared" else "none")
    helpers = []
    try:
        the_lab.build()
        me, srv = Helper(the_lab.agent_ns["nas"]), Helper(lab.SERVER_NS)
        helpers += [me, srv]
        s1, s2 = lab.SERVER_STUN_PORTS
        s3 = s2 + 1  # a server port the prober never sends to
        me("bind", 4000), srv("bind", s1), srv("bind", s2), srv("bind", s3)
        me("send", 4000, lab.SERVER_IP, s1, "m1")
        got1 = srv("recv", s1, WAIT_S)
        if kind in lab.UDP_BLOCKED_KINDS:
            return [] if not got1 else [f"UDP to the server got out: {got1}"]
        me("send", 4000, lab.SERVER_IP, s2, "m2")
        got2 = srv("recv", s2, WAIT_S)
        if not got1 or not got2:
            return [f"no UDP reached the server ({got1}, {got2})"]
        mapped1, mapped2 = tuple(got1[0][1:]), tuple(got2[0][1:])
        mapping = "endpoint-independent" if mapped1 == mapped2 else "per-destination"
        ports = [mapped1[1], mapped2[1]]
        for i in range(ALLOC_PROBES):
            srv("bind", ALLOC_FIRST_PORT + i)
            me("send", 4000, lab.SERVER_IP, ALLOC_FIRST_PORT + i, f"a{i}")
            got = srv("recv", ALLOC_FIRST_PORT + i, WAIT_S)
            if not got:
                return [f"allocation probe {i} did not reach the server"]
            ports.append(got[0][2])
        alloc = allocation(ports)
        srv("send", s3, *mapped1, "f1")
        from_port = [m for m, *_ in me("recv", 4000, WAIT_S)] == ["f1"]
        if kind == "shared":
            # The internet namespace's bridge gets an address of its own: a host that is
            # neither the server nor behind the NAT.
            lab.run(["ip", "-n", lab.INET_NS, "addr", "add",
                     f"{SHARED_STRANGER_IP}/{lab.PREFIX_LEN}", "dev", "br0"])
            stranger_ns, stranger_ip = lab.INET_NS, SHARED_STRANGER_IP
        else:
            stranger_ns, stranger_ip = the_lab.agent_ns["laptop"], lab.WAN_IPS["laptop"]
        stranger = Helper(stranger_ns)
        helpers.append(stranger)
        stranger("bind", 5000)
        stranger("send", 5000, *mapped1, "p0")  # the early punch packet
        from_stranger = [m for m, *_ in me("recv", 4000, WAIT_S)] == ["p0"]
        me("send", 4000, stranger_ip, 5000, "p1")
        seen = stranger("recv", 5000, WAIT_S)
        stranger("send", 5000, *(tuple(seen[0][1:]) if seen else mapped1), "p2")
        back = [m for m, *_ in me("recv", 4000, WAIT_S)] == ["p2"]
        hazard = bool(seen) and tuple(seen[0][1:]) == mapped1 and back
        problems = []
        if kind in HAIRPIN:
            # A second socket on the same LAN host sends to our public mapping (towards the
            # server): let in only with hairpinning, and then from our own public side.
            me("bind", 4001)
            me("send", 4001, *mapped1, "h1")
            hairpinned = [m for m, *_ in me("recv", 4000, WAIT_S)] == ["h1"]
            if hairpinned != HAIRPIN[kind]:
                problems.append(f"hairpin: got {hairpinned}, want {HAIRPIN[kind]}")
        if kind == "shared":
            # The other agent on the same LAN reaches us by our host address.
            neighbour = Helper(the_lab.agent_ns["laptop"])
            helpers.append(neighbour)
            neighbour("bind", 5000)
            neighbour("send", 5000, the_lab.agent_ip["nas"], 4000, "lan")
            if [m for m, *_ in me("recv", 4000, WAIT_S)] != ["lan"]:
                problems.append("neighbour: the other agent on the LAN did not reach us")
        got = (mapping, from_port, from_stranger, hazard, alloc)
        names = ("mapping", "from the server's other port", "from a stranger", "hazard holds",
                 f"allocation {ports}")
        return problems + [f"{n}: got {g}, want {w}"
                           for n, g, w in zip(names, got, EXPECT[kind]) if g != w]
    finally:
        for h in helpers:
            h.p.kill()
            h.p.wait()
        the_lab.destroy()


def main():
    kinds = sys.argv[1:] or [k for k in lab.KINDS if k != "none"]
    why = lab.have_netns()
    if why:
        print(f"SKIP natlab: needs root and network namespaces ({why})", flush=True)
        return SKIP_CODE
    lock = lab.lock()  # noqa: F841 (held until exit)
    lab.remove_stale()
    failed = 0
    for kind in kinds:
        problems = check(kind)
        print(f"{kind:15} {'ok' if not problems else 'WRONG: ' + '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
