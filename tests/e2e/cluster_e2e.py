#!/usr/bin/env python3
"""E2E checks of a two-server cluster sharing presence and rendezvous through a real
redis-server on 127.0.0.1 (issue 21).

Usage: cluster_e2e.py BURROW_BINARY CASE
  CASE: forward | redisloss | failover
  (forward also runs `burrow doctor` on both agents of the pair split over s1 and s2)

The world:
  redis    redis-server on a free loopback port, no persistence
  s1, s2   two `burrow server`s loading the same agents, ACL, certificate and identity key
           (one folder), each with its own ports and [cluster] name
  nas      on s2, exposes web -> an echo target, allow ["laptop"]
           (failover: nas lists both servers and starts at either)
  desk     on s1, exposes web -> the same echo target, allow ["laptop"]
  laptop   on s1, forwards NAS -> nas/web (across servers), DESK -> desk/web (same server)
A missing redis-server is a loud SKIP (exit 77).
"""
import json, os, shutil, signal, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import accepts, connect, expect_clean_close, round_trip, wait_until  # noqa: E402

USAGE = __doc__.split("\n\n")[1]
REGISTER_TIMEOUT = 15.0  # s
REDIS_TIMEOUT = 20.0     # s: the server redials with backoff (0.5 s, 1 s, 2 s, ...)


class Cluster(harness.ConfigDir):
    def __init__(self, burrow, d, target_port, nas_servers=(1,)):
        self.burrow, self.d = burrow, d
        self.redis_port = harness.free_port()
        self.tcp = harness.free_ports(2)
        self.stun = [harness.free_ports(2, socket.SOCK_DGRAM) for _ in range(2)]
        self.nas_fwd, self.desk_fwd, *self.admin = harness.free_ports(5)
        self.metrics = harness.free_ports(2)
        self.keys = {n: harness.keygen(burrow, self.path(f"{n}.key"))
                     for n in ("nas", "desk", "laptop")}
        allow = [("laptop", "nas", ["web"]), ("laptop", "desk", ["web"])]
        for i in range(2):
            text = harness.server_toml("127.0.0.1", self.tcp[i], self.stun[i], self.keys, allow)
            text = text.replace("[server]\n", f'[server]\nmetrics = "127.0.0.1:{self.metrics[i]}"\n')
            self.write(f"s{i + 1}.toml", text + f"""
[cluster]
redis = "redis://127.0.0.1:{self.redis_port}"
name = "s{i + 1}"
""")
        self.fingerprint = harness.fingerprint(burrow, self.path("s1.toml"))
        expose = f"""
[[expose]]
service = "web"
target = "127.0.0.1:{target_port}"
allow = ["laptop"]
"""
        nas = self.header("nas", 1, 0)
        if len(nas_servers) > 1:
            listed = ", ".join(f'"127.0.0.1:{self.tcp[i]}"' for i in nas_servers)
            nas = nas.replace(f'server = "127.0.0.1:{self.tcp[1]}"', f"server = [{listed}]")
            assert listed in nas
        self.write("nas.toml", nas + expose)
        self.write("desk.toml", self.header("desk", 0, 1) + expose)
        self.write("laptop.toml", self.header("laptop", 0, 2) + f"""
[[forward]]
listen = "127.0.0.1:{self.nas_fwd}"
peer = "nas"
service = "web"

[[forward]]
listen = "127.0.0.1:{self.desk_fwd}"
peer = "desk"
service = "web"
""")
        self.procs = {}

    def header(self, name, server, admin):
        return harness.agent_header(name, f"127.0.0.1:{self.tcp[server]}", self.fingerprint,
                                    f"127.0.0.1:{self.admin[admin]}")

    def start_redis(self):
        self.procs["redis"] = harness.spawn(
            "redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--daemonize", "no"],
            self.path("redis.log"))
        wait_until(lambda: accepts(self.redis_port), 10, "redis-server to listen")

    def start(self):
        self.start_redis()
        for s in ("s1", "s2"):
            p = harness.spawn(s, [self.burrow, "server", "-v", "-c", self.path(f"{s}.toml")],
                              self.path(f"{s}.log"))
            p.wait_for(r"listening on")
            p.wait_for(r"cluster: connected to Redis", REDIS_TIMEOUT)
            self.procs[s] = p
        for name in ("nas", "desk", "laptop"):
            self.procs[name] = harness.spawn(
                name, [self.burrow, "agent", "-v", "-c", self.path(f"{name}.toml")],
                self.path(f"{name}.log"))
        for name in ("nas", "desk", "laptop"):
            self.procs[name].wait_for(rf"registered with the server as {name}\b",
                                      REGISTER_TIMEOUT)
        return self

    def stop(self):
        for name in ("laptop", "desk", "nas", "s1", "s2"):
            self.procs[name].stop(signal.SIGTERM)

    def __getitem__(self, name):
        return self.procs[name]


