#!/usr/bin/env python3
"""burrow side by side with direct TCP, kcptun, wireguard-go and Nebula on one machine, in one
run (issues 8 and 14).

Usage: run_bench.py [--burrow BUILD/burrow] [--quick] [--out DIR] [--only SECTIONS]
                    [--natlab-json FILE [--natlab-source TEXT]] [--keep] [--render JSON]
  --quick        one run of each figure, shorter transfers (under 5 minutes); writes to
                 build/bench-quick/ unless --out is given, so it never overwrites docs/
  --out DIR      where benchmarks.md, benchmarks.json and benchmarks.png go (default: docs/)
  --only S,..    a subset of: throughput, loss, latency, connrate, memory, udp, natlab
  --natlab-json  results of `tests/natlab/natlab.py --json FILE` for time to first byte and to
                 the direct path behind real NATs (otherwise natlab.py is run when it exists)
  --keep         keep the folder with every process's log
  --render JSON  rewrite benchmarks.md and .png from a benchmarks.json (after editing the
                 hand-written benchmarks-notes.md beside it), without measuring

What runs (every figure is the median of the runs, systems interleaved A B C A B C):
  throughput  iperf3 single stream, -P 8 and --bidir. On 127.0.0.1: direct TCP, burrow (server
              and two agents, direct path), kcptun (fast3, aes, windows 4096, nocomp) with its
              default FEC and with FEC off. Between two network namespaces joined by a veth
              (root; bb-PID-pa/pb): direct TCP, burrow, wireguard-go and Nebula (the two need a
              TUN device each). CPU seconds per GB of the tunnel processes, both sides; syscalls
              per GB from `perf stat -e raw_syscalls:sys_enter -p` in a separate shorter run
  loss        goodput of one iperf3 stream over a veth pair between two network namespaces,
              tbf 100 Mbit/s on both ends, iptables -m statistic random drop 0/1/5% of the
              tunnel's UDP (plain TCP: of its TCP segments) on the veth; burrow, kcptun with
              and without FEC, and burrow on a direct TCP path (a second pair whose agents'
              UDP is dropped: loss on that connection's TCP segments; fails if not direct-tcp)
  latency     64-byte request/response round trips (p50, p99) through the forward, idle and
              while iperf3 runs through the same tunnel (same session); direct and kcptun beside
  connrate    connect, send 100 B, receive 100 B, close, per second, 4 client processes
  memory      agent RSS idle, and the increase per idle forwarded connection (1000 of them)
  udp         iperf3 -u (1200-byte datagrams) at a few offered rates, direct and through a
              UDP forward (issue 20; its own server and agents on loopback, direct path):
              received rate, loss, jitter, and the agents' CPU seconds per GB received
  natlab      time to first byte and to the direct path (loopback here; behind NATs from natlab)

Namespace work (loss, the peers) runs under the NAT lab's lock (tests/natlab/lab.py
LOCK_FILE, fcntl.flock), and every namespace is named bb-PID-*: a run removes what a killed run
left behind. Not a test: nothing here fails on a slow figure; it fails only when a tool cannot
run (a peer that cannot be set up is reported as not measured, with the reason).
"""
import argparse, contextlib, datetime, json, os, re, resource, selectors, shutil, socket
import statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

SECTIONS = ("throughput", "loss", "latency", "connrate", "memory", "udp", "natlab")
SYSTEMS = ("direct", "burrow", "kcptun")  # latency, connection rate, memory
# kcptun as issue 8 asks: fast3 profile, AES, 4096-packet windows, no compression. "kcptun"
# keeps kcptun's default FEC (10 data + 3 parity shards): that is how people run it.
KCPTUN_ARGS = ["--crypt", "aes", "--mode", "fast3", "--sndwnd", "4096", "--rcvwnd", "4096",
               "--nocomp", "--quiet", "--key", "burrow-bench"]
# "kcptun_nofec" (issue 14): the same with FEC off on both ends, kcptun's fastest on a clean
# path; the comparison target is whichever kcptun configuration was faster in the run.
KCPTUN_NOFEC_ARGS = ["--datashard", "0", "--parityshard", "0"]
KCPTUNS = ("kcptun", "kcptun_nofec")
# Throughput (issue 14), in the order the runs interleave: the loopback systems, then the
# namespaced path (two network namespaces joined by a veth) with the ceiling of that path and
# the userspace tunnels that need a TUN device and so a namespace each.
# burrow runs on both paths: beside kcptun on loopback, and beside the peers on the veth.
TP_SYSTEMS = ("direct", "burrow", "kcptun", "kcptun_nofec", "direct_veth", "burrow_veth",
              "wireguard_go", "nebula")
PEERS = ("direct_veth", "burrow_veth", "wireguard_go", "nebula")  # in PeerLab's namespaces
LABELS = {"direct": "direct TCP (loopback)", "burrow": "burrow", "kcptun": "kcptun (FEC 10+3)",
          "kcptun_nofec": "kcptun (FEC off)", "direct_veth": "direct TCP (veth)",
          "burrow_veth": "burrow (veth)", "wireguard_go": "wireguard-go", "nebula": "Nebula",
          "burrow_tcp": "burrow (direct TCP path)"}
# burrow_tcp (issue 15): burrow on a direct TCP path, beside burrow on its direct UDP path.
LOSS_SYSTEMS = ("direct", "burrow", "burrow_tcp", "kcptun", "kcptun_nofec")
# The loss lab's second burrow world (burrow_tcp): its ports are the first world's plus this,
# and its agents' UDP sockets are on these fixed ports (nas, laptop), dropped on the veth.
TCP_WORLD_PORT_OFFSET = 100
TCP_WORLD_UDP_PORTS = (41001, 41002)
NS_PREFIX = "bb-"  # every namespace this file makes (tests/natlab's are bl-*)
LOSS_RATES = (0.0, 0.01, 0.05)
WAN_RATE = "100mbit"  # issue 8: tbf 100 Mbit/s on the WAN link
# tbf: a burst of 64 KiB (above rate/HZ at any HZ) and at most 20 ms of queue, a home router's
WAN_TBF = ["rate", WAN_RATE, "burst", "64kb", "latency", "20ms"]
REQUEST = 64  # bytes per latency probe (issue 8)
UDP_RATES = (100, 300, 600, 1000)  # Mbit/s offered by iperf3 -u (--quick: the first and last)
UDP_LENGTH = 1200  # bytes per datagram: under the session's max datagram, as a VPN or game sends
SINK_MARK = b"B"  # first byte of a bulk upload to the echo server (probes start with b"r")
CONN_PAYLOAD = 100  # bytes each way per connection in the connection-rate test (issue 8)
CONN_WORKERS = 4  # client processes: enough to keep 2 cores busy while one waits on a reply
IDLE_CONNS = 1000  # issue 8: RSS increase per 1000 idle forwarded connections
REGISTER_TIMEOUT = 20.0  # s: TLS + auth + UDP binding take well under a second, on a busy box more
DIRECT_TIMEOUT = 15.0  # s: on loopback the agents go direct ~50 ms after the first connection
IPERF_GRACE_S = 20  # beyond -t: connect, the final exchange of results, a slow shared machine
IPERF_BUSY_RETRIES = 5  # 1 s apart: iperf3's server takes one test at a time
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class Profile:
    def __init__(self, quick):
        self.quick = quick
        self.reps = 1 if quick else 3
        self.seconds = 3 if quick else 8        # one iperf3 run
        self.syscall_seconds = 2 if quick else 4  # one iperf3 run under perf stat
        self.loss_seconds = 3 if quick else 8
        self.latency_seconds = 2 if quick else 5  # of round trips per latency figure
        self.conn_seconds = 2 if quick else 5
        self.idle_conns = 300 if quick else IDLE_CONNS
        self.udp_seconds = 3 if quick else 5
        self.udp_rates = (UDP_RATES[0], UDP_RATES[-1]) if quick else UDP_RATES


# ---------------------------------------------------------------- small tools

def proc_cpu_s(pid):
    """utime + stime of pid in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def cpu_of(pids):
    return sum(proc_cpu_s(p) for p in pids)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(sorted_xs, q):
    if not sorted_xs:
        return None
    i = min(len(sorted_xs) - 1, max(0, round(q / 100 * len(sorted_xs)) - 1))
    return sorted_xs[i]


def path_words(path):
    """A peer's path from `burrow status --json` ({"kind", "family", "address"}) in the table's
    words: "direct ADDR", "direct-tcp ADDR", "relay-udp"."""
    if not isinstance(path, dict):
        return str(path)
    if path.get("kind") in ("direct", "direct-tcp") and path.get("address"):
        return f"{path['kind']} {path['address']}"
    return str(path.get("kind"))


def ns_argv(ns, argv):
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60, **kw)


def accepts(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def why(e):
    """An exception as one line, with the stderr of a failed command."""
    if isinstance(e, subprocess.CalledProcessError):
        return f"{' '.join(map(str, e.cmd))}: exit {e.returncode}: {(e.stderr or '').strip()}"
    text = " / ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    return f"{e.__class__.__name__}: {text[:400]}"


def say(msg):
    print(f"bench: {msg}", flush=True)


# ---------------------------------------------------------------- helper processes

def echo_server(port):
    """A single-threaded epoll echo server: fast enough that the client and the tunnel, not the
    server, set the connection rate; holds thousands of idle connections. A connection whose
    first byte is SINK_MARK is a bulk upload instead: read and discarded, never echoed, so
    bulk and interactive traffic can share one forward (one burrow session, one kcptun
    tunnel) without the server itself blocking the echoes."""
    sel = selectors.DefaultSelector()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel.register(lsock, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                for _ in range(64):
                    try:
                        c, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, True)
                continue
            c = key.fileobj
            try:
                b = c.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                b = b""
            if not b:
                sel.unregister(c)
                c.close()
                continue
            if key.data is True and b[:1] == SINK_MARK:  # a bulk upload: read and discard
                sel.modify(c, selectors.EVENT_READ, "sink")
            if key.data == "sink" or b[:1] == SINK_MARK:
                continue
            sel.modify(c, selectors.EVENT_READ, False)  # an echo connection from now on
            try:
                c.setblocking(True)  # replies are small: a blocking send never waits long
                c.sendall(b)
                c.setblocking(False)
            except OSError:
                sel.unregister(c)
                c.close()


def conn_client(port, seconds):
    """Connect, send 100 B, read 100 B, close, as often as possible; prints 'ok errors'."""
    payload = b"x" * CONN_PAYLOAD
    ok = errors = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(payload)
            got = 0
            while got < CONN_PAYLOAD:
                b = s.recv(CONN_PAYLOAD - got)
                if not b:
                    break
                got += len(b)
            s.close()
            if got == CONN_PAYLOAD:
                ok += 1
            else:
                errors += 1
        except OSError:
            errors += 1
    print(ok, errors)


def bulk_client(port, seconds):
    """Uploads as fast as the path takes for `seconds` to the echo server's sink; prints
    Mbit/s (bytes handed to the socket: the bytes still in buffers at the end are a few MB)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(SINK_MARK)
    chunk = bytes(256 * 1024)
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        sent += s.send(chunk)
    took = time.monotonic() - t0
    s.close()
    print(f"{sent * 8 / took / 1e6:.1f}")


