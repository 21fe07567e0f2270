#!/usr/bin/env python3
"""The soak's traffic (tests/soak/soak.py starts it inside the lab's namespaces).

    traffic.py echo PORT          an echo server on 127.0.0.1:PORT (behind the nas agent)
    traffic.py client CONFIG      the laptop's clients; CONFIG is a JSON file (soak.py writes it)

The client speaks a line protocol with soak.py: it opens its idle connections and prints
"idle-ready"; on "go" (stdin) it starts the mixed traffic; on "quiesce" it lets every running
transfer finish (a bulk connection stops sending, half-closes, and checks that every byte it
sent came back before the peer's FIN), keeps the idle connections open and prints "quiet"; on
"finish" it pokes every idle connection once more, closes them and exits. Every second, and
after each of those steps, it prints one line "stats {json}" with its counters.

What counts as failed: a connection that was refused, reset, closed early, answered with a
wrong byte, or made no progress for STALL_S (a path fault may stall a stream for a few seconds;
it must never lose it). Each failure is kept with its time and reason (the first MAX_FAILURES).
"""
import asyncio, hashlib, json, random, sys, time

STALL_S = 45.0  # no progress for this long is a failure, not a slow path: faults last < 10 s
CHUNK = 64 * 1024
MAX_FAILURES = 50


class Stats:
    def __init__(self):
        self.c = {
            "bytes_verified": 0,        # bytes compared with what they must be, and equal
            "bytes_corrupted": 0,       # bytes that differed (counted from the first difference)
            "bytes_lost": 0,            # sent on a bulk connection and never echoed back
            "bulk_connections_ok": 0, "bulk_connections_failed": 0,
            "downloads_ok": 0, "downloads_failed": 0,
            "short_ok": 0, "short_failed": 0,
            "idle_pokes_ok": 0, "idle_pokes_failed": 0,
            "idle_open": 0,
        }
        self.failures = []
        self.started = time.monotonic()

    def add(self, key, n=1):
        self.c[key] += n

    def fail(self, key, what, why):
        self.c[key] += 1
        if len(self.failures) < MAX_FAILURES:
            self.failures.append({"t": round(time.monotonic() - self.started, 2), "what": what,
                                  "why": why})

    def line(self):
        return "stats " + json.dumps({"t": round(time.monotonic() - self.started, 2),
                                      "counters": self.c, "failures": self.failures})


async def with_stall(coro):
    return await asyncio.wait_for(coro, STALL_S)


async def connect(port):
    return await with_stall(asyncio.open_connection("127.0.0.1", port))


def close(writer):
    try:
        writer.close()
    except Exception:
        pass


# ---- echo server (nas side) ----

