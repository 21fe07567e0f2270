#!/usr/bin/env python3
"""E2E checks of `[agent] stun_servers` (signal/stun_servers.h) with the real binary on
127.0.0.1, in agent_e2e.py's world (server, nas, laptop, intruder).

Usage: stun_e2e.py BURROW_BINARY CASE
  CASE: coturn | silent | tcp

coturn  a real coturn (`turnserver --stun-only`, Debian package coturn) on a free loopback
        port; nas and laptop list it. Each agent logs and shows in `burrow status` (JSON and
        table) that coturn answered with the agent's own UDP address (on loopback nothing
        translates it), the same the burrow server saw; `burrow netcheck -c` asks it too;
        and the forward carries bytes.
silent  a bound UDP socket that never answers; nas and laptop list it. Registration does not
        wait for it, the forward carries bytes at once, the socket receives exactly RFC 8489's
        7 requests per agent, on its schedule (0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s), and after
        39.5 s status says "no answer", the log says so once, and the forward still works.
tcp     STUN over TCP on the server's two STUN ports (issue 15, signal/stun_tcp.h): a Binding
        request to either gets 127.0.0.1 and the client's port, from one local port to both
        the same; a request cut into single bytes and two in one write are answered; garbage, a
        declared length past 548 bytes and a silent connection (after 5 s) get the connection
        closed, each counted in the server's metrics, and the server still answers; `burrow
        netcheck` prints the TCP lines (text and --json), and against ports with no TCP STUN it
        says so on its tcp mapping line and still exits 0.
"""
import json, os, re, shutil, socket, struct, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import connect, round_trip, wait_until  # noqa: E402
from agent_e2e import World  # noqa: E402

