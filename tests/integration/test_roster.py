"""Rosters and presence subscriptions (RFC 6121 2, 3, 4.3.2) end to end:
slixmpp clients, several resources per account, a 2-worker stanzad (the
sessions of one user spread over the workers). Subscribe, approve,
unsubscribe with roster pushes to every interested resource and presence
flowing both ways; a subscription request kept for a contact who was
offline and delivered at login; the answer to a probe of an offline
contact at login; roster versioning (2.6).

slixmpp is told not to answer subscription requests by itself
(auto_authorize None), so every 'subscribed' here is sent by the test.
"""

import asyncio
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DOMAIN, ServerTestCase, log, make_client  # noqa: E402

NS = 'jabber:iq:roster'
WAIT = 8


def bare(u):
    return '%s@%s' % (u, DOMAIN)


async def roster_get(c, ver=None):
    """A roster get by hand (slixmpp's own would hide the raw result)."""
    iq = c.make_iq_get()
    q = ET.Element('{%s}query' % NS)
    if ver is not None:
        q.set('ver', ver)
    iq.xml.append(q)
    r = await iq.send(timeout=WAIT)
    assert r['type'] == 'result', r
    return r.xml.find('{%s}query' % NS)


def items(query):
    return {} if query is None else {i.get('jid'): i for i in query.findall('{%s}item' % NS)}


def _stash(c, name):
    if not hasattr(c, name):
        setattr(c, name, [])
    return getattr(c, name)


async def _wait(c, queue, stash_name, match, timeout):
    """The first stanza (kept from earlier waits, else arriving within
    timeout) that match() accepts; the others are kept for later waits:
    stanzas from different workers need not come in the order sent."""
    stash = _stash(c, stash_name)
    for i, x in enumerate(stash):
        r = match(x)
        if r is not None:
            del stash[i]
            return r
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in range(500):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            x = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            break
        r = match(x)
        if r is not None:
            return r
        stash.append(x)
    return None


async def wait_push(c, jid, timeout=WAIT, **attrs):
    """A push of item jid with these attributes."""
    def match(iq):
        q = iq.xml.find('{%s}query' % NS)
        for it in (q.findall('{%s}item' % NS) if q is not None else []):
            if it.get('jid') == jid and all(it.get(k) == v for k, v in attrs.items()):
                return it, q.get('ver')
        return None
    r = await _wait(c, c.pushes, 'push_stash', match, timeout)
    if r is None:
        seen = [dict(i.attrib) for iq in _stash(c, 'push_stash')
                for i in iq.xml.iter('{%s}item' % NS)]
        raise AssertionError('%s: no push of %s with %r (seen %r)' % (c.boundjid, jid, attrs, seen))
    return r


def ptype_of(p):
    """slixmpp gives an available presence's <show/> as its type."""
    t = p['type']
    return 'available' if t in ('', 'available', 'away', 'chat', 'dnd', 'xa') else t


def _pres_match(frm, ptype, full):
    def match(p):
        f = p['from'].full if full else p['from'].bare
        return p if f == frm and ptype_of(p) == ptype else None
    return match


async def wait_presence(c, frm, ptype='available', timeout=WAIT, full=False):
    r = await _wait(c, c.presences, 'pres_stash', _pres_match(frm, ptype, full), timeout)
    if r is None:
        seen = [(p['from'].full, ptype_of(p)) for p in _stash(c, 'pres_stash')]
        raise AssertionError('%s: no %s presence from %s (seen %r)' % (c.boundjid, ptype, frm, seen))
    return r


async def no_presence(c, frm, ptype, wait=1.0):
    r = await _wait(c, c.presences, 'pres_stash', _pres_match(frm, ptype, False), wait)
    assert r is None, '%s: unexpected %s presence from %s' % (c.boundjid, ptype, frm)


async def subscribe_both(a, b):
    """a and b subscribe to each other (each approves the other)."""
    a.send_presence(pto=b.boundjid.bare, ptype='subscribe')
    await wait_presence(b, a.boundjid.bare, 'subscribe')
    b.send_presence(pto=a.boundjid.bare, ptype='subscribed')
    await wait_push(a, b.boundjid.bare, subscription='to')
    b.send_presence(pto=a.boundjid.bare, ptype='subscribe')
    await wait_presence(a, b.boundjid.bare, 'subscribe')
    a.send_presence(pto=b.boundjid.bare, ptype='subscribed')
    await wait_push(b, a.boundjid.bare, subscription='both')


