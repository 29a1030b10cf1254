"""IM end to end (issue 4) with real client libraries on a 2-worker stanzad:
two and three accounts with several resources each, the resources of one
account placed on different workers (checked with `stanzactl sessions`).

  * subscribe / approve / unsubscribe / cancel: roster pushes to every
    interested resource and presence both ways (RFC 6121 3.1-3.3);
  * three accounts: broadcast to every subscriber's resources, per-resource
    unavailable (RFC 6121 4.2, 4.4, 4.5);
  * probes at login: a new session gets its contacts' current presence
    (RFC 6121 4.2.2, 4.3);
  * offline messages kept while the user is away, delivered at initial
    presence with XEP-0203 delay stamps (XEP-0160; RFC 6121 8.5.2);
  * XEP-0191 blocking stops delivery in both directions, with the XEP's
    errors and pushes; unblocking restores it;
  * XEP-0280 carbons copy to the other carbons-enabled resources;
  * slixmpp and @xmpp/client (xmpp.js) users together.

XEP-0198 resumption is tested in test_sm.py (R2), not here.
"""

import asyncio
import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jsclient  # noqa: E402
from harness import DOMAIN, ServerTestCase, log  # noqa: E402
from im_helpers import (IM_SETTINGS, NS_BLOCK, NS_BLOCK_ERR, NS_CARBONS, NS_CLIENT, NS_DELAY,  # noqa: E402
                        NS_FORWARD, NS_ROSTER, close_all, delay_of, drain, expect_presences,
                        im_client, iq_raw, items_of, jid_of, login_spread, next_presence, next_push,
                        parse_stamp, presences_from, push_is, quiet, roster_get, within, worker_of)

USERS = ['ann', 'ben', 'cat', 'dan', 'eve', 'fay', 'gus', 'hal', 'ivy', 'jon', 'kim',
         'lea', 'max', 'ned', 'oli', 'pam', 'quin']


async def become_interested_and_available(clients, status=None):
    """Roster get (interested resource) then initial presence (available
    resource) on each session, RFC 6121 2.1.3 / 4.2."""
    for c in clients:
        await roster_get(c)
    for c in clients:
        c.send_presence(pstatus=status or ('here: %s' % c.boundjid.resource))
    await asyncio.sleep(0.3)
    for c in clients:
        drain(c)


async def subscribe_flow(A, B, a_after, b_after, a_before='none'):
    """A[0] subscribes to B's bare JID; B[-1] approves. Checks every step's
    pushes and presences on every resource (RFC 6121 3.1.2-3.1.6)."""
    a_bare, b_bare = A[0].boundjid.bare, B[0].boundjid.bare
    A[0].send_presence(pto=b_bare, ptype='subscribe')
    for a in A:   # 3.1.2: push with ask='subscribe' to all interested resources
        await next_push(a, b_bare, push_is(a_before, 'subscribe'), what="push ask='subscribe'")
    for b in B:   # 3.1.3: request delivered to all available resources, from the bare JID
        p = await next_presence(b, a_bare, 'subscribe')
        assert p['from'].full == a_bare, "subscribe 'from' %r is not the bare JID (3.1.2)" % p['from'].full
    log("%s -> %s subscribe: ask='subscribe' pushed to %d resources, request on %d resources"
        % (a_bare, b_bare, len(A), len(B)))
    B[-1].send_presence(pto=a_bare, ptype='subscribed')
    for b in B:   # 3.1.5: contact's pushes
        await next_push(b, a_bare, push_is(b_after), what="push subscription='%s'" % b_after)
    for a in A:
        # 3.1.6: 'subscribed' (from the contact's bare JID, 3.1.5) delivered
        # and a push with the new state; 3.1.5: each of the contact's
        # available resources sends its presence to the user (any order)
        await next_push(a, b_bare, push_is(a_after), what="push subscription='%s'" % a_after)
        await expect_presences(a, [(b_bare, 'subscribed')] + [(b.boundjid.full, 'available') for b in B])
    log('%s approved %s: pushes %s/%s on all resources; presence of %d resources delivered to %d'
        % (b_bare, a_bare, b_after, a_after, len(B), len(A)))


