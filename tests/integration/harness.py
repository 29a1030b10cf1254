"""End-to-end test harness: a real stanzad on loopback, real clients.

Stdlib plus slixmpp only. Run the tests with Debian's interpreter
(/usr/bin/python3: a pyenv python on PATH does not see python3-slixmpp):

    STANZAD=build/cmd/stanzad STANZACTL=build/cmd/stanzactl \
        /usr/bin/python3 -m unittest discover -s tests/integration -v

Without STANZAD/STANZACTL the harness looks in build-integ/cmd and build/cmd
under the repository root.

What the harness does:
  * Server: a temporary data directory, a generated libconfig file (small
    limits for the bad-input tests), ephemeral ports (bind port 0, close,
    pass --listen 127.0.0.1:P --listen-tls 127.0.0.1:Q), 2 workers, domain
    'localhost'; accounts created with `stanzactl -d DATA account add JID`
    (password on stdin) before the server starts; waits until both ports
    accept; SIGTERM to its own PID at the end, and checks the exit code.
    The server's output goes to a log file, printed (tail) when a test fails.
  * Loop: one asyncio event loop in a thread per test class; slixmpp
    clients live in it, the tests submit coroutines with a bounded timeout.
  * Client: slixmpp.ClientXMPP that does not verify the self-signed
    certificate, forces a SASL mechanism, and queues what it receives.
  * Raw: a plain socket (optionally TLS through the ssl module) that speaks
    XMPP by hand, for bad input and for what no library does (SCRAM -PLUS).

Every wait is bounded in time; every loop is bounded in count.
"""

import asyncio
import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOMAIN = 'localhost'
PASSWORD = 'correct horse battery staple'

STREAMS_NS = 'urn:ietf:params:xml:ns:xmpp-streams'
# The SASL mechanism the library clients are forced to use.
MECH = os.environ.get('INTEG_SASL_MECH', 'SCRAM-SHA-256')


def log(msg):
    """What the test checks, one line, flushed (meson keeps stdout)."""
    print('  * ' + msg, flush=True)


