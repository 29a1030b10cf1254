"""auth.allow_plaintext: off by default (TLS required before any mechanism
is offered); when an operator turns it on (benchmarks, trusted networks),
SCRAM works without TLS and PLAIN is still refused."""
import copy
import unittest

from harness import DOMAIN, PASSWORD, Raw, Server, ServerTestCase, TEST_SETTINGS, log


class PlaintextDefaultTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(accounts=['alice@%s' % DOMAIN]).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_default_requires_tls(self):
        r = Raw(self.server.port)
        feats = r.open_stream()
        self.assertIn('<required', feats)
        self.assertEqual(r.mechanisms(feats), [])
        outcome, cond = r.scram('alice', PASSWORD, 'SCRAM-SHA-256')
        self.assertEqual((outcome, cond), ('failure', 'encryption-required'))
        r.close()


class PlaintextAllowedTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        settings = copy.deepcopy(TEST_SETTINGS)
        settings['auth']['allow_plaintext'] = True
        cls.server = Server(accounts=['alice@%s' % DOMAIN, 'bob@%s' % DOMAIN],
                            settings=settings).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_scram_without_tls(self):
        a = Raw(self.server.port)
        feats = a.open_stream()
        self.assertNotIn('<required', feats)            # STARTTLS still offered, not required
        mechs = a.mechanisms(feats)
        log('plaintext mechanisms: %s' % mechs)
        self.assertIn('SCRAM-SHA-256', mechs)
        self.assertNotIn('PLAIN', mechs)
        self.assertFalse([m for m in mechs if m.endswith('-PLUS')])
        self.assertEqual(a.scram('alice', PASSWORD, 'SCRAM-SHA-256')[0], 'success')
        self.assertEqual(a.bind('p1'), 'alice@%s/p1' % DOMAIN)
        b = Raw(self.server.port)
        b.open_stream()
        self.assertEqual(b.scram('bob', PASSWORD, 'SCRAM-SHA-1')[0], 'success')
        b.bind('p1')
        a.send("<message to='bob@%s/p1' type='chat'><body>clear</body></message>" % DOMAIN)
        m = b.read_until(r'<message[^>]*>.*?</message>', 5)
        self.assertIsNotNone(m)
        self.assertIn("from='alice@%s/p1'" % DOMAIN, m.group(0))
        a.close()
        b.close()

    def test_plain_still_refused(self):
        r = Raw(self.server.port)
        r.open_stream()
        r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>")
        m = r.read_until(r'<failure[^>]*>.*?</failure>', 5)
        self.assertIsNotNone(m)
        self.assertIn('encryption-required', m.group(0))
        r.close()


if __name__ == '__main__':
    unittest.main()
