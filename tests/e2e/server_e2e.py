#!/usr/bin/env python3
"""E2E checks of `burrow server` on 127.0.0.1: fingerprint, STUN, rejections, bad config.

Usage: server_e2e.py BURROW_BINARY CASE   (CASE: fingerprint | stun | reject | badconfig)
Every process started here is killed on exit, failure included.
"""
import os, re, shutil, socket, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

USAGE = "usage: server_e2e.py BURROW_BINARY fingerprint|stun|reject|badconfig"
BURROW = ""


def write_config(d, extra=""):
    ports = (harness.free_port(), *harness.free_ports(2, socket.SOCK_DGRAM))
    pub = harness.keygen(BURROW, os.path.join(d, "nas.key"))
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
    return harness.spawn("server", [BURROW, "server", "-c", path, *args], path + ".log")


def case_fingerprint(d):
    path, _ = write_config(d)
    p = start(path)
    created = p.wait_for(r"created certificate \S+; fingerprint (sha256:[0-9a-f]{64})").group(1)
    logged = p.wait_for(r"certificate fingerprint (sha256:[0-9a-f]{64})").group(1)
    p.wait_for(r"listening on")
    assert created == logged
    printed = subprocess.run([BURROW, "server", "-c", path, "--print-fingerprint"],
                             capture_output=True, text=True, timeout=10)
    assert printed.returncode == 0 and printed.stdout.strip() == logged, printed
    # The fingerprint alone, for scripts that merge the two streams (burrow-bench signal does).
    assert printed.stderr == "", printed.stderr
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
    p.stop()


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
    p = start(path)
    p.wait_for(r"listening on")
    out = stunclient(ports[1])
    m = re.search(r"UDP reflexive addr: 127\.0\.0\.1:(\d+)", out)
    assert m, out
    p.stop()
    os.mkdir(os.path.join(d, "default"))
    path, ports = write_config(os.path.join(d, "default"))
    p = start(path, "-v")
    p.wait_for(r"listening on")
    out = stunclient(ports[1])
    assert "reflexive addr" not in out, out
    p.wait_for(r"udp 20 bytes from 127\.0\.0\.1:\d+ dropped: STUN request smaller than its answer")
    p.stop()
    assert re.search(r"udp datagrams dropped: \d+ STUN request smaller", p.log())


def case_reject(d):
    path, ports = write_config(d)
    p = start(path, "-v")
    p.wait_for(r"listening on")
    plain = socket.create_connection(("127.0.0.1", ports[0]))
    plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
    plain.settimeout(5)
    try:
        while plain.recv(4096):
            pass
    except OSError:
        pass
    plain.close()
    p.wait_for(r"conn 1 from 127\.0\.0\.1:\d+: closed: ")
    # A TLS client that completes the handshake, then says nothing: closed at the deadline.
    # stdin is /dev/null but -ign_eof keeps s_client connected and silent.
    harness.spawn("s_client", ["openssl", "s_client", "-quiet", "-ign_eof", "-connect",
                               f"127.0.0.1:{ports[0]}"], os.path.join(d, "s_client.log"))
    start_t = time.monotonic()
    line = p.wait_for(r"conn 2 from 127\.0\.0\.1:\d+: closed: .*", timeout=13).group(0)
    took = time.monotonic() - start_t
    assert 8 <= took <= 12.5, (took, line)
    text = p.log()
    assert "online" not in text and "registered" not in text, text
    p.stop()


def case_badconfig(d):
    path, _ = write_config(d, "max_agents = \"many\"")
    r = subprocess.run([BURROW, "server", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"burrow: .*server\.toml:\d+:\d+: server\.max_agents: ",
                                        lines[0]), r.stderr
    assert not os.path.exists(os.path.join(d, "server.crt"))


if __name__ == "__main__":
    BURROW = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else ""
    sys.exit(harness.main({"fingerprint": lambda _, d: case_fingerprint(d),
                           "stun": lambda _, d: case_stun(d),
                           "reject": lambda _, d: case_reject(d),
                           "badconfig": lambda _, d: case_badconfig(d)}, USAGE))
