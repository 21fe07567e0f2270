#!/usr/bin/env python3
"""E2E checks of UDP forwards (`protocol = "udp"`, issue 20) with the real binary on 127.0.0.1:
a server, agents "nas" and "laptop", real UDP programs behind nas, clients through laptop.

Usage: udp_e2e.py BURROW_BINARY CASE
  CASE: dns | flows | iperf | toolarge

The world:
  server   agents nas, laptop; allow laptop -> nas {dns, echo, iperf, iperf-ctl}
  nas      exposes dns   (udp) -> 127.0.0.1:DNS    (dnsmasq, case dns)
           exposes echo  (udp) -> 127.0.0.1:ECHO   (a Python UDP echo server)
           exposes iperf (udp) and iperf-ctl (tcp) -> 127.0.0.1:IPERF (iperf3 -s, case iperf)
  laptop   forwards udp 127.0.0.1:FDNS -> nas/dns, udp FECHO -> nas/echo, and on one port
           number FIPERF both udp -> nas/iperf and tcp -> nas/iperf-ctl (iperf3 -u needs its
           TCP control connection too)

dns       dnsmasq answers example.test with 192.0.2.7; `dig` through the forward gets it, and
          `burrow status --json` on both sides shows the flow and its datagrams each way.
flows     50 client sockets at once (50 source ports), each sends its own payload three times;
          each gets exactly its own payload back, byte for byte; both sides show 50 flows.
iperf     `iperf3 -u -b 50M -t 3 -l 1200` direct, then through the forward: loss and jitter of
          both are printed; the forward must lose less than 5% on loopback.
toolarge  a datagram larger than the session's max datagram size is dropped and counted
          (status: drops.too_large), never fragmented: nothing comes back for it, while a
          datagram of exactly the max size and a small one both come back whole.
"""
import json, os, re, shutil, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import wait_until  # noqa: E402

USAGE = __doc__.split("\n\n")[1]
REGISTER_TIMEOUT = 15.0
ANSWER_TIMEOUT = 2.0  # s per try: loopback answers in well under a millisecond


class EchoServer:
    """A UDP echo server on 127.0.0.1 in a thread: every datagram goes back to its sender."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.senders = set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            self.senders.add(addr)
            self.sock.sendto(data, addr)

    def close(self):
        self.sock.close()


class UdpWorld(harness.ConfigDir):
    def __init__(self, burrow, d, dns_port=None, echo_port=None, iperf_port=None):
        self.burrow, self.d = burrow, d
        self.tcp, self.stun1, self.stun2 = (harness.free_port(),
                                            *harness.free_ports(2, socket.SOCK_DGRAM))
        self.laptop_admin, self.nas_admin = harness.free_ports(2)
        self.fdns, self.fecho = harness.free_ports(2, socket.SOCK_DGRAM)
        self.fiperf = harness.free_port_both()  # a UDP and a TCP forward share it
        self.keys = {n: harness.keygen(burrow, self.path(f"{n}.key")) for n in ("nas", "laptop")}
        self.write("server.toml", harness.server_toml(
            "127.0.0.1", self.tcp, (self.stun1, self.stun2), self.keys,
            [("laptop", "nas", ["dns", "echo", "iperf", "iperf-ctl"])]))
        self.fingerprint = harness.fingerprint(burrow, self.path("server.toml"))
        # Targets nobody listens on are fine: a case only uses its own.
        dns_port = dns_port or harness.free_port(socket.SOCK_DGRAM)
        echo_port = echo_port or harness.free_port(socket.SOCK_DGRAM)
        iperf_port = iperf_port or harness.free_port_both()
        self.write("nas.toml", self.header("nas", self.nas_admin) + f"""
[[expose]]
service = "dns"
protocol = "udp"
target = "127.0.0.1:{dns_port}"
allow = ["laptop"]

[[expose]]
service = "echo"
protocol = "udp"
target = "127.0.0.1:{echo_port}"
allow = ["laptop"]

[[expose]]
service = "iperf"
protocol = "udp"
target = "127.0.0.1:{iperf_port}"
allow = ["laptop"]

