#!/usr/bin/env python3
"""burrow in one minute, on this machine: a signalling server, a "nas" agent offering a small
web page, and a "laptop" agent that makes it appear on 127.0.0.1:8080.

Usage: demo.py BURROW_BINARY [--once]
  --once  check that the page comes through, then stop (exit 0; non-zero on failure)
Without --once it keeps running until Ctrl-C. Either way it stops what it started and removes
its temporary folder.
"""
import ctypes, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request

PREFERRED_FORWARD_PORT = 8080  # what the examples and the README use
PREFERRED_ADMIN_PORT = 7070    # the agent's default admin port, so plain `burrow status` works
PAGE_TEXT = "Hello from the NAS through burrow"
START_TIMEOUT = 20.0           # s for the agents to register and the page to come through
LOG_TAIL_LINES = 15
POLL_INTERVAL = 0.1            # s between two looks at a log
_PR_SET_PDEATHSIG = 1          # <linux/prctl.h>: our children die with us, even on kill -9

procs = []  # (name, Popen, log path)


def die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def port_free(port):
    s = socket.socket()
    # As the agent binds (libuv sets SO_REUSEADDR): connections of an earlier run lingering
    # in TIME_WAIT do not make the port busy.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n, kind=socket.SOCK_STREAM):
    held = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def pick_port(preferred, what, avoid):
    if port_free(preferred):
        return preferred
    port = next(p for p in iter(lambda: free_ports(1)[0], None) if p not in avoid)
    print(f"  ({what}: 127.0.0.1:{preferred} is in use, using 127.0.0.1:{port} instead)")
    return port


def start(name, argv, d):
    log = os.path.join(d, f"{name}.log")
    with open(log, "w") as f:
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=d, preexec_fn=die_with_parent)
    procs.append((name, p, log))
    return p, log


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def wait_for_log(name, p, log, pattern, deadline):
    while time.monotonic() < deadline:
        if re.search(pattern, read(log), re.I):
            return
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with status {p.returncode}")
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"{name} did not log {pattern!r} within {START_TIMEOUT:.0f} s")


def fetch(url, deadline):
    """The page, retried until the deadline: the first connection also sets up the session."""
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(POLL_INTERVAL)
    raise RuntimeError(f"could not fetch {url}: {last}")


def keygen(burrow, path):
    return subprocess.run([burrow, "keygen", "-o", path], check=True, capture_output=True,
                          text=True, timeout=10).stdout.strip()


