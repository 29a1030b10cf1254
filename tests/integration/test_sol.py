"""sol-forwarder (bench/sol/sol.c), the speed-of-light baseline: pairing by
the first line, bytes forwarded unchanged and in order under load, a bad
first line closed, a close passed on to the peer, backpressure, a clean stop
on SIGTERM.

SOL_FORWARDER names the binary (meson sets it); without it the tests skip.
Run alone:
  SOL_FORWARDER=build/bench/sol/sol-forwarder \
    /usr/bin/python3 -m unittest tests/integration/test_sol.py -v
"""
import os
import random
import re
import selectors
import signal
import socket
import subprocess
import time
import unittest

SOL = os.environ.get("SOL_FORWARDER", "")
PAIRS = 50
VOLUME = 1 << 20          # bytes each way per pair
DEADLINE = 60.0           # seconds for the whole exchange


def hello(pair, side):
    return b"STANZA-BENCH-RAW %d %d\n" % (pair, side)


@unittest.skipUnless(SOL and os.access(SOL, os.X_OK),
                     "SOL_FORWARDER not set or not executable (build with -Dbenchmarks=true)")
class SolForwarderTest(unittest.TestCase):
    def setUp(self):
        self.socks = []
        self.proc = subprocess.Popen(
            [SOL, "--listen", "127.0.0.1:0", "--threads", "2", "--no-pin"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Registered at once: tearDown does not run when setUp fails, and a
        # forwarder must never outlive its test.
        self.addCleanup(self._stop)
        self.port = None
        deadline = time.monotonic() + 10
        for _ in range(2):   # the port, then "ready"
            line = self.proc.stdout.readline().decode().strip()
            if line.isdigit():
                self.port = int(line)
            self.assertLess(time.monotonic(), deadline)
        self.assertEqual(line, "ready")
        self.assertIsNotNone(self.port)

    def _stop(self):
        for s in self.socks:
            s.close()
        if self.proc.poll() is None:
            self.proc.kill()    # only if a test left it running: ours, by handle
            self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def connect(self, first=b""):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.socks.append(s)
        if first:
            s.sendall(first)
        return s

    def expect_closed(self, s, timeout=10.0):
        """Read until EOF or reset; fail if the connection stays open."""
        s.settimeout(timeout)
        for _ in range(1000):
            try:
                if s.recv(65536) == b"":
                    return
            except ConnectionResetError:
                return
            except socket.timeout:
                self.fail("connection still open after %.0f s" % timeout)
        self.fail("connection kept sending")

    def test_pairs_forward_unchanged_in_order(self):
        rng = random.Random(5)
        pool = rng.randbytes(8 * VOLUME)

        def stream():
            off = rng.randrange(len(pool) - VOLUME)
            return memoryview(pool)[off:off + VOLUME]

        conns = []   # [sock, to send, sent, expected from the peer, received]
        for p in range(PAIRS):
            data = [stream(), stream()]
            # Either side may come first; its data follows the line at once.
            order = [0, 1] if rng.random() < 0.5 else [1, 0]
            socks = {}
            for side in order:
                socks[side] = self.connect(hello(1000 + p, side))
            for side in (0, 1):
                conns.append([socks[side], data[side], 0, data[1 - side], 0])

        sel = selectors.DefaultSelector()
        both = selectors.EVENT_READ | selectors.EVENT_WRITE
        for c in conns:
            c[0].setblocking(False)
            sel.register(c[0], both, c)
        deadline = time.monotonic() + DEADLINE
        pending = len(conns)
        while pending and time.monotonic() < deadline:
            for key, ev in sel.select(timeout=1.0):
                c = key.data
                s, out, want = c[0], c[1], c[3]
                if ev & selectors.EVENT_WRITE and c[2] < len(out):
                    try:
                        c[2] += s.send(out[c[2]:c[2] + rng.randint(1, 70000)])
                    except BlockingIOError:
                        pass
                if ev & selectors.EVENT_READ:
                    try:
                        chunk = s.recv(rng.randint(1, 70000))
                    except BlockingIOError:
                        chunk = None
                    if chunk is not None:
                        self.assertNotEqual(chunk, b"", "closed early after %d bytes" % c[4])
                        self.assertLessEqual(c[4] + len(chunk), len(want), "more bytes than sent")
                        self.assertTrue(chunk == want[c[4]:c[4] + len(chunk)],
                                        "bytes changed or out of order at offset %d" % c[4])
                        c[4] += len(chunk)
                if c[2] == len(out) and c[4] == len(want):
                    sel.unregister(s)
                    pending -= 1
                elif c[2] == len(out) and key.events != selectors.EVENT_READ:
                    sel.modify(s, selectors.EVENT_READ, c)
        sel.close()
        self.assertEqual(pending, 0, "exchange not done in %.0f s" % DEADLINE)
        for c in conns:
            self.assertEqual((c[2], c[4]), (VOLUME, VOLUME))
        # Its own count agrees, and some pairs crossed threads (2 threads,
        # 100 connections spread by SO_REUSEPORT: all on one is ~2^-50).
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0)
        m = re.search(rb"(\d+) pairs \((\d+) across threads\), (\d+) bytes", self.proc.stderr.read())
        self.assertIsNotNone(m)
        self.assertEqual(int(m[1]), PAIRS)
        self.assertGreater(int(m[2]), 0)
        self.assertEqual(int(m[3]), 2 * PAIRS * VOLUME)

    def test_malformed_first_line_closed(self):
        for bad in [b"HELLO 1 0\n", b"STANZA-BENCH-RAW x 0\n", b"STANZA-BENCH-RAW 1 2\n",
                    b"STANZA-BENCH-RAW 1  0\n", b"STANZA-BENCH-RAW 99999999999999999999 0\n",
                    b"A" * 200]:
            with self.subTest(bad=bad[:40]):
                self.expect_closed(self.connect(bad))
        # A second connection claiming the waiting side is closed; the
        # waiting one still pairs.
        a = self.connect(hello(7, 0))
        time.sleep(0.1)
        self.expect_closed(self.connect(hello(7, 0)))
        b = self.connect(hello(7, 1))
        b.sendall(b"ping")
        a.settimeout(10)
        self.assertEqual(a.recv(4), b"ping")

    def test_close_closes_peer(self):
        for first in (0, 1):
            with self.subTest(closing_side=first):
                pair = 20 + first
                s = [self.connect(hello(pair, 0)), self.connect(hello(pair, 1))]
                s[0].sendall(b"x")
                s[1].settimeout(10)
                self.assertEqual(s[1].recv(1), b"x")
                s[first].sendall(b"last")
                s[first].close()
                other = s[1 - first]
                other.settimeout(10)
                got = b""
                for _ in range(10):
                    chunk = other.recv(16)
                    if not chunk:
                        break
                    got += chunk
                self.assertEqual(got, b"last")
                self.expect_closed(other)
        # A waiting connection that goes away takes nothing with it: a new
        # pair with the same id forms.
        w = self.connect(hello(30, 0))
        time.sleep(0.1)
        w.close()
        time.sleep(0.1)
        a = self.connect(hello(30, 0))
        b = self.connect(hello(30, 1))
        a.sendall(b"again")
        b.settimeout(10)
        self.assertEqual(b.recv(5), b"again")

    def test_backpressure(self):
        """A peer that does not read stops its sender (no unbounded buffer in
        the forwarder); once it reads, every byte arrives."""
        a = self.connect(hello(50, 0))
        b = self.connect(hello(50, 1))
        rss0 = self.rss_kib()
        a.setblocking(False)
        block = bytes(range(251)) * 256          # the stream repeats it
        twice = memoryview(block * 2)
        sent = 0
        stalled_since = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sent < 256 << 20:
            try:
                sent += a.send(twice[sent % len(block):sent % len(block) + len(block)])
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(stalled_since, "sender never blocked: %d bytes taken" % sent)
        # Socket buffers on both hops plus one 256 KiB ring, not 256 MiB.
        self.assertLess(sent, 64 << 20)
        self.assertLess(self.rss_kib() - rss0, 8 << 10)
        b.settimeout(10)
        got = 0
        for _ in range(100000):
            if got == sent:
                break
            chunk = b.recv(len(block))
            self.assertNotEqual(chunk, b"")
            self.assertTrue(chunk == twice[got % len(block):got % len(block) + len(chunk)],
                            "bytes changed or out of order at offset %d" % got)
            got += len(chunk)
        self.assertEqual(got, sent)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def test_sigterm_exits_zero(self):
        a = self.connect(hello(40, 0))
        b = self.connect(hello(40, 1))
        a.sendall(b"up")
        b.settimeout(10)
        self.assertEqual(b.recv(2), b"up")
        self.connect(hello(41, 0))   # one left waiting
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=10), 0)
        self.expect_closed(a)
        self.expect_closed(b)


if __name__ == "__main__":
    unittest.main()
