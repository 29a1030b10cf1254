"""stanza-bench against a real stanzad on loopback: every scenario stanzad
supports today runs for about two seconds with a few users, and what it
reports must add up (not how fast it is):

  * pairs:  every message sent was received (recv == sent, no `lost`);
  * login:  logins completed == logins requested;
  * idle:   sessions held == sessions requested, server RSS sampled;
  * each:   exit 0, no errors of any kind, the JSON report well-formed with
            the keys bench/README.md documents, the text report with the
            lines it documents, the per-second lines unless --quiet.
  * fanout and mixed need rosters (not in stanzad yet): they must report
    errors, not pretend.

Accounts are provisioned by stanza-bench itself through
`stanzactl -d DATA` (--provision stanzactl). Skips when stanza-bench is not
built (STANZA_BENCH, or build*/bench/harness/stanza-bench).
"""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, TEST_SETTINGS, Server, ServerTestCase, log  # noqa: E402

RUN_TIMEOUT = 90   # one stanza-bench run, provisioning included


def stanza_bench_path():
    p = os.environ.get('STANZA_BENCH')
    if p:
        return p
    for build in ('build-integ', 'build'):
        cand = os.path.join(ROOT, build, 'bench', 'harness', 'stanza-bench')
        if os.access(cand, os.X_OK):
            return cand
    return None


# The documented JSON keys (bench/README.md, "JSON report").
TOP_KEYS = ['schema', 'scenario', 'label', 'seconds', 'sent', 'recv', 'rate_sent', 'rate_recv',
            'logins', 'logins_per_s', 'sessions', 'latency_ns', 'errors', 'errors_total',
            'server', 'self', 'generator_bound', 'ticks', 'opts']
LATENCY_KEYS = ['p50', 'p90', 'p99', 'p999', 'max', 'min', 'mean', 'count']
ERROR_KEYS = ['connect', 'tls', 'auth', 'bind', 'stream', 'stanza', 'timeout', 'closed', 'lost']
SERVER_KEYS = ['pid', 'cores', 'rss_kib_start', 'rss_kib_end', 'rss_kib_idle', 'bytes_per_session']
TICK_KEYS = ['t', 'sent', 'recv', 'errors', 'p50_ns', 'p99_ns', 'server_cores', 'self_cores',
             'server_rss_kib']
OPT_KEYS = ['scenario', 'host', 'port', 'domain', 'tls', 'mech', 'user_prefix', 'password', 'users',
            'pairs', 'window', 'body', 'contacts', 'logins', 'inflight', 'sessions', 'rate',
            'msg_rate', 'duration', 'warmup', 'threads', 'connect_rate', 'provision', 'provision_cmd',
            'server_pid', 'label', 'json_path', 'series_path', 'quiet']

TICK_RE = re.compile(r'^t=[\d.]+s sent=\d+/s recv=\d+/s p50=[\d.]+ms p99=[\d.]+ms err=\d+ '
                     r'srv=(?:[\d.]+c|-) rss=(?:[\d.]+MiB|-) gen=[\d.]+c$', re.M)


