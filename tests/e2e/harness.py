"""What the e2e scripts share: free ports, keys, processes with their logs, polling with a
deadline, TCP targets that count their connections, and a main() that cleans up.

Every process started through spawn() is killed when the script ends, failure included, and
also when the script itself is killed (the kernel sends the child SIGKILL: PR_SET_PDEATHSIG),
so a ctest timeout leaves nothing behind.
"""
import ctypes, fcntl, glob, json, os, re, shutil, signal, socket, socketserver, subprocess, sys
import random, tempfile, threading, time, traceback

_procs = []
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_LOG_TAIL_LINES = 40   # enough to see why an agent failed, short enough to read in ctest output
POLL_INTERVAL = 0.05   # seconds between two looks at a log or a condition


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


# Ports the tests pick come from below the kernel's ephemeral range: the kernel hands ports of
# that range to every outgoing connection and every bind to port 0 (agents' control
# connections, forwarded connections, iperf3, the tests' own probes, and, since STUN over TCP,
# each server's TCP listener twin of a STUN port picked for UDP), so a port picked there and
# given to a process a moment later can be taken in between by a test running in parallel.
# Below the range only another picker can take it. The pickers choose at random among ~20,000
# ports, each checked free for TCP and UDP, and a picked port stays reserved until the script
# ends: in this process (two calls never give the same port, though the first one's process may
# not have bound it yet: a service's port picked again for a forward) and for every other
# script by an flock on a file per port in _RESERVED_DIR, held open until the script ends (the
# kernel drops it when the script dies, SIGKILL included, so nothing goes stale).
_PICK_LOW = 10000
_rng = random.SystemRandom()
_RESERVED_DIR = os.path.join(tempfile.gettempdir(), "burrow-e2e-ports")
_reserved = {}  # port -> its lock file, open