USAGE = __doc__.split("\n\n")[1]
STUN_MAGIC = 0x2112A442
# RFC 8489 §6.2.1 with RTO 500 ms, Rc 7, Rm 16: when each request leaves, and when it gives up.
SCHEDULE_S = [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
GIVE_UP_S = 39.5
SCHEDULE_SLACK_S = 0.35  # a loaded 2-core machine; far below the 0.5 s between the closest two


class StunWorld(World):
    """agent_e2e's world with `stun_servers` in nas's and laptop's [agent] table."""

    def __init__(self, burrow, d, target_port, stun_servers):
        self.stun_servers = stun_servers
        super().__init__(burrow, d, target_port)

    def agent_header(self, name, admin):
        head = super().agent_header(name, admin)
        if name in ("nas", "laptop"):
            head += f"stun_servers = {json.dumps(self.stun_servers)}\n"
        return head


def udp_port_of(agent):
    """The agent's main UDP port, from its first log line."""
    m = re.search(r"udp port (\d+)", agent.log())
    assert m, harness.tail(agent.log())
    return int(m.group(1))


def status_json(burrow, admin):
    r = subprocess.run([burrow, "status", "--admin", f"127.0.0.1:{admin}", "--json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def status_table(burrow, admin):
    r = subprocess.run([burrow, "status", "--admin", f"127.0.0.1:{admin}"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return r.stdout


def stun_answers(port, timeout=1.0):
    """Whether a Binding request to 127.0.0.1:port gets a success response."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        txid = os.urandom(12)
        s.sendto(struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + txid, ("127.0.0.1", port))
        data, _ = s.recvfrom(2048)
        return data[:2] == b"\x01\x01" and data[8:20] == txid
    except OSError:
        return False
    finally:
        s.close()


def carries_bytes(w, size=256 * 1024):
    s = connect(w.web)
    payload = os.urandom(size)
    assert round_trip(s, payload) == payload
    s.close()


def start_coturn(d, port):
    argv = [shutil.which("turnserver"), "-n", "--no-tls", "--no-dtls", "--no-tcp", "--no-cli",
            "-S", "-z", "-L", "127.0.0.1", "-p", str(port), "--log-file", "stdout",
            "--simple-log", "--pidfile", os.path.join(d, "turnserver.pid")]
    p = harness.spawn("coturn", argv, os.path.join(d, "coturn.log"))
    wait_until(lambda: stun_answers(port) or not p.alive(), 10, "coturn to answer STUN")
    assert p.alive(), harness.tail(p.log())
    return p


def case_coturn(burrow, d):
    if shutil.which("turnserver") is None:
        print("SKIP: turnserver (Debian package coturn) is not installed; ./run.sh deps "
              "installs it", file=sys.stderr)
        return harness.SKIP
    port = harness.free_port(socket.SOCK_DGRAM)
    coturn = start_coturn(d, port)
    target = harness.Target(harness.echo)
    server = f"127.0.0.1:{port}"
    w = StunWorld(burrow, d, target.port, [server]).start()
    for name, agent, admin in (("nas", w.nas, w.nas_admin), ("laptop", w.laptop, w.laptop_admin)):
        own = f"127.0.0.1:{udp_port_of(agent)}"
        agent.wait_for(rf"stun server {re.escape(server)} sees this agent as {re.escape(own)}\b",
                       10)
        status = status_json(burrow, admin)
        stun = status.get("stun_servers", [])
        print(f"status: {name} stun_servers:", stun)
        assert len(stun) == 1, status
        assert stun[0].get("server") == server, stun
        assert stun[0].get("state") == "answered", stun
        assert stun[0].get("mapped") == own, (stun, own)
        assert 0 <= stun[0].get("rtt_ms", -1) < 1000, stun
        # The burrow server's STUN port saw the same socket the same way.
        assert status["server"].get("reflexive") == own, status["server"]
        table = status_table(burrow, admin)
        row = [l for l in table.splitlines() if l.startswith(server)]
        print(f"status: {name} table row:", row)
        assert len(row) == 1 and "answered" in row[0] and own in row[0], table
    assert w.laptop.count(r"stun server .* no answer") == 0, harness.tail(w.laptop.log())
    carries_bytes(w)
    # netcheck -c asks the config's STUN servers too, from its own socket.
    r = subprocess.run([burrow, "netcheck", "-c", w.path("laptop.toml")], capture_output=True,
                       text=True, timeout=60)
    print(r.stdout)
    assert r.returncode == 0, r
    assert re.search(rf"stun server\s+{re.escape(server)} answered: 127\.0\.0\.1:\d+", r.stdout), r
    r = subprocess.run([burrow, "netcheck", "--no-port-mapping", "--stun-server", server], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and f"{server} answered" in r.stdout, r
    assert coturn.alive()
    w.stop()


class SilentServer:
    """A bound UDP socket that never answers; records when each datagram came from where."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen = {}  # source port -> [monotonic times]
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                data, (_, src) = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) >= 20 and struct.unpack("!I", data[4:8])[0] == STUN_MAGIC:
                with self.lock:
                    self.seen.setdefault(src, []).append(time.monotonic())

    def times(self, port):
        with self.lock:
            return list(self.seen.get(port, []))

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def case_silent(burrow, d):
    silent = SilentServer()
    target = harness.Target(harness.echo)
    server = f"127.0.0.1:{silent.port}"
    w = StunWorld(burrow, d, target.port, [server])
    start = time.monotonic()
    w.start()
    # Registration took round trips, not the STUN server's 39.5 s.
    registered_after = time.monotonic() - start
    print(f"registered after {registered_after:.1f} s")
    assert registered_after < 15, registered_after
    carries_bytes(w)
    status = status_json(burrow, w.laptop_admin)
    assert status["stun_servers"][0]["state"] == "probing", status["stun_servers"]
    for name, agent, admin in (("nas", w.nas, w.nas_admin), ("laptop", w.laptop, w.laptop_admin)):
        agent.wait_for(rf"stun server {re.escape(server)}: no answer to 7 requests", GIVE_UP_S + 10)
    for name, agent, admin in (("nas", w.nas, w.nas_admin), ("laptop", w.laptop, w.laptop_admin)):
        times = silent.times(udp_port_of(agent))
        offsets = [round(t - times[0], 2) for t in times]
        print(f"{name}: requests at {offsets} s")
        assert len(times) == len(SCHEDULE_S), offsets
        for got, want in zip(offsets, SCHEDULE_S):
            assert abs(got - want) < SCHEDULE_SLACK_S, (offsets, SCHEDULE_S)
        stun = status_json(burrow, admin)["stun_servers"]
        print(f"status: {name} stun_servers:", stun)
        assert stun[0]["state"] == "no answer" and stun[0]["requests"] == 7, stun
        assert "mapped" not in stun[0], stun
        assert agent.count(r"stun server .*: no answer") == 1, harness.tail(agent.log())
        assert "no answer" in status_table(burrow, admin)
    # Still working, and nothing more was sent to the silent server.
    carries_bytes(w)
    assert len(silent.times(udp_port_of(w.laptop))) == len(SCHEDULE_S)
    silent.close()
    w.stop()


def stun_tcp_request(txid):
    return struct.pack("!HHI", 0x0001, 0, STUN_MAGIC) + txid


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_stun(sock):
    """One STUN message off a TCP stream (the header's length frames it); None at its end."""
    header = read_exact(sock, 20)
    if header is None:
        return None
    body = read_exact(sock, struct.unpack("!H", header[2:4])[0])
    return None if body is None else header + body


def xor_mapped(message, txid):
    """(host, port) of the XOR-MAPPED-ADDRESS of a Binding success for txid."""
    assert message[:2] == b"\x01\x01" and message[8:20] == txid, message
    at = 20
    while at + 4 <= len(message):
        kind, length = struct.unpack("!HH", message[at:at + 4])
        if kind == 0x0020:
            port = struct.unpack("!H", message[at + 6:at + 8])[0] ^ (STUN_MAGIC >> 16)
            raw = struct.unpack("!I", message[at + 8:at + 12])[0] ^ STUN_MAGIC
            return socket.inet_ntoa(struct.pack("!I", raw)), port
        at += 4 + (length + 3) // 4 * 4
    raise AssertionError(f"no XOR-MAPPED-ADDRESS in {message!r}")


def tcp_client(port, local_port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", local_port))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def closed_by_server(s, within):
    """Whether the server ends the connection (FIN or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        while True:
            if not s.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def metric(text, name, reason=None):
    label = f'{{reason="{reason}"}}' if reason else ""
    m = re.search(rf"^{re.escape(name + label)} (\d+)", text, re.M)
    assert m, (name, reason, text[-2000:])
    return int(m.group(1))


class TcpStunWorld(World):
    """agent_e2e's world, its STUN ports free over TCP too, with the server's /metrics."""

    def server_toml(self):
        self.stun1, self.stun2 = harness.free_port_both(), harness.free_port_both()
        while self.stun2 == self.stun1:
            self.stun2 = harness.free_port_both()
        self.metrics_port = harness.free_port()
        text = super().server_toml()
        return text.replace("[server]\n", f'[server]\nmetrics = "127.0.0.1:{self.metrics_port}"\n', 1)


def scrape(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def case_tcp(burrow, d):
    w = TcpStunWorld(burrow, d, harness.free_port())
    server = w.start_server()
    log = server.log()
    assert re.search(rf"127\.0\.0\.1:{w.stun1}, 127\.0\.0\.1:{w.stun2} \(TCP\)", log) or \
        re.search(rf"127\.0\.0\.1:{w.stun1}.*127\.0\.0\.1:{w.stun2}.*\(TCP\)", log), log

    # Both ports, from one local port (as netcheck asks): 127.0.0.1 and that port, twice.
    first = tcp_client(w.stun1)
    local = first.getsockname()[1]
    second = tcp_client(w.stun2, local)
    for s in (first, second):
        txid = os.urandom(12)
        s.sendall(stun_tcp_request(txid))
        assert xor_mapped(read_stun(s), txid) == ("127.0.0.1", local)
    print(f"tcp: both ports saw 127.0.0.1:{local}")
    first.close()
    second.close()

    # A request cut into single bytes, then two requests in one write.
    s = tcp_client(w.stun2)
    txid = os.urandom(12)
    for b in stun_tcp_request(txid):
        s.sendall(bytes([b]))
        time.sleep(0.005)
    assert xor_mapped(read_stun(s), txid) == ("127.0.0.1", s.getsockname()[1])
    a, b = os.urandom(12), os.urandom(12)
    s.sendall(stun_tcp_request(a) + stun_tcp_request(b))
    assert xor_mapped(read_stun(s), a)[1] == s.getsockname()[1]
    assert xor_mapped(read_stun(s), b)[1] == s.getsockname()[1]
    s.close()

    # Garbage, and a declared length past the cap: closed at once. A silent one: after 5 s.
    garbage = tcp_client(w.stun1)
    garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert closed_by_server(garbage, 2), "garbage was not closed"
    too_long = tcp_client(w.stun1)
    too_long.sendall(struct.pack("!HHI", 0x0001, 1024, STUN_MAGIC) + os.urandom(12))
    assert closed_by_server(too_long, 2), "a 1044-byte message was not refused"
    silent = tcp_client(w.stun2)
    started = time.monotonic()
    assert closed_by_server(silent, 8), "a silent connection stayed open"
    waited = time.monotonic() - started
    print(f"tcp: a silent connection was closed after {waited:.1f} s")
    assert 4 < waited < 7, waited
    for c in (garbage, too_long, silent):
        c.close()

    # The server is still up and answers, over TCP and UDP.
    s = tcp_client(w.stun1)
    txid = os.urandom(12)
    s.sendall(stun_tcp_request(txid))
    assert xor_mapped(read_stun(s), txid)[0] == "127.0.0.1"
    s.close()
    assert server.alive()
    text = scrape(w.metrics_port)
    counts = {r: metric(text, "burrow_server_stun_tcp_closed_total", r)
              for r in ("not_stun", "too_long", "timeout", "done")}
    answers = metric(text, "burrow_server_stun_tcp_answers_total")
    print(f"tcp: metrics closed {counts}, answers {answers}")
    assert counts["not_stun"] >= 1 and counts["too_long"] >= 1 and counts["timeout"] >= 1, counts
    assert answers >= 6, answers

    # netcheck's TCP lines, text and JSON.
    stun_args = ["--stun", f"127.0.0.1:{w.stun1}", "--stun", f"127.0.0.1:{w.stun2}",
                 "--no-port-mapping"]
    r = subprocess.run([burrow, "netcheck", *stun_args], capture_output=True, text=True,
                       timeout=60)
    print(r.stdout)
    assert r.returncode == 0, r
    m = re.search(rf"tcp reflexive\s+127\.0\.0\.1:(\d+) \(port {w.stun1}\), "
                  rf"127\.0\.0\.1:(\d+) \(port {w.stun2}\)", r.stdout)
    assert m and m.group(1) == m.group(2), r.stdout
    assert re.search(r"tcp mapping\s+endpoint-independent \(port kept across destinations\): "
                     r"direct TCP punching can work", r.stdout), r.stdout
    r = subprocess.run([burrow, "netcheck", "--json", *stun_args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r
    tcp = json.loads(r.stdout)["tcp"]
    print("netcheck --json tcp:", tcp)
    assert tcp["asked"] and tcp["mapping"] == "endpoint-independent" and tcp["error"] is None, tcp
    assert tcp["reflexive"][0] == tcp["reflexive"][1] == f"127.0.0.1:{tcp['local_port']}", tcp

    # Ports that do not answer STUN over TCP (an older server): said so, not a failure.
    closed1, closed2 = harness.free_ports(2)
    r = subprocess.run([burrow, "netcheck", "--stun", f"127.0.0.1:{closed1}", "--stun",
                        f"127.0.0.1:{closed2}", "--no-port-mapping"], capture_output=True,
                       text=True, timeout=60)
    print(r.stdout)
    assert r.returncode == 0, r
    assert re.search(rf"tcp mapping\s+unknown: the server does not answer STUN over TCP on port "
                     rf"{closed1} \(an older server, or filtered\)", r.stdout), r.stdout
    assert server.alive()
    w.stop()


CASES = {"coturn": case_coturn, "silent": case_silent, "tcp": case_tcp}

if __name__ == "__main__":
    sys.exit(harness.main(CASES, USAGE))
