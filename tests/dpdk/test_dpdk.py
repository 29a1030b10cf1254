"""stanzad on its DPDK transport, driven by ordinary kernel-TCP clients in a
network namespace (tests/dpdk/rig.py draws the rig).

    tests/dpdk/run.sh                  # as root; what scripts/test.sh runs
    STANZAD=build/cmd/stanzad /usr/bin/python3 -m unittest -v tests/dpdk/test_dpdk.py

One server for the module (2 workers, two queue pairs on net_af_packet);
the tests run in name order, each bounded in time and in count:
ICMP echo, RST for a closed port, malformed packets counted and dropped,
slixmpp over STARTTLS exchanging messages both ways, 1000 concurrent
connections, one session moving 100 MB of stanzas, the same traffic under
tc netem (loss, reordering, duplication, delay) arriving in order exactly
once, a SYN flood from raw packets while real clients still connect, and
no memory growth once the clients are gone. tearDownModule stops the
server with SIGTERM and requires exit status 0.
"""

import asyncio
import os
import random
import re
import selectors
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rig as rigmod                      # noqa: E402
from rig import SERVER_IP, CLIENT_IP, log  # noqa: E402

import harness                             # noqa: E402  (tests/integration)

PASSWORD = harness.PASSWORD
USERS = ['u%d@localhost' % i for i in range(8)]

RIG = None
LOOP = None


def setUpModule():
    global RIG, LOOP
    why = rigmod.missing_prerequisites(rigmod.find_exe('STANZAD', 'cmd', 'stanzad'))
    if why:
        raise unittest.SkipTest(why)
    RIG = rigmod.Rig(workers=2, accounts=USERS, password=PASSWORD)
    try:
        RIG.net_up()
        RIG.start()
    except Exception:
        RIG.cleanup()
        raise
    LOOP = harness.Loop()          # created after setns: its thread is in the client namespace


def tearDownModule():
    if LOOP:
        LOOP.close()
    if RIG:
        try:
            st = RIG.stats()
            log('counters at the end: ' + ' '.join('%s=%s' % kv for kv in sorted(st.items()) if kv[1]))
            # A client still connected at shutdown hears why and sees the
            # stream close: the transport sends what the router queued
            # last, after the workers stopped.
            r = Raw()
            r.open_stream()
            code = RIG.stop()
            tail = r.read_to_close(10)
            r.close()
            text = RIG.log_text()
            assert code == 0, 'stanzad exit %r\n%s' % (code, RIG.log_tail())
            assert 'dpdk: rx_packets' in text, 'no counters line at shutdown'
            assert 'system-shutdown' in tail and r.eof, 'at shutdown the client got %r' % tail[-300:]
            log('at shutdown: <system-shutdown/> and the stream closed')
        finally:
            RIG.cleanup()


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


# ---------------------------------------------------------------------------
# Raw XMPP on the DPDK address (the harness's Raw speaks to 127.0.0.1).

class Raw(harness.Raw):
    def __init__(self, port=5222, direct_tls=False, timeout=10):
        self.sock = socket.create_connection((SERVER_IP, port), timeout=timeout)
        self.buf = ''
        self.eof = False
        self.reset = False
        self.tls = None
        if direct_tls:
            self._wrap()


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ip_header(src, dst, proto, payload_len, ident=1, frag=0x4000, ttl=64, total=None, bad_csum=False):
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, total if total is not None else 20 + payload_len, ident, frag, ttl,
                    proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    c = checksum(h)
    if bad_csum:
        c ^= 0x5555
    return h[:10] + struct.pack('!H', c) + h[12:]


def tcp_segment(src, dst, sport, dport, seq, flags, bad_csum=False):
    hdr = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 6, len(hdr))
    c = checksum(pseudo + hdr)
    if bad_csum:
        c ^= 0x1234
    return hdr[:16] + struct.pack('!H', c) + hdr[18:]


def icmp_echo(ident, seq, payload=b'stanzad-dpdk'):
    h = struct.pack('!BBHHH', 8, 0, 0, ident, seq) + payload
    return h[:2] + struct.pack('!H', checksum(h)) + h[4:]


class L2:
    """Frames on the client's veth, for what the kernel would not send."""

    def __init__(self):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.s.bind((RIG.vc, 0))
        self.dst = RIG.server_mac()
        self.src = RIG.client_mac()

    def send(self, l3, ethertype=0x0800):
        self.s.send(self.dst + self.src + struct.pack('!H', ethertype) + l3)

    def close(self):
        self.s.close()


