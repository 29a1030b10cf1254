"""slixmpp against a real stanzad: STARTTLS and direct TLS with SCRAM-SHA-256,
bind, messages both ways (bodies, stamped full 'from', order), directed
presence, XEP-0199 ping to the server, an unknown iq payload to the server,
and sessions on different workers (from `stanzactl sessions`). SCRAM -PLUS is
checked with a hand-written client: slixmpp 1.8.3 can only bind tls-unique,
and only on a blocking ssl.SSLSocket, which its asyncio transport never has.
"""

import asyncio
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, MECH, PASSWORD, Raw, ServerTestCase, log, make_client  # noqa: E402

N = 40                   # messages each way
WORKER_USERS = 8         # connections spread over the workers by SO_REUSEPORT
WORKER_ROUNDS = 3        # more rounds only while all sit on one worker


async def exchange(a, b, n=N, tag=''):
    """n messages a->b and n b->a, interleaved; checks bodies, the stamped
    full 'from', the 'to', and order."""
    for i in range(n):
        a.send_message(mto=b.boundjid.full, mbody='%sa2b-%d' % (tag, i), mtype='chat')
        b.send_message(mto=a.boundjid.full, mbody='%sb2a-%d' % (tag, i), mtype='chat')
    for rx, tx, d in ((b, a, 'a2b'), (a, b, 'b2a')):
        for i in range(n):
            m = await rx.recv(10)
            want = '%s%s-%d' % (tag, d, i)
            assert m['body'] == want, 'order/body: got %r, want %r' % (m['body'], want)
            assert m['from'].full == tx.boundjid.full, \
                "'from' %r is not the sender's full JID %r" % (m['from'].full, tx.boundjid.full)
            assert m['to'].full == rx.boundjid.full, "'to' %r" % m['to'].full
            assert m['type'] == 'chat', m['type']


async def directed_presence(a, b):
    """a sends directed available then unavailable presence to b's full JID."""
    a.send_presence(pto=b.boundjid.full, pstatus='hello b')
    for _ in range(20):
        p = await asyncio.wait_for(b.presences.get(), 10)
        if p['from'].full == a.boundjid.full:
            break
    else:
        raise AssertionError('no directed presence')
    assert p['type'] in ('', 'available'), p['type']
    assert p['status'] == 'hello b', p['status']
    a.send_presence(pto=b.boundjid.full, ptype='unavailable')
    for _ in range(20):
        p = await asyncio.wait_for(b.presences.get(), 10)
        if p['from'].full == a.boundjid.full:
            break
    assert p['type'] == 'unavailable', p['type']


async def ping_and_unknown_iq(a):
    from slixmpp.exceptions import IqError
    res = await a['xep_0199'].send_ping(DOMAIN, timeout=5)
    assert res['type'] == 'result', 'ping answered with %s' % res['type']
    assert res['from'].full in (DOMAIN, ''), 'ping answered from %r' % res['from'].full
    iq = a.make_iq_get(ito=DOMAIN)
    iq.xml.append(ET.Element('{urn:example:stanzad:nothing}query'))
    try:
        r = await iq.send(timeout=5)
    except IqError as e:
        cond = e.iq['error']['condition']
        etype = e.iq['error']['type']
        assert cond == 'service-unavailable', 'unknown iq: <%s/>' % cond
        assert etype == 'cancel', 'unknown iq error type %r' % etype
    else:
        raise AssertionError('unknown iq answered with %s' % r['type'])