def setup(burrow, d):
    """Writes keys, configs and the web page; returns the ports."""
    # nas needs an admin port of its own: unset, it would take 127.0.0.1:7070 too.
    tcp, web_target, nas_admin = free_ports(3)
    stun1, stun2 = free_ports(2, socket.SOCK_DGRAM)
    avoid = {tcp, web_target, nas_admin}
    forward = pick_port(PREFERRED_FORWARD_PORT, "laptop's forward", avoid)
    admin = pick_port(PREFERRED_ADMIN_PORT, "laptop's admin endpoint", avoid | {forward})
    keys = {n: keygen(burrow, os.path.join(d, f"{n}.key")) for n in ("nas", "laptop")}
    with open(os.path.join(d, "server.toml"), "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{tcp}"
stun = ["127.0.0.1:{stun1}", "127.0.0.1:{stun2}"]
cert_file = "server.crt"
key_file = "server.key"
identity_key = "server-identity.key"

[[agents]]
name = "nas"
public_key = "{keys['nas']}"

[[agents]]
name = "laptop"
public_key = "{keys['laptop']}"

[[allow]]
from = "laptop"
to = "nas"
services = ["web"]
""")
    fingerprint = subprocess.run(
        [burrow, "server", "-c", os.path.join(d, "server.toml"), "--print-fingerprint"],
        check=True, capture_output=True, text=True, timeout=10).stdout.strip()
    header = """[agent]
name = "{name}"
key_file = "{name}.key"
server = "127.0.0.1:{tcp}"
server_fingerprint = "{fingerprint}"
"""
    with open(os.path.join(d, "nas.toml"), "w") as f:
        f.write(header.format(name="nas", tcp=tcp, fingerprint=fingerprint) + f"""\
admin = "127.0.0.1:{nas_admin}"

[[expose]]
service = "web"
target = "127.0.0.1:{web_target}"
allow = ["laptop"]
""")
    with open(os.path.join(d, "laptop.toml"), "w") as f:
        f.write(header.format(name="laptop", tcp=tcp, fingerprint=fingerprint) + f"""\
admin = "127.0.0.1:{admin}"

[[forward]]
listen = "127.0.0.1:{forward}"
peer = "nas"
service = "web"
""")
    www = os.path.join(d, "www")
    os.mkdir(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write(f"<!doctype html>\n<title>burrow demo</title>\n<h1>{PAGE_TEXT}</h1>\n")
    return dict(tcp=tcp, stun=(stun1, stun2), web_target=web_target, forward=forward,
                admin=admin)


def run(burrow, once, d):
    print(f"burrow demo: working in {d}")
    ports = setup(burrow, d)
    deadline = time.monotonic() + START_TIMEOUT
    start("web", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                  os.path.join(d, "www"), str(ports["web_target"])], d)
    server = start("server", [burrow, "server", "-c", "server.toml"], d)
    wait_for_log("server", *server, r"listening on", deadline)
    print(f"  server  127.0.0.1:{ports['tcp']} (TLS), STUN on UDP {ports['stun'][0]} and "
          f"{ports['stun'][1]}")
    nas = start("nas", [burrow, "agent", "-c", "nas.toml"], d)
    laptop = start("laptop", [burrow, "agent", "-c", "laptop.toml"], d)
    wait_for_log("nas", *nas, r"registered with the server as nas", deadline)
    print(f"  nas     exposes web -> the page on 127.0.0.1:{ports['web_target']}, "
          "for laptop only")
    wait_for_log("laptop", *laptop, r"registered with the server as laptop", deadline)
    wait_for_log("laptop", *laptop, rf"forward 127\.0\.0\.1:{ports['forward']}.*listening",
                 deadline)
    url = f"http://127.0.0.1:{ports['forward']}/"
    print(f"  laptop  forwards 127.0.0.1:{ports['forward']} -> nas/web")
    page = fetch(url, deadline)
    if PAGE_TEXT not in page:
        raise RuntimeError(f"{url} answered, but without {PAGE_TEXT!r}: {page[:200]!r}")
    print(f"\nFetched {url} through burrow: \"{PAGE_TEXT}\"")
    if once:
        return 0
    print(f"""
Try, in another terminal:
  curl {url}
  {burrow} status --admin 127.0.0.1:{ports['admin']}
Configs and logs are in {d} (server.log, nas.log, laptop.log).
Ctrl-C stops the demo and removes that folder.""", flush=True)
    while True:
        for name, p, _ in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with status {p.returncode}")
        time.sleep(1)  # just watching for a child that dies; Ctrl-C interrupts at once


def stop_all():
    for _, p, _ in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + 5
    for _, p, _ in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def print_logs():
    for name, _, log in procs:
        if name == "web" or not os.path.exists(log):
            continue
        lines = read(log).splitlines()[-LOG_TAIL_LINES:]
        print(f"--- last lines of {name}.log ---", file=sys.stderr)
        print("\n".join(lines) or "(empty)", file=sys.stderr)


def main():
    args = sys.argv[1:]
    once = "--once" in args
    args = [a for a in args if a != "--once"]
    if len(args) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    burrow = os.path.abspath(args[0])
    # Ctrl-C raises KeyboardInterrupt even if we were started with SIGINT ignored (as a
    # background job of a script is); SIGTERM unwinds through the same cleanup.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    d = tempfile.mkdtemp(prefix="burrow-demo-")
    try:
        return run(burrow, once, d)
    except KeyboardInterrupt:
        print("\nburrow demo: stopping")
        return 0
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"burrow demo: failed: {e}", file=sys.stderr)
        print_logs()
        return 1
    finally:
        stop_all()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
