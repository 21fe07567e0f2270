#!/usr/bin/env python3
"""E2E checks of the Prometheus metrics (docs/metrics.md): GET /metrics on both agents' admin
endpoints and on the server's `[server] metrics` listener, parsed by a real Prometheus text
parser (prometheus_client, Debian's python3-prometheus-client) and checked by `promtool check
metrics` (Debian's prometheus), with values that must move with the traffic.

Usage: metrics_e2e.py BURROW_BINARY CASE
  CASE: scrape | badconfig | portinuse

The world of agent_e2e.py (server, nas exposing web, laptop forwarding to it), with the server's
metrics on a free loopback port; intruder is configured but never started.
Every process started here is killed on exit, failure included.
"""
import os, re, shutil, socket, subprocess, sys, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import agent_e2e  # noqa: E402
from harness import connect, round_trip, wait_until  # noqa: E402

USAGE = __doc__.split("\n\n")[1]
FIRST = 256 * 1024   # bytes through the forward before the first scrape
SECOND = 512 * 1024  # and between the two scrapes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DIRECT_TIMEOUT = 15.0  # s: on loopback a host candidate validates within a second or two
# Where the first direct path led; on loopback it may be the agents' TCP connection (issue 15).
DIRECT_SOURCES = {"host", "srflx", "prflx", "birthday", "tcp-host", "tcp-srflx", "tcp-prflx"}


def need_tools():
    """The parser and promtool, or a loud SKIP line naming what is missing."""
    missing = []
    try:
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        # Debian's package lives with Debian's python3; the interpreter running us (a pyenv
        # one, say) may not look there. The parser is pure Python.
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import prometheus_client.parser  # noqa: F401,F811
        except ImportError:
            missing.append("python3-prometheus-client (the prometheus_client parser)")
    if not shutil.which("promtool"):
        missing.append("prometheus (promtool)")
    if missing:
        print("SKIP: metrics e2e needs " + " and ".join(missing) + "; ./run.sh deps installs them")
        return False
    return True


class World(agent_e2e.World):
    def __init__(self, burrow, d, target_port):
        self.metrics_port = harness.free_port()
        super().__init__(burrow, d, target_port)

    def server_toml(self):
        text = super().server_toml()
        return text.replace("[server]\n", f'[server]\nmetrics = "127.0.0.1:{self.metrics_port}"\n', 1)


def scrape(port):
    """The text of GET /metrics, after checking status and content type."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200, r.status
        assert r.headers["Content-Type"] == CONTENT_TYPE, r.headers["Content-Type"]
        return r.read().decode("utf-8")


def promtool_check(text, who):
    """`promtool check metrics` reads the exposition on stdin; any lint problem fails it."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"promtool on {who}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    print(f"promtool check metrics ({who}): ok")