async def echo_handler(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.write_eof()  # the half-close travels back: the client checks it arrives
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        close(writer)


async def echo_main(port):
    server = await asyncio.start_server(echo_handler, "127.0.0.1", port, backlog=1024)
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


# ---- client (laptop side) ----

class Client:
    def __init__(self, cfg):
        self.cfg = cfg
        self.stats = Stats()
        self.quiescing = asyncio.Event()
        self.rng = random.Random(cfg["seed"])
        self.index = cfg["index_html"].encode()
        self.idle = []  # (reader, writer) of the held idle connections

    async def bulk_worker(self, n):
        """Echo transfers one after another: random bytes out at a capped rate, each echoed
        byte compared with the byte sent, FIN both ways, and every sent byte accounted for."""
        rng = random.Random(self.cfg["seed"] * 1000 + n)
        rate = self.cfg["bulk_rate_bytes"]
        while not self.quiescing.is_set():
            size = rng.randint(self.cfg["bulk_min_bytes"], self.cfg["bulk_max_bytes"])
            await self.bulk_one(rng, size, rate, f"bulk[{n}]")

    async def bulk_one(self, rng, size, rate, name):
        pending = bytearray()  # sent, not yet echoed
        sent = echoed = 0
        try:
            reader, writer = await connect(self.cfg["echo_port"])
        except (OSError, asyncio.TimeoutError) as e:
            self.stats.fail("bulk_connections_failed", name, f"connect: {e!r}")
            return

        async def send():
            nonlocal sent
            start = time.monotonic()
            while sent < size and not self.quiescing.is_set():
                chunk = rng.randbytes(min(CHUNK, size - sent))
                pending.extend(chunk)
                writer.write(chunk)
                sent += len(chunk)
                await with_stall(writer.drain())
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            writer.write_eof()
            await with_stall(writer.drain())

        async def receive():
            nonlocal echoed
            while True:
                data = await with_stall(reader.read(CHUNK))
                if not data:
                    return
                expect = pending[:len(data)]
                if data != expect:
                    at = next(i for i, (a, b) in enumerate(zip(data, expect)) if a != b) \
                        if len(expect) == len(data) else min(len(data), len(expect))
                    raise ValueError(f"echoed byte {echoed + at} differs from the byte sent")
                del pending[:len(data)]
                echoed += len(data)
                self.stats.add("bytes_verified", len(data))

        sender = asyncio.ensure_future(send())
        try:
            await receive()
            await sender
            if echoed != sent:
                raise ValueError(f"FIN after {echoed} of {sent} bytes echoed")
            self.stats.add("bulk_connections_ok")
        except Exception as e:  # one failed transfer is counted, the soak goes on
            sender.cancel()
            if isinstance(e, ValueError) and "differs" in str(e):
                self.stats.add("bytes_corrupted", sent - echoed)
            else:
                self.stats.add("bytes_lost", sent - echoed)
            self.stats.fail("bulk_connections_failed", name,
                            f"{type(e).__name__}: {e} ({echoed} of {sent} bytes back)")
        finally:
            close(writer)

    async def http_get(self, path):
        reader, writer = await connect(self.cfg["web_port"])
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: nas\r\n\r\n".encode())
            await with_stall(writer.drain())
            head = await with_stall(reader.readuntil(b"\r\n\r\n"))
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" ":
                raise ValueError(f"status {status.decode(errors='replace')!r}")
            body = []
            while True:
                data = await with_stall(reader.read(CHUNK))
                if not data:
                    break
                body.append(data)
            return b"".join(body)
        finally:
            close(writer)

    async def downloads(self):
        """The big file through the web forward now and then, its sha256 checked."""
        want, size = self.cfg["big_sha256"], self.cfg["big_size"]
        while not self.quiescing.is_set():
            try:
                body = await self.http_get("/big.bin")
                got = hashlib.sha256(body).hexdigest()
                if len(body) != size:
                    self.stats.add("bytes_lost", max(0, size - len(body)))
                    raise ValueError(f"{len(body)} of {size} bytes")
                if got != want:
                    self.stats.add("bytes_corrupted", size)
                    raise ValueError(f"sha256 {got[:12]}.. != {want[:12]}..")
                self.stats.add("bytes_verified", size)
                self.stats.add("downloads_ok")
            except Exception as e:
                self.stats.fail("downloads_failed", "download", f"{type(e).__name__}: {e}")
            await self.pause(self.cfg["download_every_s"])

    async def short_worker(self):
        """Short connections: one small GET each, the body compared with the file."""
        interval = self.cfg["short_interval_s"]
        while not self.quiescing.is_set():
            try:
                body = await self.http_get("/index.html")
                if body != self.index:
                    self.stats.add("bytes_corrupted", len(self.index))
                    raise ValueError(f"body of {len(body)} bytes differs from index.html")
                self.stats.add("bytes_verified", len(body))
                self.stats.add("short_ok")
            except Exception as e:
                self.stats.fail("short_failed", "short", f"{type(e).__name__}: {e}")
            await asyncio.sleep(interval)

    async def open_idle(self):
        for _ in range(self.cfg["idle_connections"]):
            self.idle.append(await connect(self.cfg["idle_port"]))
            self.stats.add("idle_open")
        for i in range(len(self.idle)):
            await self.poke(i)

    async def poke(self, i):
        """A few bytes over one held connection; they must come back unchanged."""
        reader, writer = self.idle[i]
        if writer is None:
            return
        probe = self.rng.randbytes(32)
        try:
            writer.write(probe)
            await with_stall(writer.drain())
            back = await with_stall(reader.readexactly(len(probe)))
            if back != probe:
                self.stats.add("bytes_corrupted", len(probe))
                raise ValueError("echo differs")
            self.stats.add("bytes_verified", len(probe))
            self.stats.add("idle_pokes_ok")
        except Exception as e:
            self.stats.fail("idle_pokes_failed", f"idle[{i}]", f"{type(e).__name__}: {e}")
            close(writer)
            self.idle[i] = (None, None)
            self.stats.add("idle_open", -1)

    async def idle_poker(self):
        lo, hi = self.cfg["idle_poke_s"]
        while not self.quiescing.is_set():
            await self.pause(self.rng.uniform(lo, hi))
            if not self.quiescing.is_set():
                await self.poke(self.rng.randrange(len(self.idle)))

    async def pause(self, seconds):
        try:
            await asyncio.wait_for(self.quiescing.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def report(self):
        while True:
            print(self.stats.line(), flush=True)
            await asyncio.sleep(1.0)

    async def run(self):
        loop = asyncio.get_running_loop()
        commands = asyncio.Queue()
        loop.add_reader(sys.stdin.fileno(),
                        lambda: commands.put_nowait(sys.stdin.readline().strip()))
        reporter = asyncio.ensure_future(self.report())
        await self.open_idle()
        print("idle-ready", flush=True)
        while await commands.get() != "go":
            pass
        tasks = [asyncio.ensure_future(self.bulk_worker(n))
                 for n in range(self.cfg["bulk_connections"])]
        tasks += [asyncio.ensure_future(self.short_worker())
                  for _ in range(self.cfg["short_concurrency"])]
        tasks += [asyncio.ensure_future(self.downloads()), asyncio.ensure_future(self.idle_poker())]
        while await commands.get() != "quiesce":
            pass
        self.quiescing.set()
        await asyncio.gather(*tasks)
        print(self.stats.line(), flush=True)
        print("quiet", flush=True)
        while await commands.get() != "finish":
            pass
        for i in range(len(self.idle)):
            await self.poke(i)
        for _, writer in self.idle:
            if writer is not None:
                close(writer)
        reporter.cancel()
        print(self.stats.line(), flush=True)
        print("done", flush=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "echo":
        asyncio.run(echo_main(int(sys.argv[2])))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        with open(sys.argv[2]) as f:
            cfg = json.load(f)
        asyncio.run(Client(cfg).run())
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
