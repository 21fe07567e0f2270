#!/usr/bin/env python3
"""E2E checks of the agent's status page (GET / on the admin endpoint, src/status_page.html),
the page rendered by a real browser: headless Chromium (Debian's chromium).

Usage: statuspage_e2e.py BURROW_BINARY CASE
  CASE: http | browser | escape

  http     GET / answers the page as text/html with a Content-Security-Policy, names no
           external asset, and HEAD, /status and /metrics still answer (no browser needed).
  browser  server + nas + laptop on loopback (agent_e2e.py's world), a transfer running
           through laptop's forward both ways; Chromium loads http://LAPTOP_ADMIN/ and the DOM
           it rendered must show peer nas, path direct, its address, non-zero rates both ways
           (two samples at least) and the forwards; then a screenshot, saved in the output
           folder (printed), must be a real PNG of the window's size.
  escape   the page as the agent serves it, but its /status from a stand-in endpoint whose
           strings are markup: the rendered DOM must hold them as text, never as elements.

The output folder is $BURROW_TEST_OUTPUT (ctest sets build/test-output/statuspage), else
./test-output/statuspage. Without chromium the browser cases print a SKIP line and exit 77.
Every process started here is killed on exit, failure included.
"""
import html.parser, http.server, json, os, re, shutil, socket, struct, subprocess, sys
import tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import agent_e2e  # noqa: E402
from harness import connect, wait_until  # noqa: E402

USAGE = __doc__.split("\n\n")[1]
DIRECT_TIMEOUT = 15.0    # s: on loopback a host candidate validates within a second or two
VIRTUAL_BUDGET_MS = 5000  # the page refreshes every 1 s of (virtual) time: four samples or so
WINDOW = (1200, 800)
CHUNK = 64 * 1024
PACE_S = 0.01            # one chunk per 10 ms each way: a few MiB/s, the CPU left for Chromium
MIN_PNG_BYTES = 20 * 1024  # a blank 1200x800 PNG is a few KiB; tables of text are far more
CHROMIUM_TIMEOUT = 90


def output_dir():
    d = os.environ.get("BURROW_TEST_OUTPUT") or os.path.join(os.getcwd(), "test-output",
                                                             "statuspage")
    os.makedirs(d, exist_ok=True)
    return d


