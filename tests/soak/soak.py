#!/usr/bin/env python3
"""soak: a server and two agents behind the NAT lab's real NATs (tests/natlab/lab.py) under
continuous mixed traffic for N minutes, with faults on a schedule; fails on any lost or
corrupted byte, any failed connection, a descriptor leak or a growth trend in memory or
descriptors. `./run.sh soak [--minutes N]`; needs root (network namespaces, iptables).

Usage: soak.py BURROW [--minutes N] [--pair NAS/LAPTOP] [--out DIR]
                      [--fault-every S] [--faults A,B,..] [--rekey-after-messages N]
                      [--nat-udp-timeout S] [--bulk-rate MIB_S] [--seed N]

Traffic (tests/soak/traffic.py, run inside the namespaces), all through the laptop's forwards
to services behind the nas agent:
  bulk      2 echo transfers at a time, 8-32 MiB each at a capped rate: every echoed byte is
            compared with the byte sent, FIN travels both ways, no byte may be missing
  download  a 16 MiB file from nginx every 20 s, its sha256 checked
  short     4 loops of one small GET per connection, the body compared; plus a wrk burst
            (Connection: close, so one connection per request) every 30 s
  idle      8 connections through a third forward, held open, poked now and then

Faults, one every --fault-every seconds in turn:
  conntrack       both NATs forget every mapping (conntrack -F)
  blackhole       the laptop's direct UDP and TCP are dropped at its NAT for 5 s: the session must fall
                  back to the relay and come back to direct
  server-restart  the server is killed (SIGKILL) and started again while the pair is direct:
                  the direct session must regain its relay fallback
  server-restart-relay
                  the direct path is blocked, the session falls back to the relay, and the
                  server is restarted: the relayed streams must go on (relay sessions
                  re-attach to the new server)
and throughout: rekeys every --rekey-after-messages packets (BURROW_TEST_REKEY_AFTER_MESSAGES,
src/agent_runtime.cc) and NAT UDP timeouts of --nat-udp-timeout seconds (conntrack's
nf_conntrack_udp_timeout{,_stream} in both NAT namespaces).

Leaks and growth: the agents' RSS and open descriptors are read from /proc every 2 s. After a
warm-up (a fifth of the run, at least 30 s and at most 5 min) the samples are cut into thirds
by time; growth is the median of the last third over the median of the first. It fails when
RSS grows by more than 10% + 4 MiB or descriptors by more than 10% + 4 (the traffic is the same
throughout, so its peaks fall alike into both thirds; the slack absorbs one burst more or
less). And a leak: with only the idle connections open, before the traffic and after it, an
agent must hold the same number of descriptors (RSS is not compared there: a heap that served
traffic keeps some pages, which is not a leak).

Writes DIR/report.json (every figure and sample) and DIR/summary.txt (default DIR:
build/soak/ beside BURROW); logs in DIR/logs/. Exit 0 pass, 1 fail, 2 bad usage or not root.
"""
import argparse, hashlib, json, os, random, re, shutil, signal, statistics, subprocess, sys
import threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "natlab"))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402
import lab  # noqa: E402
import natlab  # noqa: E402

# The soak's namespaces are bs-*, not the natlab's bl-*: a soak runs for many minutes, and with
# names of its own it neither waits for nor blocks the natlab (which takes the machine-wide lab
# lock and removes every bl-* namespace it finds), nor is torn down by it.
lab.use_prefix("bs-")
LOCK_FILE = os.path.join(os.path.dirname(lab.LOCK_FILE), "burrow-soak.lock")


class SoakLab(lab.Lab):
    """lab.Lab with bs-* names. Pairs with a NAT on each side only (no none, no shared)."""

    def __init__(self, nas_kind, laptop_kind):
        super().__init__(nas_kind, laptop_kind)
        if {nas_kind, laptop_kind} & {"none", "shared"}:
            raise ValueError("the soak wants a NAT in front of each agent")