def round_trips(port, seconds, min_samples=200):
    """64-byte request/response round trips on one connection for `seconds`; microseconds."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(10)
    req = b"r" * REQUEST
    out = []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end or len(out) < min_samples:
            t0 = time.perf_counter_ns()
            s.sendall(req)
            got = 0
            while got < REQUEST:
                b = s.recv(REQUEST - got)
                if not b:
                    raise OSError("echo connection closed")
                got += len(b)
            out.append((time.perf_counter_ns() - t0) / 1000)
    finally:
        s.close()
    return out


# ---------------------------------------------------------------- the worlds

class BurrowWorld(harness.ConfigDir):
    """A server, nas (exposing `services`) and laptop (forwarding each service), on loopback or
    spread over network namespaces (server and nas in ns_nas, laptop in ns_laptop)."""

    def __init__(self, burrow, d, services, ns_nas=None, ns_laptop=None, server_host="127.0.0.1",
                 port_offset=0, udp_ports=None):
        """In namespaces every port is fixed (7000, 3478, ...) plus port_offset, so two worlds
        can share the namespaces. udp_ports (nas, laptop): each agent's UDP socket on a fixed
        port (its udp_port), which a firewall rule can then single out."""
        self.burrow, self.d, self.services = burrow, d, services
        os.makedirs(d, exist_ok=True)
        self.ns_nas, self.ns_laptop = ns_nas, ns_laptop
        in_ns = ns_nas is not None
        o = port_offset
        self.tcp = 7000 + o if in_ns else harness.free_port()
        stun = (3478 + o, 3479 + o) if in_ns else harness.free_ports(2, socket.SOCK_DGRAM)
        admins = (7070 + o, 7071 + o) if in_ns else harness.free_ports(2)
        self.laptop_admin = f"127.0.0.1:{admins[1]}"
        self.forwards = {name: (8080 + o + i if in_ns else harness.free_port())
                         for i, name in enumerate(services)}
        keys = {n: harness.keygen(burrow, self.path(f"{n}.key")) for n in ("nas", "laptop")}
        self.write("server.toml", harness.server_toml(server_host, self.tcp, stun, keys,
                                                      [("laptop", "nas", ["*"])]))
        fp = harness.fingerprint(burrow, self.path("server.toml"))
        udp = dict(zip(("nas", "laptop"), udp_ports or ()))
        header = (lambda name, admin: harness.agent_header(
            name, f"{server_host}:{self.tcp}", fp, f"127.0.0.1:{admin}")
            + (f"udp_port = {udp[name]}\n" if name in udp else ""))
        self.write("nas.toml", header("nas", admins[0]) + "".join(
            f'\n[[expose]]\nservice = "{n}"\ntarget = "127.0.0.1:{p}"\nallow = ["laptop"]\n'
            for n, p in services.items()))
        self.write("laptop.toml", header("laptop", admins[1]) + "".join(
            f'\n[[forward]]\nlisten = "127.0.0.1:{self.forwards[n]}"\npeer = "nas"\n'
            f'service = "{n}"\n' for n in services))
        self.procs = {}

    def spawn(self, name, ns, argv):
        p = harness.spawn(name, ns_argv(ns, argv), self.path(f"{name}.log"), cwd=self.d)
        self.procs[name] = p
        return p

    def start(self):
        """Starts the server and both agents; returns once laptop's forwards listen."""
        self.spawn("server", self.ns_nas, [self.burrow, "server", "-c", self.path("server.toml")])
        self.procs["server"].wait_for(r"listening on", REGISTER_TIMEOUT)
        self.spawn("nas", self.ns_nas, [self.burrow, "agent", "-c", self.path("nas.toml")])
        self.spawn("laptop", self.ns_laptop,
                   [self.burrow, "agent", "-c", self.path("laptop.toml")])
        for n in ("nas", "laptop"):
            self.procs[n].wait_for(rf"registered with the server as {n}\b", REGISTER_TIMEOUT)
        for n, port in self.forwards.items():
            self.laptop.wait_for(rf"forward 127\.0\.0\.1:{port}\s*->\s*nas/{n}\b.*listening",
                                 REGISTER_TIMEOUT)

    def wait_direct(self, since, kind=None):
        """Waits for laptop's log to say the path to nas is direct (kind None: UDP or TCP;
        "direct-tcp": that one); seconds since `since`."""
        self.laptop.wait_for(rf"path to nas: {re.escape(kind)}\b" if kind else
                             r"path to nas: direct", DIRECT_TIMEOUT)
        return time.monotonic() - since

    def status_paths(self):
        """peers[].path of laptop's view, from `burrow status --json`: a list of
        {"kind", "family", "address"}."""
        r = run(ns_argv(self.ns_laptop, [self.burrow, "status", "--admin", self.laptop_admin,
                                          "--json"]))
        return [p.get("path") for p in json.loads(r.stdout).get("peers", [])]

    def status_path(self):
        """peers[].path of laptop's view in the words of the table: "direct ADDR",
        "direct-tcp ADDR", "relay-udp"."""
        try:
            return ",".join(path_words(p) for p in self.status_paths()) or "none"
        except (subprocess.SubprocessError, ValueError, OSError) as e:
            return f"unknown ({e.__class__.__name__})"

    @property
    def laptop(self):
        return self.procs["laptop"]

    @property
    def pids(self):
        return [self.procs["laptop"].pid, self.procs["nas"].pid]


class Kcptun:
    """kcptun-client on 127.0.0.1:local -> kcptun-server on server_addr -> target port."""

    def __init__(self, d, name, target_port, ns_client=None, ns_server=None,
                 server_addr=None, fec=True, local=12948):
        self.local = harness.free_port() if ns_client is None else local
        server_addr = server_addr or f"127.0.0.1:{harness.free_port(socket.SOCK_DGRAM)}"
        args = KCPTUN_ARGS + ([] if fec else KCPTUN_NOFEC_ARGS)
        self.server = harness.spawn(f"{name}-server", ns_argv(ns_server, [
            "kcptun-server", "-l", server_addr, "-t", f"127.0.0.1:{target_port}",
            *args]), os.path.join(d, f"{name}-server.log"))
        self.client = harness.spawn(f"{name}-client", ns_argv(ns_client, [
            "kcptun-client", "-l", f"127.0.0.1:{self.local}", "-r", server_addr,
            *args]), os.path.join(d, f"{name}-client.log"))
        self.ns_client = ns_client

    def wait(self):
        # The log line, not a probe connection: an empty connection through kcptun reaches
        # iperf3's server, which then resets the next real client.
        self.client.wait_for(r"listening on", 10)

    @property
    def pids(self):
        return [self.client.pid, self.server.pid]


class IperfServer:
    """iperf3 -s on 127.0.0.1:port (in ns, if given). A failed test can leave it 'busy running
    a test' for good: restart() gives the next run a fresh one on the same port."""

    def __init__(self, d, name, port, ns=None):
        self.d, self.name, self.port, self.ns = d, name, port, ns
        self.proc, self.starts = None, 0
        self.restart()

    def restart(self):
        if self.proc and self.proc.alive():
            self.proc.kill9()
        self.starts += 1
        self.proc = harness.spawn(self.name, ns_argv(self.ns, [
            "iperf3", "-s", "-p", str(self.port), "--forceflush"]),
            os.path.join(self.d, f"{self.name}-{self.starts}.log"))
        self.proc.wait_for(r"Server listening on", 10)


def iperf_json(argv, seconds):
    """One iperf3 client run (argv with -J and -t seconds): its JSON report."""
    for attempt in range(IPERF_BUSY_RETRIES + 1):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + IPERF_GRACE_S)
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError(f"iperf3 printed no JSON (exit {r.returncode}): {r.stderr.strip()}")
        if "error" not in doc:
            return doc
        # The server still closing the last test (a tunnel that closes its streams lazily):
        # a wait, not a failure of the run about to start.
        if "busy" not in doc["error"] or attempt == IPERF_BUSY_RETRIES:
            raise RuntimeError(f"iperf3: {doc['error']}")
        time.sleep(1.0)


def iperf(port, seconds, extra=(), ns=None, host="127.0.0.1"):
    """One iperf3 client run; returns (bytes received, Mbit/s) summed over directions."""
    doc = iperf_json(ns_argv(ns, ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds),
                                  "-J", *extra]), seconds)
    end = doc["end"]
    sums = [end["sum_received"]] + ([end["sum_received_bidir_reverse"]]
                                    if "sum_received_bidir_reverse" in end else [])
    nbytes = sum(s["bytes"] for s in sums)
    mbps = sum(s["bits_per_second"] for s in sums) / 1e6
    return nbytes, mbps


# ---------------------------------------------------------------- namespaces, peers, syscalls

def ns_name(role):
    """bb-PID-ROLE: our pid in the name, so remove_stale_namespaces() can tell a crashed run's
    leftovers from a running bench's; at most 15 characters (they also name the veth ends)."""
    return f"{NS_PREFIX}{os.getpid()}-{role}"


def _natlab_lock_file():
    """tests/natlab/lab.py's lock file: the NAT lab and this bench take namespaces, veths and
    iptables on one machine, and neither may run its namespace work beside the other's."""
    try:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "natlab_lab", os.path.join(ROOT, "tests", "natlab", "lab.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.LOCK_FILE
    except (OSError, ImportError, AttributeError):
        return os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                            "burrow-natlab.lock")


class NamespaceLock:
    """`with NamespaceLock():` holds the NAT lab's machine-wide lock (fcntl.flock) around
    namespace work, waiting while a natlab run (or another bench) holds it."""

    def __enter__(self):
        import fcntl
        self.path = _natlab_lock_file()
        self.f = open(self.path, "a")
        try:
            fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another natlab run or bench holds {self.path}; waiting for it")
            fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()  # closing the file releases the lock
        return False


def remove_stale_namespaces():
    """Namespaces and wireguard-go sockets of a bench that died without cleaning up (SIGKILL):
    bb-PID-* whose PID is gone. Called with the namespace lock held."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(rf"{re.escape(NS_PREFIX)}(\d+)-", name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        say(f"removing namespace {name} left by a bench that is gone")
        kill_in_namespace(name)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for sock in os.listdir(WG_SOCK_DIR) if os.path.isdir(WG_SOCK_DIR) else []:
        m = re.match(r"bbw(\d+)[ab]\.sock$", sock)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            os.unlink(os.path.join(WG_SOCK_DIR, sock))


def kill_in_namespace(ns):
    """SIGKILL, by pid, whatever runs in one of our namespaces (only this file starts
    processes there)."""
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def reach(ns, host, port=9, timeout=20.0):
    """Waits until a TCP connect from ns to host:port is answered (accepted or refused): the
    path through a tunnel is up. The first packets start the tunnel's handshake."""
    r = subprocess.run(ns_argv(ns, [sys.executable, __file__, "_reach", host, str(port),
                                    str(timeout)]), capture_output=True, text=True,
                       timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"{host} not reachable from {ns} within {timeout} s: "
                           f"{(r.stdout + r.stderr).strip()[-300:]}")


def reach_client(host, port, timeout):
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return 0
        except ConnectionRefusedError:
            return 0
        except OSError as e:
            if time.monotonic() >= end:
                print(f"{e.__class__.__name__}: {e}")
                return 1
            time.sleep(0.1)


WG_SOCK_DIR = "/var/run/wireguard"  # wireguard-go's UAPI sockets: machine-wide, not per ns
WG_PORT = 51820
NEBULA_PORT = 4242