class ImTest(ServerTestCase):

    accounts = [jid_of(u) for u in USERS]
    server_settings = IM_SETTINGS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.js_missing = jsclient.available()

    def setUp(self):
        self.clients = []
        self.js = []

    def tearDown(self):
        close_all(self.loop, self.clients)
        for j in self.js:
            j.stop(5)
            j.close()

    def spread(self, *jids):
        cs, where = login_spread(self.loop, self.server, list(jids))
        self.clients += cs
        return cs, where

    def run_(self, coro, timeout=40):
        return self.loop.run(coro, timeout)

    # ------------------------------------------------------------------
    def test_subscription_lifecycle(self):
        """Two accounts, two resources each on different workers:
        subscribe, approve, mutual, presence both ways, unsubscribe (3.3),
        cancel (3.2), with pushes and presence on every resource."""
        # workers alternate in this order: each account has a resource on
        # each worker, and a1 / b2 are on different workers
        (a1, a2, b1, b2), where = self.spread('ann@%s/a1' % DOMAIN, 'ann@%s/a2' % DOMAIN,
                                              'ben@%s/b1' % DOMAIN, 'ben@%s/b2' % DOMAIN)
        A, B = [a1, a2], [b1, b2]
        ann, ben = A[0].boundjid.bare, B[0].boundjid.bare

        async def go():
            await become_interested_and_available(A + B)
            # one way
            await subscribe_flow(A, B, a_after='to', b_after='from')
            # and back: ben subscribes to ann, ann approves → both
            await subscribe_flow(B, A, a_after='both', b_after='both', a_before='from')
            for c in A + B:
                other = ben if c in A else ann
                items = await roster_get(c)
                assert items.get(other, {}).get('subscription') == 'both', \
                    '%s roster: %r' % (c.boundjid, items)
                assert not items[other]['ask'], items
            log("roster get on all four resources: subscription='both', no ask")
            # presence flows both ways, from every resource to every resource
            for c in A + B:
                drain(c)
            A[0].send_presence(pshow='away', pstatus='ann away')
            for b in B:
                p = await next_presence(b, A[0].boundjid.full)
                assert p['status'] == 'ann away' and p['show'] == 'away', (p['status'], p['show'])
            B[1].send_presence(pshow='dnd', pstatus='ben busy')
            for a in A:
                p = await next_presence(a, B[1].boundjid.full)
                assert p['status'] == 'ben busy', p['status']
            log('presence updates flow both ways to every resource')

            # 3.3 unsubscribe: ann no longer wants ben's presence
            for c in A + B:
                drain(c)
            A[1].send_presence(pto=ben, ptype='unsubscribe')
            for a in A:
                await next_push(a, ben, push_is('from'), what="push 'from' after unsubscribe")
            for b in B:
                p = await next_presence(b, ann, 'unsubscribe')
                assert p['from'].full == ann, p['from'].full
                await next_push(b, ann, push_is('to'), what="push 'to' after unsubscribe")
            for a in A:     # 3.3.3: unavailable from each of ben's available resources
                await presences_from(a, [b.boundjid.full for b in B], 'unavailable')
            log("unsubscribe: pushes 'from'/'to', unavailable presence from both of ben's resources")
            for c in A + B:
                drain(c)
            B[0].send_presence(pstatus='ben not for ann')
            A[0].send_presence(pstatus='ann still for ben')
            pres, _ = await quiet(A[1], 0.8, presence_from=ben)
            assert not [p for p in pres if p['type'] != 'unavailable'], \
                "ann still receives ben's presence after unsubscribe: %r" % [str(p) for p in pres]
            for b in B:
                await next_presence(b, A[0].boundjid.full, pred=lambda p: p['status'] == 'ann still for ben')
            log("after unsubscribe: ben's presence no longer reaches ann; ann's still reaches ben")

            # 3.2 cancel: ann cancels ben's subscription to her
            for c in A + B:
                drain(c)
            A[0].send_presence(pto=ben, ptype='unsubscribed')
            for a in A:
                await next_push(a, ben, push_is('none'), what="push 'none' after cancel")
            for b in B:   # 3.2.3: 'unsubscribed', push, unavailable from each of ann's resources
                await next_push(b, ann, push_is('none'), what="push 'none' after cancel")
                await expect_presences(b, [(ann, 'unsubscribed')]
                                       + [(a.boundjid.full, 'unavailable') for a in A])
            log("cancel: pushes 'none' on both sides, unavailable presence from ann's resources to ben")
            A[1].send_presence(pstatus='nobody sees this')
            pres, _ = await quiet(B[0], 0.8, presence_from=ann)
            assert not [p for p in pres if p['type'] != 'unavailable'], \
                'ben still receives ann presence: %r' % [str(p) for p in pres]
        self.run_(go(), 90)

    # ------------------------------------------------------------------
    def test_three_accounts(self):
        """cat, dan, eve with two resources each: cat is mutually subscribed
        with dan and with eve; a presence change of one of cat's resources
        reaches every resource of both; dan and eve (not subscribed to each
        other) never see each other's presence; a resource going offline is
        announced per resource (RFC 6121 4.5.2)."""
        cs, where = self.spread(*['%s@%s/%s%d' % (u, DOMAIN, u[0], i)
                                  for u in ('cat', 'dan', 'eve') for i in (1, 2)])
        by = {}
        for c in cs:
            by.setdefault(c.boundjid.user, []).append(c)
        C, D, E = by['cat'], by['dan'], by['eve']
        for acct in (C, D, E):
            ws = {where[c.boundjid.full] for c in acct}
            log('%s resources on workers %s' % (acct[0].boundjid.bare, sorted(ws)))

        async def go():
            await become_interested_and_available(C + D + E)
            await subscribe_flow(C, D, 'to', 'from')
            await subscribe_flow(D, C, 'both', 'both', a_before='from')
            await subscribe_flow(E, C, 'to', 'from')
            await subscribe_flow(C, E, 'both', 'both', a_before='from')
            for c in C + D + E:
                drain(c)
            C[1].send_presence(pshow='chat', pstatus='cat talks')
            for x in D + E:
                p = await next_presence(x, C[1].boundjid.full)
                assert p['status'] == 'cat talks', p['status']
            log("one of cat's resources changes presence: all 4 resources of dan and eve get it")
            D[0].send_presence(pstatus='dan here')
            for c in C:
                await next_presence(c, D[0].boundjid.full, pred=lambda p: p['status'] == 'dan here')
            pres, _ = await quiet(E[0], 0.6, presence_from=D[0].boundjid.bare)
            assert not pres, 'eve (no subscription with dan) got his presence: %r' % [str(p) for p in pres]
            log('dan and eve, not subscribed to each other, see nothing of each other')
            for c in C + D + E:
                drain(c)
            await C[0].close()
            for x in D + E:
                p = await next_presence(x, C[0].boundjid.full, 'unavailable')
            log("cat/%s logs out: unavailable from that resource to dan's and eve's resources"
                % C[0].boundjid.resource)
            pres, _ = await quiet(D[0], 0.5, presence_from=C[1].boundjid.bare)
            assert not [p for p in pres if p['from'].full == C[1].boundjid.full and p['type'] == 'unavailable'], \
                'the other resource of cat was announced unavailable too'
        self.run_(go(), 120)

    # ------------------------------------------------------------------
    def test_probes_at_login(self):
        """fay and gus are mutually subscribed; gus has two available
        resources with a status. A new session of fay that sends initial
        presence gets the current presence of each of gus's resources
        (RFC 6121 4.2.2 probe, 4.3.2 answer), and gus's resources get her
        initial presence. A session that only logs in and sends no presence
        gets nothing and announces nothing (RFC 6121 4.2.1)."""
        (f1, f2, g1, g2), where = self.spread('fay@%s/f1' % DOMAIN, 'fay@%s/f2' % DOMAIN,
                                              'gus@%s/g1' % DOMAIN, 'gus@%s/g2' % DOMAIN)
        F, G = [f1, f2], [g1, g2]

        async def go():
            await become_interested_and_available(F + G)
            await subscribe_flow(F, G, 'to', 'from')
            await subscribe_flow(G, F, 'both', 'both', a_before='from')
            g1.send_presence(pshow='away', pstatus='gus one')
            g2.send_presence(pstatus='gus two', ppriority=5)
            await asyncio.sleep(0.3)
            await f1.close()
            await f2.close()
            await asyncio.sleep(0.3)
            for g in G:
                drain(g)
            f3 = im_client('fay@%s/f3' % DOMAIN)
            self.clients.append(f3)
            await f3.login(self.server.port)
            # no initial presence yet: nothing flows
            pres, _ = await quiet(f3, 0.6)
            assert not [p for p in pres if p['type'] not in ('unavailable',)], \
                'presence before initial presence: %r' % [str(p) for p in pres]
            pres, _ = await quiet(g1, 0.1, presence_from='fay@%s' % DOMAIN)
            assert not pres, 'fay announced before sending presence: %r' % [str(p) for p in pres]
            await roster_get(f3)
            f3.send_presence(pstatus='fay back')
            got = await presences_from(f3, [g1.boundjid.full, g2.boundjid.full])
            assert got[g1.boundjid.full]['status'] == 'gus one', got[g1.boundjid.full]['status']
            assert got[g1.boundjid.full]['show'] == 'away'
            assert got[g2.boundjid.full]['status'] == 'gus two'
            assert int(got[g2.boundjid.full]['priority'] or 0) == 5
            log("initial presence of a new session: gus's two resources' current presence delivered (probe)")
            for g in G:
                p = await next_presence(g, f3.boundjid.full)
                assert p['status'] == 'fay back'
            log('and her initial presence reached both of gus\'s resources (worker %d / %d)'
                % (where[g1.boundjid.full], where[g2.boundjid.full]))
        self.run_(go(), 90)

    # ------------------------------------------------------------------
    def test_offline_messages_delay(self):
        """ivy is offline; hal sends chat and normal messages to her bare
        JID and a chat to a full JID of hers that is not connected (RFC 6121
        8.5.3.2.1: treated as to the bare JID), and a headline (not stored,
        8.5.2.1.1 / XEP-0160 3). ivy logs in with two resources: nothing
        before initial presence; at initial presence all of them, in order,
        once, each with a XEP-0203 <delay/> from the server's domain and a
        stamp of when it was stored."""
        (h1,), _ = self.spread('hal@%s/h1' % DOMAIN)
        ivy = 'ivy@%s' % DOMAIN
        t0 = time.time()

        async def go():
            bodies = ['offline-%d' % i for i in range(5)]
            h1.send_message(mto=ivy, mbody=bodies[0], mtype='chat')
            h1.send_message(mto=ivy, mbody=bodies[1], mtype='normal')
            h1.send_message(mto=ivy + '/gone', mbody=bodies[2], mtype='chat')
            h1.send_message(mto=ivy, mbody='headline-not-stored', mtype='headline')
            h1.send_message(mto=ivy, mbody=bodies[3], mtype='chat')
            h1.send_message(mto=ivy, mbody=bodies[4])
            # no error comes back for stored messages
            pres, msgs = await quiet(h1, 1.0)
            errs = []
            while not h1.errors_in.empty():
                errs.append(h1.errors_in.get_nowait())
            assert not errs, 'errors for messages to an offline user: %r' % [str(e) for e in errs]
            await asyncio.sleep(1.1)     # stamps must be of the storing, not of the delivery
            t_login = time.time()
            i1 = im_client(ivy + '/i1')
            i2 = im_client(ivy + '/i2')
            self.clients.extend([i1, i2])
            await asyncio.gather(i1.login(self.server.port), i2.login(self.server.port))
            _, early = await quiet(i1, 0.7)
            assert not early, 'offline messages before initial presence: %r' % [m['body'] for m in early]
            i1.send_presence()
            got = []
            for _ in bodies:
                m = await i1.recv(10)
                got.append(m)
            assert [m['body'] for m in got] == bodies, [m['body'] for m in got]
            for m in got:
                d = delay_of(m.xml)
                assert d is not None, 'no XEP-0203 <delay/> on %s' % m
                stamp, dfrom = d
                assert dfrom == DOMAIN, "delay 'from' %r, want the server %r" % (dfrom, DOMAIN)
                ts = parse_stamp(stamp)
                assert t0 - 2 <= ts <= t_login - 0.5, \
                    'stamp %s is not the storing time (%s .. %s)' % (stamp, time.strftime(
                        '%H:%M:%S', time.gmtime(t0)), time.strftime('%H:%M:%S', time.gmtime(t_login)))
                assert m['from'].full == h1.boundjid.full, m['from'].full
            log('5 offline messages at initial presence, in order, with <delay from=%s stamp=...>' % DOMAIN)
            _, more = await quiet(i1, 0.7)
            assert not [m for m in more if m['body'] == 'headline-not-stored'], 'a headline was stored'
            assert not more, 'more messages than stored: %r' % [m['body'] for m in more]
            i2.send_presence()
            _, dup = await quiet(i2, 0.8)
            assert not dup, 'offline messages delivered twice: %r' % [m['body'] for m in dup]
            log('headline not stored; the second resource gets no second copy')
        self.run_(go(), 60)

    # ------------------------------------------------------------------
    def test_bare_jid_priority(self):
        """RFC 6121 8.5.2.1.1: a chat message to the bare JID goes to the
        available resource(s) with the highest non-negative priority, never
        to a negative one; when only negative ones are left it is stored
        offline, and a resource of priority >= 0 that sends presence again
        gets it with its delay stamp (XEP-0160)."""
        (q1, q2, q3, o1), where = self.spread('quin@%s/q1' % DOMAIN, 'quin@%s/q2' % DOMAIN,
                                              'quin@%s/q3' % DOMAIN, 'oli@%s/o1' % DOMAIN)
        quin = q1.boundjid.bare

        async def go():
            q1.send_presence(ppriority=5)
            q2.send_presence(ppriority=1)
            q3.send_presence(ppriority=-1)
            await asyncio.sleep(0.4)
            o1.send_message(mto=quin, mbody='to-best', mtype='chat')
            await q1.recv_body('to-best')
            _, m2 = await quiet(q2, 0.5)
            _, m3 = await quiet(q3, 0.1)
            assert not m2 and not m3, 'lower priorities got it: q2 %r q3 %r' % (
                [m['body'] for m in m2], [m['body'] for m in m3])
            log('priority 5 / 1 / -1 (workers %d/%d/%d): the bare-JID message reached only the 5'
                % (where[q1.boundjid.full], where[q2.boundjid.full], where[q3.boundjid.full]))
            q1.send_presence(ptype='unavailable')
            await asyncio.sleep(0.4)
            o1.send_message(mto=quin, mbody='to-next', mtype='chat')
            await q2.recv_body('to-next')
            _, m3 = await quiet(q3, 0.5)
            assert not m3, 'negative priority got %r' % [m['body'] for m in m3]
            log('the 5 went unavailable: the next one went to the 1, not to the -1')
            q2.send_presence(ptype='unavailable')
            await asyncio.sleep(0.4)
            o1.send_message(mto=quin, mbody='only-negative-left', mtype='chat')
            _, m3 = await quiet(q3, 0.8)
            assert not m3, 'negative priority got %r' % [m['body'] for m in m3]
            errs = []
            while not o1.errors_in.empty():
                errs.append(str(o1.errors_in.get_nowait()))
            assert not errs, 'error instead of offline storage: %r' % errs
            q2.send_presence(ppriority=0)
            m = await q2.recv_body('only-negative-left')
            assert delay_of(m.xml) is not None, 'stored message without <delay/>'
            log('only a negative priority left: stored offline, delivered with <delay/> at the next presence')
        self.run_(go(), 60)

    # ------------------------------------------------------------------
    def test_blocking_both_directions(self):
        """jon blocks kim (XEP-0191 3.3) while they are mutually subscribed:
        block push to jon's resources that asked for the list, kim gets
        jon's unavailable presence; kim -> jon messages are not delivered
        (error <service-unavailable/>), jon -> kim messages are refused with
        <not-acceptable/> + <blocked/>; presence neither way; after unblock
        (3.4) everything flows again and kim gets jon's current presence."""
        (j1, j2, k1, k2), where = self.spread('jon@%s/j1' % DOMAIN, 'jon@%s/j2' % DOMAIN,
                                              'kim@%s/k1' % DOMAIN, 'kim@%s/k2' % DOMAIN)
        J, K = [j1, j2], [k1, k2]
        jon, kim = j1.boundjid.bare, k1.boundjid.bare

        async def go():
            await become_interested_and_available(J + K)
            await subscribe_flow(J, K, 'to', 'from')
            await subscribe_flow(K, J, 'both', 'both', a_before='from')
            for c in J + K:
                drain(c)
            st, res = await iq_raw(j1, "<iq type='get'><blocklist xmlns='%s'/></iq>" % NS_BLOCK)
            assert st == 'result', ('blocklist get', res)
            st, res = await iq_raw(j2, "<iq type='get'><blocklist xmlns='%s'/></iq>" % NS_BLOCK)
            assert st == 'result', ('blocklist get', res)
            st, res = await iq_raw(j1, "<iq type='set'><block xmlns='%s'><item jid='%s'/></block></iq>"
                                   % (NS_BLOCK, kim))
            assert st == 'result', ('block', res)
            for j in J:
                push = await within(j.block_pushes.get(), 10, 'block push on %s' % j.boundjid)
                assert push.tag == '{%s}block' % NS_BLOCK, push.tag
                assert [i.get('jid') for i in push] == [kim], [i.get('jid') for i in push]
            log('block: result, and a block push to both of jon\'s resources')
            for k in K:
                await presences_from(k, [j.boundjid.full for j in J], 'unavailable')
            log("kim's resources got unavailable presence from both of jon's resources")
            for c in J + K:
                drain(c)
            # kim -> jon: not delivered, error back to kim
            k1.send_message(mto=jon, mbody='blocked-in-1', mtype='chat')
            k2.send_message(mto=j2.boundjid.full, mbody='blocked-in-2', mtype='chat')
            for k, body in ((k1, 'blocked-in-1'), (k2, 'blocked-in-2')):
                e = await within(k.errors_in.get(), 10, 'error for %r sent to a user who blocked %s'
                                 % (body, kim))
                assert e['error']['condition'] == 'service-unavailable', \
                    'inbound block: <%s/>, XEP-0191 3.3: SHOULD be service-unavailable' % e['error']['condition']
            # jon -> kim: refused with not-acceptable + blocked
            j2.send_message(mto=k1.boundjid.full, mbody='blocked-out', mtype='chat')
            e = await within(j2.errors_in.get(), 10, 'error for a message to the blocked %s' % kim)
            assert e['error']['condition'] == 'not-acceptable', e['error']['condition']
            assert e.xml.find('{%s}error/{%s}blocked' % (NS_CLIENT, NS_BLOCK_ERR)) is not None, \
                'no <blocked xmlns=%s/> in %s' % (NS_BLOCK_ERR, e)
            log('kim -> jon: <service-unavailable/>; jon -> kim: <not-acceptable/><blocked/>')
            # presence neither way
            k1.send_presence(pstatus='kim while blocked')
            j1.send_presence(pstatus='jon while blocked')
            for j in J:
                pres, msgs = await quiet(j, 0.6, presence_from=kim, message_from=kim)
                assert not pres and not msgs, 'jon got from kim: %r %r' % ([str(p) for p in pres],
                                                                           [m['body'] for m in msgs])
            for k in K:
                pres, msgs = await quiet(k, 0.1, presence_from=jon, message_from=jon)
                assert not pres and not msgs, 'kim got from jon: %r %r' % ([str(p) for p in pres],
                                                                           [m['body'] for m in msgs])
            log('no presence and no message either way while blocked')
            st, res = await iq_raw(j2, "<iq type='get'><blocklist xmlns='%s'/></iq>" % NS_BLOCK)
            assert st == 'result'
            items = [i.get('jid') for i in res.iter('{%s}item' % NS_BLOCK)]
            assert items == [kim], items
            # unblock
            for c in J + K:
                drain(c)
            st, res = await iq_raw(j2, "<iq type='set'><unblock xmlns='%s'><item jid='%s'/></unblock></iq>"
                                   % (NS_BLOCK, kim))
            assert st == 'result', ('unblock', res)
            for j in J:
                push = await within(j.block_pushes.get(), 10, 'unblock push on %s' % j.boundjid)
                assert push.tag == '{%s}unblock' % NS_BLOCK, push.tag
            for k in K:   # 3.4: the user's current presence to the unblocked JID
                await presences_from(k, [j.boundjid.full for j in J])
            log("unblock: pushes, and kim gets jon's current presence again")
            k1.send_message(mto=j1.boundjid.full, mbody='after-unblock-in', mtype='chat')
            j1.send_message(mto=k2.boundjid.full, mbody='after-unblock-out', mtype='chat')
            await j1.recv_body('after-unblock-in', 10)
            await k2.recv_body('after-unblock-out', 10)
            log('messages flow both ways after unblock')
        self.run_(go(), 90)

    # ------------------------------------------------------------------
    def test_carbons(self):
        """lea has three resources (l1, l2 carbons-enabled; l3 not), max one.
        max -> lea/l1: l2 gets a <received/> carbon from lea's bare JID, l3
        nothing; l1 -> max: l2 gets a <sent/> carbon; a <private/> message
        is not copied; after disable, l2 gets no more copies (XEP-0280 6-9)."""
        (l1, l2, l3, m1), where = self.spread('lea@%s/l1' % DOMAIN, 'lea@%s/l2' % DOMAIN,
                                              'lea@%s/l3' % DOMAIN, 'max@%s/m1' % DOMAIN)
        lea = l1.boundjid.bare

        def take_all(q):
            out = []
            while not q.empty():
                out.append(q.get_nowait())
            return out

        def carbon(m, kind):
            el = m.xml.find('{%s}%s/{%s}forwarded/{%s}message' % (NS_CARBONS, kind, NS_FORWARD, NS_CLIENT))
            return el

        async def go():
            for c in (l1, m1, l2, l3):
                c.send_presence()
            await asyncio.sleep(0.3)
            for c in (l1, l2):
                st, res = await iq_raw(c, "<iq type='set'><enable xmlns='%s'/></iq>" % NS_CARBONS)
                assert st == 'result', ('carbons enable', res)
            for c in (l1, m1, l2, l3):
                drain(c)
            log('carbons enabled on l1 (worker %d) and l2 (worker %d); l3 (worker %d) not'
                % (where[l1.boundjid.full], where[l2.boundjid.full], where[l3.boundjid.full]))
            m1.send_message(mto=l1.boundjid.full, mbody='to-l1', mtype='chat')
            m = await l1.recv_body('to-l1')
            assert carbon(m, 'received') is None, 'the addressee got a carbon instead of the message'
            c2 = await within(l2.carbons.get(), 10, '<received/> carbon on l2')
            assert c2['from'].full == lea, "carbon 'from' %r, XEP-0280 6: the user's bare JID" % c2['from'].full
            assert c2['to'].full == l2.boundjid.full, c2['to'].full
            inner = carbon(c2, 'received')
            assert inner is not None, 'not a <received/> carbon: %s' % c2
            assert inner.findtext('{%s}body' % NS_CLIENT) == 'to-l1'
            assert inner.get('from') == m1.boundjid.full and inner.get('to') == l1.boundjid.full, inner.attrib
            log('max -> lea/l1: l2 got a <received/> carbon from %s with the original inside' % lea)
            l1.send_message(mto=m1.boundjid.full, mbody='from-l1', mtype='chat')
            await m1.recv_body('from-l1')
            c2 = await within(l2.carbons.get(), 10, '<sent/> carbon on l2')
            inner = carbon(c2, 'sent')
            assert inner is not None, 'not a <sent/> carbon: %s' % c2
            assert c2['from'].full == lea
            assert inner.findtext('{%s}body' % NS_CLIENT) == 'from-l1'
            assert inner.get('to') == m1.boundjid.full, inner.attrib
            log('lea/l1 -> max: l2 got a <sent/> carbon')
            await asyncio.sleep(0.3)
            own = take_all(l1.carbons)
            assert not own, 'the sender got a carbon of its own message: %r' % [str(x) for x in own]
            l3got = take_all(l3.carbons) + take_all(l3.inbox)
            assert not l3got, 'l3 (carbons not enabled) got: %r' % [str(x) for x in l3got]
            # <private/>: no copy (XEP-0280 8)
            priv = ET.fromstring("<message xmlns='jabber:client' to='%s' type='chat'><body>private</body>"
                                 "<private xmlns='%s'/><no-copy xmlns='urn:xmpp:hints'/></message>"
                                 % (l1.boundjid.full, NS_CARBONS))
            from slixmpp.stanza import Message
            Message(m1, xml=priv).send()
            await l1.recv_body('private')
            await asyncio.sleep(0.6)
            l2got = take_all(l2.carbons)
            assert not l2got, 'a <private/> message was carbon-copied: %r' % [str(x) for x in l2got]
            log('<private/> message: not copied')
            st, res = await iq_raw(l2, "<iq type='set'><disable xmlns='%s'/></iq>" % NS_CARBONS)
            assert st == 'result', ('carbons disable', res)
            m1.send_message(mto=l1.boundjid.full, mbody='after-disable', mtype='chat')
            await l1.recv_body('after-disable')
            await asyncio.sleep(0.6)
            l2got = take_all(l2.carbons)
            assert not l2got, 'carbon after disable: %r' % [str(x) for x in l2got]
            log('after disable on l2: no more copies')
        self.run_(go(), 60)

    # ------------------------------------------------------------------
    def test_mixed_libraries(self):
        """ned on slixmpp (two resources, both workers) and pam on
        @xmpp/client (xmpp.js): pam subscribes, ned approves, mutual;
        roster pushes reach the xmpp.js client; presence and messages both
        ways; pam goes offline, ned writes, pam comes back with xmpp.js and
        gets the message with a delay stamp."""
        if self.js_missing:
            self.skipTest('@xmpp/client: ' + self.js_missing)
        (n1, n2), where = self.spread('ned@%s/n1' % DOMAIN, 'ned@%s/n2' % DOMAIN)
        ned = n1.boundjid.bare
        pam = 'pam@%s' % DOMAIN
        p = jsclient.JsClient('pam', 'js1')
        self.js.append(p)
        p.login(self.server.port)
        info = p.login_info
        log('@xmpp/client logged in: %s mech=%s (offered %s), TLS=%s, SM=%s, worker %d'
            % (p.jid, info['mech'], ','.join(info['offered']), info['secure'], info['sm'],
               worker_of(self.server, p.jid)))
        self.assertEqual(info['mech'], 'SCRAM-SHA-1')
        self.assertTrue(info['secure'])

        def js_push(jid, sub, ask=None, timeout=10):
            deadline = time.monotonic() + timeout
            seen = []
            while time.monotonic() < deadline:
                try:
                    iq = p.pushes.get(timeout=max(0.05, deadline - time.monotonic()))
                except Exception:
                    break
                items = items_of(iq.find('{%s}query' % NS_ROSTER))
                seen.append(items)
                it = items.get(jid)
                if it and it['subscription'] == sub and (it['ask'] or None) == ask:
                    return it
            raise AssertionError('xmpp.js: no push %s %s/%s (seen %r)' % (jid, sub, ask, seen))

        def is_presence(frm, ptype=None):
            return lambda el: (el.tag == '{%s}presence' % NS_CLIENT and el.get('from') == frm
                               and el.get('type') == ptype)

        def js_presence(frm, ptype=None, timeout=10):
            return p.next_stanza(is_presence(frm, ptype), timeout, 'presence %s from %s' % (ptype, frm))

        async def prep():
            await become_interested_and_available([n1, n2])
        self.run_(prep())
        st, res = p.iq("<iq type='get' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>")
        self.assertEqual(st, 'result', res)
        p.send("<presence xmlns='jabber:client'><status>pam on xmpp.js</status></presence>")
        time.sleep(0.3)
        # pam subscribes to ned
        p.send("<presence xmlns='jabber:client' to='%s' type='subscribe'/>" % ned)
        js_push(ned, 'none', 'subscribe')

        async def ned_sees_request():
            for n in (n1, n2):
                pr = await next_presence(n, pam, 'subscribe')
                assert pr['from'].full == pam
            n2.send_presence(pto=pam, ptype='subscribed')
            for n in (n1, n2):
                await next_push(n, pam, push_is('from'))
        self.run_(ned_sees_request())
        js_push(ned, 'to')
        p.expect({'subscribed': is_presence(ned, 'subscribed'),       # any order (RFC 6121 3.1.5/3.1.6)
                  'n1': is_presence(n1.boundjid.full), 'n2': is_presence(n2.boundjid.full)})
        log('xmpp.js subscribed to slixmpp user: pushes and presence on both sides')

        # and back
        async def ned_subscribes():
            n1.send_presence(pto=pam, ptype='subscribe')
            for n in (n1, n2):
                await next_push(n, pam, push_is('from', 'subscribe'))
        self.run_(ned_subscribes())
        js_presence(ned, 'subscribe')
        p.send("<presence xmlns='jabber:client' to='%s' type='subscribed'/>" % ned)
        js_push(ned, 'both')

        async def ned_gets_both():
            for n in (n1, n2):
                await next_push(n, pam, push_is('both'))
                await next_presence(n, p.jid)
        self.run_(ned_gets_both())
        log("mutual: 'both' on both libraries; pam's presence reached both of ned's resources")
        # messages both ways
        p.send("<message xmlns='jabber:client' to='%s' type='chat'><body>js-to-ned</body></message>"
               % n1.boundjid.full)
        self.run_(n1.recv_body('js-to-ned'))
        self.loop.call(lambda: n2.send_message(mto=p.jid, mbody='ned-to-js', mtype='chat'))
        m = p.next_stanza(lambda el: el.tag == '{%s}message' % NS_CLIENT
                          and el.findtext('{%s}body' % NS_CLIENT) == 'ned-to-js', 10, 'message')
        self.assertEqual(m.get('from'), n2.boundjid.full)
        log('messages both ways between the libraries')
        # pam goes offline; ned writes; pam comes back
        p.stop()
        self.run_(presences_from(n1, [p.jid], 'unavailable'))
        t_sent = time.time()
        self.loop.call(lambda: n1.send_message(mto=pam, mbody='while-you-were-away', mtype='chat'))
        time.sleep(1.2)
        p2 = jsclient.JsClient('pam', 'js2')
        self.js.append(p2)
        p2.login(self.server.port)
        p2.send("<presence xmlns='jabber:client'/>")
        got = p2.expect({'msg': lambda el: el.tag == '{%s}message' % NS_CLIENT
                         and el.findtext('{%s}body' % NS_CLIENT) == 'while-you-were-away',
                         'n1': is_presence(n1.boundjid.full), 'n2': is_presence(n2.boundjid.full)})
        m = got['msg']
        d = m.find('{%s}delay' % NS_DELAY)
        self.assertIsNotNone(d, 'no <delay/> on the offline message: %s' % ET.tostring(m))
        ts = parse_stamp(d.get('stamp'))
        self.assertTrue(t_sent - 2 <= ts <= t_sent + 1.1, 'stamp %s' % d.get('stamp'))
        log('xmpp.js reconnects: the offline message arrives with <delay stamp=%s>' % d.get('stamp'))
        log("and the probe at its login brought ned's two resources' presence")


if __name__ == '__main__':
    unittest.main(verbosity=2)