def _reserve(port):
    """True when no other live script holds `port`; it is ours until this script ends."""
    os.makedirs(_RESERVED_DIR, exist_ok=True)
    f = open(os.path.join(_RESERVED_DIR, str(port)), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    _reserved[port] = f
    return True


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n, kind=None):
    """n distinct ports that were free for TCP and for UDP a moment ago, below the ephemeral
    range (held together while picking, so no two are equal). `kind` is kept for the callers
    that name the protocol they need: every port serves both."""
    high = max(_ephemeral_low(), _PICK_LOW + 1000)
    held, ports = [], []
    try:
        for _ in range(1000):
            if len(ports) == n:
                return ports
            port = _rng.randrange(_PICK_LOW, high)
            if port in _reserved:
                continue
            pair = [socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
            held += pair
            try:
                for s in pair:
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if _reserve(port):
                ports.append(port)
        raise RuntimeError(f"no {n} ports free for TCP and UDP in 1000 tries")
    finally:
        for s in held:
            s.close()


def free_port(kind=None):
    return free_ports(1)[0]


def free_port_both():
    """A port free for TCP and for UDP at once (a UDP and a TCP forward sharing a number, or
    iperf3 -s, which listens on both): every picked port is."""
    return free_ports(1)[0]


def keygen(burrow, path):
    """Creates a private key file; returns the public key."""
    return subprocess.run([burrow, "keygen", "-o", path], check=True, capture_output=True,
                          text=True, timeout=10).stdout.strip()


def server_toml(host, tcp_port, stun_ports, keys, allow):
    """A server.toml on host: keys is {agent name: public key}, allow a list of
    (from, to, [services]) rules; certificate and identity files beside the config."""
    agents = "".join(f'\n[[agents]]\nname = "{n}"\npublic_key = "{k}"\n' for n, k in keys.items())
    rules = "".join(f'\n[[allow]]\nfrom = "{f}"\nto = "{t}"\nservices = {json.dumps(list(s))}\n'
                    for f, t, s in allow)
    stun = ", ".join(f'"{host}:{p}"' for p in stun_ports)
    return f"""[server]
listen = "{host}:{tcp_port}"
stun = [{stun}]
cert_file = "server.crt"
key_file = "server.key"
identity_key = "server-identity.key"
{agents}{rules}"""


def agent_header(name, server, fingerprint_, admin):
    """The [agent] table of an agent named name whose key file is name.key beside the config,
    registering with server ("host:port") and answering `burrow status` on admin."""
    return f"""[agent]
name = "{name}"
key_file = "{name}.key"
server = "{server}"
server_fingerprint = "{fingerprint_}"
admin = "{admin}"
port_mapping = false
"""


class ConfigDir:
    """A test world's folder: self.d holds its configs, keys and logs."""

    def path(self, name):
        return os.path.join(self.d, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)


def fingerprint(burrow, server_toml_path):
    """The server certificate's sha256 fingerprint (the certificate is made if missing)."""
    return subprocess.run([burrow, "server", "-c", server_toml_path, "--print-fingerprint"],
                          check=True, capture_output=True, text=True, timeout=10).stdout.strip()


def wait_until(predicate, timeout, what):
    """Polls predicate until it returns something truthy; returns that, or fails naming what."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


class Proc:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name, argv, log_path, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "a+")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd,
                                      preexec_fn=_die_with_parent)
        _procs.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        self._log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def count(self, pattern):
        return len(re.findall(pattern, self.log(), re.I | re.M))

    def wait_for(self, pattern, timeout=10.0, occurrence=1):
        """The occurrence-th match of pattern (case-insensitive) in the log, waiting for it.
        Fails at once if the process exits without having written it."""
        end = time.monotonic() + timeout
        while True:
            text = self.log()
            matches = list(re.finditer(pattern, text, re.I | re.M))
            if len(matches) >= occurrence:
                return matches[occurrence - 1]
            exited = not self.alive()
            if exited or time.monotonic() >= end:
                why = f"exited with {self.popen.returncode}" if exited else f"{timeout} s passed"
                raise AssertionError(f"{self.name}: no {pattern!r} (#{occurrence}) in its log; "
                                     f"{why}:\n{tail(text)}")
            time.sleep(POLL_INTERVAL)

    def send_signal(self, signum):
        self.popen.send_signal(signum)

    def stop(self, signum=signal.SIGTERM, timeout=5.0):
        """Sends signum and asserts a clean exit 0 within timeout."""
        self.popen.send_signal(signum)
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout} s of "
                                 f"{signal.Signals(signum).name}:\n{tail(self.log())}")
        assert code == 0, f"{self.name} exited {code} on {signal.Signals(signum).name}:\n" \
                          f"{tail(self.log())}"

    def kill9(self):
        self.popen.kill()
        self.popen.wait()


def spawn(name, argv, log_path, cwd=None):
    return Proc(name, argv, log_path, cwd)


def tail(text, lines=_LOG_TAIL_LINES):
    return "\n".join(text.splitlines()[-lines:])


def _cleanup(failed):
    for p in _procs:
        if p.alive():
            p.popen.kill()
            p.popen.wait()
    if failed:
        for p in _procs:
            print(f"----- last lines of {p.name} ({os.path.basename(p.log_path)}, "
                  f"exit {p.popen.returncode}) -----\n{tail(p.log())}", file=sys.stderr)


def main(cases, usage):
    """argv: BURROW_BINARY CASE. Runs cases[CASE](burrow, tmpdir); its return value is the
    exit status (None: 0). Prints the duration; cleans up processes and the folder always."""
    if len(sys.argv) != 3 or sys.argv[2] not in cases:
        print(usage, file=sys.stderr)
        return 2
    burrow, case = os.path.abspath(sys.argv[1]), sys.argv[2]
    # ctest and Ctrl-C stop us with a signal: turn it into an exception so cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _remove_orphaned_dirs()
    d = tempfile.mkdtemp(prefix=f"burrow-e2e-{case}-{os.getpid()}-")
    start = time.monotonic()
    failed, outcome = True, "FAILED"
    try:
        status = cases[case](burrow, d) or 0
        failed = status not in (0, SKIP)
        outcome = {0: "ok", SKIP: "SKIPPED"}.get(status, "FAILED")
        return status
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        _cleanup(failed)
        took = time.monotonic() - start
        print(f"{case}: {outcome} in {took:.1f} s")
        shutil.rmtree(d, ignore_errors=True)


def _remove_orphaned_dirs():
    """A script killed with SIGKILL (a ctest timeout) cannot remove its folder, which may hold
    hundreds of MiB: the next run removes the folders of scripts that no longer exist."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "burrow-e2e-*-*-*")):
        m = re.match(r"burrow-e2e-\w+-(\d+)-", os.path.basename(path))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            shutil.rmtree(path, ignore_errors=True)


SKIP = 77  # the exit status ctest's SKIP_RETURN_CODE maps to "skipped"


# ---- TCP targets: small servers on 127.0.0.1 that count the connections they accept ----

class Target:
    """A threaded TCP server on 127.0.0.1:port running handler(sock) per connection."""

    def __init__(self, handler, port=0):
        outer = self
        self.connections = 0
        self.errors = []
        self._lock = threading.Lock()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                with outer._lock:
                    outer.connections += 1
                try:
                    handler(self.request)
                except OSError as e:
                    with outer._lock:
                        outer.errors.append(repr(e))

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            request_queue_size = 512  # the concurrent case opens 200 at once

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def recv_all(sock):
    """Everything until EOF."""
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def echo(sock):
    """Sends back what it reads; after the peer's FIN, sends its own."""
    while True:
        b = sock.recv(65536)
        if not b:
            break
        sock.sendall(b)
    sock.shutdown(socket.SHUT_WR)


def pattern_bytes(offset, n):
    """n bytes of a position-dependent pattern, so a lost, repeated or reordered chunk shows."""
    block = bytes(range(256)) * 256  # 64 KiB
    out = bytearray()
    while len(out) < n:
        start = (offset + len(out)) % len(block)
        out += block[start:start + n - len(out)]
    return bytes(out)


def producer(sock):
    """Reads one line "N\\n", then sends N pattern bytes and closes."""
    line = b""
    while not line.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            return
        line += b
    n = int(line)
    sent = 0
    chunk = 256 * 1024
    while sent < n:
        part = pattern_bytes(sent, min(chunk, n - sent))
        sock.sendall(part)
        sent += len(part)
    sock.shutdown(socket.SHUT_WR)


def accepts(port, host="127.0.0.1", timeout=1.0):
    """Whether something listens on host:port now (a connection opens and is closed at once)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


REFUSE_TIMEOUT = 10.0  # s for a refusal to reach the client


def expect_clean_close(port, what, request=b"GET / HTTP/1.0\r\n\r\n"):
    """Connects through a forward that must be refused and sends a request at once, as real
    clients do (unread data is what turns a careless close into an RST): the client sees
    EOF, no data."""
    s = connect(port, REFUSE_TIMEOUT)
    try:
        s.sendall(request)
        data = s.recv(4096)
    except ConnectionResetError:
        raise AssertionError(f"{what}: connection reset, expected a clean close")
    except socket.timeout:
        raise AssertionError(f"{what}: still open after {REFUSE_TIMEOUT} s, expected a close")
    finally:
        s.close()
    assert data == b"", f"{what}: received {data[:64]!r}, expected nothing"


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def round_trip(sock, payload):
    """Sends payload on an echoing connection and reads the same number of bytes back."""
    sock.sendall(payload)
    got = bytearray()
    while len(got) < len(payload):
        b = sock.recv(65536)
        if not b:
            break
        got += b
    return bytes(got)
