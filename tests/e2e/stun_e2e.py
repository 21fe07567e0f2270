#!/usr/bin/env python3
"""E2E checks of `[agent] stun_servers` (signal/stun_servers.h) with the real binary on
127.0.0.1, in agent_e2e.py's world (server, nas, laptop, intruder).

Usage: stun_e2e.py BURROW_BINARY CASE
  CASE: coturn | silent

coturn  a real coturn (`turnserver --stun-only`, Debian package coturn) on a free loopback
        port; nas and laptop list it. Each agent logs and shows in `burrow status` (JSON and
        table) that coturn answered with the agent's own UDP address (on loopback nothing
        translates it), the same the burrow server saw; `burrow netcheck -c` asks it too;
        and the forward carries bytes.
silent  a bound UDP socket that never answers; nas and laptop list it. Registration does not
        wait for it, the forward carries bytes at once, the socket receives exactly RFC 8489's
        7 requests per agent, on its schedule (0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s), and after
        39.5 s status says "no answer", the log says so once, and the forward still works.
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


CASES = {"coturn": case_coturn, "silent": case_silent}

if __name__ == "__main__":
    sys.exit(harness.main(CASES, USAGE))