HTTP_PORT, ECHO_PORT = 8000, 9000  # behind nas
WEB_FWD, ECHO_FWD, IDLE_FWD = 8080, 8081, 8082  # the laptop's forwards
ADMIN = natlab.ADMIN
BIG_SIZE = 16 * 1024 * 1024
SAMPLE_EVERY_S = 2.0
BLOCK_S = 5.0  # longer than the agents' 2.5 s of silence before they fall back to the relay
DIRECT_WAIT_S = 30.0  # how long a fault waits for the pair to be direct (before or after)
REGISTER_TIMEOUT_S = 20.0
# signal/agent_client.h kQuietBeforePing + kPongTimeout: an agent whose control connection died
# silently (a NAT that forgot it: the server's FIN or ping never arrives) pings after 30 s of
# silence and gives up 10 s later.
SERVER_SILENCE_S = 40.0
QUIET_SETTLE_S = 3.0  # after the traffic stops, before the descriptors are counted
RSS_TOLERANCE = (0.10, 4 * 1024 * 1024)  # (fraction, bytes) of allowed growth
FD_TOLERANCE = (0.10, 4)  # (fraction, descriptors)
WRK_EVERY_S, WRK_SECONDS, WRK_CONNECTIONS = 30.0, 5, 20
FAULTS = ["conntrack", "blackhole", "server-restart", "server-restart-relay"]

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ root {d}/www; }}
    }}
}}
"""


def log(msg):
    print(f"soak: {msg}", flush=True)


class Client:
    """traffic.py client in the laptop's namespace: commands on its stdin, its "stats" lines
    and step markers read from its stdout by a thread."""

    def __init__(self, ns, config_path, log_path):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-u",
                                   os.path.join(HERE, "traffic.py"), "client", config_path],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(log_path, "w"), text=True, start_new_session=True)
        self.stats, self.marks = None, []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            line = line.strip()
            with self.cond:
                if line.startswith("stats "):
                    self.stats = json.loads(line[6:])
                else:
                    self.marks.append(line)
                self.cond.notify_all()
        with self.cond:
            self.marks.append("eof")
            self.cond.notify_all()

    def send(self, command):
        self.p.stdin.write(command + "\n")
        self.p.stdin.flush()

    def wait_mark(self, mark, timeout):
        end = time.monotonic() + timeout
        with self.cond:
            while mark not in self.marks:
                if "eof" in self.marks or time.monotonic() >= end:
                    raise RuntimeError(f"traffic client: no {mark!r} within {timeout:.0f} s "
                                       f"(exit {self.p.poll()})")
                self.cond.wait(0.5)

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def burrow_pid(popen_pid):
    """`ip netns exec` execs its command, so the pid is burrow's; checked, not assumed."""
    try:
        if os.path.basename(os.readlink(f"/proc/{popen_pid}/exe")) == "burrow":
            return popen_pid
        with open(f"/proc/{popen_pid}/task/{popen_pid}/children") as f:
            for child in f.read().split():
                if os.path.basename(os.readlink(f"/proc/{child}/exe")) == "burrow":
                    return int(child)
    except OSError:
        pass
    return None