class SlixmppTest(ServerTestCase):

    accounts = ['%s@%s' % (u, DOMAIN)
                for u in ['alice', 'bob', 'carol', 'dave'] + ['u%d' % i for i in range(WORKER_USERS * WORKER_ROUNDS)]]

    def login_pair(self, u1, u2, direct_tls):
        port = self.server.tls_port if direct_tls else self.server.port

        async def go():
            a = make_client('%s@%s/one' % (u1, DOMAIN))
            b = make_client('%s@%s/two' % (u2, DOMAIN))
            await asyncio.gather(a.login(port, direct_tls), b.login(port, direct_tls))
            return a, b
        return self.loop.run(go(), 30)

    def close(self, *clients):
        async def go():
            await asyncio.gather(*(c.close() for c in clients))
        self.loop.run(go(), 15)

    def check_session(self, a, b, direct_tls):
        how = 'direct TLS' if direct_tls else 'STARTTLS'
        for c in (a, b):
            self.assertEqual(c.mech_used(), MECH)
            self.assertTrue(c.boundjid.resource, 'bound JID has a resource')
        log('%s: %s and %s logged in with %s and bound' % (how, a.boundjid, b.boundjid, MECH))
        self.loop.run(exchange(a, b, tag=how[0]), 30)
        log('%s: %d messages each way, bodies, full "from", order' % (how, N))
        self.loop.run(directed_presence(a, b), 20)
        log('%s: directed presence available/unavailable with full "from"' % how)
        self.loop.run(ping_and_unknown_iq(a), 15)
        log('%s: XEP-0199 ping to the server answered; unknown iq -> service-unavailable' % how)

    def test_starttls(self):
        a, b = self.login_pair('alice', 'bob', direct_tls=False)
        try:
            self.check_session(a, b, False)
        finally:
            self.close(a, b)

    def test_direct_tls(self):
        a, b = self.login_pair('carol', 'dave', direct_tls=True)
        try:
            self.check_session(a, b, True)
        finally:
            self.close(a, b)

    def test_interop_slixmpp_defaults(self):
        """slixmpp exactly as an application gets it: no forced mechanism,
        its own channel-binding choice. Must log in (over STARTTLS)."""
        async def go():
            c = make_client('alice@%s/plain-defaults' % DOMAIN, library_defaults=True)
            try:
                await c.login(self.server.port, False)
                return c.mech_used()
            finally:
                await c.close()
        try:
            mech = self.loop.run(go(), 30)
        except AssertionError as e:
            raise AssertionError(
                '%s\nslixmpp 1.8.3 with its defaults offers SCRAM-SHA-512-PLUS, -256-PLUS, '
                '-1-PLUS with p=tls-unique (the only binding it has), then non-PLUS SCRAM with '
                "the GS2 flag 'y'; a server that refuses tls-unique and counts each refusal "
                'toward max_failures never lets it reach a mechanism it can finish' % e)
        log('unmodified slixmpp logged in with %s' % mech)
        # It picks the best mechanism offered; stanzad offers -PLUS and
        # supports the tls-unique binding slixmpp sends with it.
        self.assertEqual(mech, 'SCRAM-SHA-512-PLUS')

    def test_scram_plus_raw(self):
        """SCRAM-SHA-256-PLUS with tls-server-end-point, by hand (slixmpp
        cannot: it binds only tls-unique, and only on an ssl.SSLSocket)."""
        for direct in (True, False):
            r = Raw(self.server.tls_port if direct else self.server.port, direct_tls=direct)
            try:
                if not direct:
                    r.starttls()
                feats = r.open_stream()
                mechs = r.mechanisms(feats)
                log('%s mechanisms: %s' % ('direct TLS' if direct else 'STARTTLS', ' '.join(mechs)))
                self.assertIn('SCRAM-SHA-256', mechs)
                self.assertIn('SCRAM-SHA-256-PLUS', mechs)
                outcome, detail = r.scram('alice', PASSWORD, 'SCRAM-SHA-256-PLUS', 'tls-server-end-point')
                self.assertEqual(outcome, 'success', detail)
                jid = r.bind('plus')
                self.assertTrue(jid.startswith('alice@%s/' % DOMAIN), jid)
                log('SCRAM-SHA-256-PLUS (tls-server-end-point) over %s: success, bound %s'
                    % ('direct TLS' if direct else 'STARTTLS', jid))
            finally:
                r.close()

    def test_different_workers(self):
        """Sessions spread over the 2 workers; a pair on different workers
        exchanges messages and presence."""
        async def connect(first, count):
            cs = []
            for i in range(first, first + count):
                direct = bool(i % 2)
                cs.append((make_client('u%d@%s/w' % (i, DOMAIN)), direct))
            await asyncio.gather(*(c.login(self.server.tls_port if d else self.server.port, d)
                                   for c, d in cs))
            return [c for c, _ in cs]
        clients = []
        try:
            pair = None
            # The kernel spreads accepts over the per-worker SO_REUSEPORT
            # sockets by hash: with 8 connections all on one worker has
            # odds 1/128; more rounds (bounded) make that negligible.
            for rnd in range(WORKER_ROUNDS):
                clients += self.loop.run(connect(rnd * WORKER_USERS, WORKER_USERS), 40)
                sessions = dict(self.server.sessions())
                log('stanzactl sessions: %s' % ', '.join('%s@w%d' % (j, w) for j, w in sorted(sessions.items())))
                worker = {}
                for c in clients:
                    self.assertIn(c.boundjid.full, sessions, 'session listed by stanzactl sessions')
                    worker[c.boundjid.full] = sessions[c.boundjid.full]
                pair = next(((a, b) for a in clients for b in clients
                             if worker[a.boundjid.full] != worker[b.boundjid.full]), None)
                if pair:
                    break
            self.assertIsNotNone(pair, 'all %d sessions sit on one worker: %r' % (len(clients), worker))
            a, b = pair
            log('pair on different workers: %s (worker %d) and %s (worker %d)'
                % (a.boundjid, worker[a.boundjid.full], b.boundjid, worker[b.boundjid.full]))
            self.loop.run(exchange(a, b, n=N, tag='x'), 30)
            self.loop.run(directed_presence(a, b), 20)
            self.loop.run(directed_presence(b, a), 20)
            log('cross-worker: %d messages each way in order with full "from"; directed presence both ways' % N)
            # every session to the next one: each ring direction is used
            async def ring():
                for i, c in enumerate(clients):
                    nxt = clients[(i + 1) % len(clients)]
                    c.send_message(mto=nxt.boundjid.full, mbody='ring-%d' % i, mtype='chat')
                for i, c in enumerate(clients):
                    prev = clients[(i - 1) % len(clients)]
                    m = await c.recv_body('ring-%d' % ((i - 1) % len(clients)), 10)
                    assert m['from'].full == prev.boundjid.full, m['from']
            self.loop.run(ring(), 20)
            log('ring of %d sessions: every message delivered with the right "from"' % len(clients))
        finally:
            self.close(*clients)


if __name__ == '__main__':
    unittest.main(verbosity=2)