[[expose]]
service = "iperf-ctl"
target = "127.0.0.1:{iperf_port}"
allow = ["laptop"]
""")
        self.write("laptop.toml", self.header("laptop", self.laptop_admin) + f"""
[[forward]]
listen = "127.0.0.1:{self.fdns}"
protocol = "udp"
peer = "nas"
service = "dns"

[[forward]]
listen = "127.0.0.1:{self.fecho}"
protocol = "udp"
peer = "nas"
service = "echo"

[[forward]]
listen = "127.0.0.1:{self.fiperf}"
protocol = "udp"
peer = "nas"
service = "iperf"

[[forward]]
listen = "127.0.0.1:{self.fiperf}"
peer = "nas"
service = "iperf-ctl"
""")
        self.procs = {}

    def header(self, name, admin):
        return harness.agent_header(name, f"127.0.0.1:{self.tcp}", self.fingerprint,
                                    f"127.0.0.1:{admin}")

    def start(self, verbose=True):
        """verbose: the agents log at debug level (the cases read flow lines from the logs;
        the benchmark does not, and keeps the hot path free of formatting)."""
        p = harness.spawn("server", [self.burrow, "server", "-c", self.path("server.toml")],
                          self.path("server.log"))
        p.wait_for(r"listening on")
        self.procs["server"] = p
        for name in ("nas", "laptop"):
            self.procs[name] = harness.spawn(
                name, [self.burrow, "agent", *(["-v"] if verbose else []), "-c",
                       self.path(f"{name}.toml")],
                self.path(f"{name}.log"))
        for name in ("nas", "laptop"):
            self.procs[name].wait_for(rf"registered with the server as {name}\b",
                                      REGISTER_TIMEOUT)
        for port in (self.fdns, self.fecho, self.fiperf):
            self.procs["laptop"].wait_for(rf"udp forward 127\.0\.0\.1:{port} -> nas/\S+ listening")
        return self

    def stop(self):
        for name in ("laptop", "nas", "server"):
            if name in self.procs:
                self.procs[name].stop()

    def status(self, name):
        admin = self.laptop_admin if name == "laptop" else self.nas_admin
        r = subprocess.run([self.burrow, "status", "--admin", f"127.0.0.1:{admin}", "--json"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r
        return json.loads(r.stdout)

    def table(self, name):
        admin = self.laptop_admin if name == "laptop" else self.nas_admin
        r = subprocess.run([self.burrow, "status", "--admin", f"127.0.0.1:{admin}"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r
        return r.stdout

    def forward_udp(self, port):
        for f in self.status("laptop")["forwards"]:
            if f["listen"] == f"127.0.0.1:{port}" and f.get("protocol") == "udp":
                return f["udp"]
        raise AssertionError(f"no udp forward on {port} in laptop's status")

    def expose_udp(self, service):
        for e in self.status("nas")["exposes"]:
            if e["service"] == service:
                assert e.get("protocol") == "udp", e
                return e["udp"]
        raise AssertionError(f"no service {service} in nas's status")


def ask(sock, payload, port, tries=3):
    """Sends payload to 127.0.0.1:port from sock until an answer comes (UDP may lose the first
    while the session comes up); returns the answer."""
    sock.settimeout(ANSWER_TIMEOUT)
    for _ in range(tries):
        sock.sendto(payload, ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
            return data
        except socket.timeout:
            continue
    raise AssertionError(f"no answer through 127.0.0.1:{port} after {tries} tries")


# ---- dns ----

def case_dns(burrow, d):
    dnsmasq = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq"
                                          if os.path.exists("/usr/sbin/dnsmasq") else None)
    dig = shutil.which("dig")
    if not dnsmasq or not dig:
        print("SKIP: dnsmasq and dig are needed (apt-get install dnsmasq bind9-dnsutils)",
              file=sys.stderr)
        return harness.SKIP
    port = harness.free_port(socket.SOCK_DGRAM)
    dns = harness.spawn("dnsmasq", [dnsmasq, "--no-daemon", "--no-resolv", "--no-hosts",
                                    "--address=/example.test/192.0.2.7", f"--port={port}",
                                    "--listen-address=127.0.0.1", "--bind-interfaces",
                                    "--log-queries", "--log-facility=-",
                                    f"--pid-file={os.path.join(d, 'dnsmasq.pid')}"],
                        os.path.join(d, "dnsmasq.log"))
    # Direct first: dnsmasq answers (and the comparison below means something).
    direct = wait_until(lambda: _dig(dig, port, "example.test"), 10, "dnsmasq to answer")
    assert direct == "192.0.2.7", direct
    w = UdpWorld(burrow, d, dns_port=port).start()
    answer = _dig(dig, w.fdns, "example.test", tries=3)
    assert answer == "192.0.2.7", f"dig through the forward: {answer!r}\n" + harness.tail(
        w.procs["laptop"].log())
    # A second name and a second query: dnsmasq saw them come through.
    assert _dig(dig, w.fdns, "www.example.test") == "192.0.2.7"
    assert dns.count(r"query\[A\] www\.example\.test") >= 1, dns.log()
    fw = w.forward_udp(w.fdns)
    ex = w.expose_udp("dns")
    print(f"laptop forward: {json.dumps(fw)}\nnas service: {json.dumps(ex)}")
    assert fw["flows"] >= 2 and fw["active_flows"] >= 1, fw  # dig uses a new port per run
    assert fw["datagrams_in"] >= 2 and fw["datagrams_out"] >= 2, fw
    assert ex["datagrams_in"] >= 2 and ex["datagrams_out"] >= 2, ex
    assert fw["max_datagram"] > 1000, fw
    assert fw["dropped"] == 0, fw
    table = w.table("laptop")
    print(table)
    assert re.search(rf"forward 127\.0\.0\.1:{w.fdns} -> nas/dns\s+\d+/256", table), table
    w.stop()


def _dig(dig, port, name, tries=1):
    r = subprocess.run([dig, "@127.0.0.1", "-p", str(port), name, "A", "+short", "+time=2",
                        f"+tries={tries}"], capture_output=True, text=True, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else None


# ---- flows ----

FLOWS = 50
ROUNDS = 3


def case_flows(burrow, d):
    echo = EchoServer()
    w = UdpWorld(burrow, d, echo_port=echo.port).start()
    socks = []
    try:
        for i in range(FLOWS):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        payloads = [[os.urandom(16) + f"client {i} round {r} ".encode() + os.urandom(900)
                     for r in range(ROUNDS)] for i in range(FLOWS)]
        # Every client sends at once (the first round arrives while the session comes up), then
        # each collects its answer, resending what went unanswered.
        for r in range(ROUNDS):
            for i, s in enumerate(socks):
                s.sendto(payloads[i][r], ("127.0.0.1", w.fecho))
            for i, s in enumerate(socks):
                s.settimeout(ANSWER_TIMEOUT)
                for attempt in range(3):
                    try:
                        data, src = s.recvfrom(65535)
                        break
                    except socket.timeout:
                        s.sendto(payloads[i][r], ("127.0.0.1", w.fecho))
                else:
                    raise AssertionError(f"client {i} got no answer in round {r}")
                assert src == ("127.0.0.1", w.fecho), src
                assert data == payloads[i][r], (
                    f"client {i} round {r} got {len(data)} bytes that are not its own payload: "
                    f"{data[:40]!r}")
        # Each client is its own flow on both sides (the echo server saw one sender per flow).
        fw = w.forward_udp(w.fecho)
        ex = w.expose_udp("echo")
        print(f"laptop forward: {json.dumps(fw)}\nnas service: {json.dumps(ex)}")
        assert fw["active_flows"] == FLOWS and fw["flows"] == FLOWS, fw
        assert ex["active_flows"] == FLOWS and ex["flows"] == FLOWS, ex
        assert len(echo.senders) == FLOWS, echo.senders
        assert fw["datagrams_out"] >= FLOWS * ROUNDS, fw
        assert fw["dropped"] == 0 and ex["dropped"] == 0, (fw, ex)
    finally:
        for s in socks:
            s.close()
        echo.close()
    w.stop()


# ---- iperf ----

IPERF_RATE = "50M"
IPERF_SECONDS = 3
IPERF_LENGTH = 1200  # below the session's max datagram; iperf3 would take loopback's MTU
MAX_LOSS_PERCENT = 5.0


def case_iperf(burrow, d):
    iperf3 = shutil.which("iperf3")
    if not iperf3:
        print("SKIP: iperf3 is needed (apt-get install iperf3)", file=sys.stderr)
        return harness.SKIP
    port = harness.free_port_both()  # iperf3 -s listens on TCP and UDP
    harness.spawn("iperf3", [iperf3, "-s", "-p", str(port), "-B", "127.0.0.1"],
                  os.path.join(d, "iperf3.log"))
    wait_until(lambda: harness.accepts(port), 10, "iperf3 -s to listen")
    direct = _iperf(iperf3, port)
    w = UdpWorld(burrow, d, iperf_port=port).start()
    through = _iperf(iperf3, w.fiperf)
    print(f"direct:  loss {direct[0]:.2f}% ({direct[2]} of {direct[3]}), jitter "
          f"{direct[1]:.3f} ms")
    print(f"burrow:  loss {through[0]:.2f}% ({through[2]} of {through[3]}), jitter "
          f"{through[1]:.3f} ms")
    fw = w.forward_udp(w.fiperf)
    print(f"laptop forward: {json.dumps(fw)}")
    assert through[3] > 1000, through  # 50 Mbit/s of 1200-byte datagrams for 3 s is ~15,600
    assert through[0] < MAX_LOSS_PERCENT, (
        f"{through[0]:.2f}% lost through the forward (limit {MAX_LOSS_PERCENT}%)")
    w.stop()


def _iperf(iperf3, port):
    """(lost percent, jitter ms, lost, total) as the iperf3 server reported them."""
    for attempt in range(3):
        r = subprocess.run([iperf3, "-c", "127.0.0.1", "-p", str(port), "-u", "-b", IPERF_RATE,
                            "-t", str(IPERF_SECONDS), "-l", str(IPERF_LENGTH), "-J"],
                           capture_output=True, text=True, timeout=60)
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = {}
        if r.returncode == 0 and "end" in out:
            s = out["end"]["sum"]
            return (s["lost_percent"], s["jitter_ms"], s["lost_packets"], s["packets"])
        # "the server is busy running a test": the previous run's end still settling.
        time.sleep(1)
    raise AssertionError(f"iperf3 failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")


# ---- toolarge ----

def case_toolarge(burrow, d):
    echo = EchoServer()
    w = UdpWorld(burrow, d, echo_port=echo.port).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        assert ask(s, b"hello", w.fecho) == b"hello"
        largest = w.forward_udp(w.fecho)["max_datagram"]
        assert 1000 < largest < 1400, largest
        exact = os.urandom(largest)
        assert ask(s, exact, w.fecho) == exact
        for size in (largest + 1, 1500, 8000):
            s.sendto(os.urandom(size), ("127.0.0.1", w.fecho))
        s.settimeout(1.5)
        try:
            data, _ = s.recvfrom(65535)
            raise AssertionError(f"{len(data)} bytes came back for a datagram that is too large")
        except socket.timeout:
            pass
        fw = w.forward_udp(w.fecho)
        print(f"laptop forward: {json.dumps(fw)}")
        assert fw["drops"]["too_large"] == 3, fw
        assert w.expose_udp("echo")["datagrams_in"] == 2  # hello and the exact one only
        assert ask(s, b"still fine", w.fecho) == b"still fine"
    finally:
        s.close()
        echo.close()
    w.stop()


if __name__ == "__main__":
    sys.exit(harness.main({"dns": case_dns, "flows": case_flows, "iperf": case_iperf,
                           "toolarge": case_toolarge}, USAGE))