def proc_sample(pid):
    """(RSS bytes, open descriptors) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None


def growth_check(samples, start, key, tolerance):
    """The trend test: samples [(t, value)] from start on, cut into thirds by time; passes
    when median(last third) <= median(first third) * (1 + fraction) + slack."""
    later = [(t, v) for t, v in samples if t >= start]
    if len(later) < 6:
        return {"ok": False, "why": f"only {len(later)} samples after the warm-up"}
    t0, t1 = later[0][0], later[-1][0]
    third = (t1 - t0) / 3
    first = [v for t, v in later if t < t0 + third]
    last = [v for t, v in later if t > t1 - third]
    m1, m3 = statistics.median(first), statistics.median(last)
    frac, slack = tolerance
    limit = m1 * (1 + frac) + slack
    # A least-squares slope over the same samples, for the report only (per hour).
    n, mt, mv = len(later), statistics.fmean(t for t, _ in later), statistics.fmean(
        v for _, v in later)
    var = sum((t - mt) ** 2 for t, _ in later)
    slope = sum((t - mt) * (v - mv) for t, v in later) / var * 3600 if var else 0.0
    return {"ok": m3 <= limit, "first_third_median": m1, "last_third_median": m3,
            "limit": round(limit, 1), "samples": n, "slope_per_hour": round(slope, 1),
            "min": min(v for _, v in later), "max": max(v for _, v in later), "key": key}


def parse_wrk(out):
    def number(pattern):
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0
    errors = {k: number(rf"Socket errors:.*\b{k} (\d+)") for k in
              ("connect", "read", "write", "timeout")}
    return {"requests": number(r"(\d+) requests in"), "errors": errors,
            "non2xx": number(r"Non-2xx or 3xx responses: (\d+)")}


class Soak:
    def __init__(self, opts, burrow, out):
        self.opts, self.burrow, self.out = opts, burrow, out
        self.logs = os.path.join(out, "logs")
        self.lab = SoakLab(*opts.pair.split("/"))
        self.procs = {}
        self.server_gen = 0
        self.samples = {"nas": [], "laptop": [], "server": []}  # [(t, rss, fds)]
        self.t0 = None
        self.faults = []
        self.wrk_runs = []
        self.problems = []
        self.stop_sampling = threading.Event()
        self.stop_wrk = threading.Event()
        self.client = None

    def now(self):
        return round(time.monotonic() - self.t0, 2)

    # ---- setup ----

    def write_world(self):
        w = harness.ConfigDir()
        w.d = self.logs
        keys = {n: harness.keygen(self.burrow, w.path(f"{n}.key")) for n in ("nas", "laptop")}
        w.write("server.toml", harness.server_toml(
            lab.SERVER_IP, lab.SERVER_TCP_PORT, lab.SERVER_STUN_PORTS, keys,
            [("laptop", "nas", ["web", "echo", "idle"])]))
        fp = harness.fingerprint(self.burrow, w.path("server.toml"))
        server = f"{lab.SERVER_IP}:{lab.SERVER_TCP_PORT}"
        nas = harness.agent_header("nas", server, fp, ADMIN)
        for service, port in (("web", HTTP_PORT), ("echo", ECHO_PORT), ("idle", ECHO_PORT)):
            nas += (f'\n[[expose]]\nservice = "{service}"\ntarget = "127.0.0.1:{port}"\n'
                    f'allow = ["laptop"]\n')
        laptop = harness.agent_header("laptop", server, fp, ADMIN)
        for service, port in (("web", WEB_FWD), ("echo", ECHO_FWD), ("idle", IDLE_FWD)):
            laptop += (f'\n[[forward]]\nlisten = "127.0.0.1:{port}"\npeer = "nas"\n'
                       f'service = "{service}"\n')
        w.write("nas.toml", nas)
        w.write("laptop.toml", laptop)
        www = w.path("www")
        os.makedirs(www)
        os.makedirs(w.path("tmp"))
        big = random.Random(1).randbytes(BIG_SIZE)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.write(big)
        index = "<html><body>" + "burrow soak " * 40 + "</body></html>\n"
        w.write("www/index.html", index)
        w.write("nginx.conf", NGINX_CONF.format(d=self.logs, port=HTTP_PORT))
        self.client_cfg = {
            "seed": self.opts.seed, "echo_port": ECHO_FWD, "web_port": WEB_FWD,
            "idle_port": IDLE_FWD, "index_html": index,
            "big_sha256": hashlib.sha256(big).hexdigest(), "big_size": BIG_SIZE,
            "bulk_connections": 2, "bulk_rate_bytes": self.opts.bulk_rate * 1024 * 1024,
            "bulk_min_bytes": 8 << 20, "bulk_max_bytes": 32 << 20,
            "download_every_s": 20.0, "short_concurrency": 4, "short_interval_s": 0.05,
            "idle_connections": 8, "idle_poke_s": [5.0, 15.0],
        }
        w.write("client.json", json.dumps(self.client_cfg))
        return w

    def spawn(self, key, ns, argv, env=None):
        argv = ["env", *[f"{k}={v}" for k, v in (env or {}).items()], *argv] if env else argv
        p = natlab.Proc(key, ns, argv, os.path.join(self.logs, f"{key}.log"))
        self.procs[key] = p
        return p

    def start_server(self):
        self.server_gen += 1
        p = self.spawn("server" if self.server_gen == 1 else f"server-{self.server_gen}",
                       lab.SERVER_NS, [self.burrow, "server", "-c",
                                       os.path.join(self.logs, "server.toml")])
        p.wait_for(r"listening on", REGISTER_TIMEOUT_S)
        self.server = p

    def pid_of(self, name):
        p = self.server if name == "server" else self.procs[name]
        return burrow_pid(p.p.pid)

    def set_nat_timeouts(self):
        for ns in sorted(set(self.lab.nat_ns.values())):
            lab.ns_exec(ns, "sysctl", "-qw",
                        f"net.netfilter.nf_conntrack_udp_timeout={self.opts.nat_udp_timeout}",
                        f"net.netfilter.nf_conntrack_udp_timeout_stream="
                        f"{self.opts.nat_udp_timeout}")

    def start(self):
        self.world = self.write_world()
        self.lab.build()
        self.set_nat_timeouts()
        self.t0 = time.monotonic()
        self.start_server()
        nas_ns, laptop_ns = self.lab.agent_ns["nas"], self.lab.agent_ns["laptop"]
        self.spawn("nginx", nas_ns, ["nginx", "-p", self.logs, "-c",
                                     os.path.join(self.logs, "nginx.conf"), "-e",
                                     os.path.join(self.logs, "nginx-error.log")])
        self.spawn("echo", nas_ns, [sys.executable, "-u", os.path.join(HERE, "traffic.py"),
                                    "echo", str(ECHO_PORT)]).wait_for("echo listening", 10)
        env = {"BURROW_TEST_REKEY_AFTER_MESSAGES": self.opts.rekey_after_messages} \
            if self.opts.rekey_after_messages else None
        for name, ns in (("nas", nas_ns), ("laptop", laptop_ns)):
            self.spawn(name, ns, [self.burrow, "agent", "-c",
                                  os.path.join(self.logs, f"{name}.toml")], env)
        for name in ("nas", "laptop"):
            self.procs[name].wait_for(natlab.REGISTERED.format(name), REGISTER_TIMEOUT_S)
        self.procs["laptop"].wait_for(rf"127\.0\.0\.1:{IDLE_FWD}\b.*listening",
                                      REGISTER_TIMEOUT_S)
        threading.Thread(target=self.sampler, daemon=True).start()

    # ---- observation ----

    def status(self, agent):
        r = subprocess.run(["ip", "netns", "exec", self.lab.agent_ns[agent], self.burrow,
                            "status", "--admin", ADMIN, "--json"], capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def peer(self, agent):
        s = self.status(agent)
        want = "nas" if agent == "laptop" else "laptop"
        for p in (s or {}).get("peers", []):
            if p.get("peer") == want:
                return p
        return None

    def path(self):
        """The pair's path as natlab judges it: direct only when both sides say direct."""
        views = {}
        for agent in ("laptop", "nas"):
            p = self.peer(agent)
            views[agent] = p["path"].get("kind") if p and isinstance(p.get("path"), dict) \
                else None
        return natlab.pair_path(views)

    def wait_path(self, want, timeout):
        """Seconds until the pair's path is want ("relay": either relay; "direct": direct UDP,
        not direct-tcp), or None."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            path = self.path()
            if path == want or (want == "relay" and path.startswith("relay-")):
                return round(time.monotonic() - start, 2)
            time.sleep(0.25)
        return None

    def wait_streams_closed(self, timeout):
        """Each agent's open streams with the peer once the client has closed everything:
        0 within timeout, or what is left (a stream that never closes is a leak)."""
        end = time.monotonic() + timeout
        while True:
            left = {a: (self.peer(a) or {}).get("streams") for a in ("nas", "laptop")}
            if all(v == 0 for v in left.values()) or time.monotonic() >= end:
                return left
            time.sleep(0.25)

    def sampler(self):
        while not self.stop_sampling.is_set():
            self.sample_once()
            self.stop_sampling.wait(SAMPLE_EVERY_S)

    def sample_once(self):
        t = self.now()
        for name in self.samples:
            pid = self.pid_of(name)
            s = proc_sample(pid) if pid else None
            if s:
                self.samples[name].append((t, *s))

    def quiet_fds(self):
        out = {}
        for name in ("nas", "laptop"):
            s = proc_sample(self.pid_of(name))
            out[name] = None if s is None else {"rss": s[0], "fds": s[1]}
        return out

    # ---- traffic ----

    def wrk_loop(self):
        while not self.stop_wrk.wait(WRK_EVERY_S):
            r = subprocess.run(["ip", "netns", "exec", self.lab.agent_ns["laptop"], "wrk",
                                f"-c{WRK_CONNECTIONS}", "-t1", f"-d{WRK_SECONDS}s",
                                "-H", "Connection: close", "--timeout", "30s",
                                f"http://127.0.0.1:{WEB_FWD}/index.html"],
                               capture_output=True, text=True, timeout=WRK_SECONDS + 60)
            res = parse_wrk(r.stdout)
            res.update({"t": self.now(), "exit": r.returncode})
            self.wrk_runs.append(res)

    # ---- faults ----

    def fault_conntrack(self):
        for ns in sorted(set(self.lab.nat_ns.values())):
            lab.ns_exec(ns, "conntrack", "-F")
        return {"note": "flushed conntrack in " + ", ".join(sorted(set(
            self.lab.nat_ns.values()))) or "no NAT namespace"}

    def block_direct(self):
        """The laptop's direct paths, UDP and TCP (issue 15: with only UDP dropped the session
        falls back to a direct TCP path, not to the relay)."""
        self.lab.block_direct("laptop")
        self.lab.block_direct("laptop", "tcp")

    def unblock_direct(self):
        self.lab.unblock_direct("laptop")
        self.lab.unblock_direct("laptop", "tcp")

    def fault_blackhole(self):
        if self.wait_path("direct", DIRECT_WAIT_S) is None:
            return {"skipped": f"not direct within {DIRECT_WAIT_S:.0f} s", "problem": True}
        start = time.monotonic()
        self.block_direct()
        relay_after = None
        try:
            while time.monotonic() - start < BLOCK_S:
                if relay_after is None and self.path().startswith("relay"):
                    relay_after = round(time.monotonic() - start, 2)
                time.sleep(0.25)
        finally:
            self.unblock_direct()
        direct_after = self.wait_path("direct", DIRECT_WAIT_S)
        res = {"note": f"laptop's direct UDP and TCP dropped for {BLOCK_S:.0f} s",
               "relay_after_s": relay_after, "direct_after_unblock_s": direct_after}
        if relay_after is None:
            res["problem_text"] = "no fall back to the relay during the block"
        elif direct_after is None:
            res["problem_text"] = f"not direct again {DIRECT_WAIT_S:.0f} s after the unblock"
        return res

    def restart_server(self):
        self.server.p.kill()
        self.server.stop()
        self.start_server()
        start = time.monotonic()
        while time.monotonic() - start < SERVER_SILENCE_S + REGISTER_TIMEOUT_S:
            if all(self._registered_since(n) for n in ("nas", "laptop")):
                return round(time.monotonic() - start, 2)
            time.sleep(0.2)
        return None

    def _registered_since(self, agent):
        """Whether the agent registered after the latest server start."""
        started = self.server.started
        return any(t >= started for t, _ in
                   self.procs[agent].find(natlab.REGISTERED.format(agent)))

    def fault_server_restart(self):
        if self.wait_path("direct", DIRECT_WAIT_S) is None:
            return {"skipped": f"not direct within {DIRECT_WAIT_S:.0f} s", "problem": True}
        again = self.restart_server()
        res = {"note": "server killed and restarted while the pair was direct",
               "registered_again_after_s": again}
        self.judge_registration(res, again)
        return res

    def judge_registration(self, res, again):
        """Within REGISTER_TIMEOUT_S is the normal case. Later, up to the agents' server-silence
        timeout, is what the design gives when the agents never saw the old server go (a NAT
        that forgot the control connection drops the server's FIN): reported, not failed."""
        if again is None:
            res["problem_text"] = (f"agents not registered again within "
                                   f"{SERVER_SILENCE_S + REGISTER_TIMEOUT_S:.0f} s")
        elif again > REGISTER_TIMEOUT_S:
            res["slow_registration"] = (
                f"registered again only after {again:.0f} s: the agents had not seen the old "
                f"server go (they notice a silent server within {SERVER_SILENCE_S:.0f} s)")

    def fault_server_restart_relay(self):
        if self.wait_path("direct", DIRECT_WAIT_S) is None:
            return {"skipped": f"not direct within {DIRECT_WAIT_S:.0f} s", "problem": True}
        self.block_direct()
        try:
            relay = self.wait_path("relay", 10)
            again = self.restart_server()
            time.sleep(2)
        finally:
            self.unblock_direct()
        res = {"note": "server restarted while the pair was on the relay", "relay_after_s": relay,
               "registered_again_after_s": again,
               "direct_after_unblock_s": self.wait_path("direct", DIRECT_WAIT_S)}
        if relay is None:
            res["problem_text"] = "no relay before the restart"
        else:
            self.judge_registration(res, again)
        return res

    def run_fault(self, kind):
        t = self.now()
        path_before = self.path()
        log(f"t={t:.0f}s fault {kind} (path {path_before})")
        fn = {"conntrack": self.fault_conntrack, "blackhole": self.fault_blackhole,
              "server-restart": self.fault_server_restart,
              "server-restart-relay": self.fault_server_restart_relay}[kind]
        try:
            res = fn()
        except Exception as e:  # a fault that cannot be applied is a failed soak
            res = {"problem_text": f"could not apply: {e}"}
        res.update({"kind": kind, "t": t, "path_before": path_before, "path_after": self.path()})
        if res.get("skipped"):
            res["problem_text"] = "skipped: " + res["skipped"]
        if res.get("problem_text"):
            self.problems.append(f"fault {kind} at t={t:.0f}s: {res['problem_text']}")
        self.faults.append(res)

    # ---- the run ----

    def run(self):
        opts = self.opts
        duration = opts.minutes * 60
        self.warmup = min(300.0, max(30.0, duration / 5))
        self.start()
        cfg_path = os.path.join(self.logs, "client.json")
        self.client = Client(self.lab.agent_ns["laptop"], cfg_path,
                             os.path.join(self.logs, "client.log"))
        self.client.wait_mark("idle-ready", 60)
        time.sleep(QUIET_SETTLE_S)
        self.quiet_before = self.quiet_fds()
        log(f"idle connections open; quiet baseline {self.quiet_before}")
        direct = self.wait_path("direct", DIRECT_WAIT_S)
        log(f"pair {opts.pair}: path {self.path()} ({'direct after ' + str(direct) + ' s' if direct is not None else 'not direct'})")
        self.client.send("go")
        traffic_start = self.now()
        wrk = threading.Thread(target=self.wrk_loop, daemon=True)
        wrk.start()
        cycle = list(opts.faults)
        end = time.monotonic() + duration
        next_fault = time.monotonic() + min(opts.fault_every, self.warmup / 2)
        i = 0
        while time.monotonic() < end:
            if time.monotonic() >= next_fault and opts.fault_every > 0:
                self.run_fault(cycle[i % len(cycle)])
                i += 1
                next_fault = time.monotonic() + opts.fault_every
            if self.client.p.poll() is not None:
                self.problems.append(f"traffic client exited {self.client.p.returncode}")
                break
            for n in ("nas", "laptop"):
                if self.procs[n].p.poll() is not None:
                    raise RuntimeError(f"agent {n} exited {self.procs[n].p.returncode}")
            time.sleep(0.5)
        self.stop_wrk.set()
        wrk.join(timeout=WRK_SECONDS + 70)
        log(f"t={self.now():.0f}s quiescing: running transfers finish")
        self.client.send("quiesce")
        self.client.wait_mark("quiet", 120)
        traffic_end = self.now()
        time.sleep(QUIET_SETTLE_S)
        self.quiet_after = self.quiet_fds()
        self.end_peers = {a: self.peer(a) for a in ("nas", "laptop")}
        self.client.send("finish")
        self.client.wait_mark("done", 60)
        self.streams_left = self.wait_streams_closed(10.0)
        self.stop_sampling.set()
        # Resets up to here count; stopping an agent below resets what is still open.
        self.resets = {n: [int(m.group(1)) for _, m in self.procs[n].find(natlab.RESETS)]
                       for n in ("nas", "laptop")}
        exits = {}
        for n in ("laptop", "nas"):
            self.procs[n].stop()
            exits[n] = self.procs[n].p.returncode
        return self.judge(traffic_start, traffic_end, exits)

    # ---- verdict ----

    def judge(self, traffic_start, traffic_end, exits):
        stats = self.client.stats or {"counters": {}, "failures": []}
        c = stats["counters"]
        problems = list(self.problems)
        for key in ("bytes_corrupted", "bytes_lost"):
            if c.get(key):
                problems.append(f"{c[key]} bytes {key.split('_')[1]}")
        failed = {k: c.get(k, 0) for k in ("bulk_connections_failed", "downloads_failed",
                                           "short_failed", "idle_pokes_failed")}
        wrk_requests = sum(r["requests"] for r in self.wrk_runs)
        wrk_errors = sum(sum(r["errors"].values()) + r["non2xx"] for r in self.wrk_runs)
        failed["wrk_errors"] = wrk_errors
        if any(failed.values()):
            problems.append("failed connections: " + ", ".join(
                f"{k} {v}" for k, v in failed.items() if v))
        resets = self.resets
        for n, r in resets.items():
            if any(r):
                problems.append(f"{n} reset forwarded connections (per closed session: {r})")
        if any(self.streams_left.values()):
            problems.append(f"streams still open 10 s after every connection closed: "
                            f"{self.streams_left}")
        for n, code in exits.items():
            if code != 0:
                problems.append(f"agent {n} exited {code} on SIGTERM")
        handshakes = {a: (p or {}).get("handshakes") for a, p in self.end_peers.items()}
        rekeys = max([h["completed"] - 1 for h in handshakes.values() if h] or [0])
        if self.opts.rekey_after_messages and rekeys < 1:
            problems.append("no rekey happened: the rekey fault tested nothing")

        warm_end = traffic_start + self.warmup
        growth = {}
        for n in ("nas", "laptop"):
            s = [x for x in self.samples[n] if x[0] <= traffic_end]
            growth[n] = {
                "rss": growth_check([(t, r) for t, r, _ in s], warm_end, "rss", RSS_TOLERANCE),
                "fds": growth_check([(t, f) for t, _, f in s], warm_end, "fds", FD_TOLERANCE)}
            for key, g in growth[n].items():
                if not g["ok"]:
                    problems.append(f"{n} {key} grows: " + (g.get("why") or (
                        f"median of the last third {g['last_third_median']:.0f} > limit "
                        f"{g['limit']:.0f} (first third {g['first_third_median']:.0f})")))
            before, after = self.quiet_before.get(n), self.quiet_after.get(n)
            if not before or not after:
                problems.append(f"{n}: no quiet descriptor count")
            elif after["fds"] != before["fds"]:
                problems.append(f"{n} descriptors with only the idle connections open: "
                                f"{before['fds']} before the traffic, {after['fds']} after")
        fault_counts = {}
        for f in self.faults:
            key = f["kind"] + (" (skipped)" if f.get("skipped") else "")
            fault_counts[key] = fault_counts.get(key, 0) + 1
        return {
            "pass": not problems, "problems": problems,
            "settings": {"minutes": self.opts.minutes, "pair": self.opts.pair,
                         "fault_every_s": self.opts.fault_every,
                         "fault_cycle": self.opts.faults,
                         "rekey_after_messages": self.opts.rekey_after_messages,
                         "nat_udp_timeout_s": self.opts.nat_udp_timeout,
                         "bulk_rate_mib_s_per_connection": self.opts.bulk_rate,
                         "warmup_s": self.warmup, "seed": self.opts.seed,
                         "rss_tolerance": {"fraction": RSS_TOLERANCE[0],
                                           "bytes": RSS_TOLERANCE[1]},
                         "fd_tolerance": {"fraction": FD_TOLERANCE[0], "fds": FD_TOLERANCE[1]}},
            "traffic_s": round(traffic_end - traffic_start, 1),
            "client": c, "failures": stats["failures"],
            "wrk": {"runs": len(self.wrk_runs), "requests": wrk_requests, "errors": wrk_errors,
                    "per_run": self.wrk_runs},
            "connections_failed": sum(failed.values()), "failed_by_kind": failed,
            "handshakes_at_end": handshakes, "rekeys": rekeys,
            "resets_logged": resets, "agent_exit": exits, "streams_left": self.streams_left,
            "faults": self.faults, "fault_counts": fault_counts,
            "growth": growth, "quiet_before": self.quiet_before, "quiet_after": self.quiet_after,
            "end_peers": {a: {k: (p or {}).get(k) for k in ("path", "bytes_sent",
                                                            "bytes_received", "probes",
                                                            "drops")}
                          for a, p in self.end_peers.items()},
            "samples": {n: [{"t": t, "rss": r, "fds": f} for t, r, f in s]
                        for n, s in self.samples.items()},
        }

    def cleanup(self):
        self.stop_sampling.set()
        self.stop_wrk.set()
        if self.client:
            self.client.stop()
        for p in reversed(list(self.procs.values())):
            p.stop()
        self.lab.destroy()


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def summary(r):
    c = r["client"]
    lines = [f"burrow soak: {'PASS' if r['pass'] else 'FAIL'}  ({r['settings']['minutes']} min, "
             f"pair {r['settings']['pair']}, traffic {r['traffic_s']:.0f} s)"]
    lines.append(f"bytes verified {c.get('bytes_verified', 0):,} ({mib(c.get('bytes_verified', 0))}); "
                 f"lost {c.get('bytes_lost', 0)}, corrupted {c.get('bytes_corrupted', 0)}")
    lines.append(f"connections: bulk {c.get('bulk_connections_ok', 0)} ok, downloads "
                 f"{c.get('downloads_ok', 0)} ok, short {c.get('short_ok', 0)} ok, idle pokes "
                 f"{c.get('idle_pokes_ok', 0)} ok, wrk {r['wrk']['requests']} requests in "
                 f"{r['wrk']['runs']} bursts; failed {r['connections_failed']} "
                 f"({', '.join(f'{k} {v}' for k, v in r['failed_by_kind'].items())})")
    lines.append("faults: " + ", ".join(f"{k} x{v}" for k, v in r["fault_counts"].items())
                 + f"; rekeys {r['rekeys']} (after {r['settings']['rekey_after_messages']} "
                 f"packets); NAT UDP timeout {r['settings']['nat_udp_timeout_s']} s")
    bh = [f for f in r["faults"] if f["kind"] == "blackhole" and not f.get("skipped")]
    if bh:
        lines.append("blackholes: relay after " + ", ".join(str(f.get("relay_after_s")) for f in bh)
                     + " s; direct again after unblock " +
                     ", ".join(str(f.get("direct_after_unblock_s")) for f in bh) + " s")
    rs = [f for f in r["faults"] if f["kind"].startswith("server-restart")
          and not f.get("skipped")]
    if rs:
        lines.append("server restarts: agents registered again after " + ", ".join(
            str(f.get("registered_again_after_s")) for f in rs) + " s")
    if any(f.get("slow_registration") for f in rs):
        lines.append(f"observation: {sum(bool(f.get('slow_registration')) for f in rs)} of "
                     f"{len(rs)} restarts were noticed only by the agents' unanswered ping "
                     f"({SERVER_SILENCE_S:.0f} s at most): a NAT that forgot the control "
                     "connection drops the old server's FIN")
    for n in ("nas", "laptop"):
        g = r["growth"][n]
        parts = []
        for key, fmt in (("rss", mib), ("fds", lambda v: f"{v:.0f}")):
            x = g[key]
            if "first_third_median" in x:
                parts.append(f"{key} median first third {fmt(x['first_third_median'])}, last "
                             f"third {fmt(x['last_third_median'])} (limit {fmt(x['limit'])}, "
                             f"range {fmt(x['min'])}-{fmt(x['max'])})")
        qb, qa = r["quiet_before"].get(n), r["quiet_after"].get(n)
        quiet = f"quiet fds {qb['fds'] if qb else '?'} -> {qa['fds'] if qa else '?'}"
        lines.append(f"{n}: " + "; ".join(parts) + f"; {quiet}")
    for p in r["problems"]:
        lines.append(f"PROBLEM: {p}")
    for f in r["failures"][:10]:
        lines.append(f"  failure at t={f['t']}s {f['what']}: {f['why']}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("burrow")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--pair", default="portrestricted/portrestricted",
                    help="NAT kinds NAS/LAPTOP (a pair that goes direct: the faults need it)")
    ap.add_argument("--out", help="report folder (default: build/soak beside BURROW)")
    ap.add_argument("--fault-every", type=float, default=20.0, metavar="S")
    ap.add_argument("--faults", default=",".join(FAULTS), metavar="A,B,..",
                    help=f"the fault cycle, in order (default {','.join(FAULTS)})")
    ap.add_argument("--rekey-after-messages", type=int, default=20000, metavar="N",
                    help="BURROW_TEST_REKEY_AFTER_MESSAGES for both agents (0: default keys)")
    ap.add_argument("--nat-udp-timeout", type=int, default=5, metavar="S")
    ap.add_argument("--bulk-rate", type=float, default=2.0, metavar="MIB_S",
                    help="cap of each bulk echo connection's sending rate")
    ap.add_argument("--seed", type=int, default=1)
    opts = ap.parse_args()
    if opts.minutes <= 0:
        ap.error("--minutes must be positive")
    opts.faults = [f for f in opts.faults.split(",") if f]
    unknown = [f for f in opts.faults if f not in FAULTS + ["server-restart-relay"]]
    if unknown or not opts.faults:
        ap.error(f"--faults: want a list of {', '.join(FAULTS + ['server-restart-relay'])}")
    try:
        kinds = opts.pair.split("/")
        SoakLab(*kinds)
        if "udpblocked" in kinds or kinds == ["symmetric", "symmetric"] or len(kinds) != 2:
            raise ValueError("the faults need a pair that goes direct")
    except (ValueError, TypeError) as e:
        ap.error(f"--pair {opts.pair}: {e}")
    burrow = os.path.abspath(opts.burrow)
    if not os.access(burrow, os.X_OK):
        print(f"soak: {burrow}: not an executable", file=sys.stderr)
        return 2
    why = lab.have_netns()
    if why:
        print(f"soak: needs root and network namespaces ({why})", file=sys.stderr)
        return 2
    missing = [t for t in ("conntrack", "iptables-restore", "nginx", "wrk") if not shutil.which(t)]
    if missing:
        print(f"soak: missing {', '.join(missing)} (./run.sh deps installs them)", file=sys.stderr)
        return 2
    out = os.path.abspath(opts.out or os.path.join(os.path.dirname(burrow), "soak"))
    shutil.rmtree(os.path.join(out, "logs"), ignore_errors=True)
    os.makedirs(os.path.join(out, "logs"))
    held = lab.lock(LOCK_FILE, "soak")  # noqa: F841 (held until exit)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, natlab.on_signal)
    soak = Soak(opts, burrow, out)
    try:
        stale = lab.remove_stale()
        if stale:
            log(f"removed stale namespaces {' '.join(stale)}")
        log(f"{opts.minutes:g} min, pair {opts.pair}, faults every {opts.fault_every:g} s, "
            f"logs in {soak.logs}")
        result = soak.run()
    except natlab.Interrupted as e:
        print(f"soak: {e}: cleaning up", file=sys.stderr)
        return 130
    except Exception as e:
        result = {"pass": False, "problems": [f"soak could not run: {e}"]}
        log(f"FAILED: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        soak.cleanup()
        lab.remove_stale()
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = summary(result) if "client" in result else \
        "burrow soak: FAIL\n" + "".join(f"PROBLEM: {p}\n" for p in result["problems"])
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    log(f"report: {out}/report.json, {out}/summary.txt")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