def chromium_binary():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium(url, d, *args):
    """Runs headless Chromium on url with a profile and HOME of its own under d (it needs both
    writable, also as root); returns stdout. No network beyond loopback: every host name but
    127.0.0.1 resolves to nothing and the background services are off."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=d)
    argv = [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--no-first-run",
            "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-default-apps", "--disable-domain-reliability", "--mute-audio",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--virtual-time-budget={VIRTUAL_BUDGET_MS}", *args, url]
    env = dict(os.environ, HOME=profile, XDG_CONFIG_HOME=profile, XDG_CACHE_HOME=profile)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, env=env)
    assert r.returncode == 0, f"chromium exit {r.returncode}\n{harness.tail(r.stderr)}"
    return r.stdout


def need_chromium():
    if chromium_binary():
        return True
    print("SKIP: *** the status page browser test needs chromium (Debian package chromium; "
          "./run.sh deps installs it) ***")
    return False


class Dom(html.parser.HTMLParser):
    """The rendered DOM as Chromium dumped it: body's attributes, each table's rows (cells as
    (class, text, attributes)) and every element name seen."""

    def __init__(self, text):
        super().__init__()
        self.body, self.tables, self.tags = {}, {}, set()
        self._table, self._row, self._cell, self._ids = None, None, None, {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self._ids[a["id"]] = True
        if tag == "body":
            self.body = a
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": a, "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = [a.get("class", ""), "", a]

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"].append(tuple(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row["cells"]:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def cell(row, cls):
    found = [c for c in row["cells"] if cls in c[0].split()]
    assert len(found) == 1, (cls, row)
    return found[0]


def fetch(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


# ---- http ----

def case_http(burrow, d):
    w = agent_e2e.World(burrow, d, harness.free_port())
    w.start_server()
    w.start_agent("laptop").wait_for(r"status endpoint on", agent_e2e.REGISTER_TIMEOUT)
    base = f"http://127.0.0.1:{w.laptop_admin}"
    status, headers, body = fetch(base + "/")
    print(f"GET /: {status}, {headers.get('Content-Type')}, {len(body)} bytes")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8", headers
    assert len(body) == int(headers["Content-Length"]), headers
    csp = headers.get("Content-Security-Policy", "")
    print(f"Content-Security-Policy: {csp}")
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp, csp
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    page = body.decode("utf-8")
    # The same bytes as the source file: embedded at build time, not read at run time.
    source = os.path.join(os.path.dirname(__file__), "..", "..", "src", "status_page.html")
    with open(source, "rb") as f:
        assert f.read() == body, "GET / differs from src/status_page.html"
    assert page.startswith("<!DOCTYPE html>"), page[:40]
    # Self-contained: nothing loaded from anywhere (no src=, no <link>, no URL with a scheme
    # or a protocol-relative one), and it reads the endpoint's own /status.
    assert not re.search(r"<(link|img|iframe|object|embed)\b|\bsrc\s*=|@import|url\(", page), \
        "the page loads an asset"
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.I), "the page names a URL"
    assert 'fetch(STATUS_PATH' in page and 'STATUS_PATH = "/status"' in page
    assert not re.search(r"\.innerHTML|outerHTML|insertAdjacentHTML|document\.write", page), \
        "the page writes markup"
    status, headers, body = fetch(base + "/", "HEAD")
    assert status == 200 and body == b"" and headers["Content-Type"].startswith("text/html")
    # The other paths answer as before; a query string still reaches the page.
    assert fetch(base + "/status")[1]["Content-Type"] == "application/json"
    assert fetch(base + "/metrics")[1]["Content-Type"].startswith("text/plain")
    assert fetch(base + "/?refresh=1")[0] == 200
    try:
        fetch(base + "/index.html")
        raise AssertionError("/index.html answered")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code
    w.stop()


# ---- browser ----

class Transfer:
    """Pushes paced chunks through laptop's forward to nas's echo target and reads them back,
    from two threads, until stopped: traffic both ways while the page samples."""

    def __init__(self, port):
        self.sock = connect(port)
        self.sent = self.received = 0
        self.error = None
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self):
        chunk = os.urandom(CHUNK)
        try:
            while not self.stopping.is_set():
                self.sock.sendall(chunk)
                self.sent += len(chunk)
                time.sleep(PACE_S)
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            self.error = e

    def _receive(self):
        try:
            while True:
                b = self.sock.recv(CHUNK)
                if not b:
                    return
                self.received += len(b)
        except OSError as e:
            if not self.stopping.is_set():
                self.error = e

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=15)
        self.sock.close()
        assert self.error is None, self.error
        assert self.received == self.sent, (self.sent, self.received)


def check_png(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    print(f"screenshot: {path} ({width}x{height}, {len(data)} bytes)")
    assert (width, height) == WINDOW, (width, height)
    assert len(data) > MIN_PNG_BYTES, f"{len(data)} bytes: an empty page?"


def case_browser(burrow, d):
    if not need_chromium():
        return harness.SKIP
    target = harness.Target(harness.echo)
    w = agent_e2e.World(burrow, d, target.port)
    w.start_server()
    for name in ("nas", "laptop"):
        w.start_agent(name)
    for name in ("nas", "laptop"):
        w.procs[name].wait_for(rf"registered with the server as {name}\b",
                               agent_e2e.REGISTER_TIMEOUT)
    w.laptop.wait_for(agent_e2e.forward_line(w.web, "nas", "web"))
    transfer = Transfer(w.web)
    w.laptop.wait_for(r"path to nas: direct", DIRECT_TIMEOUT)
    wait_until(lambda: transfer.received > 4 * CHUNK, 10, "bytes back through the forward")
    url = f"http://127.0.0.1:{w.laptop_admin}/"

    dom_text = chromium(url, d, "--dump-dom")
    out = output_dir()
    with open(os.path.join(out, "dom.html"), "w") as f:
        f.write(dom_text)
    dom = Dom(dom_text)
    samples = int(dom.body.get("data-samples", "0"))
    print(f"rendered DOM: {len(dom_text)} bytes, {samples} samples of /status")
    assert samples >= 2, f"the page sampled /status {samples} times"
    rows = [r for r in dom.tables.get("peers", []) if r["attrs"].get("data-peer") == "nas"]
    assert len(rows) == 1, dom.tables.get("peers")
    nas = rows[0]
    kind, address = cell(nas, "kind")[1], cell(nas, "address")[1]
    up, down = cell(nas, "rate-up"), cell(nas, "rate-down")
    print(f"peer nas: path {kind} {address}, sending {up[1]} ({up[2].get('data-bps')} B/s), "
          f"receiving {down[1]} ({down[2].get('data-bps')} B/s)")
    assert cell(nas, "peer")[1] == "nas"
    assert kind == "direct", kind
    assert re.fullmatch(r"[0-9a-f.:\[\]]+:\d+", address), address
    # The rates come from two samples of the byte counters: both ways are moving.
    assert int(up[2].get("data-bps", "0")) > 0 and int(down[2].get("data-bps", "0")) > 0, nas
    assert re.fullmatch(r"[0-9.]+ (B|KiB|MiB|GiB)/s", up[1]), up
    forwards = [[c[1] for c in r["cells"]] for r in dom.tables.get("forwards", [])]
    print(f"forwards: {forwards}")
    assert [f"127.0.0.1:{w.web}", "nas / web", "1"] in [f[:3] for f in forwards], forwards
    assert re.search(r'<span id="name">laptop</span>', dom_text), "the agent's name"

    png = os.path.join(out, "status-page.png")
    if os.path.exists(png):
        os.remove(png)
    chromium(url, d, f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             "--hide-scrollbars")
    check_png(png)
    transfer.stop()
    print(f"transfer: {transfer.sent} bytes each way, byte-exact count")
    target.close()
    w.stop()


# ---- escape ----

HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>'


def case_escape(burrow, d):
    """The page renders strings from /status as text: markup in any of them stays text."""
    if not need_chromium():
        return harness.SKIP
    w = agent_e2e.World(burrow, d, harness.free_port())
    w.start_server()
    w.start_agent("laptop").wait_for(r"status endpoint on", agent_e2e.REGISTER_TIMEOUT)
    page = fetch(f"http://127.0.0.1:{w.laptop_admin}/")[2]
    status = {
        "agent": {"name": HOSTILE, "version": HOSTILE, "uptime_s": 5},
        "server": {"address": HOSTILE, "state": HOSTILE, "nat": HOSTILE, "reflexive": HOSTILE},
        "peers": [{"peer": HOSTILE, "state": HOSTILE, "technique": HOSTILE, "rtt_ms": 1,
                   "path": {"kind": HOSTILE, "family": "ipv4", "address": HOSTILE},
                   "bytes_sent": 1, "bytes_received": 1, "streams": HOSTILE}],
        "forwards": [{"listen": HOSTILE, "peer": HOSTILE, "service": HOSTILE, "active": HOSTILE}],
        "exposes": [{"service": HOSTILE, "target": HOSTILE, "allow": [HOSTILE]}],
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body, kind = (page, "text/html") if self.path == "/" else (
                json.dumps(status).encode(), "application/json")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dom_text = chromium(f"http://127.0.0.1:{server.server_address[1]}/", d, "--dump-dom")
    server.shutdown()
    dom = Dom(dom_text)
    print(f"rendered DOM: {len(dom_text)} bytes, {dom.body.get('data-samples')} samples; "
          f"elements: {sorted(dom.tags)}")
    assert int(dom.body.get("data-samples", "0")) >= 1, "the page never rendered the status"
    assert "img" not in dom.tags and "b" not in dom.tags, sorted(dom.tags)
    assert "data-pwned" not in dom.body, dom.body
    escaped = html.escape(HOSTILE, quote=False)
    shown = dom_text.count(escaped)
    print(f"the hostile string appears {shown} times as text")
    assert shown >= 10, shown
    w.stop()


CASES = {"http": case_http, "browser": case_browser, "escape": case_escape}

if __name__ == "__main__":
    sys.exit(harness.main(CASES, USAGE))
