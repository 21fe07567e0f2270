#!/usr/bin/env python3
"""`burrow netcheck` behind each NAT kind of the lab says how the NAT allocates ports (issue 16):
the mapped ports of one socket's successive new mappings, one per STUN destination; and whether
it keeps a TCP connection's port across destinations (issue 15).

Usage: netcheck_allocation.py BURROW [KIND ...]   (exit 77 when not root)

For a kind K the lab is K/none. A minimal STUN responder (RFC 8489 Binding success with
XOR-MAPPED-ADDRESS, nothing else) listens on PORTS ports of the server's address; netcheck in the
agent's namespace asks each of them (--stun-server, in order, from its one socket) and must print
the allocation line EXPECT names. With only two destinations it must say it cannot tell.

TCP: a real `burrow server` in the server's namespace (STUN on BURROW_STUN_PORTS, over UDP and
TCP); netcheck --stun to its two ports must print the tcp mapping line TCP_EXPECT names: the
port kept behind MASQUERADE (portrestricted, and udpblocked, whose UDP probe gets nothing), a
new port per destination behind MASQUERADE --random-fully (symmetric, and the user-space kinds,
whose TCP is netfilter's per-destination MASQUERADE). udpblocked runs the TCP check only.
"""
import os, re, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab  # noqa: E402

SKIP_CODE = 77
FIRST_PORT = 3478
PORTS = 5
EXPECT = {
    "portrestricted": r"allocation +one port for every destination",
    "symmetric": r"allocation +random: no prediction",
    "seqsym": r"allocation +sequential delta 1: ",
    "blocksym": r"allocation +block \d+-\d+ \(random in a per-subscriber block\)",
}
UNKNOWN = r"allocation +unknown: needs mapped ports from 3 or more STUN destinations"
BURROW_STUN_PORTS = (3490, 3491)  # beside the responder's 3478-3482
TCP_KEPT = (r"tcp mapping +endpoint-independent \(port kept across destinations\): direct TCP "
            r"punching can work")
TCP_PER_DESTINATION = (r"tcp mapping +per destination \(port \d+ then \d+\): direct TCP punching "
                       r"will not work through this NAT")
TCP_EXPECT = {
    "portrestricted": TCP_KEPT,
    "udpblocked": TCP_KEPT,
    "symmetric": TCP_PER_DESTINATION,
    "seqsym": TCP_PER_DESTINATION,
    "blocksym": TCP_PER_DESTINATION,
}
SERVER_TOML = """[server]
listen = "0.0.0.0:7000"
stun = ["0.0.0.0:{0}", "0.0.0.0:{1}"]
cert_file = "server.crt"
key_file = "server.key"
identity_key = "server-identity.key"
"""

RESPONDER = r"""
import select, socket, struct, sys
COOKIE = 0x2112A442
socks = []
for port in range(int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        data, (ip, port) = s.recvfrom(2048)
        if len(data) < 20 or struct.unpack("!H", data[:2])[0] != 1 or \
                struct.unpack("!I", data[4:8])[0] != COOKIE:
            continue
        xip = struct.unpack("!I", socket.inet_aton(ip))[0] ^ COOKIE
        attr = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, port ^ (COOKIE >> 16), xip)
        s.sendto(struct.pack("!HHI", 0x0101, len(attr), COOKIE) + data[8:20] + attr, (ip, port))
"""


def netcheck(burrow, the_lab, ports):
    argv = ["ip", "netns", "exec", the_lab.agent_ns["nas"], burrow, "netcheck",
            "--no-port-mapping"]
    for port in ports:
        argv += ["--stun-server", f"{lab.SERVER_IP}:{port}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


def start_server(burrow, d):
    """`burrow server` in the server's namespace with STUN on BURROW_STUN_PORTS; returns the
    process once it listens, or None."""
    with open(os.path.join(d, "server.toml"), "w") as f:
        f.write(SERVER_TOML.format(*BURROW_STUN_PORTS))
    log_path = os.path.join(d, "server.log")
    with open(log_path, "w") as log:
        p = subprocess.Popen(["ip", "netns", "exec", lab.SERVER_NS, burrow, "server", "-c",
                              os.path.join(d, "server.toml")], stdout=log,
                             stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and p.poll() is None:
        with open(log_path) as f:
            for line in f:
                if "listening on" in line:
                    print("server:", line.strip(), flush=True)
                    return p
        time.sleep(0.1)
    with open(log_path) as f:
        print("server did not start:", f.read(), flush=True)
    p.kill()
    p.wait()
    return None


def check_tcp(burrow, the_lab, kind):
    """[] when netcheck's tcp mapping line behind kind is what TCP_EXPECT says."""
    argv = ["ip", "netns", "exec", the_lab.agent_ns["nas"], burrow, "netcheck",
            "--no-port-mapping"]
    for port in BURROW_STUN_PORTS:
        argv += ["--stun", f"{lab.SERVER_IP}:{port}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    lines = [l for l in out.splitlines() if l.startswith("tcp ")]
    print(f"{kind}: " + " | ".join(lines), flush=True)
    if r.returncode != 0 or not re.search(TCP_EXPECT[kind], out):
        return [f"tcp: want /{TCP_EXPECT[kind]}/, got (exit {r.returncode}):\n" + out]
    return []


def check(burrow, kind):
    """[] when netcheck behind kind prints what EXPECT and TCP_EXPECT say, else what differs."""
    the_lab = lab.Lab(kind, "none")
    responder = None
    server = None
    d = tempfile.mkdtemp(prefix="burrow-netcheck-")
    try:
        the_lab.build()
        server = start_server(burrow, d)
        if not server:
            return ["burrow server did not start"]
        problems = check_tcp(burrow, the_lab, kind)
        if kind not in EXPECT:
            return problems
        responder = subprocess.Popen(
            ["ip", "netns", "exec", lab.SERVER_NS, sys.executable, "-c", RESPONDER,
             str(FIRST_PORT), str(PORTS)], stdout=subprocess.PIPE, text=True)
        if responder.stdout.readline().strip() != "ready":
            return problems + ["the STUN responder did not start"]
        status, out = netcheck(burrow, the_lab, range(FIRST_PORT, FIRST_PORT + PORTS))
        if status != 0 or not re.search(EXPECT[kind], out):
            problems.append(f"{PORTS} destinations: want /{EXPECT[kind]}/, got (exit {status}):\n"
                            + out)
        # Two destinations: a fresh socket, so a new pair of mappings, and too few to tell.
        status, out = netcheck(burrow, the_lab, [FIRST_PORT, FIRST_PORT + 1])
        if status != 0 or not re.search(UNKNOWN, out):
            problems.append(f"2 destinations: want /{UNKNOWN}/, got (exit {status}):\n" + out)
        return problems
    finally:
        for p in (responder, server):
            if p:
                p.kill()
                p.wait()
        the_lab.destroy()
        shutil.rmtree(d, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    burrow = os.path.abspath(sys.argv[1])
    kinds = sys.argv[2:] or list(TCP_EXPECT)
    why = lab.have_netns()
    if why:
        print(f"SKIP natlab: needs root and network namespaces ({why})", flush=True)
        return SKIP_CODE
    lab.set_labnat(os.path.join(os.path.dirname(burrow), "burrow-labnat"))
    lock = lab.lock()  # noqa: F841 (held until exit)
    lab.remove_stale()
    failed = 0
    for kind in kinds:
        started = time.monotonic()
        problems = check(burrow, kind)
        print(f"{kind:15} {'ok' if not problems else 'WRONG: ' + '; '.join(problems)}"
              f" ({time.monotonic() - started:.1f} s)", flush=True)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