class BenchTest(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.exe = stanza_bench_path()
        if not cls.exe or not os.access(cls.exe, os.X_OK):
            raise unittest.SkipTest('stanza-bench not built (set STANZA_BENCH)')
        cls.server = Server().start()
        cls.tmp = tempfile.mkdtemp(prefix='stanza-bench-integ-')

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.stop()
            cls.server.cleanup()
        if getattr(cls, 'tmp', None):
            import shutil
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- running -----------------------------------------------------------
    def bench(self, name, *args, tls='direct', expect_rc=0):
        """Runs stanza-bench; returns (rc, stdout, stderr, json dict or None)."""
        srv = self.server
        port = srv.tls_port if tls == 'direct' else srv.port
        jpath = os.path.join(self.tmp, name + '.json')
        spath = os.path.join(self.tmp, name + '.dat')
        argv = [self.exe, '--host', '127.0.0.1', '--port', str(port), '--domain', 'localhost',
                '--tls', tls, '--mech', 'scram-sha-256', '--threads', '2',
                '--user-prefix', name, '--password', 'bench-pass-' + name,
                '--provision', 'stanzactl', '--provision-cmd', '%s -d %s' % (srv.ctl, srv.data),
                '--server-pid', str(srv.pid()), '--label', 'stanzad',
                '--json', jpath, '--series', spath] + list(args)
        log('run %s' % ' '.join(argv))
        try:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.fail('stanza-bench %s did not finish in %d s\nstdout:\n%s\nstderr:\n%s'
                      % (name, RUN_TIMEOUT, (e.stdout or b'').decode(errors='replace'),
                         (e.stderr or b'').decode(errors='replace')))
        out = p.stdout.decode(errors='replace')
        err = p.stderr.decode(errors='replace')
        log('exit %d; report:\n%s' % (p.returncode, '\n'.join('    | ' + l for l in out.splitlines())))
        if err.strip():
            log('stderr (tail):\n%s' % '\n'.join('    | ' + l for l in err.splitlines()[-15:]))
        doc = None
        if os.path.exists(jpath):
            with open(jpath, encoding='utf-8') as f:
                text = f.read()
            try:
                doc = json.loads(text)
            except ValueError as e:
                self.fail('%s: the JSON report does not parse: %s\n%s' % (name, e, text[:2000]))
        if expect_rc is not None:
            self.assertEqual(p.returncode, expect_rc, '%s: exit %d\nstdout:\n%s\nstderr:\n%s'
                             % (name, p.returncode, out, err))
        self.assertTrue(self.server.alive(), 'stanzad died during %s' % name)
        return p.returncode, out, err, doc, spath

    # -- checks ------------------------------------------------------------
    def check_json(self, doc, scenario):
        self.assertIsNotNone(doc, 'no JSON report')
        for k in TOP_KEYS:
            self.assertIn(k, doc)
        for k in LATENCY_KEYS:
            self.assertIn(k, doc['latency_ns'])
        for k in ERROR_KEYS:
            self.assertIn(k, doc['errors'])
        for k in SERVER_KEYS:
            self.assertIn(k, doc['server'])
        for k in OPT_KEYS:
            self.assertIn(k, doc['opts'])
        self.assertIn('cores', doc['self'])
        self.assertEqual(doc['schema'], 'stanza-bench/1')
        self.assertEqual(doc['scenario'], scenario)
        self.assertEqual(doc['label'], 'stanzad')
        self.assertEqual(doc['opts']['scenario'], scenario)
        self.assertEqual(doc['server']['pid'], self.server.pid())
        self.assertGreater(doc['server']['rss_kib_end'], 0)
        self.assertIsInstance(doc['generator_bound'], bool)
        self.assertGreater(doc['seconds'], 0)
        for t in doc['ticks']:
            for k in TICK_KEYS:
                self.assertIn(k, t)
        self.assertEqual(doc['errors_total'], sum(doc['errors'].values()))

    def check_no_errors(self, doc):
        bad = {k: v for k, v in doc['errors'].items() if v}
        self.assertEqual(bad, {}, 'errors reported: %r' % bad)

    def check_text(self, out, *lines):
        for prefix in ('scenario: ', 'throughput: ', 'errors: ', 'server: pid ', 'self: ') + lines:
            self.assertRegex(out, '(?m)^' + re.escape(prefix), 'no line %r in the report' % prefix)

    def check_series(self, spath, doc):
        with open(spath) as f:
            rows = [l.split() for l in f if not l.startswith('#') and l.strip()]
        self.assertEqual(len(rows), len(doc['ticks']))
        for r in rows:
            self.assertEqual(len(r), 8, r)
            [float(x) for x in r]

    # -- scenarios ---------------------------------------------------------
    def test_pairs(self):
        rc, out, err, doc, spath = self.bench('bp', '--scenario', 'pairs', '--pairs', '4',
                                              '--window', '4', '--body', '64',
                                              '--duration', '2', '--warmup', '0.5')
        self.check_json(doc, 'pairs')
        self.check_no_errors(doc)
        self.assertGreater(doc['sent'], 0)
        self.assertEqual(doc['recv'], doc['sent'], 'messages lost or duplicated')
        self.assertGreater(doc['latency_ns']['count'], 0)
        self.assertLessEqual(doc['latency_ns']['p50'], doc['latency_ns']['max'])
        self.check_text(out, 'latency (ms): p50 ')
        self.assertIn('errors: 0\n', out)
        ticks = TICK_RE.findall(out + err)
        self.assertGreaterEqual(len(ticks), 1, 'no per-second line')
        self.check_series(spath, doc)
        log('pairs: %d sent, %d received, p99 %.3f ms' % (doc['sent'], doc['recv'],
                                                          doc['latency_ns']['p99'] / 1e6))

    def test_pairs_open_loop(self):
        # --msg-rate: the schedule, not the replies, sets the pace: about
        # rate x duration messages, every one delivered.
        rate, dur = 2000, 2.0
        rc, out, err, doc, spath = self.bench('bo', '--scenario', 'pairs', '--pairs', '4',
                                              '--window', '64', '--msg-rate', str(rate),
                                              '--duration', str(dur), '--warmup', '0.5',
                                              '--quiet')
        self.check_json(doc, 'pairs')
        self.check_no_errors(doc)
        self.assertEqual(doc['recv'], doc['sent'], 'messages lost or duplicated')
        self.assertEqual(doc['opts']['msg_rate'], rate)
        # Bounded both ways (not a speed check: 2000/s is far below any
        # server's capacity, the window never fills).
        self.assertGreater(doc['sent'], rate * dur * 0.5)
        self.assertLess(doc['sent'], rate * dur * 1.5)
        # Open loop judges the generator by its schedule, not its CPU
        # (it polls without sleeping): 2000/s is kept easily.
        self.check_text(out, 'schedule: ')
        self.assertFalse(doc['generator_bound'], 'a 2000/s schedule reported as not kept')

    def test_pairs_starttls_quiet(self):
        rc, out, err, doc, spath = self.bench('bq', '--scenario', 'pairs', '--pairs', '2',
                                              '--window', '2', '--duration', '1.5',
                                              '--warmup', '0.5', '--quiet', tls='starttls')
        self.check_json(doc, 'pairs')
        self.check_no_errors(doc)
        self.assertGreater(doc['sent'], 0)
        self.assertEqual(doc['recv'], doc['sent'])
        self.assertEqual(TICK_RE.findall(out + err), [], '--quiet printed per-second lines')
        self.assertIs(doc['opts']['quiet'], True)
        self.assertEqual(doc['opts']['tls'], 'starttls')

    def test_login(self):
        rc, out, err, doc, spath = self.bench('bl', '--scenario', 'login', '--logins', '40',
                                              '--inflight', '8', '--duration', '2',
                                              '--warmup', '0')
        self.check_json(doc, 'login')
        self.check_no_errors(doc)
        self.assertEqual(doc['logins'], 40)
        self.assertEqual(doc['latency_ns']['count'], 40)
        self.check_text(out, 'logins: 40 of 40 completed', 'login time (ms): p50 ')

    def test_login_saslname_escapes(self):
        """User names with ',' and '=' (legal in a JID localpart) are sent
        as RFC 5802 saslnames (=2C, =3D) and the server decodes them."""
        rc, out, err, doc, spath = self.bench('b=l,', '--scenario', 'login', '--logins', '6',
                                              '--inflight', '2', '--duration', '1.5',
                                              '--warmup', '0')
        self.check_no_errors(doc)
        self.assertEqual(doc['logins'], 6)

    def test_idle(self):
        rc, out, err, doc, spath = self.bench('bi', '--scenario', 'idle', '--sessions', '30',
                                              '--duration', '2', '--warmup', '0.5')
        self.check_json(doc, 'idle')
        self.check_no_errors(doc)
        self.assertEqual(doc['sessions'], 30)
        self.assertIsNotNone(doc['server']['rss_kib_idle'])
        self.assertIsNotNone(doc['server']['bytes_per_session'])
        self.check_text(out, 'sessions: 30 of 30 held', 'server per session: ')

    # fanout and mixed need rosters and presence subscriptions (issue 4).
    def test_fanout(self):
        # 6 users, 2 contacts each (mutual subscriptions set up by the
        # scenario, waited for before warm-up): every broadcast reaches
        # exactly the 2 contacts.
        rc, out, err, doc, spath = self.bench('bf', '--scenario', 'fanout', '--users', '6',
                                              '--contacts', '2', '--rate', '5',
                                              '--duration', '1.5', '--warmup', '0.5')
        self.check_json(doc, 'fanout')
        self.check_no_errors(doc)
        self.assertGreater(doc['sent'], 0)
        self.assertEqual(doc['recv'], 2 * doc['sent'],
                         'each presence broadcast must reach both contacts exactly once')

    def test_mixed(self):
        rc, out, err, doc, spath = self.bench('bm', '--scenario', 'mixed', '--users', '6',
                                              '--rate', '20', '--duration', '1.5', '--warmup', '0.5')
        self.check_json(doc, 'mixed')
        self.check_no_errors(doc)
        self.assertGreater(doc['sent'], 0)
        self.assertEqual(doc['recv'], doc['sent'], 'messages lost or duplicated')


class IbrTest(ServerTestCase):
    """--provision ibr: stanza-bench registers its accounts itself (XEP-0077)
    on a server that offers registration, over the run's own TLS mode: stanzad
    accepts registration only on a secured stream."""

    @classmethod
    def setUpClass(cls):
        cls.exe = stanza_bench_path()
        if not cls.exe or not os.access(cls.exe, os.X_OK):
            raise unittest.SkipTest('stanza-bench not built (set STANZA_BENCH)')
        settings = copy.deepcopy(TEST_SETTINGS)
        settings['im'] = {'register': True, 'register_per_hour': 1000}
        cls.server = Server(settings=settings).start()

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.stop()
            cls.server.cleanup()

    def _ibr_login(self, prefix, tls):
        srv = self.server
        port = srv.tls_port if tls == 'direct' else srv.port
        argv = [self.exe, '--host', '127.0.0.1', '--port', str(port), '--domain', 'localhost',
                '--tls', tls, '--mech', 'scram-sha-256', '--threads', '1', '--user-prefix', prefix,
                '--password', 'ibr-pass', '--provision', 'ibr', '--scenario', 'login',
                '--logins', '8', '--inflight', '4', '--duration', '2', '--warmup', '0', '--quiet']
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT)
        out, err = p.stdout.decode(errors='replace'), p.stderr.decode(errors='replace')
        log('ibr over %s: exit %d\n%s%s' % (tls, p.returncode, out, err[-600:]))
        self.assertEqual(p.returncode, 0, out + err)
        self.assertIn('provision: 4 registered (or existing), 0 failed', err)
        self.assertIn('logins: 8 of 8 completed', out)

    def test_ibr_starttls(self):
        self._ibr_login('ibs', 'starttls')

    def test_ibr_direct_tls(self):
        self._ibr_login('ibd', 'direct')


if __name__ == '__main__':
    unittest.main()