class RosterTest(ServerTestCase):

    accounts = [bare(u) for u in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivan', 'judy',
                                  'kim', 'leo', 'mia', 'ned')]

    def connect(self, *specs):
        """specs: (full jid, interested, available)."""
        port = self.server.port

        async def go():
            out = []
            for jid, interested, available in specs:
                out.append(login_at(port, jid, interested, available))
            return await asyncio.gather(*out)
        return self.loop.run(go(), 60)

    def close(self, *clients):
        async def go():
            await asyncio.gather(*(c.close() for c in clients))
        self.loop.run(go(), 20)

    def workers_of(self, clients):
        sessions = dict(self.server.sessions())
        where = {c.boundjid.full: sessions.get(c.boundjid.full) for c in clients}
        log('sessions on workers: %s' % ', '.join('%s@w%s' % kv for kv in sorted(where.items())))
        return where

    def test_subscribe_approve_unsubscribe(self):
        a1, a2, b1, b2 = self.connect((bare('alice') + '/one', True, True), (bare('alice') + '/two', True, True),
                                      (bare('bob') + '/one', True, True), (bare('bob') + '/two', True, True))
        try:
            self.workers_of([a1, a2, b1, b2])

            async def step1():
                a1.send_presence(pto=bare('bob'), ptype='subscribe', pstatus='let me in')
                for a in (a1, a2):
                    await wait_push(a, bare('bob'), subscription='none', ask='subscribe')
                for b in (b1, b2):
                    p = await wait_presence(b, bare('alice'), 'subscribe')
                    assert p['from'].full == bare('alice'), 'stamped with the bare JID: %s' % p['from']
                    assert p['status'] == 'let me in', p['status']
            self.loop.run(step1(), 30)
            log('subscribe: pushes (ask=subscribe) to both of alice\'s resources, request to both of bob\'s')

            async def step2():
                b2.send_presence(pto=bare('alice'), ptype='subscribed')
                for b in (b1, b2):
                    await wait_push(b, bare('alice'), subscription='from')
                for a in (a1, a2):
                    await wait_push(a, bare('bob'), subscription='to')
                    await wait_presence(a, bare('bob'), 'subscribed')
                    # 3.1.5: bob's available resources send their presence
                    await wait_presence(a, bare('bob') + '/one', 'available', full=True)
                    await wait_presence(a, bare('bob') + '/two', 'available', full=True)
            self.loop.run(step2(), 30)
            log('subscribed: pushes both sides, bob\'s two resources\' presence reaches alice')

            async def step3():
                b1.send_presence(pstatus='busy', pshow='dnd')
                for a in (a1, a2):
                    p = await wait_presence(a, bare('bob') + '/one', 'available', full=True)
                    assert p['status'] == 'busy', p['status']
            self.loop.run(step3(), 20)
            log('bob\'s presence broadcast reaches alice\'s resources (new subscriber)')

            async def step4():
                b1.send_presence(pto=bare('alice'), ptype='subscribe')
                await wait_presence(a2, bare('bob'), 'subscribe')
                a2.send_presence(pto=bare('bob'), ptype='subscribed')
                for b in (b1, b2):
                    await wait_push(b, bare('alice'), subscription='both')
                    await wait_presence(b, bare('alice') + '/one', 'available', full=True)
                for a in (a1, a2):
                    await wait_push(a, bare('bob'), subscription='both')
                q = await roster_get(a1)
                it = items(q)[bare('bob')]
                assert it.get('subscription') == 'both' and it.get('ask') is None, it.attrib
            self.loop.run(step4(), 30)
            log('mutual subscription: both, presence both ways')

            async def step5():
                a1.send_presence(pto=bare('bob'), ptype='unsubscribe')
                for a in (a1, a2):
                    await wait_push(a, bare('bob'), subscription='from')
                for b in (b1, b2):
                    await wait_push(b, bare('alice'), subscription='to')
                for a in (a1, a2):
                    await wait_presence(a, bare('bob') + '/one', 'unavailable', full=True)
                    await wait_presence(a, bare('bob') + '/two', 'unavailable', full=True)
            self.loop.run(step5(), 30)
            log('unsubscribe: pushes both sides, bob\'s resources unavailable to alice (3.3.3)')

            async def step6():
                a2.send_presence(pto=bare('bob'), ptype='unsubscribed')
                for b in (b1, b2):
                    await wait_push(b, bare('alice'), subscription='none')
                    await wait_presence(b, bare('alice') + '/one', 'unavailable', full=True)
                q = await roster_get(b2)
                assert items(q)[bare('alice')].get('subscription') == 'none'
            self.loop.run(step6(), 30)
            log('unsubscribed: pushes, alice\'s resources unavailable to bob (3.2.2)')
        finally:
            self.close(a1, a2, b1, b2)

    def test_request_kept_for_offline_contact(self):
        (c1,) = self.connect((bare('carol') + '/one', True, True))
        try:
            async def ask():
                c1.send_presence(pto=bare('dave'), ptype='subscribe', pstatus='carol here')
                await wait_push(c1, bare('dave'), ask='subscribe')
            self.loop.run(ask(), 20)
            # dave logs in: interested, then available: the request comes
            (d1,) = self.connect((bare('dave') + '/one', True, True))
            try:
                async def deliver():
                    p = await wait_presence(d1, bare('carol'), 'subscribe')
                    assert p['status'] == 'carol here', p['status']
                    assert p.xml.find('{urn:xmpp:delay}delay') is not None, 'XEP-0203 delay on a kept request'
                    d1.send_presence(pto=bare('carol'), ptype='subscribed')
                    await wait_push(c1, bare('dave'), subscription='to')
                    await wait_presence(c1, bare('dave') + '/one', 'available', full=True)
                self.loop.run(deliver(), 30)
                log('a request to an offline contact is delivered at its initial presence, with delay')
            finally:
                self.close(d1)
            # answered: not delivered again at the next login
            (d2,) = self.connect((bare('dave') + '/two', True, True))
            try:
                self.loop.run(no_presence(d2, bare('carol'), 'subscribe', 1.5), 10)
                log('an answered request is not delivered again')
            finally:
                self.close(d2)
        finally:
            self.close(c1)

    def test_account_removal_cancels_subscriptions(self):
        """XEP-0077 3.2: an account that cancels its registration leaves
        its contacts' rosters consistent: their subscription with it goes
        to none (a roster push) and they see it go unavailable."""
        k1, l1 = self.connect((bare('kim') + '/one', True, True), (bare('leo') + '/one', True, True))
        try:
            self.loop.run(subscribe_both(k1, l1), 40)

            async def remove():
                iq = k1.make_iq_set()
                q = ET.SubElement(iq.xml, '{jabber:iq:register}query')
                ET.SubElement(q, '{jabber:iq:register}remove')
                try:
                    await iq.send(timeout=WAIT)
                except Exception as e:   # the session is closed right after the result
                    log('remove: %s' % e.__class__.__name__)
                await wait_push(l1, bare('kim'), subscription='none')
                await wait_presence(l1, bare('kim'), 'unavailable')
            self.loop.run(remove(), 30)
            q = self.loop.run(roster_get(l1), 20)
            it = items(q).get(bare('kim'))
            self.assertIsNotNone(it, 'the item stays in leo\'s roster (only the subscription goes)')
            self.assertEqual(it.get('subscription'), 'none')
            self.assertIsNone(it.get('ask'))
            log('kim removed its account: leo got the push (subscription none) and its unavailable presence')
        finally:
            self.close(k1, l1)

    def test_admin_account_del_cancels_subscriptions(self):
        """The same when the operator deletes the account (stanzactl
        account del on a running server)."""
        m1, n1 = self.connect((bare('mia') + '/one', True, True), (bare('ned') + '/one', True, True))
        try:
            self.loop.run(subscribe_both(m1, n1), 40)
            rc, out, err = self.server.ctl_run('account', 'del', bare('mia'))
            self.assertEqual(rc, 0, out + err)

            async def check():
                await wait_push(n1, bare('mia'), subscription='none')
                await wait_presence(n1, bare('mia'), 'unavailable')
            self.loop.run(check(), 30)
            log('stanzactl account del mia: ned got the push (subscription none) and its unavailable presence')
        finally:
            self.close(m1, n1)

    def test_probe_at_login(self):
        e1, f1 = self.connect((bare('erin') + '/one', True, True), (bare('frank') + '/one', True, True))
        try:
            self.loop.run(subscribe_both(e1, f1), 40)

            async def leave():
                f1.send_presence(ptype='unavailable', pstatus='gone fishing')
                await wait_presence(e1, bare('frank') + '/one', 'unavailable', full=True)
            self.loop.run(leave(), 20)
        finally:
            self.close(e1, f1)
        # frank is offline now: erin's login probes him; the control plane
        # answers with his last unavailable presence (4.3.2), its status and
        # when (XEP-0203, from the last activity record)
        (e2,) = self.connect((bare('erin') + '/two', True, True))
        try:
            p = self.loop.run(wait_presence(e2, bare('frank'), 'unavailable'), 20)
            self.assertEqual(p['from'].full, bare('frank'))
            self.assertEqual(p['status'], 'gone fishing')
            self.assertIsNotNone(p.xml.find('{urn:xmpp:delay}delay'), 'XEP-0203 delay in the probe answer')
            log('probe of an offline contact at login: unavailable from his bare JID, last status, delay')
            (f2,) = self.connect((bare('frank') + '/two', True, True))
            try:
                self.loop.run(wait_presence(e2, bare('frank') + '/two', 'available', full=True), 20)
                self.loop.run(wait_presence(f2, bare('erin') + '/two', 'available', full=True), 20)
                log('probes of an online contact at login: presence both ways')
            finally:
                self.close(f2)
        finally:
            self.close(e2)

    def test_versioning(self):
        (g1,) = self.connect((bare('gina') + '/one', True, True))
        try:
            async def go():
                q0 = await roster_get(g1, ver='')
                v0 = q0.get('ver')
                assert v0 is not None, 'ver in the result (2.6)'
                iq = g1.make_iq_set()
                q = ET.SubElement(iq.xml, '{%s}query' % NS)
                it = ET.SubElement(q, '{%s}item' % NS, jid=bare('nobody-yet'), name='N')
                ET.SubElement(it, '{%s}group' % NS).text = 'Friends'
                await iq.send(timeout=WAIT)
                _, v1 = await wait_push(g1, bare('nobody-yet'), name='N')
                assert v1 and v1 != v0, (v0, v1)
                same = await roster_get(g1, ver=v1)
                assert same is None, 'same version: an empty result (2.6.3)'
                full = await roster_get(g1, ver=v0)
                assert full is not None and full.get('ver') == v1, full
                assert bare('nobody-yet') in items(full)
                # errors of 2.3.3
                from slixmpp.exceptions import IqError
                bad = g1.make_iq_set()
                q = ET.SubElement(bad.xml, '{%s}query' % NS)
                it = ET.SubElement(q, '{%s}item' % NS, jid=bare('x'))
                ET.SubElement(it, '{%s}group' % NS).text = ''
                try:
                    await bad.send(timeout=WAIT)
                    raise AssertionError('empty group accepted')
                except IqError as e:
                    assert e.iq['error']['condition'] == 'not-acceptable', e.iq['error']['condition']
                forged = g1.make_iq_set(ito=bare('hank'))
                q = ET.SubElement(forged.xml, '{%s}query' % NS)
                ET.SubElement(q, '{%s}item' % NS, jid=bare('evil'))
                try:
                    await forged.send(timeout=WAIT)
                    raise AssertionError('a roster set to another user was accepted')
                except IqError as e:
                    assert e.iq['error']['condition'] == 'forbidden', e.iq['error']['condition']
            self.loop.run(go(), 30)
            log('versioning: ver in results and pushes, empty result for the current ver; 2.3.3 errors')
        finally:
            self.close(g1)

    def test_three_accounts(self):
        h1, h2, i1, j1 = self.connect((bare('hank') + '/one', True, True), (bare('hank') + '/two', True, True),
                                      (bare('ivan') + '/one', True, True), (bare('judy') + '/one', True, True))
        try:
            self.workers_of([h1, h2, i1, j1])

            async def go():
                for other, c in ((bare('ivan'), i1), (bare('judy'), j1)):
                    h2.send_presence(pto=other, ptype='subscribe')
                    await wait_presence(c, bare('hank'), 'subscribe')
                    c.send_presence(pto=bare('hank'), ptype='subscribed')
                    for h in (h1, h2):
                        await wait_push(h, other, subscription='to')
                q = await roster_get(h1)
                its = items(q)
                assert its[bare('ivan')].get('subscription') == 'to'
                assert its[bare('judy')].get('subscription') == 'to'
                i1.send_presence(pstatus='ivan status')
                j1.send_presence(pstatus='judy status')
                for h in (h1, h2):
                    p = await wait_presence(h, bare('ivan') + '/one', 'available', full=True)
                    while p['status'] != 'ivan status':
                        p = await wait_presence(h, bare('ivan') + '/one', 'available', full=True)
                    p = await wait_presence(h, bare('judy') + '/one', 'available', full=True)
                    while p['status'] != 'judy status':
                        p = await wait_presence(h, bare('judy') + '/one', 'available', full=True)
                # ivan and judy are not subscribed to hank: no broadcast to them
                h1.send_presence(pstatus='hank status')
                await no_presence(i1, bare('hank'), 'available', 1.0)
            self.loop.run(go(), 60)
            log('three accounts: hank sees ivan and judy; they do not see hank')
        finally:
            self.close(h1, h2, i1, j1)


async def login_at(port, jid, interested, available):
    c = make_client(jid)
    c.auto_authorize = None
    c.auto_subscribe = False
    c.pushes = asyncio.Queue()
    c.add_event_handler('roster_update', lambda iq: c.pushes.put_nowait(iq))
    await c.login(port)
    if interested:
        c.last_roster = await roster_get(c)
    if available:
        c.send_presence()
    return c


if __name__ == '__main__':
    unittest.main(verbosity=2)