class PeerLab:
    """Two network namespaces (bb-PID-pa, the client side, and bb-PID-pb) joined by one veth
    with no rate limit, an iperf3 server in pb, and two userspace tunnels between them over
    that veth, each with the configuration its package gives by default, and burrow:
      direct_veth   iperf3 to pb's veth address: the ceiling of this path
      burrow_veth   burrow's server and nas in pb, laptop in pa (as in the loss lab)
      wireguard_go  wireguard-go (TUN bbwPIDa/b, MTU 1420) keyed with `wg genkey`, set up
                    with `wg set`; peers at fixed endpoints
      nebula        Nebula (TUN bbnPIDa/b, MTU 1300), a CA and two host certificates made with
                    nebula-cert at run time, no lighthouse: a static host map, punchy off
    Everything lives inside the two namespaces or in the bench's temp folder, except
    wireguard-go's sockets in /var/run/wireguard, which destroy() removes as well."""

    VETH, WG, NEB = "10.201.78", "10.201.79", "10.201.80"  # inside the namespaces only
    IPERF_PORT = 5201

    def __init__(self, d, burrow):
        self.burrow = burrow
        self.d = os.path.join(d, "peers")
        os.makedirs(self.d, exist_ok=True)
        self.a, self.b = ns_name("pa"), ns_name("pb")
        self.made, self.procs = [], []
        self.wg_if = {self.a: f"bbw{os.getpid()}a", self.b: f"bbw{os.getpid()}b"}
        self.neb_if = {self.a: f"bbn{os.getpid()}a", self.b: f"bbn{os.getpid()}b"}
        self.host = {"direct_veth": f"{self.VETH}.2", "wireguard_go": f"{self.WG}.2",
                     "nebula": f"{self.NEB}.2"}
        self.pids = {"direct_veth": []}
        self.iperf_srv, self.world, self.worlds = None, None, []

    def path(self, name):
        return os.path.join(self.d, name)

    def spawn(self, name, ns, argv):
        p = harness.spawn(name, ns_argv(ns, argv), self.path(f"{name}.log"), cwd=self.d)
        self.procs.append(p)
        return p

    def setup(self):
        """Builds what it can; returns {system: why} for the systems it could not set up."""
        setups = (("direct_veth", self.setup_namespaces), ("burrow_veth", self.setup_burrow),
                  ("wireguard_go", self.setup_wireguard), ("nebula", self.setup_nebula))
        skipped = {}
        for system, fn in setups:
            try:
                fn()
                if system in self.host:
                    reach(self.a, self.host[system])
            except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as e:
                skipped[system] = f"set-up failed: {why(e)}"
                if system == "direct_veth":  # no namespaces: no peer at all
                    return {s: skipped[system] for s, _ in setups}
        return skipped

    def setup_namespaces(self):
        for ns in (self.a, self.b):
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
        run(["ip", "link", "add", self.a, "netns", self.a, "type", "veth", "peer", "name",
             self.b, "netns", self.b])
        for i, ns in ((1, self.a), (2, self.b)):
            run(["ip", "-n", ns, "addr", "add", f"{self.VETH}.{i}/24", "dev", ns])
            run(["ip", "-n", ns, "link", "set", ns, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self.iperf_srv = IperfServer(self.d, "peers-iperf3", self.IPERF_PORT, ns=self.b)
        self.procs.append(self.iperf_srv.proc)

    def setup_burrow(self):
        """burrow as in the loss lab: server and nas in pb, laptop in pa; iperf3 through
        laptop's forward (127.0.0.1 in pa) to the iperf3 server (127.0.0.1 in pb)."""
        w = BurrowWorld(self.burrow, self.path(f"burrow-{len(self.worlds)}"),
                        {"iperf": self.IPERF_PORT}, ns_nas=self.b, ns_laptop=self.a,
                        server_host=f"{self.VETH}.2")
        self.world = w
        self.worlds.append(w)  # destroy() kills their processes
        w.start()
        t0 = time.monotonic()
        iperf(w.forwards["iperf"], 1, ns=self.a)  # opens the session; the path goes direct
        w.wait_direct(t0)
        self.pids["burrow_veth"] = w.pids

    def restart_burrow(self, reason):
        say(f"restarting burrow (veth) after: {reason}")
        for p in self.world.procs.values():
            if p.alive():
                p.kill9()
        self.setup_burrow()

    def setup_wireguard(self):
        keys = {}
        for ns in (self.a, self.b):
            priv = run(["wg", "genkey"]).stdout.strip()
            pub = run(["wg", "pubkey"], input=priv + "\n").stdout.strip()
            fd = os.open(self.path(f"wg-{ns}.key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(priv + "\n")
            keys[ns] = pub
        procs = {}
        for ns in (self.a, self.b):
            # -f: stay in the foreground (our child, its log to our file); the variable only
            # silences the banner saying that the kernel has WireGuard built in.
            procs[ns] = self.spawn(f"wireguard-go-{ns[-1]}", ns, [
                "env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f", self.wg_if[ns]])
        for ns in (self.a, self.b):
            sock = os.path.join(WG_SOCK_DIR, f"{self.wg_if[ns]}.sock")
            harness.wait_until(lambda: os.path.exists(sock), 10,
                               f"wireguard-go's socket {sock}")
        for i, ns, other in ((1, self.a, self.b), (2, self.b, self.a)):
            j = 3 - i
            run(ns_argv(ns, ["wg", "set", self.wg_if[ns], "private-key",
                             self.path(f"wg-{ns}.key"), "listen-port", str(WG_PORT), "peer",
                             keys[other], "allowed-ips", f"{self.WG}.{j}/32", "endpoint",
                             f"{self.VETH}.{j}:{WG_PORT}"]))
            run(["ip", "-n", ns, "addr", "add", f"{self.WG}.{i}/24", "dev", self.wg_if[ns]])
            run(["ip", "-n", ns, "link", "set", self.wg_if[ns], "up"])
        self.pids["wireguard_go"] = [procs[self.a].pid, procs[self.b].pid]

    def setup_nebula(self):
        cert = lambda *a: run(["nebula-cert", *a], cwd=self.d)  # noqa: E731
        cert("ca", "-name", "burrow-bench", "-duration", "48h", "-out-crt", "ca.crt",
             "-out-key", "ca.key")
        procs = {}
        for i, ns, other in ((1, self.a, self.b), (2, self.b, self.a)):
            j = 3 - i
            host = f"host{i}"
            cert("sign", "-ca-crt", "ca.crt", "-ca-key", "ca.key", "-name", host,
                 "-ip", f"{self.NEB}.{i}/24", "-out-crt", f"{host}.crt", "-out-key", f"{host}.key")
            # JSON is YAML: Nebula reads it as its config. Everything else stays at Nebula's
            # defaults (cipher AES-GCM, tun MTU 1300, one routine, default socket buffers).
            conf = {"pki": {"ca": self.path("ca.crt"), "cert": self.path(f"{host}.crt"),
                            "key": self.path(f"{host}.key")},
                    "static_host_map": {f"{self.NEB}.{j}": [f"{self.VETH}.{j}:{NEBULA_PORT}"]},
                    "lighthouse": {"am_lighthouse": False, "hosts": []},
                    "listen": {"host": "0.0.0.0", "port": NEBULA_PORT},
                    "punchy": {"punch": False},
                    "tun": {"dev": self.neb_if[ns]},
                    "logging": {"level": "info"},
                    "firewall": {d: [{"port": "any", "proto": "any", "host": "any"}]
                                 for d in ("outbound", "inbound")}}
            with open(self.path(f"nebula-{host}.yml"), "w") as f:
                json.dump(conf, f, indent=1)
            procs[ns] = self.spawn(f"nebula-{host}", ns,
                                   ["nebula", "-config", self.path(f"nebula-{host}.yml")])
        for p in procs.values():
            p.wait_for(r"Nebula interface is active", 15)
        self.pids["nebula"] = [procs[self.a].pid, procs[self.b].pid]

    def mtus(self):
        """The MTU of each tunnel's interface (as its package set it), for the report."""
        out = {}
        for system, dev in (("wireguard_go", self.wg_if[self.a]),
                            ("nebula", self.neb_if[self.a])):
            r = subprocess.run(["ip", "-n", self.a, "-o", "link", "show", "dev", dev],
                               capture_output=True, text=True)
            m = re.search(r"\bmtu (\d+)", r.stdout)
            if m:
                out[system] = int(m.group(1))
        return out

    def restart_iperf(self):
        self.iperf_srv.restart()
        self.procs.append(self.iperf_srv.proc)

    def destroy(self):
        """Kills what runs in the namespaces, deletes them (with the veth and the TUN devices
        in them) and wireguard-go's sockets. Safe to call after a partial setup."""
        for p in self.procs + [p for w in self.worlds for p in w.procs.values()]:
            if p.alive():
                p.popen.kill()
                p.popen.wait()
        for ns in self.made:
            kill_in_namespace(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for name in self.wg_if.values():
            try:
                os.unlink(os.path.join(WG_SOCK_DIR, f"{name}.sock"))
            except FileNotFoundError:
                pass
        # The keys, certificates and logs stay in the bench's folder, removed with it.


SYSCALL_EVENT = "raw_syscalls:sys_enter"


def perf_why_not():
    """"" when `perf stat -e raw_syscalls:sys_enter` counts here, else why not. (Hardware
    counters may be missing in a VM; the tracepoint needs only tracefs and root.)"""
    if not shutil.which("perf"):
        return "perf not installed (Debian linux-perf)"
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", SYSCALL_EVENT, "--", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"perf stat failed: {e}"
    m = re.search(rf"^(\d+),[^,]*,{re.escape(SYSCALL_EVENT)}", r.stderr, re.M)
    if r.returncode != 0 or not m or int(m.group(1)) == 0:
        return f"perf stat -e {SYSCALL_EVENT} does not count here: {r.stderr.strip()[-200:]}"
    return ""


def threads_of(pids):
    out = set()
    for p in pids:
        try:
            out |= {(p, t) for t in os.listdir(f"/proc/{p}/task")}
        except FileNotFoundError:
            pass
    return out


def count_syscalls(pids, fn, d):
    """Runs fn() while `perf stat -e raw_syscalls:sys_enter -p PIDS` counts the system calls
    of those processes' threads; returns (count, threads created meanwhile, fn's result).
    perf starts with its counters disabled and is told to enable and disable them over a
    control pipe, with an acknowledgement each time, so the window is exactly fn's run.
    perf -p follows the threads that exist when it attaches, not those created later: the
    caller records the count of new threads, and the figure is then a lower bound."""
    import select
    out = os.path.join(d, f"perf-{time.monotonic_ns()}.csv")
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    before = threads_of(pids)
    with open(os.path.join(d, "perf.log"), "a") as log:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", SYSCALL_EVENT, "-o", out,
                                 "-D", "-1", "--control", f"fd:{ctl_r},{ack_w}",
                                 "-p", ",".join(str(p) for p in pids)],
                                pass_fds=(ctl_r, ack_w), stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    os.close(ctl_r)
    os.close(ack_w)

    def command(word):
        os.write(ctl_w, word.encode() + b"\n")
        if not select.select([ack_r], [], [], 10)[0] or not os.read(ack_r, 64).startswith(b"ack"):
            raise RuntimeError(f"perf stat did not acknowledge '{word}' (see perf.log)")

    try:
        command("enable")
        result = fn()
        command("disable")
        added = len(threads_of(pids) - before)
    finally:
        perf.send_signal(2)
        try:
            perf.wait(timeout=10)
        except subprocess.TimeoutExpired:
            perf.kill()
            perf.wait()
        os.close(ctl_w)
        os.close(ack_r)
        text = ""
        if os.path.exists(out):
            with open(out) as f:
                text = f.read()
            os.unlink(out)
    m = re.search(rf"^(\d+),[^,]*,{re.escape(SYSCALL_EVENT)}", text, re.M)
    if not m:
        raise RuntimeError("perf stat printed no count")
    return int(m.group(1)), added, result


# ---------------------------------------------------------------- sections

def start_burrow(ctx):
    """Server and agents on loopback (a fresh set in a new folder each time), proven with one
    echoed byte; the agents then go direct. Sets ctx["world"]."""
    n = len(ctx["restarts"])
    w = BurrowWorld(ctx["burrow"], os.path.join(ctx["d"], f"burrow-{n}"),
                    {"iperf": ctx["iperf_port"], "echo": ctx["echo_port"]})
    w.start()
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", w.forwards["echo"]), timeout=10)
    s.settimeout(10)
    s.sendall(b"f")
    assert s.recv(1) == b"f", "no echo through the forward"
    first_byte = round(time.monotonic() - t0, 3)
    w.first_times = {"first_byte_s": first_byte, "direct_after_s": round(w.wait_direct(t0), 3)}
    s.close()
    ctx["world"] = w
    return w


def restart_burrow(ctx, why):
    """After a run through burrow failed: the failure is recorded, and the next runs get fresh
    agents, so that one stuck session does not turn every later figure into a timeout."""
    say(f"restarting burrow's server and agents after: {why}")
    for p in ctx["world"].procs.values():
        if p.alive():
            p.kill9()
    ctx["restarts"].append(why)
    start_burrow(ctx)


def restart_kcptun(ctx, system, why):
    """As restart_burrow, for the kcptun pair of the throughput runs (kcptun with FEC off
    has been seen to stall for good in --bidir, with or without this harness)."""
    say(f"restarting {system} after: {why}")
    key = "kcp_iperf" if system == "kcptun" else "kcp_iperf_nofec"
    for p in ctx[key].client, ctx[key].server:
        if p.alive():
            p.kill9()
    ctx.setdefault("tunnel_restarts", []).append(f"{system}: {why}")
    n = len(ctx["tunnel_restarts"])
    ctx[key] = Kcptun(ctx["d"], f"{system}-iperf-{n}", ctx["iperf_port"],
                      fec=system == "kcptun")
    ctx[key].wait()


MODES = {"single": [], "parallel8": ["-P", "8"], "bidir": ["--bidir"]}


def tp_target(ctx, peers, system):
    """(port, host, namespace, tunnel pids, iperf3 server) of one system's iperf3 path."""
    if system == "direct":
        return ctx["iperf_port"], "127.0.0.1", None, [], ctx["iperf_srv"]
    if system == "burrow":
        w = ctx["world"]
        return w.forwards["iperf"], "127.0.0.1", None, w.pids, ctx["iperf_srv"]
    if system in KCPTUNS:
        k = ctx["kcp_iperf" if system == "kcptun" else "kcp_iperf_nofec"]
        return k.local, "127.0.0.1", None, k.pids, ctx["iperf_srv"]
    if system == "burrow_veth":
        return (peers.world.forwards["iperf"], "127.0.0.1", peers.a, peers.pids[system],
                peers.iperf_srv)
    return peers.IPERF_PORT, peers.host[system], peers.a, peers.pids[system], peers.iperf_srv


def peer_tools_missing():
    for tool in ("wireguard-go", "wg", "nebula", "nebula-cert"):
        if not shutil.which(tool):
            return f"{tool} not found (./run.sh bench installs it)"
    return ""


def bench_throughput(ctx, prof):
    """iperf3 single stream, -P 8 and --bidir through every system, interleaved; CPU s/GB of
    the tunnel processes in the same runs; in the last round, after each system's run, a
    separate shorter run of the same kind under perf for the syscalls per GB, so that the
    tracepoint's cost never touches the throughput or CPU figures."""
    peers_why = ("needs root for network namespaces" if os.geteuid() != 0
                 else peer_tools_missing())
    skipped = {s: peers_why for s in PEERS} if peers_why else {}
    sys_why = perf_why_not()
    peers, mtus = None, {}
    # The namespace lock is held for the whole section: the peers' runs interleave with the
    # loopback ones, and the namespaces live until the last run.
    with (NamespaceLock() if not peers_why else contextlib.nullcontext()):
        try:
            if not peers_why:
                remove_stale_namespaces()
                peers = PeerLab(ctx["d"], ctx["burrow"])
                skipped = peers.setup()
                mtus = peers.mtus()
                for s, reason in skipped.items():
                    say(f"throughput: {s} skipped: {reason}")
            systems = [s for s in TP_SYSTEMS if s not in skipped]
            res = {m: {s: [] for s in systems} for m in MODES}
            sys_res = {m: {s: [] for s in systems} for m in MODES}
            for rep in range(prof.reps):
                for mode, extra in MODES.items():
                    for system in systems:
                        res[mode][system].append(
                            throughput_run(ctx, peers, system, mode, extra, rep, prof.seconds))
                        if rep == prof.reps - 1 and not sys_why and system not in (
                                "direct", "direct_veth"):
                            sys_res[mode][system].append(throughput_run(
                                ctx, peers, system, mode, extra, rep, prof.syscall_seconds,
                                count=True))
        finally:
            if peers:
                peers.destroy()
    summary = {m: {s: {"mbit_s": median(r.get("mbit_s") for r in res[m][s]),
                       "cpu_s_per_gb": median(r.get("cpu_s_per_gb") for r in res[m][s]),
                       "syscalls_per_gb": median(r.get("syscalls_per_gb")
                                                 for r in sys_res[m][s]),
                       "syscalls_lower_bound": any(r.get("threads_added")
                                                   for r in sys_res[m][s])}
                   for s in systems} for m in MODES}
    failed = {f"{m} {s}": sum("error" in r for r in res[m][s] + sys_res[m][s])
              for m in MODES for s in systems}
    return {"runs": res, "syscall_runs": sys_res, "median": summary, "systems": systems,
            "skipped": skipped, "tunnel_mtu": mtus, "seconds_per_run": prof.seconds,
            "syscall_seconds": prof.syscall_seconds,
            "syscalls_method": "" if sys_why else (
                f"perf stat -e {SYSCALL_EVENT} -p PIDS, one run of {prof.syscall_seconds} s per "
                "system and mode apart from the throughput runs"),
            "syscalls_skipped": sys_why,
            "peer_path": ("two network namespaces joined by a veth (no rate limit, GSO/TSO on), "
                          "iperf3 client in one and server in the other"),
            "failed_runs": {k: v for k, v in failed.items() if v}}


def throughput_run(ctx, peers, system, mode, extra, rep, seconds, count=False):
    """One iperf3 run through system: Mbit/s and CPU s/GB, or (count) syscalls per GB."""
    port, host, ns, pids, srv = tp_target(ctx, peers, system)
    kind = "syscalls" if count else "throughput"
    try:
        if count:
            # A process that made a thread during the run (perf -p misses that thread's calls)
            # has it for the next run: one more run then counts every thread.
            for attempt in (1, 2):
                n, added, (nbytes, mbps) = count_syscalls(
                    pids, lambda: iperf(port, seconds, extra, ns=ns, host=host), ctx["d"])
                if not added:
                    break
            if nbytes == 0:
                raise RuntimeError(f"iperf3 ended normally but no byte arrived in {seconds} s")
            run_ = {"mbit_s": round(mbps, 1), "bytes": nbytes, "syscalls": n,
                    "syscalls_per_gb": round(n / (nbytes / 1e9)),
                    "threads_added": added, "attempts": attempt}
        else:
            cpu0 = cpu_of(pids)
            nbytes, mbps = iperf(port, seconds, extra, ns=ns, host=host)
            cpu = cpu_of(pids) - cpu0
            if nbytes == 0:  # a stall, not a figure: listed as a failed run, not a median of 0
                raise RuntimeError(f"iperf3 ended normally but no byte arrived in {seconds} s")
            run_ = {"mbit_s": round(mbps, 1), "bytes": nbytes,
                    "cpu_s": round(cpu, 2) if pids else None,
                    "cpu_s_per_gb": round(cpu / (nbytes / 1e9), 2) if pids and nbytes else None}
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
        run_ = {"error": str(e)}
        if srv is ctx["iperf_srv"]:
            srv.restart()
        else:
            peers.restart_iperf()
        if system == "burrow":
            restart_burrow(ctx, f"{kind} {mode} run {rep + 1}: {e}")
        elif system in KCPTUNS:
            restart_kcptun(ctx, system, f"{kind} {mode} run {rep + 1}: {e}")
        elif system == "burrow_veth":
            ctx.setdefault("tunnel_restarts", []).append(f"{system}: {kind} {mode} run "
                                                         f"{rep + 1}: {e}")
            peers.restart_burrow(e)
    say(f"{kind} {mode} {system} run {rep + 1}: {run_}")
    return run_


class Lab:
    """Two network namespaces joined by a veth pair: the 'WAN link' of the loss runs."""

    SUBNET = "10.201.77"  # private to the namespaces; nothing outside sees it

    def __init__(self):
        # laptop side, nas side (also the names of the veth ends)
        self.a, self.b = ns_name("la"), ns_name("lb")
        self.addr = {self.a: f"{self.SUBNET}.1", self.b: f"{self.SUBNET}.2"}
        self.made = []

    def setup(self):
        for ns in (self.a, self.b):
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
        run(["ip", "link", "add", self.a, "netns", self.a, "type", "veth", "peer", "name",
             self.b, "netns", self.b])
        for ns in (self.a, self.b):
            # One segment per packet, so a 1% drop is 1% of the wire's packets, not 1% of
            # 64 KiB TSO/GSO super-packets.
            run(["ip", "-n", ns, "link", "set", ns, "gso_max_segs", "1", "gso_max_size", "1500"])
            run(["ip", "-n", ns, "addr", "add", f"{self.addr[ns]}/24", "dev", ns])
            run(["ip", "-n", ns, "link", "set", ns, "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", ns, "root", "tbf",
                 *WAN_TBF])

    def set_loss(self, proto, probability, port=None):
        """Random drop of `proto` packets arriving from the veth at either end (and only those).
        On INPUT, not OUTPUT: a drop on OUTPUT fails the sender's sendto() with EPERM, which
        is a local error, not a loss on the wire (kcptun closes its session on it)."""
        for ns in (self.a, self.b):
            run(["ip", "netns", "exec", ns, "iptables", "-F", "INPUT"])
            if probability > 0:
                match = ["-m", "multiport", "--ports", str(port)] if port else []
                run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-i", ns, "-p", proto,
                     *match, "-m", "statistic", "--mode", "random", "--probability",
                     str(probability), "-j", "DROP"])

    def block_udp(self, ports):
        """Drops every UDP datagram from or to `ports` arriving from the veth, at both ends. In
        the raw table, so set_loss's flush of INPUT leaves it; on arrival, not on sending, so
        the sender sees a loss on the wire, not an EPERM."""
        match = ["-i", None, "-p", "udp", "-m", "multiport", "--ports",
                 ",".join(map(str, ports)), "-j", "DROP"]
        for ns in (self.a, self.b):
            match[1] = ns
            run(["ip", "netns", "exec", ns, "iptables", "-t", "raw", "-A", "PREROUTING", *match])
            # The veth's IPv6 link-local addresses too, should an agent ever offer them.
            subprocess.run(["ip", "netns", "exec", ns, "ip6tables", "-t", "raw", "-A",
                            "PREROUTING", *match], capture_output=True)

    def destroy(self):
        for ns in self.made:
            kill_in_namespace(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def direct_tcp_port(w):
    """(port of the nas end of w's direct TCP path, None), or (None, why not) when laptop's path
    to nas is not direct-tcp."""
    try:
        paths = w.status_paths()
    except (subprocess.SubprocessError, ValueError, OSError) as e:
        return None, f"burrow status failed: {why(e)}"
    tcp = [p for p in paths if isinstance(p, dict) and p.get("kind") == "direct-tcp"]
    m = re.search(r":(\d+)$", str(tcp[0].get("address", ""))) if tcp else None
    if not m:
        return None, ("path is " + (",".join(path_words(p) for p in paths) or "none") +
                      ", not direct-tcp")
    return int(m.group(1)), None


def bench_loss(burrow, d, prof):
    if os.geteuid() != 0:
        return {"skipped": "needs root for network namespaces"}
    with NamespaceLock():
        remove_stale_namespaces()
        return loss_in_lab(burrow, d, prof)


def loss_in_lab(burrow, d, prof):
    lab = Lab()
    iperf_port = 5201
    try:
        lab.setup()
        server_ip = lab.addr[lab.b]
        srv = IperfServer(d, "loss-iperf3", iperf_port, ns=lab.b)
        w = BurrowWorld(burrow, os.path.join(d, "loss"), {"iperf": iperf_port}, ns_nas=lab.b,
                        ns_laptop=lab.a, server_host=server_ip)
        w.start()
        # burrow_tcp: a second server and pair beside the first, whose agents' UDP is dropped
        # on the veth (their fixed UDP ports): only their TCP to the server and to each other
        # passes, so they punch a direct TCP path (issue 15) instead of the UDP one.
        lab.block_udp(TCP_WORLD_UDP_PORTS)
        wt = BurrowWorld(burrow, os.path.join(d, "loss-tcp"), {"iperf": iperf_port},
                         ns_nas=lab.b, ns_laptop=lab.a, server_host=server_ip,
                         port_offset=TCP_WORLD_PORT_OFFSET, udp_ports=TCP_WORLD_UDP_PORTS)
        wt.start()
        def start_kcptun(system, n=0):
            nofec = system == "kcptun_nofec"
            k = Kcptun(d, f"loss-{system}-{n}", iperf_port, ns_client=lab.a, ns_server=lab.b,
                       server_addr=f"{server_ip}:{29901 if nofec else 29900}", fec=not nofec,
                       local=12949 if nofec else 12948)
            k.wait()
            return k

        kcp = {s: start_kcptun(s) for s in KCPTUNS}
        t0 = time.monotonic()
        iperf(w.forwards["iperf"], 1, ns=lab.a)  # opens the session; the path goes direct
        w.wait_direct(t0)
        errors = []
        try:
            t0 = time.monotonic()
            iperf(wt.forwards["iperf"], 1, ns=lab.a)  # opens the session (relayed at first)
            tcp_after = round(wt.wait_direct(t0, "direct-tcp"), 3)
        except (AssertionError, RuntimeError, subprocess.SubprocessError) as e:
            tcp_after = None
            errors.append(f"burrow_tcp: no direct-tcp path ({wt.status_path()}): {why(e)}")
            say(f"loss lab: {errors[-1]}")
        # (port, host, protocol the loss applies to, port it is restricted to)
        targets = {"direct": (iperf_port, server_ip, "tcp", iperf_port),
                   "burrow": (w.forwards["iperf"], "127.0.0.1", "udp", None),
                   "burrow_tcp": (wt.forwards["iperf"], "127.0.0.1", "tcp", None),
                   "kcptun": (kcp["kcptun"].local, "127.0.0.1", "udp", None),
                   "kcptun_nofec": (kcp["kcptun_nofec"].local, "127.0.0.1", "udp", None)}
        restarts = []
        res = {str(p): {s: [] for s in LOSS_SYSTEMS} for p in LOSS_RATES}
        for rep in range(prof.reps):
            for p in LOSS_RATES:
                for system in LOSS_SYSTEMS:
                    port, host, proto, loss_port = targets[system]
                    if system == "burrow_tcp":
                        # The loss hits the direct TCP connection's segments only (the nas
                        # end's port), not the agents' TLS connections to the server.
                        loss_port, off_path = direct_tcp_port(wt)
                        if off_path:
                            res[str(p)][system].append({"error": off_path})
                            errors.append(f"burrow_tcp at {p:.0%} run {rep + 1}: {off_path}")
                            say(f"loss {p:.0%} {system} run {rep + 1}: {off_path}")
                            continue
                    lab.set_loss(proto, p, loss_port)
                    try:
                        _, mbps = iperf(port, prof.loss_seconds, ns=lab.a, host=host)
                        run_ = {"mbit_s": round(mbps, 1)}
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        run_ = {"error": str(e)}
                        srv.restart()
                        if system in KCPTUNS:  # a stalled kcptun session stays stalled
                            say(f"restarting {system} in the loss lab after: {e}")
                            for pr in (kcp[system].client, kcp[system].server):
                                pr.kill9()
                            restarts.append(f"{system} at {p:.0%} run {rep + 1}: {e}")
                            kcp[system] = start_kcptun(system, len(restarts))
                    finally:
                        lab.set_loss(proto, 0)
                    if system == "burrow":
                        run_["path_after"] = w.status_path()
                    if system == "burrow_tcp":
                        run_["path_after"] = wt.status_path()
                        if not run_["path_after"].startswith("direct-tcp "):
                            # Not a figure of the TCP path: kept aside, out of the median.
                            if "mbit_s" in run_:
                                run_["mbit_s_off_path"] = run_.pop("mbit_s")
                            run_["error"] = f"path after the run: {run_['path_after']}"
                            errors.append(f"burrow_tcp at {p:.0%} run {rep + 1}: "
                                          f"{run_['error']}")
                    res[str(p)][system].append(run_)
                    say(f"loss {p:.0%} {system} run {rep + 1}: {run_}")
        summary = {p: {s: median(r.get("mbit_s") for r in res[p][s]) for s in LOSS_SYSTEMS}
                   for p in res}
        for s in LOSS_SYSTEMS:  # goodput at p as a share of the same system's loss-free goodput
            base = summary["0.0"][s]
            for p in res:
                summary[p][s + "_share"] = (round(summary[p][s] / base, 3)
                                            if base and summary[p][s] is not None else None)
        return {"runs": res, "median": summary, "systems": list(LOSS_SYSTEMS),
                "kcptun_restarts": restarts, "errors": errors,
                "direct_tcp_after_s": tcp_after,
                "seconds_per_run": prof.loss_seconds,
                "link": f"veth between two network namespaces, tbf {' '.join(WAN_TBF)} on both "
                        f"ends, GSO/TSO off (one segment per packet)"}
    finally:
        for p in list(harness._procs):
            if p.argv[:3] == ["ip", "netns", "exec"] and p.argv[3] in (lab.a, lab.b) and p.alive():
                p.popen.kill()
                p.popen.wait()
        lab.destroy()


def latency_summary(samples):
    xs = sorted(samples)
    return {"n": len(xs), "p50_us": round(percentile(xs, 50), 1),
            "p99_us": round(percentile(xs, 99), 1), "max_us": round(xs[-1], 1)}


def bench_latency(ctx, prof):
    out, cdf = {}, {}

    def measure(name, port):
        try:
            xs = round_trips(port, prof.latency_seconds)
        except OSError as e:  # a reset mid-measurement is a result to report, not a crash
            out[name] = {"n": 0, "p50_us": None, "p99_us": None, "max_us": None,
                         "error": f"{e.__class__.__name__}: {e}"}
            say(f"latency {name}: {out[name]['error']}")
            return False
        out[name] = latency_summary(xs)
        cdf[name] = xs
        say(f"latency {name}: {out[name]}")
        return True

    def under_load(name, port):
        """Round trips while a bulk upload runs through the same forward (so for burrow the
        same session, for kcptun the same tunnel); the bulk's own rate is kept beside the
        figure, since a stalled bulk transfer would make 'under load' an idle figure."""
        bulk = subprocess.Popen([sys.executable, __file__, "_bulk", str(port),
                                 str(prof.latency_seconds + 2)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)  # past slow start: measure against a full pipe (not a sync)
            if not measure(name, port):
                raise RuntimeError("the interactive connection failed")
            o, e = bulk.communicate(timeout=prof.latency_seconds + 20)
            if bulk.returncode != 0:
                raise RuntimeError(f"bulk upload failed: {e.strip().splitlines()[-1:]}")
            out[name]["bulk_mbit_s"] = float(o)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            bulk.kill()
            bulk.wait()
            out[name]["bulk_error"] = str(e)
            if name.startswith("burrow"):
                restart_burrow(ctx, f"latency under load: {e}")
        say(f"latency {name} bulk: {out[name].get('bulk_mbit_s', out[name].get('bulk_error'))}")

    rounds = []
    for _ in range(1 if prof.quick else 2):  # two interleaved rounds: shows the variation
        measure("direct idle", ctx["echo_port"])
        measure("burrow idle", ctx["world"].forwards["echo"])
        measure("kcptun idle", ctx["kcp_echo"].local)
        under_load("direct under load", ctx["echo_port"])
        under_load("burrow under load", ctx["world"].forwards["echo"])
        under_load("kcptun under load", ctx["kcp_echo"].local)
        rounds.append(dict(out))
    return {"summary": out, "rounds": rounds,
            "cdf_us": {k: v[::max(1, len(v) // 2000)] for k, v in cdf.items()},
            "seconds_each": prof.latency_seconds,
            "note": "Under load, a second connection uploads as fast as it can through the same "
                    "forward (burrow: the same session; kcptun: the same tunnel; direct: the "
                    "same loopback) into the echo server's discard mode; its rate is in the "
                    "last column"}


def bench_connrate(ctx, prof):
    ports = {"direct": ctx["echo_port"], "burrow": ctx["world"].forwards["echo"],
             "kcptun": ctx["kcp_echo"].local}
    res = {s: [] for s in SYSTEMS}
    for rep in range(prof.reps):
        for system in SYSTEMS:
            procs = [subprocess.Popen([sys.executable, __file__, "_connclient",
                                       str(ports[system]), str(prof.conn_seconds)],
                                      stdout=subprocess.PIPE, text=True)
                     for _ in range(CONN_WORKERS)]
            ok = errors = 0
            for p in procs:
                o, e = (int(x) for x in p.communicate(timeout=prof.conn_seconds + 60)[0].split())
                ok, errors = ok + o, errors + e
            run_ = {"per_s": round(ok / prof.conn_seconds), "errors": errors}
            res[system].append(run_)
            say(f"connrate {system} run {rep + 1}: {run_}")
            time.sleep(1.0)  # let TIME_WAIT sockets and the agents' closing streams drain
    return {"runs": res, "median": {s: median(r["per_s"] for r in res[s]) for s in SYSTEMS},
            "workers": CONN_WORKERS, "seconds_per_run": prof.conn_seconds}


def udp_iperf(port, mbit, seconds):
    """One `iperf3 -u` run at `mbit` offered: the server's figures as the client reports them."""
    doc = iperf_json(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-u", "-b", f"{mbit}M",
                      "-l", str(UDP_LENGTH), "-t", str(seconds), "-J"], seconds)
    s = doc["end"]["sum"]
    got = s["packets"] - s["lost_packets"]
    return {"sent_mbit_s": round(s["bits_per_second"] / 1e6, 1),
            "received_mbit_s": round(got * UDP_LENGTH * 8 / s["seconds"] / 1e6, 1),
            "received_bytes": got * UDP_LENGTH, "loss_percent": round(s["lost_percent"], 2),
            "jitter_ms": round(s["jitter_ms"], 3)}


def bench_udp(burrow, d, prof):
    """iperf3 -u through a UDP forward (and its TCP control connection through a TCP forward on
    the same port number) beside iperf3 -u straight to the server, rates interleaved."""
    import udp_e2e
    port = harness.free_port_both()  # iperf3 -s listens on TCP and UDP
    srv = harness.spawn("iperf3-udp", ["iperf3", "-s", "-p", str(port), "-B", "127.0.0.1",
                                       "--forceflush"],
                        os.path.join(d, "iperf3-udp.log"))
    srv.wait_for(r"Server listening on", 10)
    wd = os.path.join(d, "udp")
    os.makedirs(wd, exist_ok=True)
    w = udp_e2e.UdpWorld(burrow, wd, iperf_port=port).start(verbose=False)
    pids = [w.procs["laptop"].pid, w.procs["nas"].pid]
    udp_iperf(w.fiperf, 10, 1)  # the first flow opens the session; then the agents go direct
    w.procs["laptop"].wait_for(r"path to nas: direct", DIRECT_TIMEOUT)
    ports = {"direct": port, "burrow": w.fiperf}
    runs = {str(rate): {sname: [] for sname in ports} for rate in prof.udp_rates}
    for rep in range(prof.reps):
        for rate in prof.udp_rates:
            for sname, p in ports.items():
                cpu0 = cpu_of(pids) if sname == "burrow" else 0.0
                try:
                    run_ = udp_iperf(p, rate, prof.udp_seconds)
                    if sname == "burrow" and run_["received_bytes"]:
                        run_["cpu_s_per_gb"] = round(
                            (cpu_of(pids) - cpu0) / (run_["received_bytes"] / 1e9), 2)
                except (RuntimeError, subprocess.SubprocessError, KeyError) as e:
                    run_ = {"error": why(e)}
                runs[str(rate)][sname].append(run_)
                say(f"udp {rate} Mbit/s {sname} run {rep + 1}: {run_}")
                time.sleep(0.5)
    status = w.status("laptop")
    path = ",".join(path_words(x.get("path")) for x in status.get("peers", [])) or "none"
    try:
        w.stop()  # asserts that each process exits 0 within 5 s of SIGTERM
        stop_error = None
    except AssertionError as e:
        stop_error = why(e)
        say(f"udp: the world did not stop cleanly: {stop_error}")
    srv.kill9()  # iperf3 -s exits 1 on SIGTERM ("interrupt"); nothing to check in it

    def med(rate, sname, key):
        xs = [x[key] for x in runs[rate][sname] if key in x]
        return median(xs) if xs else None
    keys = ("sent_mbit_s", "received_mbit_s", "loss_percent", "jitter_ms", "cpu_s_per_gb")
    return {"runs": runs, "seconds_per_run": prof.udp_seconds, "datagram_bytes": UDP_LENGTH,
            "path_at_end": path, "stop_error": stop_error,
            "median": {rate: {sname: {k: med(rate, sname, k) for k in keys} for sname in ports}
                       for rate in runs}}


def hold_connections(port, n):
    """n connections through port, each proven open end to end by a 1-byte echo."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(10)
        s.sendall(b"m")
        if s.recv(1) != b"m":
            raise RuntimeError("no echo through the forward")
        socks.append(s)
    return socks


def settle_rss(pids, seconds=1.0):
    time.sleep(seconds)  # RSS after the last allocation, not a synchronisation
    return [proc_rss_kib(p) for p in pids]


def bench_memory(ctx, prof):
    w = ctx["world"]
    out = {"idle_rss_kib_at_start": ctx["idle_rss"], "connections": prof.idle_conns}
    for name, port, pids, labels in (
            ("burrow", w.forwards["echo"], w.pids, ("laptop", "nas")),
            ("kcptun", ctx["kcp_echo"].local, ctx["kcp_echo"].pids, ("client", "server"))):
        before = settle_rss(pids)
        try:
            socks = hold_connections(port, prof.idle_conns)
        except (OSError, RuntimeError) as e:
            out[name] = {"error": f"{e.__class__.__name__}: {e}"}
            say(f"memory {name}: {out[name]['error']}")
            continue
        after = settle_rss(pids)
        for s in socks:
            s.close()
        out[name] = {lab: {"rss_before_kib": b, "rss_after_kib": a,
                           "kib_per_connection": round((a - b) / prof.idle_conns, 2)}
                     for lab, b, a in zip(labels, before, after)}
        say(f"memory {name}: {out[name]}")
    time.sleep(1.0)
    out["burrow_rss_kib_at_end"] = dict(zip(("laptop", "nas"), [proc_rss_kib(p) for p in w.pids]))
    return out


def bench_natlab(burrow, d, prof, natlab_json, natlab_source=None):
    out = {"loopback": {"first_byte_s": ROOT_TIMES.get("first_byte_s"),
                        "direct_after_s": ROOT_TIMES.get("direct_after_s")}}
    path = natlab_json
    script = os.path.join(ROOT, "tests", "natlab", "natlab.py")
    if not path and os.path.exists(script) and not prof.quick and os.geteuid() == 0:
        path = os.path.join(d, "natlab.json")
        say("natlab: running three NAT pairs for first byte and direct-path times")
        r = subprocess.run([sys.executable, script, burrow, "--pairs",
                            "none/none,portrestricted/portrestricted,portrestricted/symmetric",
                            "--json", path], capture_output=True, text=True, timeout=600)
        if not os.path.exists(path):
            out["natlab"] = {"error": f"natlab.py exit {r.returncode}: {r.stdout[-400:]}"}
            return out
    if path and os.path.exists(path):
        out["natlab_source"] = (natlab_source or f"{natlab_json} (--natlab-json)" if natlab_json
                                else "tests/natlab/natlab.py, run by this benchmark")
        with open(path) as f:
            out["natlab"] = [{k: r.get(k) for k in ("pair", "path", "first_byte_s",
                                                    "first_byte_from_start_s", "direct_after_s",
                                                    "transfer_s")} for r in json.load(f)]
    else:
        out["natlab"] = {"missing": "tests/natlab/ is not on this branch and no --natlab-json "
                                    "was given"}
    return out


ROOT_TIMES = {}


# ---------------------------------------------------------------- report

def machine():
    def sh(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""
    lscpu = sh(["lscpu"])
    keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
            "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor", "Virtualization type")
    cpu = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lscpu.splitlines()
                                             if ":" in line) if k.strip() in keep}
    mem = re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read())
    return {"lscpu": cpu, "kernel": os.uname().release,
            "mem_total_mib": int(mem.group(1)) // 1024 if mem else None,
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "iperf3": sh(["iperf3", "--version"]).splitlines()[0] if shutil.which("iperf3") else "",
            "kcptun": sh(["dpkg-query", "-W", "-f", "${Version}", "kcptun"]),
            "wireguard-go": sh(["dpkg-query", "-W", "-f", "${Version}", "wireguard-go"]),
            "nebula": sh(["dpkg-query", "-W", "-f", "${Version}", "nebula"]),
            "perf": sh(["dpkg-query", "-W", "-f", "${Version}", "linux-perf"]),
            "git": sh(["git", "-C", ROOT, "describe", "--always", "--dirty"])}


def fmt(x, unit="", nd=0):
    return "—" if x is None else f"{x:,.{nd}f}{unit}"


def fmt_count(x):
    """A count per GB: 4,019,398 -> '4.02 M', 41,200 -> '41.2 k'."""
    if x is None:
        return "—"
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k" if x >= 1e3 else f"{x:.0f}"


def tp_systems(t):
    """The throughput systems a report has (older reports: direct, burrow, kcptun)."""
    return t.get("systems") or [s for s in TP_SYSTEMS if s in t["median"]["single"]]


def fastest_kcptun(mm):
    """The kcptun configuration with the most Mbit/s in one mode's medians, or None."""
    have = [(mm[k]["mbit_s"], k) for k in KCPTUNS if k in mm and mm[k]["mbit_s"]]
    return max(have)[1] if have else None


def burrow_beside(mm, other):
    """The burrow figure to set beside `other`: on the same path (the veth for the peers in
    namespaces when burrow ran there too, else loopback)."""
    if other in PEERS and mm.get("burrow_veth", {}).get("mbit_s"):
        return "burrow_veth"
    return "burrow"


def ratio_to(mm, other):
    """(name, burrow Mbit/s / name's) in one mode's medians, burrow on the same path as name;
    other "kcptun" means the fastest kcptun configuration. (None, None) without both figures."""
    name = fastest_kcptun(mm) if other == "kcptun" else other
    b = burrow_beside(mm, name)
    if not name or name not in mm or b not in mm:
        return None, None
    b, o = mm[b]["mbit_s"], mm[name]["mbit_s"]
    return (name, b / o) if b and o else (name, None)


def write_markdown(path, r):
    m = r["machine"]
    L = ["# burrow benchmarks", "",
         f"One run of `{r['command']}` on {r['date']} (burrow {m['git']}, kcptun {m['kcptun']}, "
         + "".join(f"{k} {m[k]}, " for k in ("wireguard-go", "nebula") if m.get(k)) +
         f"{m['iperf3']}). Regenerate with `./run.sh bench`; `./run.sh bench --quick` is a "
         "one-run smoke version written to build/bench-quick/. Raw figures: "
         "[benchmarks.json](benchmarks.json); plot: [benchmarks.png](benchmarks.png).", "",
         "## Machine", "",
         "| | |", "|---|---|"]
    for k, v in m["lscpu"].items():
        L.append(f"| {k} | {v} |")
    L += [f"| Kernel | {m['kernel']} |", f"| Memory | {m['mem_total_mib']} MiB |",
          f"| Load average at start | {' '.join(m['loadavg'])} |",
          f"| Load average at end | {' '.join(r['loadavg_end'])} |", ""]
    if r.get("shared_note"):
        L += [r["shared_note"], ""]
    t = r.get("throughput")
    if t:
        systems = tp_systems(t)
        n_runs = len(t["runs"]["single"]["direct"])
        L += ["## Throughput (iperf3)", "",
              f"Median of {n_runs} interleaved runs of {t['seconds_per_run']} s, every system "
              "in the same run. Loopback: iperf3 over 127.0.0.1 through burrow (server and two "
              "agents, direct path) and kcptun (client and server). veth: "
              f"{t.get('peer_path', 'two network namespaces joined by a veth')}, through each "
              "tunnel's addresses (wireguard-go and Nebula each need a TUN device, hence the "
              "namespaces); direct TCP over each path is that path's ceiling, not a peer."
              + "".join(f" {LABELS[k]}'s interface MTU: {v}." for k, v in
                        t.get("tunnel_mtu", {}).items()), "",
              "| system | path | 1 stream | 8 streams (-P 8) | 1 each way (--bidir) |",
              "|---|---|---:|---:|---:|"]
        for s in systems:
            L.append(f"| {LABELS.get(s, s)} | {'veth' if s in PEERS else 'loopback'} | " +
                     " | ".join(fmt(t["median"][m][s]["mbit_s"], " Mbit/s") for m in MODES) +
                     " |")
        for other, label in (("kcptun", "fastest kcptun"), ("wireguard_go", "wireguard-go"),
                             ("nebula", "Nebula")):
            cells = []
            for m in MODES:
                name, x = ratio_to(t["median"][m], other)
                fec = {"kcptun": "FEC 10+3", "kcptun_nofec": "FEC off"}.get(name)
                cells.append(fmt(x, "x", 2) + (f" (vs {fec})" if other == "kcptun" and fec
                                               else ""))
            if any(c != "—" for c in cells):
                b = LABELS[burrow_beside(t["median"]["single"], other)]
                L.append(f"| **{b} / {label}** | | " + " | ".join(cells) + " |")
        L.append("")
        sc = t.get("syscalls_method")
        L += ["Cost per GB moved. CPU: user + system seconds of the tunnel's two processes "
              "(burrow: both agents; kcptun: client and server; wireguard-go, Nebula: both "
              "ends) per GB, from the runs above. Syscalls: "
              + (f"`perf stat -e raw_syscalls:sys_enter -p` on the same processes during a "
                 f"separate {t.get('syscall_seconds')} s run of each kind in the last round, so "
                 "that counting costs nothing in the figures above (repeated once when a "
                 "process made a thread during it: `perf stat -p` does not follow new "
                 "threads); * marks a lower bound, a new thread in the repeat too." if sc else
                 f"not counted: {t.get('syscalls_skipped') or 'not measured in this run'}."), "",
              "| system | CPU s/GB, 1 stream | -P 8 | --bidir | syscalls/GB, 1 stream | -P 8 "
              "| --bidir |", "|---|---:|---:|---:|---:|---:|---:|"]
        for s in systems:
            if s.startswith("direct"):
                continue
            med = t["median"]
            L.append(f"| {LABELS.get(s, s)} | " +
                     " | ".join(fmt(med[m][s]["cpu_s_per_gb"], "", 1) for m in MODES) + " | " +
                     " | ".join(fmt_count(med[m][s].get("syscalls_per_gb"))
                                + ("*" if med[m][s].get("syscalls_lower_bound") else "")
                                for m in MODES) + " |")
        L.append("")
        for s, why_ in t.get("skipped", {}).items():
            L.append(f"- **{LABELS.get(s, s)} not measured:** {why_}")
        runs_of = lambda m, s: (t["runs"][m].get(s, [])  # noqa: E731
                                + t.get("syscall_runs", {}).get(m, {}).get(s, []))
        for k, v in t.get("failed_runs", {}).items():
            m, s = k.split()
            errs = sorted({x["error"][:120] for x in runs_of(m, s) if "error" in x})
            L.append(f"- **{m} {LABELS.get(s, s)}: {v} of {len(runs_of(m, s))} runs failed** "
                     f"(left out of the median): {'; '.join(errs)}")
        if r.get("burrow_restarts"):
            L.append(f"- burrow's server and agents were restarted {len(r['burrow_restarts'])} "
                     "time(s) after a failed run, so that later runs start from a fresh "
                     "session (see Notes).")
        for x in r.get("tunnel_restarts", []):
            L.append(f"- restarted after a failed run: {x[:160]}")
        if (t.get("failed_runs") or r.get("burrow_restarts") or t.get("skipped")
                or r.get("tunnel_restarts")):
            L.append("")
    lo = r.get("loss")
    if lo and "median" in lo:
        lsys = lo.get("systems", SYSTEMS)
        tcp = "burrow_tcp" in lsys
        llab = dict(LABELS, direct="plain TCP",
                    **({"burrow": "burrow (direct UDP path)"} if tcp else {}))
        L += ["## Goodput under random loss", "",
              f"One iperf3 stream for {lo['seconds_per_run']} s over a {lo['link']}. "
              "The loss applies to the tunnel's UDP datagrams (burrow, kcptun) or to the TCP "
              "segments (plain TCP" + (", burrow's direct TCP path" if tcp else "") +
              "), both directions; medians of "
              f"{len(lo['runs']['0.0']['direct'])} interleaved runs. In brackets: share of the "
              "same system's loss-free goodput.", ""]
        if tcp:
            paths = sorted({r.get("path_after", "").split(" ")[0] for p in lo["runs"].values()
                            for r in p["burrow_tcp"] if r.get("path_after")})
            L += ["burrow (direct TCP path) is a second server and agent pair on the same link "
                  "whose agents' UDP is dropped, so they punch a direct TCP path (issue 15; "
                  "path after each run: " + (", ".join(paths) or "none recorded") +
                  (f", up {lo['direct_tcp_after_s']} s after the first connection"
                   if lo.get("direct_tcp_after_s") is not None else "") + "). On a TCP path "
                  "the session neither retransmits nor runs its own congestion control (TCP "
                  "does, and two would fight: TCP over TCP), so loss recovery there is TCP's, "
                  "as for plain TCP; on the UDP path it is the session's own.", ""]
        L += ["| loss | " + " | ".join(llab.get(s, s) for s in lsys) + " |",
              "|---|" + "---:|" * len(lsys)]
        for p, s in lo["median"].items():
            L.append(f"| {float(p):.0%} | " + " | ".join(
                f"{fmt(s.get(x), ' Mbit/s', 1)} "
                f"({fmt(s.get(x + '_share') and s[x + '_share'] * 100, '%')})"
                for x in lsys) + " |")
        for x in lo.get("errors", []):
            L += ["", f"- **failed**: {x[:300]}"]
        for x in lo.get("kcptun_restarts", []):
            L += ["", f"- restarted after a failed run: {x[:160]}"]
        L.append("")
    elif lo:
        L += ["## Goodput under random loss", "", f"Skipped: {lo.get('skipped')}", ""]
    la = r.get("latency")
    if la:
        L += ["## Latency (64-byte request/response on one connection)", "",
              f"Round trips for {la['seconds_each']} s each; the last round shown "
              "(all rounds in the JSON). " + la["note"] + ".", "",
              "| path | round trips | p50 | p99 | max | bulk beside it |",
              "|---|---:|---:|---:|---:|---:|"]
        for k, v in la["summary"].items():
            bulk = ("—" if "under load" not in k else
                    fmt(v.get("bulk_mbit_s"), " Mbit/s") if "bulk_error" not in v else
                    f"failed: {v['bulk_error'][:60]}")
            if "error" in v:
                L.append(f"| {k} | failed: {v['error'][:70]} | | | | {bulk} |")
                continue
            L.append(f"| {k} | {v['n']:,} | {fmt(v['p50_us'], ' µs')} | "
                     f"{fmt(v['p99_us'], ' µs')} | {fmt(v['max_us'] / 1000, ' ms', 1)} | "
                     f"{bulk} |")
        L.append("")
    c = r.get("connrate")
    if c:
        L += ["## Connection rate", "",
              f"{c['workers']} client processes, each: connect, send 100 B, read 100 B, close; "
              f"{c['seconds_per_run']} s per run, medians. The echo server is one Python "
              "epoll loop.", "", "| path | connections/s | errors (all runs) |", "|---|---:|---:|"]
        for s in SYSTEMS:
            L.append(f"| {s} | {fmt(c['median'][s])} | {sum(x['errors'] for x in c['runs'][s])} |")
        L.append("")
    u = r.get("udp")
    if u:
        L += ["## UDP forwarding (iperf3 -u)", "",
              f"{u['datagram_bytes']}-byte datagrams for {u['seconds_per_run']} s per run at each "
              "offered rate, straight to the iperf3 server and through a UDP forward (path at the "
              f"end: {u['path_at_end']}); medians. Received rate and loss as the iperf3 server "
              "counted them; CPU of both agents per GB received."
              + (f" Measured separately: {u['measured']}." if u.get("measured") else ""), "",
              "| offered | direct: received | loss | burrow: received | loss | jitter | "
              "CPU s/GB |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for rate, v in u["median"].items():
            dv, bv = v["direct"], v["burrow"]
            L.append(f"| {rate} Mbit/s | {fmt(dv['received_mbit_s'], ' Mbit/s', 1)} | "
                     f"{fmt(dv['loss_percent'], '%', 2)} | "
                     f"{fmt(bv['received_mbit_s'], ' Mbit/s', 1)} | "
                     f"{fmt(bv['loss_percent'], '%', 2)} | {fmt(bv['jitter_ms'], ' ms', 3)} | "
                     f"{fmt(bv['cpu_s_per_gb'], '', 1)} |")
        errs = sorted({x["error"][:120] for rv in u["runs"].values() for xs in rv.values()
                       for x in xs if "error" in x})
        if errs:
            L.append(f"- failed runs (left out of the medians): {'; '.join(errs)}")
        if u.get("stop_error"):
            L.append(f"- the server and agents did not stop cleanly: {u['stop_error'][:160]}")
        L.append("")
    mm = r.get("memory")
    if mm:
        idle = mm["idle_rss_kib_at_start"]
        L += ["## Memory", "",
              f"Agent RSS after start and one connection: laptop {idle['laptop'] / 1024:.1f} MiB, "
              f"nas {idle['nas'] / 1024:.1f} MiB. Increase with {mm['connections']} idle "
              "forwarded connections (each proven open by a 1-byte echo):", "",
              "| process | RSS before | RSS after | per connection |", "|---|---:|---:|---:|"]
        for sysname in ("burrow", "kcptun"):
            if "error" in mm[sysname]:
                L.append(f"| {sysname} | failed: {mm[sysname]['error'][:80]} | | |")
                continue
            for lab, v in mm[sysname].items():
                L.append(f"| {sysname} {lab} | {v['rss_before_kib'] / 1024:.1f} MiB | "
                         f"{v['rss_after_kib'] / 1024:.1f} MiB | "
                         f"{v['kib_per_connection']:.2f} KiB |")
        L.append("")
    n = r.get("natlab")
    if n:
        lb = n["loopback"]
        L += ["## Time to first byte and to the direct path", "",
              f"Loopback (this run): first echoed byte {fmt(lb['first_byte_s'] and lb['first_byte_s'] * 1000, ' ms')} "
              "after the first connect (the session is opened on demand, relay first); "
              f"laptop logs the direct path {fmt(lb['direct_after_s'] and lb['direct_after_s'] * 1000, ' ms')} "
              "after that connect.", ""]
        nl = n.get("natlab")
        if isinstance(nl, list):
            L += [f"Behind the NAT lab's real NATs (from {n.get('natlab_source')}):", "",
                  "| NAS / laptop | path | first byte | direct after |", "|---|---|---:|---:|"]
            for x in nl:
                L.append(f"| {x['pair']} | {x['path']} | {fmt(x['first_byte_s'], ' s', 3)} | "
                         f"{fmt(x['direct_after_s'], ' s', 3)} |")
        elif nl:
            L.append(f"NAT lab: {next(iter(nl.values()))}.")
        L.append("")
    if r.get("targets"):
        L += ["## Targets (issues 8 and 14)", "", "| target | figure | met |", "|---|---|---|"]
        for tname, fig, ok in r["targets"]:
            L.append(f"| {tname} | {fig} | {'yes' if ok else ('no' if ok is False else '—')} |")
        L.append("")
    if r.get("closing_note"):
        L += ["## Notes", "", r["closing_note"], ""]
    with open(path, "w") as f:
        f.write("\n".join(L))


# burrow's syscalls per GB before issue 14 (c58a7b0: one sendmsg per datagram on one side, one
# recvmsg and one TCP write per datagram on the other), one iperf3 stream on loopback, median of
# quick runs on the 2-core machine: the base of issue 14's "at least 10x fewer syscalls per GB".
SYSCALLS_PER_GB_BEFORE_14 = 4.0e6


def targets(r):
    out = []
    t = r.get("throughput", {}).get("median")
    if t:
        nofig = "no figure (every run failed: see the throughput section)"
        for mode, label in (("single", "single stream"), ("parallel8", "-P 8"),
                            ("bidir", "--bidir")):
            name, x = ratio_to(t[mode], "kcptun")
            out.append((f"{label} >= 2x the fastest kcptun"
                        + (" (stretch 4x)" if mode == "single" else ""),
                        f"{x:.2f}x of {LABELS[name]} at {t[mode][name]['mbit_s']:,.0f} Mbit/s"
                        if x is not None else nofig, x >= 2 if x is not None else None))
        one = t["single"]
        skipped = r["throughput"].get("skipped", {})
        for peer in ("wireguard_go", "nebula"):
            if peer not in one:
                out.append((f"single stream ahead of {LABELS[peer]}",
                            f"not measured: {skipped.get(peer, 'not in this run')[:100]}", None))
                continue
            _, x = ratio_to(one, peer)
            b = burrow_beside(one, peer)
            out.append((f"single stream ahead of {LABELS[peer]}",
                        f"{LABELS[b]} {one[b]['mbit_s']:,.0f} vs {one[peer]['mbit_s']:,.0f} "
                        f"Mbit/s ({x:.2f}x)" if x is not None else nofig,
                        x > 1 if x is not None else None))
        k = fastest_kcptun(one)
        if k and one["burrow"]["cpu_s_per_gb"] and one[k]["cpu_s_per_gb"]:
            b, o = one["burrow"]["cpu_s_per_gb"], one[k]["cpu_s_per_gb"]
            out.append(("CPU s/GB (single stream) <= 1/3 of the fastest kcptun's",
                        f"{b:.1f} vs {o:.1f} of {LABELS[k]}", b <= o / 3))
        sc = one["burrow"].get("syscalls_per_gb")
        if sc:
            out.append(("syscalls/GB (single stream) 10x fewer than before issue 14",
                        f"{fmt_count(sc)} vs {fmt_count(SYSCALLS_PER_GB_BEFORE_14)} "
                        f"({SYSCALLS_PER_GB_BEFORE_14 / sc:.1f}x fewer)",
                        sc <= SYSCALLS_PER_GB_BEFORE_14 / 10))
    lo = r.get("loss", {}).get("median")
    if lo:
        for p, need in (("0.01", 0.90), ("0.05", 0.75)):
            share = lo[p]["burrow_share"]
            out.append((f"goodput at {float(p):.0%} loss >= {need:.0%} of loss-free",
                        fmt(share and share * 100, "%"), share is not None and share >= need))
    la = r.get("latency", {}).get("summary")
    if la:
        idle, load = la["burrow idle"]["p99_us"], la["burrow under load"]["p99_us"]
        ran = "bulk_mbit_s" in la["burrow under load"] and idle and load
        # Issue 14's bar (issue 8 allowed 10 ms).
        out.append(("p99 under bulk <= idle p99 + 5 ms",
                    (f"{load / 1000:.1f} ms vs {idle / 1000:.1f} ms + 5 ms" if ran else
                     "no figure: the bulk transfer or the interactive connection failed"),
                    load <= idle + 5000 if ran else None))
    c = r.get("connrate", {}).get("median")
    if c:
        out.append((">= 3000 forwarded connections/s", fmt(c["burrow"], "/s"),
                    c["burrow"] is not None and c["burrow"] >= 3000))
    mm = r.get("memory")
    if mm and "error" not in mm["burrow"]:
        per = max(v["kib_per_connection"] for v in mm["burrow"].values())
        out.append(("<= 4 KiB RSS per idle forwarded connection (worse agent)",
                    f"{per:.2f} KiB", per <= 4))
        idle = max(mm["idle_rss_kib_at_start"].values()) / 1024
        out.append(("agent idle RSS < 10 MB", f"{idle:.1f} MiB", idle * 1.048576 < 10))
    return out


def plot(path, r):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("no matplotlib (Debian python3-matplotlib): no plot")
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    t = r.get("throughput")
    if t:
        modes = list(MODES)
        systems = tp_systems(t)
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            off = (i - (len(systems) - 1) / 2) * width
            vals = [t["median"][m][s]["mbit_s"] or 0 for m in modes]
            a1.bar([j + off for j in range(len(modes))], vals, width,
                   label=LABELS.get(s, s), hatch="//" if s in PEERS else None)
            for j, v in enumerate(vals):
                if v:
                    a1.text(j + off, v, f"{v:,.0f}", ha="center", va="bottom",
                            fontsize="xx-small", rotation=90)
        a1.set_xticks(range(len(modes)), ["1 stream", "8 streams", "bidir"])
        a1.set_ylabel("Mbit/s (median; log scale)")
        a1.set_yscale("log")
        top = max((t["median"][m][s]["mbit_s"] or 0) for m in modes for s in systems)
        a1.set_ylim(10, max(top, 10) * 30)  # room above the bars for the legend
        a1.set_title("iperf3 throughput (loopback; hatched: over a veth)")
        a1.legend(fontsize="x-small", ncol=3, loc="upper center")
    la = r.get("latency")
    if la:
        for name, xs in la["cdf_us"].items():
            xs = sorted(xs)
            a2.plot([x / 1000 for x in xs], [(i + 1) / len(xs) for i in range(len(xs))],
                    label=name)
        a2.set_xscale("log")
        a2.set_xlabel("64-byte round trip, ms (log)")
        a2.set_ylabel("fraction of round trips")
        a2.set_title("latency CDF")
        a2.legend(fontsize="small")
    else:
        a2.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "_echo":
        return echo_server(int(sys.argv[2]))
    if len(sys.argv) >= 2 and sys.argv[1] == "_bulk":
        return bulk_client(int(sys.argv[2]), float(sys.argv[3]))
    if len(sys.argv) >= 2 and sys.argv[1] == "_connclient":
        return conn_client(int(sys.argv[2]), float(sys.argv[3]))
    if len(sys.argv) >= 2 and sys.argv[1] == "_reach":
        return reach_client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--burrow", default=os.path.join(ROOT, "build", "burrow"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--natlab-json")
    ap.add_argument("--natlab-source", help="where the --natlab-json file came from (for the doc)")
    ap.add_argument("--keep", action="store_true", help="keep the logs' folder")
    ap.add_argument("--render", metavar="JSON", help="only rewrite the .md and .png from JSON")
    opts = ap.parse_args()
    if opts.render:
        return render(opts.render, opts.out or os.path.dirname(os.path.abspath(opts.render)))
    only = opts.only.split(",")
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section {', '.join(bad)}; known: {', '.join(SECTIONS)}")
    for tool in ("iperf3", "kcptun-client", "kcptun-server"):
        if not shutil.which(tool):
            print(f"bench: {tool} not found (./run.sh deps installs it)", file=sys.stderr)
            return 2
    burrow = os.path.abspath(opts.burrow)
    out_dir = opts.out or (os.path.join(ROOT, "build", "bench-quick") if opts.quick
                           else os.path.join(ROOT, "docs"))
    os.makedirs(out_dir, exist_ok=True)
    prof = Profile(opts.quick)
    # 1000 idle connections hold ~2000 descriptors in each agent and in us: raise the soft limit
    # to the hard one; children inherit it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal_exit()
    report = {"command": "./run.sh bench" + (" --quick" if opts.quick else "")
              + (f" --only {opts.only}" if opts.only != ",".join(SECTIONS) else ""),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine(), "quick": opts.quick}
    remove_orphaned_dirs()
    d = tempfile.mkdtemp(prefix=f"burrow-bench-{os.getpid()}-")
    started = time.monotonic()
    try:
        ctx = {"iperf_port": harness.free_port(), "echo_port": harness.free_port()}
        ctx["iperf_srv"] = IperfServer(d, "iperf3", ctx["iperf_port"])
        harness.spawn("echo", [sys.executable, __file__, "_echo", str(ctx["echo_port"])],
                      os.path.join(d, "echo.log"))
        harness.wait_until(lambda: accepts(ctx["echo_port"]), 10, "the echo server to listen")
        need_loopback = any(s in only for s in ("throughput", "latency", "connrate", "memory",
                                                "natlab"))
        if need_loopback:
            ctx["burrow"], ctx["d"], ctx["restarts"] = burrow, d, []
            w = start_burrow(ctx)
            ROOT_TIMES.update(w.first_times)
            ctx["idle_rss"] = dict(zip(("laptop", "nas"), settle_rss(w.pids)))
            ctx["kcp_iperf"] = Kcptun(d, "kcptun-iperf", ctx["iperf_port"])
            ctx["kcp_iperf_nofec"] = Kcptun(d, "kcptun-nofec-iperf", ctx["iperf_port"],
                                            fec=False)
            ctx["kcp_echo"] = Kcptun(d, "kcptun-echo", ctx["echo_port"])
            for k in ("kcp_iperf", "kcp_iperf_nofec", "kcp_echo"):
                ctx[k].wait()
            say(f"burrow up: first byte {ROOT_TIMES['first_byte_s']} s, direct after "
                f"{ROOT_TIMES['direct_after_s']} s; idle RSS {ctx['idle_rss']} KiB")
        if "memory" in only:  # first: later transfers leave freed heap that hides growth
            report["memory"] = bench_memory(ctx, prof)
        if "throughput" in only:
            report["throughput"] = bench_throughput(ctx, prof)
        if "latency" in only:
            report["latency"] = bench_latency(ctx, prof)
        if "connrate" in only:
            report["connrate"] = bench_connrate(ctx, prof)
        if "udp" in only:
            report["udp"] = bench_udp(burrow, d, prof)
        if "loss" in only:
            report["loss"] = bench_loss(burrow, d, prof)
        if "natlab" in only:
            report["natlab"] = bench_natlab(burrow, d, prof, opts.natlab_json, opts.natlab_source)
        report["burrow_restarts"] = ctx.get("restarts", [])
        report["tunnel_restarts"] = ctx.get("tunnel_restarts", [])
        report["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        report["seconds"] = round(time.monotonic() - started)
        report["shared_note"] = shared_note(report)
        report["targets"] = targets(report)
        with open(os.path.join(out_dir, "benchmarks.json"), "w") as f:
            json.dump(report, f, indent=1)
        render(os.path.join(out_dir, "benchmarks.json"), out_dir)
        say(f"done in {report['seconds']} s: {out_dir}/benchmarks.md, .json, .png")
        for tname, fig, ok in report["targets"]:
            say(f"target {tname}: {fig} "
                f"({'met' if ok else 'MISSED' if ok is False else 'no figure'})")
        return 0
    except BaseException:
        import traceback
        traceback.print_exc()
        harness._cleanup(True)
        return 1
    finally:
        harness._cleanup(False)
        if opts.keep:
            open(os.path.join(d, KEPT), "w").close()
            say(f"logs kept in {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)


KEPT = "KEPT"  # in a folder kept with --keep: remove_orphaned_dirs() leaves it alone


def remove_orphaned_dirs():
    """The folders (keys, logs, iperf3 output) of benches killed with SIGKILL, which could not
    remove them: burrow-bench-PID-* whose PID is gone, unless kept with --keep."""
    import glob
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "burrow-bench-*-*")):
        m = re.match(r"burrow-bench-(\d+)-", os.path.basename(path))
        if (m and not os.path.exists(f"/proc/{m.group(1)}")
                and not os.path.exists(os.path.join(path, KEPT))):
            shutil.rmtree(path, ignore_errors=True)


def render(json_path, out_dir):
    """benchmarks.md and benchmarks.png from the raw figures, with the hand-written analysis
    (profiles of missed targets) from benchmarks-notes.md beside them when it exists."""
    with open(json_path) as f:
        report = json.load(f)
    report["targets"] = targets(report)  # from the figures, with this file's targets
    note_path = os.path.join(out_dir, "benchmarks-notes.md")
    if os.path.exists(note_path):
        with open(note_path) as f:
            report["closing_note"] = f.read().strip()
    write_markdown(os.path.join(out_dir, "benchmarks.md"), report)
    plot(os.path.join(out_dir, "benchmarks.png"), report)
    return 0


def shared_note(r):
    load = max(float(x) for x in r["machine"]["loadavg"] + r["loadavg_end"])
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        return (f"**Shared machine:** the load average reached {load:.1f} on {cpus} CPUs during "
                "this run (other builds and tests ran beside it), so absolute figures are low "
                "and noisy; the interleaved runs keep the comparison between systems fair.")
    return ""


def signal_exit():
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


if __name__ == "__main__":
    sys.exit(main() or 0)