def parse(text):
    """{sample name: [(labels, value)]} through prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def value(samples, name, **labels):
    """The one sample of name whose labels include labels."""
    found = [v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def total(samples, name, **labels):
    return sum(v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items()))


def check_agent(samples, peer, sent_at_least, forward=None):
    sent = total(samples, "burrow_peer_bytes_sent_total", peer=peer)
    received = total(samples, "burrow_peer_bytes_received_total", peer=peer)
    print(f"  {peer}: bytes sent {sent:.0f}, received {received:.0f} (at least {sent_at_least} each)")
    assert sent > sent_at_least and received > sent_at_least, (sent, received)
    assert total(samples, "burrow_peer_packets_sent_total", peer=peer) > 0
    # Data went direct (the loopback pair always punches): the direct path carried most of it.
    assert value(samples, "burrow_peer_bytes_sent_total", peer=peer, path="direct") > 0
    assert value(samples, "burrow_peer_direct", peer=peer) == 1
    assert value(samples, "burrow_peer_up", peer=peer) == 1
    assert value(samples, "burrow_peer_handshakes_total", peer=peer) >= 1
    assert value(samples, "burrow_peer_rtt_seconds", peer=peer) > 0
    assert value(samples, "burrow_peer_congestion_window_bytes", peer=peer) > 0
    assert value(samples, "burrow_peer_streams_open", peer=peer) == 1  # the open connection
    successes = samples.get("burrow_punch_successes_total", [])
    print(f"  punch successes: {successes}")
    assert any(l.get("technique") in DIRECT_SOURCES and l.get("nat_pair") and v >= 1
               for l, v in successes), successes
    assert value(samples, "burrow_punch_time_to_direct_seconds_count") >= 1
    assert value(samples, "burrow_punch_time_to_direct_seconds_bucket", le="+Inf") >= 1
    # On loopback the path can be direct within the clock's resolution: the sum may be 0.
    assert 0 <= value(samples, "burrow_punch_time_to_direct_seconds_sum") < DIRECT_TIMEOUT + 10
    if forward:
        assert value(samples, "burrow_forward_connections_total", forward=forward) >= 1
        assert value(samples, "burrow_forward_connections_active", forward=forward) == 1
    assert "burrow_agent_drops_total" in samples


def case_scrape(burrow, d):
    if not need_tools():
        return harness.SKIP
    target = harness.Target(harness.echo)
    w = World(burrow, d, target.port)
    w.start_server()
    for name in ("nas", "laptop"):
        w.start_agent(name)
    for name in ("nas", "laptop"):
        w.procs[name].wait_for(rf"registered with the server as {name}\b", agent_e2e.REGISTER_TIMEOUT)
    w.laptop.wait_for(agent_e2e.forward_line(w.web, "nas", "web"))
    s = connect(w.web)
    first = os.urandom(FIRST)
    assert round_trip(s, first) == first
    w.laptop.wait_for(r"path to nas: direct", DIRECT_TIMEOUT)
    w.procs["nas"].wait_for(r"path to laptop: direct", DIRECT_TIMEOUT)
    # The path-changed log line carries the time to direct and where the path led. On loopback
    # the first direct path may be the agents' TCP connection (issue 15): direct UDP follows.
    assert re.search(r"path to nas: direct(-tcp)? .*(host|srflx|prflx|birthday), "
                     r"[0-9.]+ (ms|s) after the session started", w.laptop.log()), \
        harness.tail(w.laptop.log())

    forward = f"127.0.0.1:{w.web}"
    texts = {"laptop": scrape(w.laptop_admin), "nas": scrape(w.nas_admin),
             "server": scrape(w.metrics_port)}
    for who, text in texts.items():
        promtool_check(text, who)
    laptop, nas, server = (parse(texts[k]) for k in ("laptop", "nas", "server"))
    print("laptop:")
    check_agent(laptop, "nas", FIRST, forward)
    print("nas:")
    check_agent(nas, "laptop", FIRST)
    assert value(nas, "burrow_expose_streams_total", service="web") >= 1

    print("server: agents online", value(server, "burrow_server_agents_online"))
    assert value(server, "burrow_server_agents_online") == 2
    assert value(server, "burrow_server_agents_configured") == 3
    assert value(server, "burrow_server_registrations_total") >= 2
    assert value(server, "burrow_server_rendezvous_total") >= 1
    # burrow doctor's book holds the one pair that met.
    assert value(server, "burrow_server_doctor_pairs") == 1
    assert value(server, "burrow_server_tls_handshakes_total", result="ok") >= 2
    assert value(server, "burrow_server_relay_sessions") == 1
    # The first handshake went through the relay before the path went direct.
    relayed = total(server, "burrow_server_relay_bytes_total")
    assert relayed > 0 and value(server, "burrow_server_relay_packets_total", via="udp") > 0
    assert value(server, "burrow_server_refusals_total", reason="connect_not_allowed") == 0

    # The values move with traffic: another SECOND bytes each way.
    second = os.urandom(SECOND)
    assert round_trip(s, second) == second
    after = parse(scrape(w.laptop_admin))
    grew = (total(after, "burrow_peer_bytes_sent_total", peer="nas") -
            total(laptop, "burrow_peer_bytes_sent_total", peer="nas"))
    print(f"laptop: bytes sent to nas grew by {grew:.0f} for {SECOND} bytes of payload")
    assert grew >= SECOND, grew
    assert total(after, "burrow_peer_bytes_received_total", peer="nas") - \
        total(laptop, "burrow_peer_bytes_received_total", peer="nas") >= SECOND

    # A refusal the server counts: laptop's ssh forward is not in the server's ACL.
    w.laptop.wait_for(agent_e2e.forward_line(w.ssh, "nas", "ssh"))
    c = connect(w.ssh)
    c.settimeout(10)
    assert c.recv(1) == b""  # closed cleanly, nothing delivered
    c.close()
    server = wait_until(lambda: (lambda p: p if value(p, "burrow_server_refusals_total",
                                                       reason="connect_not_allowed") >= 1
                                 else None)(parse(scrape(w.metrics_port))),
                        10, "the server to count the refused connect")
    laptop = parse(scrape(w.laptop_admin))
    assert value(laptop, "burrow_forward_refusals_total", forward=f"127.0.0.1:{w.ssh}",
                 reason="acl") >= 1
    s.close()
    w.stop()


def write_server(burrow, d, metrics_line):
    tcp, stun1, stun2 = harness.free_port(), *harness.free_ports(2, socket.SOCK_DGRAM)
    key = os.path.join(d, "nas.key")
    if os.path.exists(key):
        os.remove(key)
    pub = harness.keygen(burrow, key)
    text = harness.server_toml("127.0.0.1", tcp, (stun1, stun2), {"nas": pub}, [])
    text = text.replace("[server]\n", "[server]\n" + metrics_line.format(tcp=tcp) + "\n", 1)
    path = os.path.join(d, "server.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def case_badconfig(burrow, d):
    """A bad metrics address, or one on the control port, stops the server with exit 2 and one
    line naming server.toml:line:column and server.metrics, before any socket opens."""
    for line, why in (('metrics = "localhost:9464"', r"IP"),
                      ('metrics = "127.0.0.1"', r""),
                      ('metrics = 9464', r""),
                      ('metrics = "127.0.0.1:{tcp}"', r"port of server\.listen")):
        path = write_server(burrow, d, line)
        r = subprocess.run([burrow, "server", "-c", path], capture_output=True, text=True,
                           timeout=10)
        lines = r.stderr.strip().splitlines()
        print(f"{line}: exit {r.returncode}: {r.stderr.strip()}")
        assert r.returncode == 2, r
        assert len(lines) == 1 and re.match(r"burrow: .*server\.toml:\d+:\d+: server\.metrics: ",
                                            lines[0]), r.stderr
        assert re.search(why, lines[0]), (why, lines[0])
        assert not os.path.exists(os.path.join(d, "server.crt"))


def case_portinuse(burrow, d):
    """A metrics port someone else holds: exit 1 with one line that says so."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    path = write_server(burrow, d, f'metrics = "127.0.0.1:{port}"')
    r = subprocess.run([burrow, "server", "-c", path], capture_output=True, text=True, timeout=10)
    print(f"exit {r.returncode}: {r.stderr.strip()}")
    assert r.returncode == 1, r
    assert re.search(rf"burrow: metrics: listen 127\.0\.0\.1:{port}: address already in use",
                     r.stderr), r.stderr
    taken.close()


CASES = {"scrape": case_scrape, "badconfig": case_badconfig, "portinuse": case_portinuse}

if __name__ == "__main__":
    sys.exit(harness.main(CASES, USAGE))
