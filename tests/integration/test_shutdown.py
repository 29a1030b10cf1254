"""SIGTERM while clients are connected: every stream (bound sessions over
STARTTLS and direct TLS, slixmpp sessions, a stream still before
authentication) receives <stream:error><system-shutdown/></stream:error> and
</stream:stream>, the connections close, and stanzad exits 0.
"""

import asyncio
import copy
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DOMAIN, PASSWORD, TEST_SETTINGS, Loop, Raw, Server, ServerTestCase,  # noqa: E402
                     libconfig_text, log, make_client, stream_closed, stream_error_condition)


class ShutdownTest(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = Server(accounts=['s%d@%s' % (i, DOMAIN) for i in range(4)]).start()
        cls.loop = Loop()

    @classmethod
    def tearDownClass(cls):
        cls.loop.close()
        cls.server.stop()
        cls.server.cleanup()

    def test_sigterm_with_clients(self):
        srv = self.server
        raws = []
        r = Raw(srv.port)
        r.login('s0', PASSWORD, 'raw-starttls')
        raws.append(('bound, STARTTLS', r))
        r = Raw(srv.tls_port, direct_tls=True)
        r.login('s1', PASSWORD, 'raw-direct')
        raws.append(('bound, direct TLS', r))
        r = Raw(srv.port)
        r.open_stream()
        raws.append(('before authentication', r))

        async def go():
            a = make_client('s2@%s/slix' % DOMAIN)
            b = make_client('s3@%s/slix' % DOMAIN)
            await asyncio.gather(a.login(srv.port, False), b.login(srv.tls_port, True))
            return a, b
        slix = self.loop.run(go(), 30)
        log('%d raw streams and %d slixmpp sessions connected; SIGTERM to stanzad (pid %d)'
            % (len(raws), len(slix), srv.pid()))

        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        for what, r in raws:
            text = r.read_to_close(10)
            r.close()
            cond = stream_error_condition(text)
            self.assertEqual(cond, 'system-shutdown', '%s: got %r; received %r' % (what, cond, text[-400:]))
            self.assertTrue(stream_closed(text), '%s: no </stream:stream>' % what)
            self.assertTrue(r.eof, '%s: connection not closed' % what)
            log('%s: <system-shutdown/>, </stream:stream>, closed' % what)

        async def gone():
            await asyncio.gather(*(asyncio.wait_for(c.gone.wait(), 10) for c in slix))
        self.loop.run(gone(), 15)
        for c in slix:
            self.assertIn('system-shutdown', c.stream_errors, '%s: stream errors %r' % (c.boundjid, c.stream_errors))
            log('slixmpp %s: stream error system-shutdown, disconnected' % c.boundjid)
        try:
            rc = srv.proc.wait(10)
        except Exception:
            rc = None
        el = time.monotonic() - t0
        self.assertEqual(rc, 0, 'stanzad exit code %r after SIGTERM' % rc)
        log('stanzad exited 0, %.2f s after SIGTERM' % el)


class ReloadTest(ServerTestCase):
    """SIGHUP / stanzactl reload: what cannot change live is named."""

    def test_reload_names_what_needs_a_restart(self):
        settings = copy.deepcopy(TEST_SETTINGS)
        settings['im'] = {'offline_max': 50}
        srv = Server(settings=settings, workers=1).start()
        try:
            rc, out, err = srv.ctl_run('reload')
            self.assertEqual(rc, 0, out + err)
            self.assertNotIn('needs a restart', out + err, 'nothing changed, yet: ' + out + err)
            settings['im'] = {'offline_max': 60}
            with open(srv.conf, 'w') as f:
                f.write(libconfig_text(settings))
            rc, out, err = srv.ctl_run('reload')
            self.assertEqual(rc, 0, out + err)
            self.assertRegex(out + err, r'needs a restart to apply: .*\bim\b', out + err)
            log('reload after an im change: %s' % (out + err).strip())
        finally:
            srv.stop()
            srv.cleanup()


if __name__ == '__main__':
    unittest.main(verbosity=2)
