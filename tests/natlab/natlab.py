#!/usr/bin/env python3
"""natlab: real `burrow` processes behind real Linux NATs in network namespaces (lab.py), one
pair of NAT kinds at a time: a server, a nas agent exposing a 20 MiB file over HTTP, a laptop
agent forwarding a local port to nas/web, and curl fetching the file through the forward.

Usage: natlab.py BURROW [--pairs NAS/LAPTOP,...] [--check-paths] [--keep] [--json FILE]
                        [--fault conntrack|block|server] [--udp-timeout S] [--idle S]
  NAS/LAPTOP  NAT kinds: none fullcone portrestricted symmetric udpblocked (and shared/shared),
              serveronly (issue 15: udpblocked drops UDP only, and the pair punches a direct
              TCP path; serveronly lets only TCP to the server out: the TLS relay),
              cgnat-symmetric (a home NAT behind a carrier's symmetric NAT: issue 19's laptop),
              each optionally +FAMILY (issue 17): +v4 (the default), +dual (IPv4 behind the
              NAT and global IPv6 behind the same router's stateful firewall), +v6 (IPv6 only)
              seqsym, blocksym (issue 16: burrow-labnat, the simulator's NAT on real UDP
              packets, beside BURROW: per destination, sequential ports / a random port in
              a per-subscriber block, address-and-port filtering)
              upnp-symmetric (a symmetric NAT whose router runs miniupnpd, started by this
              script with its own config: the agent's mapped candidate must take the pair
              direct, the other side's log must name it, and a clean stop must delete it),
              pcp-symmetric (the same with miniupnpd's UPnP off: the agent maps with PCP)
  --check-paths  also fail when the path reached is not the expected one
  --keep         leave the last pair's namespaces, processes and logs for debugging
  --fault F      mid-transfer, on each pair: flush the laptop's NAT conntrack, block the
                 laptop's direct UDP (unblocked 2 s later), restart the server, or (blackhole6,
                 issue 17: dual-stack pairs) drop IPv6 UDP between the agents at the laptop's
                 router once the path is direct over IPv6, for good; the transfer result is
                 reported, never a failure (a hand check of the fault helpers)
  --check-faults fail unless the fault ends as issue 6 asks (blackhole6: direct over IPv4
                 within 30 s, no forwarded connection reset)
  --udp-timeout S  the NATs forget a UDP mapping idle for S s (conntrack's udp timeouts)
  --idle S       after the transfer, S s of quiet, then a small request: it fails unless
                 answered within 1 s (a NAT that forgot a mapping must not stall it)
  --udp          also a UDP forward (issue 20): nas exposes a UDP echo server as "echo"
                 (protocol "udp"), laptop forwards a UDP port to it; after the transfer, 200
                 datagrams of random sizes up to the session's max go through it and must
                 come back byte-exact, on the path the row reports
  --doctor     also run `burrow doctor nas` on the laptop: before the transfer it must say no
                 rendezvous is recorded (exit 1); after it, the verdict must name the row's
                 path, and: for symmetric/symmetric both symmetric NATs and port mapping; for a
                 direct row the path's address and the technique (a direct-tcp row: path
                 direct-tcp, a TCP technique, and why it is TCP); for a udpblocked side that
                 side as UDP-blocked
  --server-name  the agents name the server "burrow-server.test", which resolves to both of
                 its addresses in their namespaces (issue 17's Happy Eyeballs): each agent's
                 control connection must be IPv6 if it has IPv6 (IPv4 otherwise), or IPv4
                 within a second with --blackhole-v6-control (TCP to the server's IPv6 address
                 silently dropped)
  --stun-server  also run coturn (`turnserver --stun-only`) on the lab's internet, beside the
                 server, and list it in both agents' [agent] stun_servers: each agent must log
                 its answer (the NAT's public address) unless its UDP is blocked, and
                 `burrow status --json` must name the NAT's port allocation (issue 16):
                 "sequential delta 1" behind seqsym, "same" behind an endpoint-independent
                 NAT ("block" and "random" are reported, not checked: three samples)
  --netcheck     run `burrow netcheck -c AGENT.toml --json` in each agent's namespace: every
                 family the agent has must be reachable with its NAT's (or firewall's) mapping,
                 and with --stun-server coturn must answer on each family
  --block-server-stun  with --stun-server: the agents' routers drop their STUN requests to
                 the burrow server's STUN ports (Bind and relay pass), so their reflexive
                 addresses come from coturn alone; each must register with nat "unknown"
                 (the server's probe went unanswered) and cone pairs must still go direct

Fails (exit 1) when a transfer is not byte-exact or its first byte takes over 5 s. Exits 77
(ctest's skip code) with a SKIP line when not root or without network namespaces.
"""
import argparse, hashlib, json, os, re, shutil, signal, subprocess, sys, tempfile, threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import harness  # noqa: E402
import lab  # noqa: E402

