#!/usr/bin/env python3
"""E2E checks of `burrow server` on 127.0.0.1: fingerprint, STUN, rejections, bad config.

Usage: server_e2e.py BURROW_BINARY CASE   (CASE: fingerprint | stun | reject | badconfig)
Every process started here is killed on exit, failure included.
"""
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time

BURROW = os.path.abspath(sys.argv[1])
CASE = sys.argv[2]
procs = []


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(d, extra=""):
    ports = (free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM))
    pub = subprocess.run([BURROW, "keygen", "-o", os.path.join(d, "nas.key")], check=True,
                         capture_output=True, text=True).stdout.strip()
    path = os.path.join(d, "server.toml")
    with open(path, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{ports[0]}"
stun = ["127.0.0.1:{ports[1]}", "127.0.0.1:{ports[2]}"]
cert_file = "server.crt"
key_file = "server.key"
identity_key = "server-identity.key"
{extra}
[[agents]]
name = "nas"
public_key = "{pub}"
""")
    return path, ports


def start(path, *args):
    log = open(path + ".log", "w+")
    p = subprocess.Popen([BURROW, "server", "-c", path, *args], stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p, log


def read_log(log):
    log.flush()
    with open(log.name) as f:
        return f.read()


def wait_for(log, pattern, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(pattern, read_log(log))
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} in log:\n{read_log(log)}")


def stop(p):
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=5) == 0, "server did not exit 0 on SIGTERM"


def case_fingerprint(d):
    path, _ = write_config(d)
    p, log = start(path)
    created = wait_for(log, r"created certificate \S+; fingerprint (sha256:[0-9a-f]{64})").group(1)
    logged = wait_for(log, r"certificate fingerprint (sha256:[0-9a-f]{64})").group(1)
    wait_for(log, r"listening on")
    assert created == logged
    printed = subprocess.run([BURROW, "server", "-c", path, "--print-fingerprint"],
                             capture_output=True, text=True, timeout=10)
    assert printed.returncode == 0 and printed.stdout.strip() == logged, printed
    der = subprocess.run(["openssl", "x509", "-in", os.path.join(d, "server.crt"), "-noout",
                          "-fingerprint", "-sha256"], capture_output=True, text=True, check=True)
    from_file = "sha256:" + der.stdout.split("=", 1)[1].strip().replace(":", "").lower()
    assert from_file == logged, (from_file, logged)
    assert os.stat(os.path.join(d, "server-identity.key")).st_mode & 0o777 == 0o600
    # The same ports again: one line, exit 1.
    again = subprocess.run([BURROW, "server", "-c", path], capture_output=True, text=True,
                           timeout=10)
    assert again.returncode == 1, again
    assert re.search(r"^burrow: listen 127\.0\.0\.1:\d+: address already in use$",
                     again.stderr, re.M), again.stderr
    stop(p)


def stunclient(port):
    """Its output, or "" when it got no answer (it then retries for a long time)."""
    try:
        r = subprocess.run(["turnutils_stunclient", "-p", str(port), "127.0.0.1"],
                           capture_output=True, text=True, timeout=3)
        return r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        return ""


def case_stun(d):
    if not shutil.which("turnutils_stunclient"):
        print("turnutils_stunclient missing (package coturn)")
        return 1
    os.mkdir(os.path.join(d, "std"))
    path, ports = write_config(os.path.join(d, "std"), "stun_standard_clients = true")
    p, log = start(path)
    wait_for(log, r"listening on")
    out = stunclient(ports[1])
    m = re.search(r"UDP reflexive addr: 127\.0\.0\.1:(\d+)", out)
    assert m, out
    stop(p)
    os.mkdir(os.path.join(d, "default"))
    path, ports = write_config(os.path.join(d, "default"))
    p, log = start(path, "-v")
    wait_for(log, r"listening on")
    out = stunclient(ports[1])
    assert "reflexive addr" not in out, out
    wait_for(log, r"udp 20 bytes from 127\.0\.0\.1:\d+ dropped: STUN request smaller than its answer")
    stop(p)
    assert re.search(r"udp datagrams dropped: \d+ STUN request smaller", read_log(log))


def case_reject(d):
    path, ports = write_config(d)
    p, log = start(path, "-v")
    wait_for(log, r"listening on")
    plain = socket.create_connection(("127.0.0.1", ports[0]))
    plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
    plain.settimeout(5)
    try:
        while plain.recv(4096):
            pass
    except OSError:
        pass
    plain.close()
    wait_for(log, r"conn 1 from 127\.0\.0\.1:\d+: closed: ")
    # A TLS client that completes the handshake, then says nothing: closed at the deadline.
    silent = subprocess.Popen(["openssl", "s_client", "-quiet", "-connect",
                               f"127.0.0.1:{ports[0]}"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(silent)
    start_t = time.time()
    line = wait_for(log, r"conn 2 from 127\.0\.0\.1:\d+: closed: .*", timeout=13).group(0)
    took = time.time() - start_t
    assert 8 <= took <= 12.5, (took, line)
    text = read_log(log)
    assert "online" not in text and "registered" not in text, text
    stop(p)


def case_badconfig(d):
    path, _ = write_config(d, "max_agents = \"many\"")
    r = subprocess.run([BURROW, "server", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"burrow: .*server\.toml:\d+:\d+: server\.max_agents: ",
                                        lines[0]), r.stderr
    assert not os.path.exists(os.path.join(d, "server.crt"))


def main():
    d = tempfile.mkdtemp(prefix="burrow-e2e-")
    try:
        return {"fingerprint": case_fingerprint, "stun": case_stun, "reject": case_reject,
                "badconfig": case_badconfig}[CASE](d) or 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
