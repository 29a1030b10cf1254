"""libstrophe (a C client library) against a real stanzad, with a slixmpp
peer: STARTTLS and direct TLS (XMPP_CONN_FLAG_LEGACY_SSL), SCRAM (libstrophe
0.12 picks the strongest SCRAM it is offered and has no -PLUS), bind, a
message each way with the stamped full 'from'.
"""

import asyncio
import os
import select
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (DOMAIN, PASSWORD, ServerTestCase, log,  # noqa: E402
                     make_client, strophe_client_path)


class StropheTest(ServerTestCase):

    accounts = ['%s@%s' % (u, DOMAIN) for u in ('stro', 'peer')]

    @classmethod
    def setUpClass(cls):
        cls.exe = strophe_client_path()
        if not cls.exe or not os.access(cls.exe, os.X_OK):
            raise unittest.SkipTest('strophe_client not built (set STROPHE_CLIENT)')
        super().setUpClass()

        async def go():
            p = make_client('peer@%s/slix' % DOMAIN)
            await p.login(cls.server.port)
            return p
        cls.peer = cls.loop.run(go(), 20)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.loop.run(cls.peer.close(), 10)
        except Exception:
            pass
        super().tearDownClass()

    def run_strophe(self, direct_tls):
        how = 'direct TLS' if direct_tls else 'STARTTLS'
        peer = self.peer
        hello = 'hello from strophe over %s' % how
        reply = 'reply to strophe over %s' % how
        argv = [self.exe, '--port', str(self.server.tls_port if direct_tls else self.server.port),
                '--jid', 'stro@%s/c' % DOMAIN, '--to', peer.boundjid.full,
                '--send', hello, '--expect', reply, '--timeout', '15']
        if direct_tls:
            argv.insert(1, '--tls')
        env = dict(os.environ, STROPHE_PASS=PASSWORD)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        lines = []
        bound = None
        try:
            deadline = time.monotonic() + 15
            buf = b''
            while bound is None and time.monotonic() < deadline and proc.poll() is None:
                r, _, _ = select.select([proc.stdout], [], [], 0.2)
                if r:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    buf += chunk
                    while b'\n' in buf:
                        line, buf = buf.split(b'\n', 1)
                        lines.append(line.decode())
                        if line.startswith(b'BOUND '):
                            bound = line[6:].decode()
            self.assertIsNotNone(bound, 'libstrophe did not bind over %s: %r\n%s'
                                 % (how, lines, proc.stderr.read().decode(errors='replace')
                                    if proc.poll() is not None else ''))
            self.assertTrue(bound.startswith('stro@%s/' % DOMAIN), bound)
            try:
                ws = dict(self.server.sessions())
                log('workers: libstrophe %s on %s, slixmpp peer on %s'
                    % (bound, ws.get(bound), ws.get(peer.boundjid.full)))
            except Exception as e:  # informative only
                log('stanzactl sessions: %s' % e)

            async def talk():
                m = await peer.recv_body(hello, 10)
                assert m['from'].full == bound, "'from' %r, bound %r" % (m['from'].full, bound)
                peer.send_message(mto=bound, mbody=reply, mtype='chat')
            self.loop.run(talk(), 15)
            out, err = proc.communicate(timeout=15)
            lines += out.decode().splitlines()
            self.assertEqual(proc.returncode, 0, 'strophe_client exit %d\n%s\n%s'
                             % (proc.returncode, '\n'.join(lines), err.decode(errors='replace')))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        recv = [l for l in lines if l.startswith('RECV ')]
        self.assertTrue(recv, lines)
        self.assertEqual(recv[-1], 'RECV %s %s' % (peer.boundjid.full, reply))
        mech = [l[5:] for l in lines if l.startswith('MECH ')]
        self.assertTrue(mech and mech[0].startswith('SCRAM-SHA-'), 'mechanism: %r' % mech)
        self.assertIn('SECURE 1', lines)
        log('libstrophe over %s: %s, bound %s, message to slixmpp and back with full "from"'
            % (how, mech[0], bound))

    def test_starttls(self):
        self.run_strophe(direct_tls=False)

    def test_direct_tls(self):
        self.run_strophe(direct_tls=True)


if __name__ == '__main__':
    unittest.main(verbosity=2)
