"""@xmpp/client (xmpp.js 0.14.0, from npm) against a real stanzad: the second
client library of the integration tests (PyPI, and so aioxmpp, is not
reachable here; npm is).

The library connects as an application would: STARTTLS over
xmpp://127.0.0.1:PORT and direct TLS over xmpps:// (XEP-0368), SASL
SCRAM-SHA-1 (its best mechanism; it has no SCRAM-SHA-256), resource
binding, then messages both ways with slixmpp, an XEP-0199 ping to the
server and an unknown iq. The only concession is the certificate: the
test's self-signed one is accepted through NODE_TLS_REJECT_UNAUTHORIZED=0
in the node process's environment (jsclient.py), nowhere else.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jsclient  # noqa: E402
from harness import DOMAIN, ServerTestCase, log, make_client  # noqa: E402

NS_CLIENT = 'jabber:client'


class XmppJsTest(ServerTestCase):

    accounts = ['%s@%s' % (u, DOMAIN) for u in ('jsa', 'jsb', 'slx')]

    @classmethod
    def setUpClass(cls):
        why = jsclient.available()
        if why:
            raise unittest.SkipTest('@xmpp/client: ' + why)
        super().setUpClass()

    def setUp(self):
        self.js = []

    def tearDown(self):
        for j in self.js:
            j.stop(5)
            j.close()

    def js_login(self, user, resource, direct_tls=False):
        c = jsclient.JsClient(user, resource)
        self.js.append(c)
        if direct_tls:
            c.cmd(op='login', service='xmpps://127.0.0.1:%d' % self.server.tls_port, domain=DOMAIN,
                  username=user, password=jsclient.PASSWORD, resource=resource, mech='SCRAM-SHA-1')
            ev = c.wait_event(('online', 'login_failed'), 20)
            if ev['ev'] != 'online':
                raise AssertionError('direct TLS login failed: %s' % ev.get('error'))
            c.login_info, c.jid = ev, ev['jid']
        else:
            c.login(self.server.port)
        return c

    def check_login(self, c, user, resource, how):
        info = c.login_info
        self.assertEqual(info['mech'], 'SCRAM-SHA-1')
        self.assertIn('SCRAM-SHA-1', info['offered'])
        self.assertTrue(info['secure'], 'not over TLS')
        self.assertEqual(c.jid, '%s@%s/%s' % (user, DOMAIN, resource))
        log('%s: @xmpp/client logged in as %s with %s (library offers %s), TLS, bound'
            % (how, c.jid, info['mech'], ','.join(info['offered'])))

    def test_starttls_scram_sha1_bind(self):
        a = self.js_login('jsa', 'one')
        self.check_login(a, 'jsa', 'one', 'STARTTLS')
        w = dict(self.server.sessions()).get(a.jid)
        self.assertIsNotNone(w, 'stanzactl sessions does not list %s' % a.jid)
        st, res = a.iq("<iq xmlns='jabber:client' type='get' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % DOMAIN)
        self.assertEqual(st, 'result', res)
        st, res = a.iq("<iq xmlns='jabber:client' type='get' to='%s'><query xmlns='urn:example:nothing'/></iq>"
                       % DOMAIN)
        self.assertEqual(st, 'error')
        self.assertEqual(res[1], 'service-unavailable', res)
        log('ping answered; unknown iq -> <service-unavailable/>')

    def test_stream_management(self):
        """The library enables XEP-0198 on its own when the server offers it
        (after binding) and the server acknowledges what it sends."""
        c = self.js_login('jsb', 'sm')
        st = None
        for _ in range(40):
            c.cmd(op='status')
            st = c.wait_event(('status',), 5)
            if st['sm']:
                break
            time.sleep(0.1)
        self.assertTrue(st['sm'], '@xmpp/client did not enable stream management: %r' % st)
        log('@xmpp/client enabled XEP-0198 (id %r)' % st['sm_id'])
        for i in range(3):
            c.send("<message xmlns='jabber:client' to='%s' type='chat'><body>sm-%d</body></message>" % (c.jid, i))
        acked = []
        for i in range(3):
            ev = c.wait_event(('sm_ack',), 10)
            acked.append(ev['xml'])
        self.assertTrue(all('sm-%d' % i in acked[i] for i in range(3)), acked)
        log('its three messages were acknowledged by <a/> in order')

    def test_direct_tls(self):
        b = self.js_login('jsb', 'tls', direct_tls=True)
        self.check_login(b, 'jsb', 'tls', 'direct TLS (xmpps://)')

    def test_messages_with_slixmpp(self):
        a = self.js_login('jsa', 'msg')

        async def slx_login():
            s = make_client('slx@%s/s' % DOMAIN)
            await s.login(self.server.port)
            return s
        s = self.loop.run(slx_login(), 30)
        try:
            n = 20
            for i in range(n):
                a.send("<message xmlns='jabber:client' to='%s' type='chat'><body>js-%d</body></message>"
                       % (s.boundjid.full, i))

            async def recv_all():
                for i in range(n):
                    m = await s.recv(10)
                    assert m['body'] == 'js-%d' % i, m['body']
                    assert m['from'].full == a.jid, m['from'].full
            self.loop.run(recv_all(), 30)
            def send_all():   # slixmpp is not thread-safe: send from its loop
                for i in range(n):
                    s.send_message(mto=a.jid, mbody='slx-%d' % i, mtype='chat')
            self.loop.call(send_all)
            for i in range(n):
                m = a.next_stanza(lambda el: el.tag == '{%s}message' % NS_CLIENT, 10, 'message %d' % i)
                self.assertEqual(m.findtext('{%s}body' % NS_CLIENT), 'slx-%d' % i)
                self.assertEqual(m.get('from'), s.boundjid.full)
            log('%d messages each way between @xmpp/client and slixmpp, in order, full "from"' % n)
        finally:
            self.loop.run(s.close(), 10)


if __name__ == '__main__':
    unittest.main(verbosity=2)
