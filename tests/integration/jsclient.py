"""@xmpp/client (xmpp.js, npm) as the tests' second client library.

js/xmpp_client.js runs one session in a node process, driven by JSON lines
on stdin; its events come back on stdout. JsClient is the Python side: a
reader thread queues the events, and every wait is bounded.

Needs node >= 20.10 (@xmpp/client 0.14.0's engines) and js/node_modules
(`npm ci` in tests/integration/js: scripts/deps.sh does it). Without them
available() says why and the tests that need the library skip.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

from harness import DOMAIN, PASSWORD

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(HERE, 'js')
SCRIPT = os.path.join(JS_DIR, 'xmpp_client.js')


def node_path():
    return os.environ.get('NODE') or shutil.which('node')


def available():
    """None if the library can run here, else why not."""
    node = node_path()
    if not node:
        return 'node not found (Debian package nodejs; scripts/deps.sh)'
    try:
        v = subprocess.run([node, '--version'], capture_output=True, timeout=10).stdout.decode().strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return 'node --version: %s' % e
    m = re.match(r'v(\d+)\.(\d+)', v)
    if not m or (int(m.group(1)), int(m.group(2))) < (20, 10):
        return 'node %s is older than 20.10, which @xmpp/client 0.14.0 requires' % v
    if not os.path.isdir(os.path.join(JS_DIR, 'node_modules', '@xmpp', 'client')):
        return 'tests/integration/js/node_modules missing (npm ci in tests/integration/js; scripts/deps.sh)'
    return None


def _parse(text):
    """A stanza as xmpp.js serialises it (no xmlns: the stream's default
    jabber:client applies) → ET with '{jabber:client}' names."""
    return ET.fromstring("<w xmlns='jabber:client'>%s</w>" % text)[0]


class JsClient:
    """One xmpp.js session in its own node process."""

    def __init__(self, user, resource='js', name=None):
        self.user = user
        self.resource = resource
        self.name = name or '%s/%s' % (user, resource)
        self.jid = None
        self.events = queue.Queue()
        self.stanzas = queue.Queue()     # ET elements, in arrival order
        self.pushes = queue.Queue()      # accepted roster pushes (ET)
        self.ignored = []                # 'from' of ignored roster pushes
        self.errors = []
        self.login_info = None
        env = dict(os.environ)
        # The test's self-signed certificate: accepted in this process only.
        env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0'
        env['NODE_NO_WARNINGS'] = '1'
        self.proc = subprocess.Popen([node_path(), SCRIPT], cwd=JS_DIR, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr = []
        self._errt = threading.Thread(target=self._read_err, daemon=True)
        self._errt.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            kind = ev.get('ev')
            if kind == 'stanza':
                try:
                    self.stanzas.put(_parse(ev['xml']))
                except ET.ParseError:
                    pass
            elif kind == 'roster_push':
                self.pushes.put(_parse(ev['xml']))
            elif kind == 'roster_push_ignored':
                self.ignored.append(ev.get('from'))
            elif kind == 'error':
                self.errors.append(ev)
            self.events.put(ev)
        self.events.put({'ev': 'eof'})

    def _read_err(self):
        for line in self.proc.stderr:
            if len(self._stderr) < 200:
                self._stderr.append(line.decode(errors='replace').rstrip())

    def cmd(self, **kw):
        self.proc.stdin.write((json.dumps(kw) + '\n').encode())
        self.proc.stdin.flush()

    def wait_event(self, kinds, timeout=15, pred=None):
        """The next event of one of these kinds (others are skipped)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            if ev['ev'] in kinds and (pred is None or pred(ev)):
                return ev
            if ev['ev'] == 'eof':
                raise AssertionError('%s: node exited (%r)\n%s'
                                     % (self.name, self.proc.poll(), '\n'.join(self._stderr[-20:])))
        raise AssertionError('%s: no %s event within %ss' % (self.name, '/'.join(kinds), timeout))

    def login(self, port, mech='SCRAM-SHA-1', timeout=20):
        self.cmd(op='login', service='xmpp://127.0.0.1:%d' % port, domain=DOMAIN,
                 username=self.user, password=PASSWORD, resource=self.resource, mech=mech)
        ev = self.wait_event(('online', 'login_failed'), timeout)
        if ev['ev'] != 'online':
            raise AssertionError('%s: @xmpp/client login failed: %s\n%s'
                                 % (self.name, ev.get('error'), '\n'.join(self._stderr[-20:])))
        self.login_info = ev
        self.jid = ev['jid']
        return self

    def send(self, xml_text):
        self.cmd(op='send', xml=xml_text)

    def iq(self, xml_text, timeout=10):
        """Send an iq through the library's iq caller; ('result', ET iq) or
        ('error', (type, condition))."""
        qid = 'q%d' % int(time.monotonic() * 1e6)
        self.cmd(op='iq', id=qid, xml=xml_text, timeout=int(timeout * 1000))
        ev = self.wait_event(('iq',), timeout + 5, pred=lambda e: e.get('id') == qid)
        if ev['type'] == 'result':
            return 'result', _parse(ev['xml'])
        return ev['type'], (ev.get('error_type'), ev.get('condition'), ev.get('error'))

    def next_stanza(self, pred, timeout=10, what='stanza'):
        """The first received stanza (ET) for which pred is true; skips others."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                el = self.stanzas.get(timeout=left)
            except queue.Empty:
                break
            if pred(el):
                return el
        raise AssertionError('%s: no %s within %ss' % (self.name, what, timeout))

    def expect(self, wanted, timeout=10):
        """{name: pred}: one received stanza for each pred, in any order
        (stanzas no pred wants are skipped). Returns {name: ET}."""
        left_preds = dict(wanted)
        got = {}
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            if not left_preds:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                el = self.stanzas.get(timeout=left)
            except queue.Empty:
                break
            for name, pred in list(left_preds.items()):
                if pred(el):
                    got[name] = el
                    del left_preds[name]
                    break
        raise AssertionError('%s: missing %s within %ss' % (self.name, sorted(left_preds), timeout))

    def drain(self, wait=0.3):
        """Everything received within wait seconds."""
        got = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            try:
                got.append(self.stanzas.get(timeout=max(0.01, left)))
            except queue.Empty:
                if left <= 0:
                    return got

    def stop(self, timeout=10):
        if self.proc.poll() is not None:
            return
        try:
            self.cmd(op='stop')
            self.wait_event(('stopped', 'eof'), timeout)
        except (AssertionError, OSError):
            pass

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd(op='exit')
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