def _find_exe(env, name):
    p = os.environ.get(env)
    if p:
        return p
    for build in ('build-integ', 'build'):
        cand = os.path.join(ROOT, build, 'cmd', name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def stanzad_path():
    return _find_exe('STANZAD', 'stanzad')


def stanzactl_path():
    return _find_exe('STANZACTL', 'stanzactl')


def strophe_client_path():
    p = os.environ.get('STROPHE_CLIENT')
    if p:
        return p
    for build in ('build-integ', 'build'):
        cand = os.path.join(ROOT, build, 'tests', 'integration', 'strophe_client')
        if os.access(cand, os.X_OK):
            return cand
    return None


def free_port():
    """An ephemeral port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_port(port, deadline, proc=None):
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def _libconfig_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return '%dL' % v if v > 0x7fffffff else str(v)
    if isinstance(v, str):
        return '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
    raise TypeError(v)


def libconfig_text(settings):
    """{'limits': {'max_stanza': 65536}, 'workers': 2} -> libconfig text.
    Nested dicts become groups."""
    out = []

    def emit(d, indent):
        for k, v in d.items():
            if isinstance(v, dict):
                out.append('%s%s = {' % (indent, k))
                emit(v, indent + '  ')
                out.append('%s};' % indent)
            else:
                out.append('%s%s = %s;' % (indent, k, _libconfig_value(v)))

    emit(settings, '')
    return '\n'.join(out) + '\n'


# Settings the tests rely on (names as in docs/CONFIG.md). The bad-input
# tests need small limits so that they run in seconds.
TEST_SETTINGS = {
    'limits': {
        'max_stanza': 64 * 1024,
        'max_output': 256 * 1024,
        'header_timeout_ms': 2000,
        'auth_timeout_ms': 10000,
    },
    'auth': {
        'max_failures': 3,
        'failure_delay_ms': 0,
        'scram_iterations': 4096,
    },
}


class Server:
    """One stanzad process on loopback, with its own data directory."""

    def __init__(self, accounts=(), workers=2, settings=None, name='stanzad'):
        self.exe = stanzad_path()
        self.ctl = stanzactl_path()
        self.accounts = list(accounts)
        self.workers = workers
        self.settings = TEST_SETTINGS if settings is None else settings
        self.name = name
        self.proc = None
        self.tmp = None
        self.logf = None
        self.exit_code = None

    # -- life ------------------------------------------------------------
    def start(self, timeout=20):
        if not self.exe or not os.access(self.exe, os.X_OK):
            raise unittest.SkipTest('stanzad not built (set STANZAD)')
        if not self.ctl or not os.access(self.ctl, os.X_OK):
            raise unittest.SkipTest('stanzactl not built (set STANZACTL)')
        self.tmp = tempfile.mkdtemp(prefix='stanzad-integ-')
        self.data = os.path.join(self.tmp, 'data')
        os.mkdir(self.data, 0o700)
        self.conf = os.path.join(self.tmp, 'stanzad.conf')
        with open(self.conf, 'w') as f:
            f.write(libconfig_text(self.settings))
        self.log_path = os.path.join(self.tmp, 'stanzad.log')
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        for jid in self.accounts:
            self.add_account(jid, PASSWORD)
        self.logf = open(self.log_path, 'ab')
        argv = [self.exe, '-c', self.conf, '-d', self.data, '-D', DOMAIN,
                '-w', str(self.workers),
                '--listen', '127.0.0.1:%d' % self.port,
                '--listen-tls', '127.0.0.1:%d' % self.tls_port]
        log('start %s' % ' '.join(argv))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.tmp)
        deadline = time.monotonic() + timeout
        ok = (wait_port(self.port, deadline, self.proc)
              and wait_port(self.tls_port, deadline, self.proc))
        if not ok:
            rc = self.proc.poll()
            self.kill()
            raise AssertionError('stanzad did not accept on 127.0.0.1:%d/%d (exit %r)\n%s'
                                 % (self.port, self.tls_port, rc, self.log_tail()))
        return self

    def add_account(self, jid, password):
        r = subprocess.run([self.ctl, '-d', self.data, 'account', 'add', jid],
                           input=(password + '\n').encode(), capture_output=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError('stanzactl account add %s: exit %d\n%s%s'
                                 % (jid, r.returncode, r.stdout.decode(errors='replace'),
                                    r.stderr.decode(errors='replace')))

    def ctl_run(self, *args, timeout=15):
        r = subprocess.run([self.ctl, '-d', self.data] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(errors='replace'), r.stderr.decode(errors='replace')

    def sessions(self):
        """[(full_jid, worker)] from `stanzactl sessions`."""
        rc, out, err = self.ctl_run('sessions')
        if rc != 0:
            raise AssertionError('stanzactl sessions: exit %d\n%s%s' % (rc, out, err))
        result = []
        for line in out.splitlines():
            # control/ctl.c: "WORKER PRIORITY available|away FULLJID"
            parts = line.split(None, 3)
            if len(parts) == 4 and parts[0].isdigit() and '@' in parts[3]:
                result.append((parts[3].strip(), int(parts[0])))
                continue
            m_jid = re.search(r'(\S+@\S+?/\S+)', line)
            if not m_jid:
                continue
            jid = m_jid.group(1).strip(',;')
            m_w = re.search(r'worker[\s=:]*(\d+)', line, re.I)
            if not m_w:
                # columns: a bare number that is not part of the JID
                rest = line.replace(m_jid.group(1), ' ')
                nums = re.findall(r'(?<![\w.-])(\d+)(?![\w.-])', rest)
                if not nums:
                    continue
                worker = int(nums[0])
            else:
                worker = int(m_w.group(1))
            result.append((jid, worker))
        return result

    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        return rss_kb(self.proc.pid)

    def stop(self, timeout=10):
        """SIGTERM to our PID; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.exit_code = None
        else:
            self.exit_code = self.proc.returncode
        return self.exit_code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def cleanup(self):
        self.kill()
        if self.logf:
            self.logf.close()
            self.logf = None
        if self.tmp and not os.environ.get('STANZAD_KEEP'):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, 'rb') as f:
                data = f.read().decode(errors='replace').splitlines()
        except OSError:
            return '(no log)'
        return '\n'.join('    | ' + l for l in data[-lines:])

    def log_text(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode(errors='replace')
        except OSError:
            return ''


class Loop:
    """An asyncio loop in a thread; slixmpp clients live in it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True, name='xmpp-loop')
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout=20):
        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        return fut.result(timeout + 5)

    def call(self, fn, *args):
        """Run a plain function in the loop's thread and return its result."""
        async def wrap():
            return fn(*args)
        return self.run(wrap(), 10)

    def close(self):
        async def drain():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.sleep(0)
        try:
            self.run(drain(), 5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def make_client(jid, password=PASSWORD, mech=None, library_defaults=False):
    """A slixmpp client (created in the loop's thread: call from a coroutine).

    By default it is forced to MECH (SCRAM-SHA-256) and told it has no
    channel binding, so that it sends the GS2 flag 'n'. Left alone
    (library_defaults=True), slixmpp 1.8.3 picks SCRAM-*-PLUS with
    p=tls-unique, and when forced to a non-PLUS SCRAM it still finds the
    tls-unique bytes on its ssl.SSLObject and sends 'y', which RFC 5802 6
    obliges a server that advertises -PLUS to refuse."""
    import slixmpp  # imported here so that the raw tests run without it

    class Client(slixmpp.ClientXMPP):
        def __init__(self):
            super().__init__(jid, password,
                             sasl_mech=None if library_defaults else (mech or MECH))
            if not library_defaults:
                fm = self['feature_mechanisms']
                orig = fm.sasl_callback

                def no_cb(required, optional):
                    creds = orig(required, optional)
                    if 'channel_binding' in creds:
                        creds['channel_binding'] = None
                    return creds
                fm.sasl_callback = no_cb
            self.loop = asyncio.get_running_loop()
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
            self.register_plugin('xep_0199')      # XMPP Ping
            self.register_plugin('xep_0030')      # disco (for unknown-iq replies)
            self.started = self.loop.create_future()
            self.gone = asyncio.Event()
            self.inbox = asyncio.Queue()
            self.presences = asyncio.Queue()
            self.errors_in = asyncio.Queue()
            self.stream_errors = []
            self.raw_in = []                     # incoming data, kept small
            self.add_event_handler('session_start', self._on_start)
            self.add_event_handler('failed_all_auth', self._on_fail)
            self.add_event_handler('connection_failed', self._on_fail)
            self.add_event_handler('message', lambda m: self.inbox.put_nowait(m))
            self.add_event_handler('message_error', lambda m: self.errors_in.put_nowait(m))
            self.add_event_handler('presence', lambda p: self.presences.put_nowait(p))
            self.add_event_handler('stream_error', lambda e: self.stream_errors.append(e['condition']))
            self.add_event_handler('disconnected', self._on_gone)
            self.add_event_handler('killed', self._on_gone)

        def _on_start(self, _):
            if not self.started.done():
                self.started.set_result(True)

        def _on_fail(self, e):
            if not self.started.done():
                self.started.set_exception(AssertionError('%s: login failed: %r' % (jid, e)))

        def _on_gone(self, _):
            self.gone.set()
            if not self.started.done():
                self.started.set_exception(AssertionError('%s: disconnected before session start' % jid))

        def mech_used(self):
            m = self['feature_mechanisms'].mech
            return m.name if m is not None else None

        async def login(self, port, direct_tls=False, timeout=15):
            self.connect(('127.0.0.1', port), use_ssl=direct_tls,
                         force_starttls=not direct_tls, disable_starttls=False)
            await asyncio.wait_for(asyncio.shield(self.started), timeout)
            return self

        async def recv(self, timeout=10):
            return await asyncio.wait_for(self.inbox.get(), timeout)

        async def recv_body(self, body, timeout=10, limit=10000):
            """Skip other messages until one with this body (bounded)."""
            deadline = self.loop.time() + timeout
            for _ in range(limit):
                left = deadline - self.loop.time()
                if left <= 0:
                    break
                try:
                    m = await asyncio.wait_for(self.inbox.get(), left)
                except asyncio.TimeoutError:
                    break
                if m['body'] == body:
                    return m
            raise AssertionError('%s: no message %r within %ss' % (jid, body, timeout))

        async def close(self, timeout=5):
            if self.transport is not None:
                self.disconnect(wait=1)
                try:
                    await asyncio.wait_for(self.gone.wait(), timeout)
                except asyncio.TimeoutError:
                    self.abort()

    return Client()


# --------------------------------------------------------------------------
# Raw XMPP over a socket (no library), for bad input and -PLUS.

def stream_header(to=DOMAIN, version='1.0', ns='jabber:client',
                  stream_ns='http://etherx.jabber.org/streams', decl=True):
    v = " version='%s'" % version if version is not None else ''
    t = " to='%s'" % to if to is not None else ''
    return ("%s<stream:stream%s%s xmlns='%s' xmlns:stream='%s' xml:lang='en'>"
            % ("<?xml version='1.0'?>" if decl else '', t, v, ns, stream_ns)).encode()


def stream_error_condition(text):
    """The defined condition of the first <stream:error/> in text, or None."""
    m = re.search(r'<(?:[A-Za-z_][\w.-]*:)?error[\s>/]', text)
    if not m:
        return None
    rest = text[m.start():]
    for c in re.finditer(r"<([a-z-]+)\s+xmlns\s*=\s*['\"]%s['\"]\s*/?>" % re.escape(STREAMS_NS), rest):
        if c.group(1) != 'text':
            return c.group(1)
    return None


def stream_closed(text):
    return re.search(r'</(?:[A-Za-z_][\w.-]*:)?stream\s*>', text) is not None


class Raw:
    """A hand-driven XMPP connection on 127.0.0.1 (TCP, then maybe TLS)."""

    def __init__(self, port, direct_tls=False, rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(('127.0.0.1', port))
        self.buf = ''
        self.eof = False
        self.reset = False
        self.tls = None
        if direct_tls:
            self._wrap()

    def _wrap(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(['xmpp-client'])
        self.sock = ctx.wrap_socket(self.sock, server_hostname=DOMAIN)
        self.tls = self.sock

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_until_closed(self, data):
        """Send, tolerating the server closing mid-way (it may close its
        side as soon as it has seen enough, e.g. a stanza over the limit);
        what it sent before closing is still read by read_to_close."""
        try:
            self.send(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def _recv_once(self, timeout):
        self.sock.settimeout(max(0.01, timeout))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ssl.SSLError as e:
            # close_notify missing, or a TLS alert: the stream is over
            self.eof = True
            self.reset = 'ssl: %s' % e
            return True
        except (ConnectionResetError, BrokenPipeError) as e:
            self.eof = True
            self.reset = str(e)
            return True
        if not chunk:
            self.eof = True
            return True
        self.buf += chunk.decode('utf-8', errors='replace')
        return True

    def read_until(self, pattern, timeout=10):
        """Read until regex pattern matches the buffer (returns the match),
        EOF, or timeout (returns None)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern, re.S)
        for _ in range(100000):
            m = rx.search(self.buf)
            if m:
                return m
            left = deadline - time.monotonic()
            if self.eof or left <= 0:
                return None
            self._recv_once(left)
        return None

    def take(self, upto):
        """Drop the buffer up to index upto (after a read_until match)."""
        self.buf = self.buf[upto:]

    def read_to_close(self, timeout=10):
        """Read until the server closes its stream and the socket (bounded)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if self.eof or time.monotonic() >= deadline:
                break
            self._recv_once(deadline - time.monotonic())
        return self.buf

    def open_stream(self, **kw):
        self.send(stream_header(**kw))
        m = self.read_until(r'</(?:stream:)?features>|<(?:stream:)?features[^>]*/>|</(?:stream:)?stream>', 10)
        if not m:
            raise AssertionError('no stream features: %r' % self.buf[-500:])
        feats = self.buf[:m.end()]
        self.take(m.end())
        return feats

    def starttls(self):
        feats = self.open_stream()
        assert 'urn:ietf:params:xml:ns:xmpp-tls' in feats, feats
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        m = self.read_until(r'<proceed[^>]*/>|</proceed>', 10)
        if not m:
            raise AssertionError('no <proceed/>: %r' % self.buf[-500:])
        self.take(m.end())
        self._wrap()

    def mechanisms(self, feats):
        return re.findall(r'<mechanism>([^<]+)</mechanism>', feats)

    def channel_binding(self, cb_type):
        if cb_type == 'tls-server-end-point':
            der = self.tls.getpeercert(binary_form=True)
            return hashlib.sha256(der).digest()   # RFC 5929 4.1: SHA-256 for SHA-1/SHA-256 signed certs
        if cb_type == 'tls-unique':
            return self.tls.get_channel_binding('tls-unique')
        raise ValueError(cb_type)

    def scram(self, user, password, mech=None, cb_type=None, timeout=10):
        """SCRAM (RFC 5802/7677), with channel binding for -PLUS. Returns
        ('success', text) or ('failure', condition)."""
        mech = mech or MECH
        hname = {'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256',
                 'SCRAM-SHA-512': 'sha512'}[mech.replace('-PLUS', '')]
        nonce = base64.b64encode(os.urandom(18)).decode()
        gs2 = ('p=%s,,' % cb_type) if mech.endswith('-PLUS') else 'n,,'
        first_bare = 'n=%s,r=%s' % (user.replace('=', '=3D').replace(',', '=2C'), nonce)
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='%s'>%s</auth>"
                  % (mech, base64.b64encode((gs2 + first_bare).encode()).decode()))
        m = self.read_until(r'<challenge[^>]*>([^<]*)</challenge>|<failure[^>]*>(.*?)</failure>|<failure[^>]*/>', timeout)
        if not m:
            raise AssertionError('no SASL challenge: %r' % self.buf[-500:])
        self.take(m.end())
        if m.group(1) is None:
            return 'failure', _sasl_condition(m.group(0))
        server_first = base64.b64decode(m.group(1)).decode()
        attrs = dict(kv.split('=', 1) for kv in server_first.split(','))
        assert attrs['r'].startswith(nonce), server_first
        salt = base64.b64decode(attrs['s'])
        iters = int(attrs['i'])
        salted = hashlib.pbkdf2_hmac(hname, password.encode(), salt, iters)
        client_key = hmac.new(salted, b'Client Key', hname).digest()
        stored_key = hashlib.new(hname, client_key).digest()
        cb_data = self.channel_binding(cb_type) if mech.endswith('-PLUS') else b''
        cbind = base64.b64encode(gs2.encode() + cb_data).decode()
        final_wo_proof = 'c=%s,r=%s' % (cbind, attrs['r'])
        auth_msg = ','.join([first_bare, server_first, final_wo_proof]).encode()
        sig = hmac.new(stored_key, auth_msg, hname).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</response>"
                  % base64.b64encode((final_wo_proof + ',p=' + base64.b64encode(proof).decode()).encode()).decode())
        m = self.read_until(r'<success[^>]*/>|<success[^>]*>([^<]*)</success>|<failure[^>]*>(.*?)</failure>|<failure[^>]*/>', timeout)
        if not m:
            raise AssertionError('no SASL outcome: %r' % self.buf[-500:])
        self.take(m.end())
        if m.group(0).startswith('<success'):
            if m.group(1):
                server_key = hmac.new(salted, b'Server Key', hname).digest()
                v = base64.b64encode(hmac.new(server_key, auth_msg, hname).digest()).decode()
                final = base64.b64decode(m.group(1)).decode()
                assert final == 'v=' + v, 'server signature mismatch: %r' % final
            return 'success', m.group(0)
        return 'failure', _sasl_condition(m.group(0))

    def bind(self, resource='raw', timeout=10):
        feats = self.open_stream()
        assert 'urn:ietf:params:xml:ns:xmpp-bind' in feats, feats
        self.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<resource>%s</resource></bind></iq>" % resource)
        m = self.read_until(r'<jid>([^<]+)</jid>', timeout)
        if not m:
            raise AssertionError('no bind result: %r' % self.buf[-500:])
        jid = m.group(1)
        m2 = self.read_until(r'</iq>', timeout)
        self.take(m2.end() if m2 else m.end())
        if 'urn:ietf:params:xml:ns:xmpp-session' in feats and '<optional' not in feats:
            self.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
            m3 = self.read_until(r"<iq[^>]*id=['\"]s1['\"][^>]*(/>|>.*?</iq>)", timeout)
            if m3:
                self.take(m3.end())
        return jid

    def login(self, user, password=PASSWORD, resource='raw', mech=None):
        """STARTTLS (unless already TLS), SCRAM, bind. Returns the full JID."""
        if self.tls is None:
            self.starttls()
        feats = self.open_stream()
        mech = mech or MECH
        assert mech in self.mechanisms(feats), feats
        outcome, detail = self.scram(user, password, mech)
        assert outcome == 'success', (outcome, detail)
        return self.bind(resource)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _sasl_condition(failure_xml):
    m = re.search(r'<failure[^>]*>\s*<([a-z-]+)', failure_xml)
    return m.group(1) if m else ''


class ServerTestCase(unittest.TestCase):
    """Prints the server log tail when a test of the class fails.

    A class that sets `accounts` (full JIDs) gets a server of its own for
    its tests, with `workers` and `server_settings` (None: TEST_SETTINGS),
    and an event loop (`loop`); both are stopped after its last test, and a
    server that does not exit cleanly on SIGTERM fails the class. A class
    that leaves `accounts` at None starts what it needs itself."""

    server = None
    loop = None
    accounts = None
    workers = 2
    server_settings = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.accounts is None:
            return
        cls.server = Server(accounts=cls.accounts, workers=cls.workers,
                            settings=cls.server_settings).start()
        cls.loop = Loop()

    @classmethod
    def tearDownClass(cls):
        if cls.accounts is not None:
            cls.loop.close()
            rc = cls.server.stop()
            cls.server.cleanup()
            if rc != 0:
                raise AssertionError('stanzad exit code %r after SIGTERM' % rc)
        super().tearDownClass()

    def run(self, result=None):
        before = (len(result.failures) + len(result.errors)) if result is not None else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            srv = type(self).server
            if srv is not None:
                print('\n--- stanzad log tail (%s) ---\n%s\n---' % (self.id(), srv.log_tail()),
                      file=sys.stderr, flush=True)
        return r