def wait_until(fn, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


# ---------------------------------------------------------------------------

class T(unittest.TestCase):

    def test_01_ping(self):
        """ICMP echo requests are answered, payload intact."""
        before = RIG.stats()
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        s.settimeout(2)
        got = 0
        try:
            for seq in range(5):
                s.sendto(icmp_echo(0x4242, seq), (SERVER_IP, 0))
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    pkt, addr = s.recvfrom(2048)
                    ihl = (pkt[0] & 15) * 4
                    t, _, _, ident, sq = struct.unpack('!BBHHH', pkt[ihl:ihl + 8])
                    if addr[0] == SERVER_IP and t == 0 and ident == 0x4242 and sq == seq:
                        self.assertEqual(pkt[ihl + 8:], b'stanzad-dpdk')
                        got += 1
                        break
        finally:
            s.close()
        self.assertEqual(got, 5)
        self.assertGreaterEqual(delta(before, RIG.stats(), 'icmp_echo'), 5)
        log('5/5 echo replies')

    def test_02_rst_closed_port(self):
        """A SYN to a port nobody listens on gets a RST: refused at once."""
        before = RIG.stats()
        t0 = time.monotonic()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((SERVER_IP, 5999), timeout=5)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertGreaterEqual(delta(before, RIG.stats(), 'tcp_rst_tx'), 1)
        log('refused in %.1f ms' % ((time.monotonic() - t0) * 1000))

    def test_03_bad_packets_counted(self):
        """Bad IPv4 headers, bad checksums, other protocols, other
        addresses: dropped, each on its counter, and the server keeps
        serving."""
        l2 = L2()
        before = RIG.stats()
        try:
            ping = icmp_echo(1, 1)
            # first fragment of an echo request (MF set)
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 1, len(ping), frag=0x2000) + ping)
            # a later fragment (offset 8 bytes)
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 1, len(ping), frag=0x0001) + ping)
            # bad header checksum
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 1, len(ping), bad_csum=True) + ping)
            # total length beyond the frame
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 1, len(ping), total=1400) + ping)
            # header length below 20: version/IHL 0x44
            h = bytearray(ip_header(CLIENT_IP, SERVER_IP, 1, len(ping)))
            h[0] = 0x44
            l2.send(bytes(h) + ping)
            # TCP with a bad checksum
            seg = tcp_segment(CLIENT_IP, SERVER_IP, 40000, 5222, 1, 0x02, bad_csum=True)
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 6, len(seg)) + seg)
            # UDP
            udp = struct.pack('!HHHH', 1234, 5222, 12, 0) + b'abcd'
            l2.send(ip_header(CLIENT_IP, SERVER_IP, 17, len(udp)) + udp)
            # not our address
            l2.send(ip_header(CLIENT_IP, '198.18.0.77', 1, len(ping)) + ping)
            # an IPv6 ethertype
            l2.send(b'\x60' + b'\0' * 39, ethertype=0x86dd)
        finally:
            l2.close()
        # Fragments are sent but not counted on here: af_packet's fanout
        # (PACKET_FANOUT_FLAG_DEFRAG) reassembles or drops them in the
        # kernel before DPDK sees them. A real NIC hands them over.
        want = {'drop_ip_csum': 1, 'drop_bad_ip': 2, 'drop_bad_l4': 1,
                'drop_proto': 1, 'drop_not_us': 1, 'drop_not_ip': 1}
        after = wait_until(lambda: (lambda a: a if all(delta(before, a, k) >= v for k, v in want.items()) else None)
                           (RIG.stats()), 5)
        after = after or RIG.stats()
        for k, v in want.items():
            self.assertGreaterEqual(delta(before, after, k), v, k)
        self.assertTrue(RIG.connect_ok(5222, 3))
        log(', '.join('%s +%d' % (k, delta(before, after, k)) for k in want))

    def test_04_slixmpp_tls(self):
        """Two slixmpp clients log in over STARTTLS (SCRAM) and exchange
        messages both ways through the DPDK path, in order."""
        n = 200

        async def go():
            a = harness.make_client(USERS[0] + '/a', PASSWORD)
            b = harness.make_client(USERS[1] + '/b', PASSWORD)
            for c in (a, b):
                c.connect((SERVER_IP, 5222), force_starttls=True, disable_starttls=False)
            await asyncio.wait_for(asyncio.gather(asyncio.shield(a.started), asyncio.shield(b.started)), 20)
            for i in range(n):
                a.send_message(mto=USERS[1] + '/b', mbody='a%d' % i)
                b.send_message(mto=USERS[0] + '/a', mbody='b%d' % i)
            got_b = [(await b.recv(15))['body'] for _ in range(n)]
            got_a = [(await a.recv(15))['body'] for _ in range(n)]
            self.assertTrue(a.is_connected() if hasattr(a, 'is_connected') else True)
            await a.close()
            await b.close()
            return got_a, got_b

        got_a, got_b = LOOP.run(go(), 60)
        self.assertEqual(got_b, ['a%d' % i for i in range(n)])
        self.assertEqual(got_a, ['b%d' % i for i in range(n)])
        log('%d messages each way over TLS, in order' % n)

    def _open_streams(self, count, timeout=60):
        """count connections, each with its XMPP stream open (header sent,
        features read), all held at once. Returns the sockets."""
        sel = selectors.DefaultSelector()
        socks = []
        header = harness.stream_header()
        if isinstance(header, str):
            header = header.encode()
        pending = {}
        deadline = time.monotonic() + timeout
        for i in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((SERVER_IP, 5222))
            socks.append(s)
            pending[s] = b''
            sel.register(s, selectors.EVENT_WRITE)
            if i % 100 == 99:     # a ramp, as real clients come
                time.sleep(0.02)
        done = 0
        while done < count and time.monotonic() < deadline:
            for key, ev in sel.select(0.5):
                s = key.fileobj
                if ev & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    self.assertEqual(err, 0, os.strerror(err))
                    s.send(header)
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                data = s.recv(65536)
                self.assertTrue(data, 'server closed a connection')
                pending[s] += data
                if b'</stream:features>' in pending[s]:
                    sel.unregister(s)
                    done += 1
        sel.close()
        self.assertEqual(done, count, 'only %d of %d streams opened in %ds' % (done, count, timeout))
        return socks

    def test_05_thousand_connections(self):
        """1000 concurrent connections, each with its stream open."""
        t0 = time.monotonic()
        socks = self._open_streams(1000)
        took = time.monotonic() - t0
        conns, _ = RIG.sessions()
        self.assertGreaterEqual(conns, 1000)
        st = RIG.stats()
        per_q = [st.get('q%d_conns' % q, 0) for q in range(RIG.workers)]
        for s in socks:
            s.close()
        self.assertTrue(wait_until(lambda: RIG.sessions()[0] == 0, 20), 'connections left: %r' % (RIG.sessions(),))
        log('1000 streams open at once in %.1f s; TCP connections per worker %s' % (took, per_q))

    def test_06_hundred_megabytes(self):
        """One session sends 100 MB of message stanzas to another; every
        one arrives, in order, exactly once."""
        self._stream_stanzas(100 << 20, 16000, timeout=150)

    def _stream_stanzas(self, total, body_len, timeout):
        rx = Raw()
        rx.login(USERS[3].split('@')[0], PASSWORD, resource='rx')
        tx = Raw()
        tx.login(USERS[2].split('@')[0], PASSWORD, resource='tx')
        to = USERS[3] + '/rx'
        count = total // body_len
        body = 'x' * (body_len - 12)
        result = {'got': 0}
        # The sender stays at most this far ahead of the receiver: the
        # server cuts off a client that lets limits.max_output (1 MiB)
        # pile up, as it should.
        window = max(8, (512 << 10) // body_len)

        def receive():
            expect = 0
            buf = b''
            pat = re.compile(rb'<body>(\d{10}):')
            rx.sock.settimeout(2)
            deadline = time.monotonic() + timeout
            carry = rx.buf.encode()
            while expect < count and time.monotonic() < deadline:
                if carry:
                    data, carry = carry, b''
                else:
                    try:
                        data = rx.sock.recv(1 << 20)
                    except socket.timeout:
                        continue
                    if not data:
                        break
                buf += data
                last = 0
                for m in pat.finditer(buf):
                    seq = int(m.group(1))
                    if seq != expect:
                        result['error'] = 'stanza %d arrived where %d was due' % (seq, expect)
                        return
                    expect += 1
                    result['got'] = expect
                    last = m.end()
                buf = buf[last:] if last else buf[-64:] if len(buf) > 1 << 22 else buf
            result['got'] = expect
            result['done'] = True

        th = threading.Thread(target=receive, daemon=True)
        th.start()
        t0 = time.monotonic()
        chunk = []
        deadline = time.monotonic() + timeout
        for i in range(count):
            while i - result['got'] >= window and 'done' not in result and time.monotonic() < deadline:
                time.sleep(0.0005)
            chunk.append("<message to='%s' type='chat'><body>%010d:%s</body></message>" % (to, i, body))
            if len(chunk) * body_len >= 64 << 10 or i + 1 - result['got'] >= window:
                tx.send(''.join(chunk))
                chunk = []
        if chunk:
            tx.send(''.join(chunk))
        th.join(max(1, deadline - time.monotonic()))
        took = time.monotonic() - t0
        self.assertNotIn('error', result, result.get('error'))
        self.assertEqual(result.get('got'), count)
        for c in (tx, rx):
            c.send('</stream:stream>')
            c.read_to_close(5)
            c.close()
        log('%d stanzas, %d MB, in order in %.1f s (%.1f MB/s)' % (count, total >> 20, took, total / took / 1e6))
        return took

    def test_07_netem(self):
        """With 2% loss, 5% reordering, 1% duplication and 10 ms delay on
        both directions: messages arrive in order exactly once, and the
        connections close cleanly."""
        before = RIG.stats()
        how = RIG.faults(dict(delay_ms=10, loss=2, duplicate=1, reorder=5))
        log('faults by ' + how)
        try:
            self._stream_stanzas(2 << 20, 4000, timeout=90)
            n = 300

            async def go():
                a = harness.make_client(USERS[4] + '/a', PASSWORD)
                b = harness.make_client(USERS[5] + '/b', PASSWORD)
                for c in (a, b):
                    c.connect((SERVER_IP, 5222), force_starttls=True, disable_starttls=False)
                await asyncio.wait_for(asyncio.gather(asyncio.shield(a.started), asyncio.shield(b.started)), 40)
                for i in range(n):
                    a.send_message(mto=USERS[5] + '/b', mbody='n%d' % i)
                got = [(await b.recv(30))['body'] for _ in range(n)]
                await a.close(15)
                await b.close(15)
                return got, a.gone.is_set() and b.gone.is_set()

            got, closed = LOOP.run(go(), 120)
            self.assertEqual(got, ['n%d' % i for i in range(n)])
            self.assertTrue(closed)
        finally:
            RIG.faults(None)
        self.assertTrue(wait_until(lambda: RIG.sessions()[0] == 0, 20), 'sessions left: %r' % (RIG.sessions(),))
        after = RIG.stats()
        log('under netem: in order, exactly once; rx %d tx %d packets' %
            (delta(before, after, 'rx_packets'), delta(before, after, 'tx_packets')))

    def test_09_syn_flood(self):
        """Raw SYNs from spoofed addresses at full speed for 3 s; meanwhile
        real clients keep connecting and opening streams."""
        l2 = L2()
        frames = []
        rnd = random.Random(6)
        for i in range(4000):
            src = '198.18.%d.%d' % (128 + rnd.randrange(120), 1 + rnd.randrange(250))
            seg = tcp_segment(src, SERVER_IP, 1024 + rnd.randrange(60000), 5222, rnd.randrange(1 << 32), 0x02)
            frames.append(l2.dst + l2.src + b'\x08\x00' + ip_header(src, SERVER_IP, 6, len(seg), ident=i) + seg)
        before = RIG.stats()
        stop = threading.Event()
        sent = [0]

        def flood():
            s = l2.s
            while not stop.is_set():
                for f in frames:
                    try:
                        s.send(f)
                    except OSError:
                        time.sleep(0.001)
                    sent[0] += 1
                    if stop.is_set():
                        break

        th = threading.Thread(target=flood, daemon=True)
        th.start()
        ok = 0
        t0 = time.monotonic()
        try:
            time.sleep(0.5)
            # A SYN the flood crowds out of the port's ring is sent again
            # by the client's kernel after 1 s, 3 s: allow for that.
            while time.monotonic() - t0 < 3.5:
                r = Raw(timeout=10)
                feats = r.open_stream()
                self.assertIn('starttls', feats)
                r.close()
                ok += 1
        finally:
            stop.set()
            th.join(5)
            l2.close()
        after = RIG.stats()
        self.assertGreaterEqual(ok, 2)
        log('%d SYNs sent; %d real streams opened meanwhile; syn_cookies %d, syn_dropped %d, drop_arp_queue %d' %
            (sent[0], ok, delta(before, after, 'syn_cookies'), delta(before, after, 'syn_dropped'),
             delta(before, after, 'drop_arp_queue')))
        # and afterwards, logins work as before
        r = Raw()
        r.login(USERS[6].split('@')[0], PASSWORD, resource='after')
        r.close()
        # Half-open connections are bounded by the listeners' backlogs
        # (beyond them, SYN cookies keep no state).
        self.assertLessEqual(after['conns'], 2 * 2 * 1024 + 64)

    def test_08_no_memory_growth(self):
        """Rounds of 500 connections and a few logins: once the clients are
        gone, connection counters are back to zero and RSS stays flat."""
        def round_():
            socks = self._open_streams(500)
            for s in socks:
                s.close()
            r = Raw()
            r.login(USERS[7].split('@')[0], PASSWORD, resource='m')
            r.close()
            self.assertTrue(wait_until(lambda: RIG.sessions()[0] == 0, 20))
            self.assertTrue(wait_until(lambda: RIG.stats()['conns'] == 0, 40),
                            'TCP connections left: %r' % RIG.stats()['conns'])

        round_()
        base = RIG.rss_kb()
        for _ in range(3):
            round_()
        end = RIG.rss_kb()
        log('RSS %d KiB after the first round, %d KiB after three more' % (base, end))
        self.assertLess(end - base, 8 * 1024, 'RSS grew by %d KiB' % (end - base))


if __name__ == '__main__':
    unittest.main(verbosity=2)