SKIP_CODE = 77  # ctest SKIP_RETURN_CODE (tests/scripted_tests.cmake)
FILE_SIZE = 20 * 1024 * 1024  # the brief's bulk transfer: long enough to see the path in use
MAX_FIRST_BYTE_S = 1.0  # issue 6: relay first, so the user never waits for punching
MAX_DIRECT_TCP_AFTER_SESSION_S = 3.0  # issue 15: direct TCP within 3 s of the session's start
MAX_DIRECT_S = 2.0  # issue 6: cone pairs direct within 2 s (here: of the laptop agent's start)
# --block-server-stun: registration waits for the server's unanswered probe to give up
# (signal/agent_udp.h: tries at 0, 0.1, 0.3, 0.7, 1.5 s, given up at 3.1 s).
SERVER_PROBE_GIVE_UP_S = 3.1
BLOCK_S = 5.0  # --fault block: longer than the agents' 2.5 s of silence before the relay
# --fault on a row that ends on direct-tcp: the transfer is paced (curl --limit-rate) so that
# the fault comes mid-transfer and a block is outlasted with the way back; a direct TCP path
# moves 20 MiB in a fraction of a second in the lab.
TCP_FAULT_RATE = "1M"
BACK_TO_DIRECT_S = 30.0  # issue 6: back to direct within 30 s of the unblock
REGISTER_TIMEOUT_S = 15.0  # TLS + auth + UDP binding; a blocked UDP binding gives up in ~3 s
TRANSFER_TIMEOUT_S = 60.0  # 20 MiB through the relay's 50 Mbit/s quota takes ~4 s
DIRECT_GRACE_S = 5.0  # with --check-paths: how long after the transfer a direct path may come
MAX_AFTER_IDLE_S = 1.0  # issue 19: a request after a minute idle, answered within 1 s
COTURN_PORT = 3490  # --stun-server: on the server's address, beside its own STUN ports
STUN_ANSWER_TIMEOUT_S = 5.0  # RFC 8489's first four tries; a lab's round trip is < 1 ms
SMALL_FILE_SIZE = 1024
HTTP_PORT = 8000
FORWARD_PORT = 8080
ADMIN = "127.0.0.1:7070"
UDP_ECHO_PORT = 7000  # --udp: the echo server in nas's namespace
UDP_FORWARD_PORT = 9090  # and laptop's UDP forward to it
UDP_DATAGRAMS = 200
# A UDP echo server (nas's namespace) and a client that checks every answer byte for byte,
# resending a datagram up to 5 times (UDP may lose one, on the relay as anywhere).
UDP_ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("echoing", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"""
UDP_ECHO_CLIENT = """
import os, random, socket, sys
port, count, largest = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
resent = 0
for i in range(count):
    payload = i.to_bytes(4, "big") + os.urandom(random.randint(0, largest - 4))
    for attempt in range(5):
        s.sendto(payload, ("127.0.0.1", port))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                if data[:4] == payload[:4]:
                    break  # a late answer to an earlier resend is skipped
            break
        except socket.timeout:
            resent += 1
    else:
        sys.exit(f"datagram {i}: no answer after 5 tries")
    if data != payload:
        sys.exit(f"datagram {i}: {len(data)} bytes back, not the {len(payload)} sent")
print(f"ok {count} datagrams byte-exact, {resent} resent")
"""  # each agent has its own namespace, so one address serves both

MATRIX = ["none/none", "none/fullcone", "none/portrestricted", "none/symmetric",
          "none/udpblocked", "fullcone/fullcone", "fullcone/portrestricted",
          "fullcone/symmetric", "portrestricted/portrestricted", "portrestricted/symmetric",
          "symmetric/symmetric", "udpblocked/portrestricted", "udpblocked/udpblocked",
          "serveronly/portrestricted", "shared/shared",
          "portrestricted/cgnat-symmetric", "upnp-symmetric/symmetric",
          "seqsym/portrestricted", "seqsym/seqsym", "blocksym/blocksym", "seqsym/symmetric"]
# Issue 17's rows: dual-stack agents behind symmetric IPv4 NATs go direct over IPv6; IPv6 only
# on both sides goes direct; IPv4 only facing IPv6 only has no common family: the relay; an
# IPv4-only side facing a dual-stack one goes direct over IPv4, also when the dual-stack side's
# control connection is IPv6 (run it with --server-name: its IPv4 reflexive address then comes
# from probing the server's IPv4 address).
MATRIX_V6 = ["symmetric+dual/symmetric+dual", "portrestricted+v6/portrestricted+v6",
             "portrestricted+v4/portrestricted+v6", "portrestricted+v4/portrestricted+dual"]


def side(text):
    """"symmetric+dual" -> ("symmetric", "dual"); no +FAMILY is IPv4 only."""
    kind, _, family = text.partition("+")
    return kind, family or "v4"


def has_v6(family):
    return family in ("dual", "v6")


def predicted_pair(nas, laptop, stun_server):
    """Whether the pair punches by port prediction (issue 16): a sequential or block
    per-destination NAT (seqsym, blocksym) facing an endpoint-independent one, or two sequential
    ones (lockstep). It needs the allocation, which takes three destinations: --stun-server."""
    kinds = (side(nas)[0], side(laptop)[0])
    if not stun_server or "udpblocked" in {lab.outer_kind(k) for k in kinds}:
        return False
    if kinds == ("seqsym", "seqsym"):
        return True
    predictable = [k in lab.USERSPACE_KINDS for k in kinds]
    others = [lab.outer_kind(k) for k, p in zip(kinds, predictable) if not p]
    return any(predictable) and len(others) == 1 and others[0] != "symmetric"


def expected_path(nas, laptop, stun_server=False):
    """Issue 6's promise for a pair. Full cone with symmetric is direct: the symmetric side's
    packet to the full cone's public address is let in by definition, and the answer goes back
    through the mapping that packet made (no birthday needed). Issue 17: two sides with IPv6
    go direct over it whatever their IPv4 NATs (a stateful firewall punches like a
    port-restricted NAT); IPv4 only facing IPv6 only share no family and meet on the relay."""
    (nas, nas_family), (laptop, laptop_family) = side(nas), side(laptop)
    if has_v6(nas_family) and has_v6(laptop_family):
        return "direct"
    if "v6" in (nas_family, laptop_family):
        return "relay-udp"
    kinds = {lab.outer_kind(nas), lab.outer_kind(laptop)}
    # Issue 15: where UDP is blocked but TCP gets out, the agents punch a direct TCP path (a
    # simultaneous open through endpoint-independent NATs, or a connect to a side with no
    # NAT); a side that reaches only the server leaves the TLS relay.
    if "serveronly" in kinds:
        return "relay-tcp"
    if "udpblocked" in kinds:
        tcp_punchable = {"none", "fullcone", "portrestricted", "udpblocked"}
        return "direct-tcp" if kinds <= tcp_punchable else "relay-tcp"
    # Issue 16: a router with miniupnpd maps the agent's port on request; the peer reaches that
    # mapping whatever its own NAT does, so two symmetric NATs go direct.
    if nas in lab.UPNP_KINDS or laptop in lab.UPNP_KINDS:
        return "direct"
    # Issue 16: two sequential symmetric NATs meet by lockstep prediction (with the allocation
    # known, --stun-server); a block or random one among two symmetric NATs stays relayed.
    if predicted_pair(nas, laptop, stun_server):
        return "direct"
    if kinds == {"symmetric"}:
        return "relay-udp"
    return "direct"


def expected_mapping(kind, family="v4"):
    """What the agent's NAT probe must find behind this kind: a check of the lab itself. An
    IPv6-only agent probes over IPv6, through a firewall that translates nothing."""
    if family == "v6":
        return "endpoint-independent"
    return {"symmetric": "per-destination", "udpblocked": "unknown", "serveronly": "unknown"}.get(
        lab.outer_kind(kind), "endpoint-independent")


REGISTERED = r"registered with the server as {} \(nat (?P<nat>[a-z-]+)"
# The agent's one line for what its gateway gave (signal/port_mapper.h).
PORT_MAPPED = (r"port mapping: (?P<protocol>UPnP IGD|PCP|NAT-PMP) at (?P<gateway>\S+) gave "
               r"(?P<external>\S+) for (?P<lease>\S+)")
PORT_MAPPING_TIMEOUT_S = 10.0  # SSDP discovery's 2 s window, SOAP calls on a LAN
# miniupnpd is up once it listens for NAT-PMP (its last start-up line).
MINIUPNPD_READY = r"Listening for NAT-PMP"
# "session with nas closed: <reason> (2 forwarded connections reset)" (src/agent_runtime.cc)
RESETS = re.compile(r"\((\d+) forwarded connections? reset\)")

# A path event in an agent's log. Today: "session with nas up (relay-udp, we connected)";
# with punching (issue 6): "path to nas: direct 198.51.100.12:40000", "path to nas: relay-udp".
PATH_LINES = [re.compile(r"session with (?P<peer>\S+) up \((?P<path>direct-tcp|direct|relay-udp|"
                         r"relay-tcp)"),
              re.compile(r"path to (?P<peer>\S+): (?P<path>direct-tcp|direct|relay-udp|relay-tcp)"
                         r"\b")]


class Proc:
    """A process in a namespace, its output in a log file. A thread follows the file and stamps
    each line with time.monotonic() when it appears (within POLL_S), so events are timed
    without parsing log clocks; a file, not a pipe, so a --keep'd process outlives us."""

    POLL_S = 0.02  # the timing resolution of every measurement taken from a log

    def __init__(self, name, ns, argv, log_path):
        self.name, self.log_path = name, log_path
        self.lines = []  # (monotonic time, text)
        self.cond = threading.Condition()
        self.started = time.monotonic()
        with open(log_path, "w") as log:
            # A new session: a Ctrl-C at the terminal reaches only us, and we stop these.
            self.p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.stopped = threading.Event()
        self.reader = threading.Thread(target=self._follow, daemon=True)
        self.reader.start()

    def _follow(self):
        with open(self.log_path, errors="replace") as f:
            partial = ""
            while True:
                exited = self.p.poll() is not None or self.stopped.is_set()
                chunk = f.read()
                if chunk:
                    now = time.monotonic()
                    *complete, partial = (partial + chunk).split("\n")
                    with self.cond:
                        self.lines += [(now, line) for line in complete]
                        self.cond.notify_all()
                if exited:
                    break
                time.sleep(self.POLL_S)
        with self.cond:
            if partial:
                self.lines.append((time.monotonic(), partial))
            self.cond.notify_all()

    def find(self, pattern):
        """Every (time, match) of pattern so far."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        with self.cond:
            return [(t, m) for t, line in self.lines for m in [rx.search(line)] if m]

    def count(self, pattern):
        """How many log lines so far match pattern."""
        return len(self.find(pattern))

    def log(self):
        """The log so far."""
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern, timeout):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    m = rx.search(line)
                    if m:
                        return t, m
                left = end - time.monotonic()
                if left <= 0 or not self.reader.is_alive():
                    raise RuntimeError(f"{self.name}: no /{pattern}/ within {timeout:.0f} s "
                                       f"(exit {self.p.poll()}); log {self.log_path}:\n"
                                       + self.tail())
                self.cond.wait(min(left, 0.2))

    def tail(self, n=15):
        return "\n".join("    " + line for _, line in self.lines[-n:])

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.stopped.set()
        self.reader.join(timeout=2)


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


class World(harness.ConfigDir):
    """Keys, configs and the shared test file for a whole run (namespaces come per pair)."""

    def __init__(self, burrow, d, stun_server=False, udp=False):
        self.burrow, self.d, self.stun_server, self.udp = burrow, d, stun_server, udp
        self.keys = {n: harness.keygen(burrow, self.path(f"{n}.key")) for n in ("nas", "laptop")}
        self.write("server.toml", self.server_toml())
        self.write("server-dual.toml", self.server_dual_toml())
        self.fingerprint = harness.fingerprint(burrow, self.path("server.toml"))
        for name in ("nas", "laptop"):
            self.write(f"{name}.toml", self.agent_toml(name))
        os.mkdir(self.path("www"))
        data = os.urandom(FILE_SIZE)
        with open(self.path("www/file"), "wb") as f:
            f.write(data)
        with open(self.path("www/small"), "wb") as f:
            f.write(data[:SMALL_FILE_SIZE])
        self.sha256 = hashlib.sha256(data).hexdigest()

    def server_toml(self):
        return harness.server_toml(lab.SERVER_IP, lab.SERVER_TCP_PORT, lab.SERVER_STUN_PORTS,
                                   self.keys, [("laptop", "nas", ["web", "echo"])])

    def server_dual_toml(self):
        """Issue 17: one socket per family on each port (the list form; the IPv6 ones are
        bound IPv6-only), the same certificate and identity as server.toml."""
        text = self.server_toml()
        stun = ", ".join(f'"{a}:{p}"' for a in ("0.0.0.0", "[::]")
                         for p in lab.SERVER_STUN_PORTS)
        text = re.sub(r'(?m)^listen = .*$',
                      f'listen = ["0.0.0.0:{lab.SERVER_TCP_PORT}", "[::]:{lab.SERVER_TCP_PORT}"]',
                      text, count=1)
        return re.sub(r'(?m)^stun = .*$', lambda _: f"stun = [{stun}]", text, count=1)

    def config(self, name, family, server_name=None):
        """The agent's config file for one address family (written on first use)."""
        path = f"{name}-{family}{'-named' if server_name else ''}.toml"
        if not os.path.exists(self.path(path)):
            self.write(path, self.agent_toml(name, family, server_name))
        return self.path(path)

    def agent_toml(self, name, family="v4", server_name=None):
        # An IPv6-only agent reaches the server over IPv6; a dual-stack one over IPv4, so its
        # NAT probe still sees the IPv4 NAT (and the IPv6 path comes from its host candidates).
        server = (f"[{lab.SERVER_IP6}]" if family == "v6" else lab.SERVER_IP)
        if server_name:
            server = server_name
        text = f"""[agent]
name = "{name}"
key_file = "{name}.key"
server = "{server}:{lab.SERVER_TCP_PORT}"
server_fingerprint = "{self.fingerprint}"
admin = "{ADMIN}"
"""
        if self.stun_server:
            # coturn listens on both of the server's addresses when the lab has IPv6.
            six = f', "[{lab.SERVER_IP6}]:{COTURN_PORT}"' if has_v6(family) else ""
            text += f'stun_servers = ["{lab.SERVER_IP}:{COTURN_PORT}"{six}]\n'
        if name == "nas":
            return text + f"""
[[expose]]
service = "web"
target = "127.0.0.1:{HTTP_PORT}"
allow = ["laptop"]
""" + (f"""
[[expose]]
service = "echo"
protocol = "udp"
target = "127.0.0.1:{UDP_ECHO_PORT}"
allow = ["laptop"]
""" if self.udp else "")
        return text + f"""
[[forward]]
listen = "127.0.0.1:{FORWARD_PORT}"
peer = "nas"
service = "web"
""" + (f"""
[[forward]]
listen = "127.0.0.1:{UDP_FORWARD_PORT}"
protocol = "udp"
peer = "nas"
service = "echo"
""" if self.udp else "")


def run_doctor(world, ns):
    """`burrow doctor nas --json` on the laptop: (exit status, parsed JSON or None, stderr)."""
    r = subprocess.run(["ip", "netns", "exec", ns, world.burrow, "doctor", "nas", "--admin",
                        ADMIN, "--json"], capture_output=True, text=True, timeout=15)
    try:
        body = json.loads(r.stdout)
    except ValueError:
        body = None
    return {"status": r.returncode, "json": body, "stderr": r.stderr.strip()}


DIRECT_TECHNIQUES = ("host", "srflx", "prflx", "birthday", "mapped", "predicted")
# Where a direct TCP path led (tunnel/peer_link.h DirectSource): the peer's TCP candidates.
DIRECT_TCP_TECHNIQUES = ("tcp-host", "tcp-srflx", "tcp-prflx")


def check_doctor(res):
    """Problems with the row's `burrow doctor` answers (--doctor)."""
    problems = []
    before, after = res.get("doctor_before"), res.get("doctor")
    if before is None or after is None:
        return ["doctor: not run"]
    bj = before["json"] or {}
    if before["status"] != 1 or "no rendezvous with nas recorded yet" not in bj.get("error", ""):
        problems.append(f"doctor before the transfer: exit {before['status']}, {bj}")
    j = after["json"]
    if after["status"] != 0 or not j or not j.get("ok"):
        return problems + [f"doctor: exit {after['status']}, {after['json']} {after['stderr']}"]
    text = j.get("text", "")
    # The doctor names a direct TCP path (control version 6, ReportPath::kDirectTcp) as the
    # agents do: the UDP-blocked rows say direct-tcp.
    if j.get("path") != res["path"]:
        problems.append(f"doctor says path {j.get('path')}, the agents say {res['path']}")
    raw_nas_kind = res["pair"].split("/")[0].partition("+")[0]
    nas_kind, laptop_kind = (lab.outer_kind(k) for k in res["pair"].split("/"))
    if nas_kind == laptop_kind == "symmetric":
        for side in ("self", "peer"):
            if j.get(side, {}).get("nat", {}).get("mapping") != "per-destination":
                problems.append(f"doctor: {side} NAT not per-destination: {j.get(side)}")
        if res["path"] != "direct" and ("both NATs map per destination" not in text
                                        or "UPnP IGD, PCP or NAT-PMP" not in text):
            problems.append(f"doctor: symmetric/symmetric not explained: {j.get('verdict')}")
    blocked = sorted(a for a, k in (("nas", nas_kind), ("laptop", laptop_kind))
                     if k in lab.UDP_BLOCKED_KINDS)
    if sorted(j.get("udp_blocked", [])) != blocked:
        problems.append(f"doctor names UDP blocked on {j.get('udp_blocked')}, not {blocked}")
    for name in blocked:
        if f"UDP is blocked on {name}" not in text:
            problems.append(f"doctor: no 'UDP is blocked on {name}' in {j.get('verdict')}")
    if res["path"] == "direct-tcp":
        if j.get("technique") not in DIRECT_TCP_TECHNIQUES:
            problems.append(f"doctor: direct TCP path without a TCP technique: {j.get('verdict')}")
        if not (j.get("addresses") or {}).get("peer"):
            problems.append(f"doctor: direct TCP path without the peer's address: "
                            f"{j.get('verdict')}")
        if "a TCP connection between the agents carries the session" not in text:
            problems.append(f"doctor: direct TCP path not explained: {j.get('verdict')}")
    if res["path"] == "direct":
        if j.get("technique") not in DIRECT_TECHNIQUES:
            problems.append(f"doctor: direct path without a technique: {j.get('verdict')}")
        if not (j.get("addresses") or {}).get("peer"):
            problems.append(f"doctor: direct path without the peer's address: {j.get('verdict')}")
        # The laptop asks; its path to a nas behind a router that mapped a port came that way.
        if raw_nas_kind in lab.UPNP_KINDS and j.get("technique") != "mapped":
            problems.append(f"doctor: nas's mapped port not named as the technique: "
                            f"{j.get('verdict')}")
    return problems


DIRECT_LINE = re.compile(r"path to (?P<peer>\S+): direct (?P<address>\S+)")


def direct_events(proc, peer):
    """[(time, address)] of the direct paths the agent logged for its session with peer."""
    return sorted((t, m.group("address")) for t, m in proc.find(DIRECT_LINE)
                  if m.group("peer") == peer)


def path_events(proc, peer):
    """[(time, path)] the agent logged for its session with peer."""
    events = []
    for rx in PATH_LINES:
        events += [(t, m.group("path")) for t, m in proc.find(rx) if m.group("peer") == peer]
    # By time only: a session that comes up and moves to a direct path within one millisecond
    # logs both lines with one time stamp, and the "session ... up" line (the first pattern's)
    # is the earlier; sorting the pairs would order them by path name instead.
    return sorted(events, key=lambda e: e[0])


# `burrow netcheck`'s gateway lines ("upnp igd       10.0.1.1 (external 100.128.0.11)", "pcp
# ...", "nat-pmp ..."), and what each says when its protocol answers.
NETCHECK_GATEWAY = re.compile(r"^(upnp igd|pcp|nat-pmp) +(.*)$", re.M)
NETCHECK_ANSWERED = {"UPnP IGD": ("upnp igd", r"\(external "), "PCP": ("pcp", r" answers$")}


def netcheck_gateway(world, the_lab, agent, families):
    """Runs `burrow netcheck -c AGENT.toml` beside the agent (after its stop, so the router is
    asked afresh): the line for the protocol its router offers must say it answered."""
    kind = the_lab.kinds[agent]
    r = subprocess.run(["ip", "netns", "exec", the_lab.agent_ns[agent], world.burrow, "netcheck",
                        "-c", world.config(agent, families[agent], None)],
                       capture_output=True, text=True, timeout=60)
    lines = dict(NETCHECK_GATEWAY.findall(r.stdout))
    name, answered = NETCHECK_ANSWERED[lab.UPNP_PROTOCOLS[kind]]
    return {"lines": lines, "answered": bool(re.search(answered, lines.get(name, "")))}


def status_peer(world, ns, peer):
    """peers[] entry for peer from `burrow status --admin ... --json`, or None."""
    r = subprocess.run(["ip", "netns", "exec", ns, world.burrow, "status", "--admin", ADMIN,
                        "--json"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return None
    try:
        peers = json.loads(r.stdout).get("peers", [])
    except ValueError:
        return None
    return next((p for p in peers if p.get("peer") == peer), None)


def status_path(world, ns, peer, field="kind"):
    """peers[].path.kind from `burrow status --admin ... --json` ("direct", "relay-udp", ...),
    or another field of path ("family", "address"); None when the agent does not say."""
    path = (status_peer(world, ns, peer) or {}).get("path")
    return path.get(field) if isinstance(path, dict) else None


MAX_REGISTER_HE_S = 1.0  # --server-name: registered within 1 s, broken IPv6 or not
SERVER_NAME = "burrow-server.test"  # --server-name: RFC 6761 reserves .test for testing


STATUS_ALLOCATION_WAIT_S = 2.0  # coturn's answer is logged; the status follows at once


def expected_allocation(kind):
    """What `burrow status` must say of the NAT's port allocation behind this kind, with
    --stun-server (three destinations); None where chance decides (random ports may pass for
    a block now and then, a block's for sequential steps)."""
    kind = side(kind)[0]
    if kind == "seqsym":
        return "sequential delta 1"
    if lab.outer_kind(kind) in lab.UDP_BLOCKED_KINDS:
        return "unknown"
    if expected_mapping(kind) == "endpoint-independent":
        return "same"
    return None


def status_server_field(world, ns, field):
    """server.FIELD from `burrow status --json` in ns, or None: port_allocation
    (tunnel/port_prediction.h), connected_to (where the control connection went)."""
    r = subprocess.run(["ip", "netns", "exec", ns, world.burrow, "status", "--admin", ADMIN,
                        "--json"], capture_output=True, text=True, timeout=10)
    try:
        return json.loads(r.stdout)["server"][field]
    except (ValueError, KeyError, TypeError):
        return None


def status_allocation(world, ns):
    return status_server_field(world, ns, "port_allocation")


def status_server(world, ns):
    return status_server_field(world, ns, "connected_to")


_METRIC_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def punch_outcome(ns):
    """The agent's punch outcome from its GET /metrics (docs/metrics.md): successes and
    fallbacks by NAT pair and technique, and the time to direct (mean of the histogram); None
    when the endpoint does not answer. One curl: it costs the lab a few milliseconds."""
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "3",
                        f"http://{ADMIN}/metrics"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return None
    out = {"successes": [], "fallbacks": []}
    count = total = 0.0
    for line in r.stdout.splitlines():
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        name, value = m.group("name"), float(m.group("value"))
        labels = dict(_LABEL.findall(m.group("labels") or ""))
        if name in ("burrow_punch_successes_total", "burrow_punch_fallbacks_total") and value:
            out["successes" if "successes" in name else "fallbacks"].append(
                {"nat_pair": labels.get("nat_pair"), "technique": labels.get("technique"),
                 "count": int(value)})
        elif name == "burrow_punch_time_to_direct_seconds_count":
            count = value
        elif name == "burrow_punch_time_to_direct_seconds_sum":
            total = value
    out["time_to_direct_s"] = round(total / count, 3) if count else None
    return out


def pair_path(views):
    """One path for the pair from both agents' views: direct only when both say direct, and
    relay-tcp when either side's relay leg runs inside TLS (the slower leg decides)."""
    if any(v is None for v in views.values()):
        return "none"
    if "relay-tcp" in views.values():
        return "relay-tcp"
    if "relay-udp" in views.values():
        return "relay-udp"
    if "direct-tcp" in views.values():
        return "direct-tcp"
    return "direct"


class Fault:
    """Applies one fault helper mid-transfer, once the laptop has received a quarter."""

    def __init__(self, kind, the_lab, out_file, restart_server, laptop=None, direct="direct"):
        self.kind, self.lab, self.out_file = kind, the_lab, out_file
        self.direct = direct  # the row's direct path kind: "direct" or "direct-tcp"
        self.restart_server = restart_server
        # A block must hit a direct path: it also waits until the laptop's log has said
        # direct (a quarter can arrive over the relay, or in the instant after the switch,
        # before the log line is stamped).
        self.laptop = laptop if kind in ("block", "blackhole6") else None
        self.note = "not applied (transfer ended first)"
        self.blocked_at = None  # time.monotonic() of the block and unblock (kind block)
        self.unblocked_at = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.done = threading.Event()

    def start(self):
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                quarter = os.path.getsize(self.out_file) >= FILE_SIZE // 4
            except OSError:
                quarter = False
            events = (path_events(self.laptop, "nas") if self.laptop
                      else [(0, self.direct)])
            # blackhole6 must hit a direct IPv6 path ("[2001:db8:...]:port").
            on_v6 = self.kind != "blackhole6" or (
                direct_events(self.laptop, "nas") and
                direct_events(self.laptop, "nas")[-1][1].startswith("["))
            if quarter and events and events[-1][1] == self.direct and on_v6:
                break
            self.done.wait(0.02)
        if self.done.is_set():
            return
        try:
            if self.kind == "conntrack":
                if "laptop" not in self.lab.nat_ns:
                    self.note = "no NAT in front of laptop"
                    return
                self.lab.flush_conntrack("laptop")
                self.note = "flushed the laptop NAT's conntrack"
            elif self.kind == "block":
                # Longer than the agents' 2.5 s of silence before they fall back to the relay.
                # Stamped before the rules go in: every path event the block causes is later.
                proto = "tcp" if self.direct == "direct-tcp" else "udp"
                self.blocked_at = time.monotonic()
                self.lab.block_direct("laptop", proto)
                time.sleep(BLOCK_S)
                self.lab.unblock_direct("laptop", proto)
                self.unblocked_at = time.monotonic()
                self.note = f"blocked the laptop's direct {proto.upper()} for {BLOCK_S:.0f} s"
            elif self.kind == "blackhole6":
                self.blocked_at = time.monotonic()
                self.lab.block_direct6("laptop")
                self.note = "blackholed IPv6 between the agents (UDP at the laptop's router)"
            elif self.kind == "server":
                self.restart_server()
                self.note = "killed and restarted the server"
        except Exception as e:  # a fault that cannot be applied is reported, not fatal
            self.note = f"failed: {e}"

    def stop(self):
        self.done.set()
        self.thread.join(timeout=10)


def run_pair(world, nas_kind, laptop_kind, opts):
    """Builds the lab for one pair, runs the transfer, returns the result dict. The lab and
    every process are gone when this returns, unless opts.keep (then it returns them too)."""
    name = f"{nas_kind}/{laptop_kind}"
    (nas_kind, nas_family), (laptop_kind, laptop_family) = side(nas_kind), side(laptop_kind)
    families = {"nas": nas_family, "laptop": laptop_family}
    both_v6 = has_v6(nas_family) and has_v6(laptop_family)
    expected = expected_path(name.split("/")[0], name.split("/")[1], opts.stun_server)
    # A direct path between an IPv4-only side and a dual-stack one can only be IPv4.
    expected_family = ("ipv6" if both_v6 else
                       "ipv4" if expected == "direct" and "dual" in families.values() else None)
    res_max_direct_s = MAX_DIRECT_S + (SERVER_PROBE_GIVE_UP_S if opts.block_server_stun else 0)
    if opts.fault == "blackhole6" and expected_family == "ipv6":
        expected_family = "ipv4"  # where the session must end: IPv6 between them is dark
    res = {"pair": name, "expected": expected,
           "path": "none", "expected_family": expected_family, "family": None,
           "views": {}, "first_byte_s": None, "first_byte_from_start_s": None,
           "direct_after_s": None, "transfer_ok": False, "transfer_s": None, "error": None,
           "nat": {}, "lab_error": None, "idle": opts.idle, "udp_timeout": opts.udp_timeout,
           "after_idle_s": None, "max_direct_s": res_max_direct_s,
           "stun_server": opts.stun_server}
    pair_dir = world.path(name.replace("/", "-").replace("+", "-"))
    os.makedirs(pair_dir, exist_ok=True)
    the_lab = lab.Lab(nas_kind, laptop_kind, families)
    procs = {}

    def spawn(key, ns, argv):
        procs[key] = Proc(key, ns, argv, os.path.join(pair_dir, f"{key}.log"))
        return procs[key]

    def start_server():
        config = "server-dual.toml" if the_lab.ipv6 else "server.toml"
        p = spawn("server", lab.SERVER_NS, [world.burrow, "server", "-c", world.path(config)])
        p.wait_for(r"listening on", REGISTER_TIMEOUT_S)
        return p

    def restart_server():
        procs["server"].p.kill()
        procs["server"].stop()
        os.replace(procs["server"].log_path, procs["server"].log_path + ".1")
        start_server()

    def start_miniupnpd(agent):
        """miniupnpd in the agent's router namespace, with a config of its own; in the
        foreground (-d), so its log is this pair's miniupnpd-AGENT.log."""
        conf = os.path.join(pair_dir, f"miniupnpd-{agent}.conf")
        pid = os.path.join(pair_dir, f"miniupnpd-{agent}.pid")
        with open(conf, "w") as f:
            f.write(lab.upnp_config(lab.LAN_NETS[agent], pid, the_lab.kinds[agent]))
        p = spawn(f"miniupnpd-{agent}", the_lab.nat_ns[agent],
                  [shutil.which("miniupnpd"), "-d", "-f", conf, "-P", pid])
        p.wait_for(MINIUPNPD_READY, REGISTER_TIMEOUT_S)
        if p.count(r"Port forwarding is impossible"):
            raise RuntimeError(f"miniupnpd-{agent} refuses to map: " + p.tail(4))

    kept = False
    try:
        the_lab.build()
        if opts.udp_timeout:
            the_lab.set_udp_timeout(opts.udp_timeout)
        start_server()
        if opts.block_server_stun:
            for agent in ("nas", "laptop"):
                the_lab.block_server_stun(agent)
        for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
            if kind in lab.UPNP_KINDS:
                start_miniupnpd(agent)
        if world.stun_server:
            coturn = spawn("coturn", lab.SERVER_NS, [
                shutil.which("turnserver"), "-n", "--no-tls", "--no-dtls", "--no-tcp", "--no-cli",
                "-S", "-z", "-L", lab.SERVER_IP,
                *(["-L", lab.SERVER_IP6] if the_lab.ipv6 else []),
                "-p", str(COTURN_PORT), "--log-file", "stdout",
                "--simple-log", "--pidfile", os.path.join(pair_dir, "turnserver.pid")])
            coturn.wait_for(r"main listener thread", REGISTER_TIMEOUT_S)
        nas_ns, laptop_ns = the_lab.agent_ns["nas"], the_lab.agent_ns["laptop"]
        http = spawn("http", nas_ns, [sys.executable, "-u", "-m", "http.server", "--bind",
                                      "127.0.0.1", "--directory", world.path("www"),
                                      str(HTTP_PORT)])
        server_name = SERVER_NAME if opts.server_name else None
        if server_name:
            the_lab.name_server(server_name)
            if opts.blackhole_v6_control:
                for agent in ("nas", "laptop"):
                    if has_v6(families[agent]):
                        the_lab.blackhole_server6(agent, lab.SERVER_TCP_PORT)
        nas = spawn("nas", nas_ns, [world.burrow, "agent", "-c",
                                    world.config("nas", nas_family, server_name)])
        laptop = spawn("laptop", laptop_ns, [world.burrow, "agent", "-c",
                                             world.config("laptop", laptop_family,
                                                          server_name)])
        t0 = laptop.started
        http.wait_for(r"Serving HTTP", REGISTER_TIMEOUT_S)
        for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
            _, m = procs[agent].wait_for(REGISTERED.format(agent), REGISTER_TIMEOUT_S)
            res["nat"][agent] = m.group("nat")
            want = expected_mapping(kind, families[agent])
            if opts.block_server_stun and lab.outer_kind(kind) not in lab.UDP_BLOCKED_KINDS:
                # The server's probe is unanswered; one STUN server's answer alone says
                # nothing about the mapping (signal/nat_probe.h refine_mapping).
                want = "unknown"
            if m.group("nat") != want:
                res["lab_error"] = (f"{agent} behind {kind} found nat {m.group('nat')}, "
                                    f"not {want}: the lab is wrong")
        laptop.wait_for(rf"127\.0\.0\.1:{FORWARD_PORT}\b.*listening", REGISTER_TIMEOUT_S)
        if server_name:
            res["control"] = {}
            for agent in ("nas", "laptop"):
                t, _ = procs[agent].wait_for(REGISTERED.format(agent), REGISTER_TIMEOUT_S)
                address = status_server(world, the_lab.agent_ns[agent])
                res["control"][agent] = {"address": address,
                                         "registered_s": round(t - procs[agent].started, 3)}
                want = ("ipv6" if has_v6(families[agent]) and not opts.blackhole_v6_control
                        else "ipv4")
                got = None if address is None else ("ipv6" if address.startswith("[") else "ipv4")
                if got != want:
                    res["error"] = (f"{agent}: control connection to {address}, wanted {want} "
                                    "(Happy Eyeballs)")
                elif res["control"][agent]["registered_s"] > MAX_REGISTER_HE_S:
                    # A dial that waited for the IPv6 attempt's TCP timeout (seconds) instead
                    # of starting IPv4 250 ms later.
                    res["error"] = (f"{agent}: registered {res['control'][agent]['registered_s']}"
                                    f" s after its start (over {MAX_REGISTER_HE_S} s)")
        # The mapping must be registered before the laptop connects: a rendezvous carries the
        # candidates the server has then (the agents' logs say when it came).
        for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
            if kind in lab.UPNP_KINDS:
                t, m = procs[agent].wait_for(PORT_MAPPED, PORT_MAPPING_TIMEOUT_S)
                res.setdefault("port_mapping", {})[agent] = {
                    "protocol": m.group("protocol"), "external": m.group("external"),
                    "lease": m.group("lease"),
                    "after_s": round(t - procs[agent].started, 3)}
                if m.group("protocol") != lab.UPNP_PROTOCOLS[kind]:
                    res["error"] = (f"{agent} mapped with {m.group('protocol')}, not "
                                    f"{lab.UPNP_PROTOCOLS[kind]} as its router offers")
                elif not m.group("external").startswith(lab.UPNP_WAN_IPS[agent] + ":"):
                    res["lab_error"] = (f"{agent}'s mapping {m.group('external')} is not on its "
                                        f"router's WAN address {lab.UPNP_WAN_IPS[agent]}")
        if world.stun_server:
            res["stun"] = {}
            for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
                rx = (rf"stun server {re.escape(lab.SERVER_IP)}:{COTURN_PORT} sees this agent "
                      r"as (?P<mapped>\S+)")
                try:
                    _, m = procs[agent].wait_for(rx, STUN_ANSWER_TIMEOUT_S)
                    res["stun"][agent] = m.group("mapped")
                except RuntimeError:
                    res["stun"][agent] = None
                if (res["stun"][agent] is None) != (lab.outer_kind(kind) in lab.UDP_BLOCKED_KINDS):
                    res["lab_error"] = (f"{agent} behind {kind}: coturn's answer "
                                        f"{res['stun'][agent]} is not what the NAT allows")
            # Issue 16: three mappings of the main socket (the server's two ports, then coturn)
            # tell the NAT's port allocation; `burrow status --json` shows it. With the server's
            # STUN ports blocked (issue 17's coturn-only row) coturn's one mapping tells nothing.
            res["allocation"] = {}
            for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
                want = "unknown" if opts.block_server_stun else expected_allocation(kind)
                deadline = time.monotonic() + STATUS_ALLOCATION_WAIT_S
                while True:
                    got = status_allocation(world, the_lab.agent_ns[agent])
                    if got == want or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                res["allocation"][agent] = got
                if want and got != want:
                    res["lab_error"] = (f"{agent} behind {kind}: port allocation {got!r}, "
                                        f"not {want!r}")

        if opts.doctor:
            res["doctor_before"] = run_doctor(world, laptop_ns)
        out_file = os.path.join(pair_dir, "fetched")
        direct_kind = "direct-tcp" if res["expected"] == "direct-tcp" else "direct"
        fault = (Fault(opts.fault, the_lab, out_file, restart_server, laptop, direct_kind)
                 if opts.fault else None)
        paced = (["--limit-rate", TCP_FAULT_RATE]
                 if opts.fault and direct_kind == "direct-tcp" else [])
        curl_start = time.monotonic()
        if fault:
            fault.start()
        try:
            curl = subprocess.run(
                ["ip", "netns", "exec", laptop_ns, "curl", "-sS", *paced, "--max-time",
                 str(int(TRANSFER_TIMEOUT_S)), "-o", out_file, "-w",
                 "%{http_code} %{time_connect} %{time_starttransfer} %{time_total}",
                 f"http://127.0.0.1:{FORWARD_PORT}/file"],
                capture_output=True, text=True, timeout=TRANSFER_TIMEOUT_S + 10)
        finally:
            if fault:
                fault.stop()
                res["fault"] = fault.note
        fields = curl.stdout.split()
        if curl.returncode != 0 or len(fields) != 4:
            res["error"] = f"curl exit {curl.returncode}: {curl.stderr.strip()}"
        else:
            code, t_connect, t_first, t_total = fields[0], *map(float, fields[1:])
            res["transfer_s"] = round(t_total - t_connect, 3)
            if t_first > 0:
                res["first_byte_s"] = round(t_first - t_connect, 3)
                res["first_byte_from_start_s"] = round(curl_start + t_first - t0, 3)
            with open(out_file, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            res["transfer_ok"] = code == "200" and digest == world.sha256
            if not res["transfer_ok"]:
                res["error"] = f"HTTP {code}, sha256 {digest[:12]}.. != {world.sha256[:12]}.."

        if world.udp:
            res["udp"] = udp_echo(world, the_lab, spawn)
            if not res["udp"].startswith("ok"):
                res["error"] = f"udp forward: {res['udp']}"

        if opts.idle and res["transfer_ok"]:
            res["after_idle_s"] = request_after_idle(world, laptop_ns, pair_dir, opts.idle)

        def views():
            v = {}
            for agent, peer in (("laptop", "nas"), ("nas", "laptop")):
                events = path_events(procs[agent], peer)
                v[agent] = status_path(world, the_lab.agent_ns[agent], peer) or (
                    events[-1][1] if events else None)
            return v

        res["views"] = views()
        res["path"] = pair_path(res["views"])
        # Issue 16: how each side's first direct path was found ("predicted", "birthday", ...),
        # as its log names it.
        res["sources"] = {}
        for agent, peer in (("laptop", "nas"), ("nas", "laptop")):
            found = procs[agent].find(rf"path to {peer}: direct \S+ \(rtt [^,]+, [^,]+, (\S+),")
            if found:
                res["sources"][agent] = found[0][1].group(1)
        # And `burrow status --json`: the technique, and the window the probing side predicted.
        res["status_prediction"] = {}
        for agent, peer in (("laptop", "nas"), ("nas", "laptop")):
            p = status_peer(world, the_lab.agent_ns[agent], peer) or {}
            res["status_prediction"][agent] = (p.get("technique"), p.get("predicted_window"))
        mapped_side = [a for a, k in (("nas", nas_kind), ("laptop", laptop_kind))
                       if k in lab.UPNP_KINDS]
        if mapped_side:
            # The other side punched to the mapping, and says so: its technique and the
            # candidate its first direct path led to.
            other = "laptop" if mapped_side[0] == "nas" else "nas"
            peer = mapped_side[0]
            res["technique"] = [m.group(1) for _, m in procs[other].find(
                rf"path to {peer}: direct \S+ \(rtt [^,]+, [^,]+, (\S+),")]

        def family():
            f = {a: status_path(world, the_lab.agent_ns[a], p, "family")
                 for a, p in (("laptop", "nas"), ("nas", "laptop"))}
            return f["laptop"] if f["laptop"] == f["nas"] else None

        res["family"] = family()

        def reached():
            return res["path"] == res["expected"] and (
                res["expected_family"] is None or res["family"] == res["expected_family"])

        if opts.check_paths and res["expected"] in ("direct", "direct-tcp") and not reached():
            end = time.monotonic() + DIRECT_GRACE_S
            while time.monotonic() < end and not reached():
                time.sleep(0.2)
                res["views"] = views()
                res["path"] = pair_path(res["views"])
                res["family"] = family()
        res["direct_address"] = status_path(world, laptop_ns, "nas", "address")
        if opts.doctor:
            res["doctor"] = run_doctor(world, laptop_ns)
            res["doctor_problems"] = check_doctor(res)
        # After the transfer: a netcheck that waits for a silent family must not delay it.
        if opts.netcheck:
            res["netcheck"], res["netcheck_problems"] = {}, []
            for agent, kind in (("nas", nas_kind), ("laptop", laptop_kind)):
                report, problems = run_netcheck(world, the_lab, agent, kind, families[agent],
                                                server_name, opts)
                res["netcheck"][agent] = report
                res["netcheck_problems"] += problems
        # How each side's punching ended, as its metrics say (recorded in --json, not judged).
        res["punch"] = {agent: punch_outcome(the_lab.agent_ns[agent]) for agent in ("laptop", "nas")}
        direct = [t for t, p in path_events(laptop, "nas") if p == res["expected"]
                  and p in ("direct", "direct-tcp")]
        if direct:
            res["direct_after_s"] = round(direct[0] - t0, 3)
            # Issue 15: a direct TCP path within 3 s of the session's start. Behind a router
            # that drops UDP the agent registers only once its UDP probe gives up (about 3 s
            # after its start), so the time from its start says nothing about the TCP punch.
            up = [t for t, p in path_events(laptop, "nas") if t <= direct[0]]
            if res["expected"] == "direct-tcp" and up:
                res["direct_after_session_s"] = round(direct[0] - up[0], 3)
        if opts.fault and opts.check_faults:
            res["fault_problems"] = check_fault(opts.fault, fault, procs, res)
        if mapped_side and not opts.keep:
            # A clean stop deletes the mapping at the gateway (the agent says so once done).
            p = procs[mapped_side[0]]
            p.stop()
            res["mapping_deleted"] = p.count(r"port mapping: deleted UDP port") > 0
            res["netcheck_gateway"] = netcheck_gateway(world, the_lab, mapped_side[0], families)
        res["logs"] = pair_dir
        if opts.keep:
            kept = True
            res["kept"] = {"lab": the_lab, "procs": procs}
    except Interrupted:
        raise
    except Exception as e:  # one broken pair is a failed row, not a dead matrix
        res["error"] = str(e)
    finally:
        if not kept:
            for p in reversed(list(procs.values())):
                p.stop()
            the_lab.destroy()
    if res["error"]:
        for key, p in procs.items():
            res["error"] += f"\n  {key} ({p.log_path}):\n{p.tail(8)}"
    return res


def run_netcheck(world, the_lab, agent, kind, family, server_name, opts):
    """`burrow netcheck -c AGENT.toml --json` in the agent's namespace (issue 17): each family
    the agent has must be asked (IPv6 of the server when its name has both addresses, or of
    coturn with --stun-server), reachable, and show the mapping its NAT or firewall has; with
    --stun-server, coturn must have answered on each family. (report, [problems])"""
    r = subprocess.run(["ip", "netns", "exec", the_lab.agent_ns[agent], world.burrow, "netcheck",
                        "-c", world.config(agent, family, server_name), "--json",
                        "--no-port-mapping"], capture_output=True, text=True, timeout=90)
    try:
        report = json.loads(r.stdout)
        by_family = {f["family"]: f for f in report["families"]}
    except (ValueError, KeyError, TypeError) as e:
        return None, [f"netcheck {agent}: exit {r.returncode}, no JSON report ({e}): "
                      f"{r.stdout[:200]} {r.stderr[:200]}"]
    problems = []
    wanted = ([] if family == "v6" else ["ipv4"]) + (["ipv6"] if has_v6(family) else [])
    for fam in wanted:
        f = by_family.get(fam, {})
        v6_asked = server_name or world.stun_server
        if fam == "ipv6" and not v6_asked:
            continue
        if lab.outer_kind(kind) in lab.UDP_BLOCKED_KINDS:
            continue
        want = expected_mapping(kind, "v6" if fam == "ipv6" else "v4")
        if not f.get("asked") or not f.get("reachable"):
            problems.append(f"netcheck {agent} {fam}: asked {f.get('asked')}, reachable "
                            f"{f.get('reachable')} ({f.get('not_asked')})")
        elif f.get("mapping") != want:
            problems.append(f"netcheck {agent} {fam}: mapping {f.get('mapping')}, not {want}")
        if world.stun_server and not f.get("stun_servers_answered"):
            problems.append(f"netcheck {agent} {fam}: coturn did not answer")
    print(f"netcheck {agent}: " + "; ".join(
        f"{fam} reachable={by_family.get(fam, {}).get('reachable')} "
        f"mapping={by_family.get(fam, {}).get('mapping')} "
        f"reflexive={by_family.get(fam, {}).get('reflexive')} "
        f"stun={by_family.get(fam, {}).get('stun_servers_answered')}" for fam in wanted),
          flush=True)
    return report, problems


def udp_echo(world, the_lab, spawn):
    """UDP_DATAGRAMS datagrams through laptop's UDP forward to nas's echo server: "ok ..." or
    what went wrong."""
    echo = spawn("udp-echo", the_lab.agent_ns["nas"],
                 [sys.executable, "-u", "-c", UDP_ECHO_SERVER, str(UDP_ECHO_PORT)])
    echo.wait_for(r"echoing", REGISTER_TIMEOUT_S)
    laptop_ns = the_lab.agent_ns["laptop"]
    # The session's largest datagram, as laptop's status shows it.
    r = subprocess.run(["ip", "netns", "exec", laptop_ns, world.burrow, "status", "--admin",
                        ADMIN, "--json"], capture_output=True, text=True, timeout=10)
    try:
        forwards = json.loads(r.stdout)["forwards"]
        largest = next(f["udp"]["max_datagram"] for f in forwards if f.get("protocol") == "udp")
    except (ValueError, KeyError, StopIteration) as e:
        return f"no udp forward in laptop's status ({e}): {r.stdout[:300]} {r.stderr[:300]}"
    if largest < 1000:
        return f"max datagram {largest} (want > 1000)"
    r = subprocess.run(["ip", "netns", "exec", laptop_ns, sys.executable, "-c", UDP_ECHO_CLIENT,
                        str(UDP_FORWARD_PORT), str(UDP_DATAGRAMS), str(largest)],
                       capture_output=True, text=True, timeout=UDP_DATAGRAMS * 5 + 30)
    return r.stdout.strip() if r.returncode == 0 else (r.stderr.strip() or "failed")


def request_after_idle(world, ns, pair_dir, idle_s):
    """Sleeps idle_s, then fetches the small file through the forward: its total time, or None
    when it failed (not byte-exact, or no answer within 30 s)."""
    time.sleep(idle_s)
    out = os.path.join(pair_dir, "small")
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "30", "-o", out,
                        "-w", "%{http_code} %{time_total}",
                        f"http://127.0.0.1:{FORWARD_PORT}/small"],
                       capture_output=True, text=True, timeout=40)
    fields = r.stdout.split()
    if r.returncode != 0 or len(fields) != 2 or fields[0] != "200":
        return None
    with open(out, "rb") as f, open(world.path("www/small"), "rb") as want:
        if f.read() != want.read():
            return None
    return round(float(fields[1]), 3)


def check_fault(kind, fault, procs, res):
    """What issue 6 asks of each fault beyond the byte-exact transfer; a list of problems."""
    problems = []
    if fault.note.startswith(("not applied", "failed", "no NAT")):
        return [f"fault {fault.note}"]
    laptop, nas = procs["laptop"], procs["nas"]
    if kind == "block":
        problems += check_block(fault, laptop, fault.direct)
    elif kind == "blackhole6":
        problems += check_blackhole6(fault, laptop)
    elif kind == "server":
        end = time.monotonic() + REGISTER_TIMEOUT_S
        while time.monotonic() < end and not all(
                p.count(REGISTERED.format(n)) >= 2 for n, p in (("nas", nas), ("laptop", laptop))):
            time.sleep(0.2)
        for n, p in (("nas", nas), ("laptop", laptop)):
            if p.count(REGISTERED.format(n)) < 2:
                problems.append(f"server: {n} did not register again after the restart")
    for n, p in (("nas", nas), ("laptop", laptop)):
        # Every session that ended says how many forwarded connections it reset; each line
        # is judged on its own (one "(0 ... reset)" must not hide another's 3).
        resets = [int(m.group(1)) for _, m in p.find(RESETS)]
        if any(resets):
            problems.append(f"{n} reset forwarded connections (per closed session: {resets})")
    return problems


def check_block(fault, laptop, direct="direct"):
    """The laptop's path events from the moment the block started: a fall back to the relay
    while the block lasts, then direct again within BACK_TO_DIRECT_S of the unblock. Events
    from before the block prove nothing (every session starts on the relay and was direct
    when the block came), so they only serve to check that the block hit a direct path. A
    blocked direct UDP path may fall back to a direct TCP path instead of the relay (issue 15:
    direct UDP, then direct TCP, then the relay), when the agents hold one."""
    before = [p for t, p in path_events(laptop, "nas") if t < fault.blocked_at]
    if not before or before[-1] != direct:
        return [f"block: the path was {before[-1] if before else 'none'} when the block "
                f"started, not {direct}: the fault tested nothing"]
    end = fault.unblocked_at + BACK_TO_DIRECT_S
    while True:
        after = [(t, p) for t, p in path_events(laptop, "nas") if t >= fault.blocked_at]
        relay_at = next((t for t, p in after if p.startswith("relay") or
                         (direct == "direct" and p == "direct-tcp")), None)
        direct_at = None if relay_at is None else next(
            (t for t, p in after if t > relay_at and p == direct), None)
        if direct_at is not None or time.monotonic() >= end:
            break
        time.sleep(0.2)
    seen = [(round(t - fault.blocked_at, 2), p) for t, p in after]
    if relay_at is None or relay_at > fault.unblocked_at:
        return [f"block: no fall back during the {BLOCK_S:.0f} s block; path events "
                f"(s after the block started): {seen}"]
    if direct_at is None:
        return [f"block: not back to direct {BACK_TO_DIRECT_S:.0f} s after the unblock; path "
                f"events (s after the block started): {seen}"]
    fell_to = next(p for t, p in after if t == relay_at)
    print(f"block: {fell_to} {relay_at - fault.blocked_at:.2f} s after the block, {direct} again "
          f"{direct_at - fault.unblocked_at:.2f} s after the unblock", flush=True)
    return []


def check_blackhole6(fault, laptop):
    """Issue 17: with IPv6 blackholed between two dual-stack agents mid-transfer, the session
    moves to a direct IPv4 path (through the relay or not) within BACK_TO_DIRECT_S."""
    before = [a for t, a in direct_events(laptop, "nas") if t < fault.blocked_at]
    if not before or not before[-1].startswith("["):
        return [f"blackhole6: the direct path was {before[-1] if before else 'none'} when IPv6 "
                "went dark, not IPv6: the fault tested nothing"]
    end = fault.blocked_at + BACK_TO_DIRECT_S
    while True:
        v4_at = next((t for t, a in direct_events(laptop, "nas")
                      if t >= fault.blocked_at and not a.startswith("[")), None)
        if v4_at is not None or time.monotonic() >= end:
            break
        time.sleep(0.2)
    seen = [(round(t - fault.blocked_at, 2), p) for t, p in path_events(laptop, "nas")
            if t >= fault.blocked_at]
    if v4_at is None:
        return [f"blackhole6: no direct IPv4 path {BACK_TO_DIRECT_S:.0f} s after IPv6 went dark; "
                f"path events (s after): {seen}"]
    print(f"blackhole6: direct over IPv4 {v4_at - fault.blocked_at:.2f} s after IPv6 went dark "
          f"(path events, s after: {seen})", flush=True)
    return []


def fmt_s(v):
    return "-" if v is None else f"{v:.3f}s"


def verdict(res, check_paths):
    problems = []
    if not res["transfer_ok"]:
        problems.append("transfer")
    if res["first_byte_s"] is None or res["first_byte_s"] > MAX_FIRST_BYTE_S:
        problems.append("first byte")
    if res["lab_error"]:
        problems.append("lab")
    if res["error"]:
        problems.append("error")
    if check_paths and res["path"] != res["expected"]:
        problems.append("path")
    if check_paths and res.get("expected_family") and res.get("family") != res["expected_family"]:
        problems.append(f"family {res.get('family')}, not {res['expected_family']}")
    if res.get("idle") and (res["after_idle_s"] is None or
                            res["after_idle_s"] > MAX_AFTER_IDLE_S):
        problems.append(f"request after {res['idle']:.0f} s idle: "
                        + ("failed" if res["after_idle_s"] is None
                           else f"{res['after_idle_s']:.3f} s"))
    cone = res["expected"] in ("direct", "direct-tcp") and all(lab.outer_kind(side(k)[0]) != "symmetric"
                                               for k in res["pair"].split("/"))
    if check_paths and cone and res["expected"] == "direct-tcp":
        after = res.get("direct_after_session_s")
        if after is None or after > MAX_DIRECT_TCP_AFTER_SESSION_S:
            problems.append(f"time to direct-tcp after the session started: {after}")
    elif check_paths and cone and (res["direct_after_s"] is None
                                   or res["direct_after_s"] > res["max_direct_s"]):
        problems.append("time to direct")
    if check_paths and res["path"] == "direct" and \
            predicted_pair(*res["pair"].split("/"), res.get("stun_server", False)) and \
            sorted(set(res.get("sources", {}).values())) != ["predicted"]:
        problems.append("direct, but not by port prediction: " + str(res.get("sources")))
    if check_paths and res["path"] == "direct" and \
            predicted_pair(*res["pair"].split("/"), res.get("stun_server", False)):
        shown = res.get("status_prediction", {})
        if any(t != "predicted" for t, _ in shown.values()) or \
                not any(w and w.get("ports") for _, w in shown.values()):
            problems.append("status --json: technique predicted and a predicted_window wanted: "
                            + str(shown))
    if "technique" in res and res["path"] == "direct" and "mapped" not in res["technique"]:
        problems.append("direct, but not by the mapped candidate: " + str(res["technique"]))
    if res.get("mapping_deleted") is False:
        problems.append("mapping not deleted at exit")
    if "netcheck_gateway" in res and not res["netcheck_gateway"]["answered"]:
        problems.append("burrow netcheck: the router's protocol did not answer: " +
                        str(res["netcheck_gateway"]["lines"]))
    problems += res.get("fault_problems", [])
    problems += res.get("doctor_problems", [])
    problems += res.get("netcheck_problems", [])
    return problems


def print_table(results, check_paths):
    head = ("NAT pair (nas/laptop)", "path", "expected", "1st byte", "from start",
            "direct after", "transfer", "verdict")
    rows = [head]
    for r in results:
        problems = verdict(r, check_paths)
        mark = "" if r["path"] == r["expected"] else " *"
        over = f" {r['family']}" if r["path"] == "direct" and r.get("family") else ""
        rows.append((r["pair"], r["path"] + over + mark, r["expected"]
                     + (f" {r['expected_family']}" if r.get("expected_family") else ""),
                     fmt_s(r["first_byte_s"]),
                     fmt_s(r["first_byte_from_start_s"]), fmt_s(r["direct_after_s"]),
                     "ok" if r["transfer_ok"] else "FAILED",
                     "FAIL: " + ", ".join(problems) if problems else "pass"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if any(r["path"] != r["expected"] for r in results):
        print("* path differs from the expected one" +
              ("" if check_paths else " (not checked: run with --check-paths)"))


def parse_pairs(ap, text):
    pairs = []
    for item in text.split(","):
        parts = item.strip().split("/")
        if len(parts) != 2 or not all(side(p)[0] in lab.KINDS and side(p)[1] in lab.FAMILIES
                                      for p in parts):
            ap.error(f"bad pair {item!r}: want NAS/LAPTOP with kinds {', '.join(lab.KINDS)}, "
                     f"each optionally +{'|'.join(lab.FAMILIES)}")
        kinds = [side(p)[0] for p in parts]
        if ("shared" in kinds) and kinds != ["shared", "shared"]:
            ap.error("shared puts both agents behind one NAT: write shared/shared")
        pairs.append(tuple(parts))
    return pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("burrow")
    ap.add_argument("--pairs", default=",".join(MATRIX),
                    help=f"default: the IPv4 matrix; issue 17's IPv6 rows: {','.join(MATRIX_V6)}")
    ap.add_argument("--check-paths", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--fault", choices=("conntrack", "block", "server", "blackhole6"))
    ap.add_argument("--check-faults", action="store_true",
                    help="fail unless the fault ends as issue 6 asks (needs --fault)")
    ap.add_argument("--udp-timeout", type=int, default=None, metavar="S",
                    help="the NATs forget a UDP mapping idle for S s")
    ap.add_argument("--idle", type=float, default=None, metavar="S",
                    help="after the transfer, S s idle, then a request answered within 1 s")
    ap.add_argument("--udp", action="store_true",
                    help="also a UDP forward to a UDP echo server, checked byte for byte")
    ap.add_argument("--doctor", action="store_true",
                    help="run `burrow doctor nas` on the laptop before and after the transfer "
                         "and check its verdict against the row")
    ap.add_argument("--stun-server", action="store_true",
                    help="run coturn on the lab's internet and list it in the agents' "
                         "stun_servers")
    ap.add_argument("--netcheck", action="store_true",
                    help="run `burrow netcheck -c AGENT.toml --json` in each agent's namespace "
                         "and check its report per family")
    ap.add_argument("--block-server-stun", action="store_true",
                    help="with --stun-server: the routers drop STUN to the burrow server's "
                         "STUN ports; reflexive addresses come from coturn alone")
    ap.add_argument("--server-name", action="store_true",
                    help="agents name the server by a name with an IPv4 and an IPv6 address")
    ap.add_argument("--blackhole-v6-control", action="store_true",
                    help="with --server-name: TCP to the server's IPv6 address is dropped")
    ap.add_argument("--trials", type=int, default=1, metavar="N",
                    help="run each pair N times (the birthday pair's success rate)")
    ap.add_argument("--min-direct", type=int, default=None, metavar="K",
                    help="with --trials: pass when at least K runs per pair went direct "
                         "(the path check then applies per pair, not per run)")
    opts = ap.parse_args()
    if opts.check_faults and not opts.fault:
        ap.error("--check-faults needs --fault")
    if opts.block_server_stun and not opts.stun_server:
        ap.error("--block-server-stun needs --stun-server (no reflexive address otherwise)")
    pairs = [p for p in parse_pairs(ap, opts.pairs) for _ in range(max(1, opts.trials))]
    burrow = os.path.abspath(opts.burrow)
    if not os.access(burrow, os.X_OK):
        print(f"natlab: {burrow}: not an executable", file=sys.stderr)
        return 2
    why = lab.have_netns()
    if why:
        print(f"SKIP natlab: needs root and network namespaces ({why})", flush=True)
        return SKIP_CODE
    # Root with namespaces (CI) and a tool missing is a broken machine, not a reason to skip.
    missing = [t for t in ("curl", "conntrack", "iptables-restore") if not shutil.which(t)]
    # The user-space NAT (issue 16) sits beside the burrow binary it came with.
    lab.set_labnat(os.path.join(os.path.dirname(burrow), "burrow-labnat"))
    if any(side(k)[0] in lab.USERSPACE_KINDS for pair in pairs for k in pair) and \
            lab.labnat_missing():
        missing.append(lab.labnat_missing())
    if any(k in lab.UPNP_KINDS for pair in pairs for k in pair) and not shutil.which("miniupnpd"):
        missing.append("miniupnpd (miniupnpd-iptables)")
    if opts.stun_server and not shutil.which("turnserver"):
        missing.append("turnserver (coturn)")
    if missing:
        print(f"natlab: FAILED: missing {', '.join(missing)} (./run.sh deps installs them)",
              flush=True)
        return 1

    lock = lab.lock()  # noqa: F841 (held until exit)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    d = tempfile.mkdtemp(prefix="burrow-natlab-")
    results, kept = [], None
    try:
        stale = lab.remove_stale()
        if stale:
            print(f"natlab: removed stale namespaces {' '.join(stale)}", flush=True)
        print(f"natlab: iptables backend {lab.iptables_backend()}; logs in {d}", flush=True)
        world = World(burrow, d, opts.stun_server, opts.udp)
        started = time.monotonic()
        for i, (a, b) in enumerate(pairs):
            if kept:  # --keep leaves only the last pair standing
                for p in reversed(list(kept["procs"].values())):
                    p.stop()
                kept["lab"].destroy()
            r = run_pair(world, a, b, opts)
            kept = r.pop("kept", None)
            results.append(r)
            print(f"natlab: [{i + 1}/{len(pairs)}] {r['pair']}: {r['path']}, first byte "
                  f"{fmt_s(r['first_byte_s'])}, transfer {'ok' if r['transfer_ok'] else 'FAILED'} "
                  f"in {fmt_s(r['transfer_s'])}"
                  + (f", fault: {r['fault']}" if "fault" in r else "")
                  + (", coturn saw " + ", ".join(f"{who} {m or 'nothing'}"
                                                 for who, m in r["stun"].items())
                     if "stun" in r else "")
                  + (", port allocation " + ", ".join(f"{who} {a}"
                                                      for who, a in r["allocation"].items())
                     if "allocation" in r else "")
                  + (f", udp: {r['udp']}" if "udp" in r else "")
                  + (f", direct after {fmt_s(r['direct_after_s'])}, found by "
                     + ", ".join(f"{who} {how}" for who, how in r["sources"].items())
                     if r.get("sources") else "")
                  + (f", request after {opts.idle:.0f} s idle: {fmt_s(r['after_idle_s'])}"
                     if opts.idle else ""), flush=True)
            for problem in r.get("fault_problems", []):
                print(f"natlab: {r['pair']}: {problem}", flush=True)
            for key in ("lab_error", "error"):
                if r[key]:
                    print(f"natlab: {r['pair']}: {r[key]}", flush=True)
        print(f"\nnatlab: {len(pairs)} pairs in {time.monotonic() - started:.0f} s\n")
        print_table(results, opts.check_paths)
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump(results, f, indent=2)
        per_run_paths = opts.check_paths and opts.min_direct is None
        failed = [r["pair"] for r in results if verdict(r, per_run_paths)]
        if opts.min_direct is not None:
            for pair in dict.fromkeys(r["pair"] for r in results):
                runs = [r for r in results if r["pair"] == pair]
                direct = sum(r["path"] == "direct" for r in runs)
                print(f"natlab: {pair}: direct in {direct} of {len(runs)} runs "
                      f"(at least {opts.min_direct} wanted)")
                if direct < opts.min_direct:
                    failed.append(pair)
        if failed and (not opts.fault or opts.check_faults):
            print(f"\nnatlab: FAILED: {', '.join(failed)}")
            return 1
        return 0
    except Interrupted as e:
        print(f"natlab: {e}: cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if kept:
            note = (f"natlab: --keep: namespaces {' '.join(lab.lab_namespaces())} and logs in "
                    f"{d} left in place; the next run removes them")
        else:
            lab.remove_stale()
            failed_any = any(verdict(r, opts.check_paths) for r in results)
            note = f"natlab: logs kept in {d}" if failed_any or not results else ""
            if not note:
                shutil.rmtree(d, ignore_errors=True)
        try:
            if note:
                print(note, flush=True)
        except OSError:  # stdout gone (a closed pipe): the cleanup above is what matters
            pass


if __name__ == "__main__":
    sys.exit(main())
