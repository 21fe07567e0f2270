#!/usr/bin/env python3
"""E2E checks of `burrow status` on 127.0.0.1 against a stand-in admin endpoint.

Usage: status_e2e.py BURROW_BINARY CASE   (CASE: table | json | config | unreachable | badinput)
The agent is not needed: a small Python HTTP server plays its admin endpoint and serves the
sample status JSON, so these check the CLI (address choice, output, exit codes) on its own.
"""
import http.server, json, os, socket, subprocess, sys, tempfile, threading

BURROW = os.path.abspath(sys.argv[1])
CASE = sys.argv[2]

SAMPLE = {
    "agent": {"name": "laptop", "public_key": "base64...", "version": "0.1.0", "uptime_s": 12.5},
    "server": {"address": "127.0.0.1:7000", "state": "online", "registered": True,
               "udp": "bound", "nat": "endpoint-independent", "reflexive": "203.0.113.5:40000",
               "reconnects": 0},
    "peers": [{"peer": "nas", "session_id": 42, "role": "initiator", "state": "established",
               "path": {"kind": "relay-udp", "family": "ipv4", "address": "127.0.0.1:7000"},
               "rtt_ms": 1.25, "loss": 0.001, "bytes_sent": 1234,
               "bytes_received": 5678, "streams": 2,
               "drops": {"decrypt_failed": 0, "malformed": 1}}],
    "forwards": [{"listen": "127.0.0.1:8080", "peer": "nas", "service": "web",
                  "connections": 10, "active": 2, "refused": 1}],
    "exposes": [{"service": "web", "target": "127.0.0.1:80", "allow": ["laptop"],
                 "streams": 3, "active": 1, "refused": 0}],
    "drops": {"relay_queue_full": 0, "udp_malformed": 2},
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(SAMPLE).encode()
        self.send_response(200 if self.path == "/status" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def closed_port():
    """A bound, never-listening port: connects to it are refused while s lives."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def status(*args):
    return subprocess.run([BURROW, "status", *args], capture_output=True, text=True, timeout=20)


def expect(cond, what, r=None):
    if not cond:
        detail = f"\nrc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}" if r else ""
        sys.exit(f"FAIL: {what}{detail}")


def write_agent_config(d, admin):
    subprocess.run([BURROW, "keygen", "-o", os.path.join(d, "laptop.key")], check=True,
                   capture_output=True)
    path = os.path.join(d, "agent.toml")
    with open(path, "w") as f:
        f.write(f"""[agent]
name = "laptop"
key_file = "laptop.key"
server = "127.0.0.1:7000"
server_fingerprint = "sha256:{'a' * 64}"
admin = "{admin}"
""")
    return path


if CASE == "table":
    server, port = serve()
    r = status("--admin", f"127.0.0.1:{port}")
    expect(r.returncode == 0 and r.stderr == "", "status exits 0 quietly", r)
    expect(r.stdout.startswith("agent   laptop  version 0.1.0  up 12s"), "agent line", r)
    expect("nas   relay-udp  1.25 ms  0.10%  1.2 KiB  5.5 KiB" in r.stdout, "peer row", r)
    expect("drops: udp_malformed 2, nas malformed 1\n" in r.stdout, "drops line", r)
elif CASE == "json":
    server, port = serve()
    r = status("--admin", f"127.0.0.1:{port}", "--json")
    expect(r.returncode == 0, "status --json exits 0", r)
    expect(json.loads(r.stdout) == SAMPLE, "--json prints the agent's JSON", r)
elif CASE == "config":
    server, port = serve()
    with tempfile.TemporaryDirectory() as d:
        r = status("-c", write_agent_config(d, f"127.0.0.1:{port}"))
        expect(r.returncode == 0 and "agent   laptop" in r.stdout, "-c takes [agent] admin", r)
        bad = os.path.join(d, "bad.toml")
        with open(bad, "w") as f:
            f.write('[agent]\nname = "laptop"\nadmin = "0.0.0.0:7070"\n')
        r = status("-c", bad)
        expect(r.returncode == 2, "a bad config exits 2", r)
        expect(r.stderr.startswith(f"burrow: {bad}:") and r.stderr.count("\n") == 1,
               "one config error line naming the file", r)
elif CASE == "unreachable":
    s, port = closed_port()
    r = status("--admin", f"127.0.0.1:{port}")
    expect(r.returncode == 1 and r.stdout == "", "unreachable exits 1", r)
    expect(r.stderr == f"burrow: cannot reach the agent's admin endpoint 127.0.0.1:{port}: "
                       "connection refused (is `burrow agent` running?)\n", "one clear line", r)
elif CASE == "badinput":
    for args in (["--admin", "localhost:7070"], ["--admin", "127.0.0.1"],
                 ["--admin", "127.0.0.1:1", "-c", "x.toml"]):
        r = status(*args)
        expect(r.returncode == 2 and r.stderr.count("\n") == 1, f"{args}: one line, exit 2", r)
else:
    sys.exit(f"unknown case {CASE}")
print(f"ok: {CASE}")