def _echo_exact(port, size, what):
    payload = os.urandom(size)
    s = connect(port)
    got = round_trip(s, payload)
    s.close()
    assert got == payload, f"{what}: {len(got)} bytes back, not the {size} sent"


def _skip_without_redis():
    if shutil.which("redis-server") is None:
        print("SKIP: redis-server is not installed (Debian package redis-server, in run.sh "
              "PACKAGES); the cluster e2e did not run", file=sys.stderr)
        return True
    return False


def _metric(port, name):
    """The samples of one metric family on a server's /metrics: {labels text: value}."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, value = line.rsplit(" ", 1)
            out[key[len(name):]] = float(value)
    return out


def case_forward(burrow, d):
    if _skip_without_redis():
        return harness.SKIP
    target = harness.Target(harness.echo)
    c = Cluster(burrow, d, target.port).start()
    _echo_exact(c.nas_fwd, 1 << 20, "laptop (s1) -> nas (s2)")
    print("forward:", c["s1"].wait_for(r"^.*connect to nas/web through the cluster.*$").group(0))
    print("forward:", c["s2"].wait_for(r"^.*cluster: \"laptop\" on server \"s1\".*$").group(0))
    _echo_exact(c.desk_fwd, 1 << 16, "laptop (s1) -> desk (s1)")
    assert target.connections == 2, target.connections
    # The session started on the relay (docs/architecture.md §5): its first packets went
    # laptop -> s1 -> Redis -> s2 -> nas and back.
    out1 = _metric(c.metrics[0], "burrow_server_cluster_relay_packets_total")
    in2 = _metric(c.metrics[1], "burrow_server_cluster_relay_packets_total")
    print("forward: relayed between servers: s1", out1, "s2", in2)
    assert out1.get('{direction="out"}', 0) >= 1 and out1.get('{direction="in"}', 0) >= 1, out1
    assert in2.get('{direction="in"}', 0) >= 1 and in2.get('{direction="out"}', 0) >= 1, in2
    assert _metric(c.metrics[0], "burrow_server_cluster_redis_up") == {"": 1.0}
    _doctor_across(burrow, c)
    c.stop()


def _doctor(burrow, admin, peer):
    r = subprocess.run([burrow, "doctor", peer, "--admin", f"127.0.0.1:{admin}", "--json"],
                       capture_output=True, text=True, timeout=15)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"ok": False, "error": f"exit {r.returncode}: {r.stdout} {r.stderr}"}


def _doctor_across(burrow, c):
    """`burrow doctor` on either side of the pair split over s1 and s2: each server holds the
    rendezvous and both agents' punch reports (the peer's passed on through Redis)."""
    c["laptop"].wait_for(r"path to nas: direct", 15)
    for admin, peer, server in ((c.admin[2], "nas", 0), (c.admin[0], "laptop", 1)):
        def both_reported():
            j = _doctor(burrow, admin, peer)
            ok = j.get("ok") and j["self"]["reported"] and j["peer"]["reported"]
            return j if ok else None
        j = wait_until(both_reported, 10, f"burrow doctor {peer}: both sides reported")
        print(f"forward: doctor {peer} (on s{server + 1}):", j["verdict"])
        assert j["path"] == "direct", j
        assert j["peer"]["online"], j  # on the other server, not offline
        assert j["peer"]["candidates"] and j["self"]["candidates"], j
    for i in range(2):
        kept = _metric(c.metrics[i], "burrow_server_punch_reports_total")
        across = _metric(c.metrics[i], "burrow_server_cluster_punch_reports_total")
        print(f"forward: s{i + 1} punch reports:", kept, "through Redis:", across)
        assert kept.get('{result="kept"}', 0) >= 2, kept  # its agent's and the other's
        assert across.get('{direction="in"}', 0) >= 1, across


def case_redisloss(burrow, d):
    if _skip_without_redis():
        return harness.SKIP
    target = harness.Target(harness.echo)
    c = Cluster(burrow, d, target.port).start()
    # Presence of nas written before Redis goes: s1 could find it, were Redis there.
    wait_until(lambda: c["s2"].count(r"cluster: Redis reachable") >= 1, 5, "s2 presence")
    c["redis"].kill9()
    for s in ("s1", "s2"):
        c[s].wait_for(r"cluster: Redis at .* lost", REDIS_TIMEOUT)
    expect_clean_close(c.nas_fwd, "laptop -> nas while Redis is down", b"hello?")
    line = c["laptop"].wait_for(r"^.*nas/web.*refused.*$").group(0)
    print("redisloss: laptop says:", line)
    assert "Redis" in line, f"the refusal does not name Redis: {line}"
    # Agents of one server still meet.
    _echo_exact(c.desk_fwd, 1 << 16, "laptop -> desk (same server) while Redis is down")
    c.start_redis()
    for s in ("s1", "s2"):
        c[s].wait_for(r"cluster: connected to Redis at .* again", REDIS_TIMEOUT)
    _echo_exact(c.nas_fwd, 1 << 20, "laptop -> nas after Redis came back")
    print("redisloss:", c["s1"].wait_for(r"^.*connect to nas/web through the cluster.*$")
          .group(0))
    c.stop()


def _status(burrow, admin):
    r = subprocess.run([burrow, "status", "--admin", f"127.0.0.1:{admin}", "--json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def case_failover(burrow, d):
    """nas lists both servers; its server dies; nas registers with the other; a forwarded
    connection open through the switch keeps echoing byte-exact, new ones work too."""
    if _skip_without_redis():
        return harness.SKIP
    target = harness.Target(harness.echo)
    c = Cluster(burrow, d, target.port, nas_servers=(0, 1)).start()
    home = wait_until(lambda: next((s for s in ("s1", "s2")
                                    if c[s].count(r'agent "nas" online') > 0), None),
                      10, "nas online at one server")
    other = "s2" if home == "s1" else "s1"
    s = connect(c.nas_fwd)
    before = os.urandom(1 << 18)
    assert round_trip(s, before) == before
    c["laptop"].wait_for(r"path to nas: direct", 15)
    nas_status = _status(burrow, c.admin[0])
    print("failover: nas starts on", home, "connected to", nas_status["server"]["connected_to"])
    c[home].kill9()
    c["nas"].wait_for(r"signalling server .*lost", 10)
    c[other].wait_for(r'agent "nas" online', REGISTER_TIMEOUT)
    c["nas"].wait_for(r"registered with the server as nas\b", REGISTER_TIMEOUT, occurrence=2)
    after = os.urandom(1 << 18)
    assert round_trip(s, after) == after, "the connection open through the switch broke"
    s.close()
    _echo_exact(c.nas_fwd, 1 << 18, "a new connection after the switch")
    moved = _status(burrow, c.admin[0])["server"]
    print("failover: nas now on", other, "status server:", moved)
    other_port = c.tcp[0 if other == "s1" else 1]
    assert moved.get("connected_to") == f"127.0.0.1:{other_port}", moved
    for name in ("laptop", "desk", "nas", other):
        c[name].stop(signal.SIGTERM)


CASES = {"forward": case_forward, "redisloss": case_redisloss, "failover": case_failover}

if __name__ == "__main__":
    sys.exit(harness.main(CASES, USAGE))
