"""Bad input for IM (issue 4): forged roster pushes, invalid roster sets,
subscription floods. A 2-worker stanzad; slixmpp as the victim's client,
raw sockets for the attackers (no library sends these).

Forged roster pushes. RFC 6121 2.1.6: a roster push is an iq set from the
user's own account (no 'from', or the user's bare JID); "a receiving client
MUST ignore the stanza unless it has no 'from' attribute ... or it has a
'from' attribute whose value matches the user's bare JID". The server's
part (RFC 6120 8.1.2.1) is that another user cannot make a push look like
that: the server stamps the sender's full JID as 'from' on what it routes,
and a stanza whose 'from' is not the sender's own JID is an <invalid-from/>
stream error. A roster set addressed to another user's bare JID is handled
by the server on that account's behalf and refused with <forbidden/>
(RFC 6121 2.3.3, "not authorized to update the roster").

Invalid roster sets (RFC 6121 2.3.3; 2.5.3 for removal): more than one
<item/> or duplicate <group/>s: <bad-request/>; an empty <group/>:
<not-acceptable/>; removing an item that is not there: <item-not-found/>.
A 'subscription' attribute other than "remove" in a roster set is NOT an
error: RFC 6121 2.1.2.5 says the server "MUST ignore all values of the
'subscription' attribute other than 'remove'", so subscription='both'
must give a result and an item whose subscription is still 'none' (the
client cannot grant itself a subscription). No push for a refused set.

Subscription floods: requests to an offline user are stored up to
im.pending_max (10 here) and the rest dropped; one requester's repeats
count once; the server keeps answering an innocent session meanwhile.
"""

import asyncio
import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DOMAIN, ServerTestCase, log, stream_error_condition  # noqa: E402
from im_helpers import (IM_SETTINGS, NS_CLIENT, NS_ROSTER, close_all, error_of, im_client,  # noqa: E402
                        is_iq, items_of, raw_login, raw_next, raw_roster, roster_get)

FLOODERS = 40
REPEATS = 15
PENDING_MAX = IM_SETTINGS['im']['pending_max']
ROSTER_MAX = IM_SETTINGS['im']['roster_max']
USERS = (['mia', 'mal', 'nia', 'big', 'vic', 'vic2', 'rep', 'in1', 'in2']
         + ['fl%d' % i for i in range(FLOODERS)])


def J(u):
    return '%s@%s' % (u, DOMAIN)


class ImBadInputTest(ServerTestCase):

    accounts = [J(u) for u in USERS]
    server_settings = IM_SETTINGS

    def setUp(self):
        self.raws = []
        self.clients = []

    def tearDown(self):
        for r in self.raws:
            r.close()
        close_all(self.loop, self.clients)

    def raw(self, user, resource='raw'):
        r, jid = raw_login(self.server.port, user, resource)
        self.raws.append(r)
        return r, jid

    # ------------------------------------------------------------------
    def test_forged_roster_push(self):
        seen = []     # 'from' of every roster-set-shaped iq the victim's client receives

        async def victim():
            from slixmpp.xmlstream.handler import Callback
            from slixmpp.xmlstream.matcher import StanzaPath
            c = im_client('%s/v' % J('mia'))
            c.register_handler(Callback('seen roster set', StanzaPath('iq@type=set/roster'),
                                        lambda iq: seen.append(iq['from'].full)))
            await c.login(self.server.port)
            items = await roster_get(c)
            return c, items
        mia, before = self.loop.run(victim(), 30)
        self.clients.append(mia)
        self.assertNotIn(J('mal'), before)
        push = ("<query xmlns='jabber:iq:roster'><item jid='%s' subscription='both' name='trusted'>"
                "<group>Friends</group></item></query>" % J('mal'))

        # 1. to the victim's full JID: an iq to a full JID is routed to
        #    that resource (RFC 6120 10.5.4) with mal's full JID stamped as
        #    'from' (8.1.2.1); slixmpp ignores it (RFC 6121 2.1.6). slixmpp
        #    1.8.3 means to answer <service-unavailable/> but its reply
        #    carries code=503 as an int and fails to serialise, so no answer
        #    comes: the test does not require one, only that none is a result.
        mal, mal_jid = self.raw('mal', 'evil')
        mal.send("<iq type='set' id='evil1' to='%s'>%s</iq>" % (mia.boundjid.full, push))
        try:
            ans = raw_next(mal, lambda e: is_iq(e, 'evil1'), 1.5, 'answer to the forged push')
        except AssertionError:
            ans = None
        if ans is not None:
            self.assertEqual(ans.get('type'), 'error', 'the victim accepted a push from another user: %s'
                             % ET.tostring(ans).decode())
        self.assertEqual(seen, [mal_jid], "the victim's client received %r, want one iq from %s"
                         % (seen, mal_jid))
        log("push to the victim's full JID: delivered with 'from'=%s (stamped), ignored by slixmpp (%s)"
            % (mal_jid, 'answer <%s/>' % error_of(ans)[1] if ans is not None else 'no answer'))

        # 2. to the victim's bare JID: the server refuses on the account's behalf
        mal.send("<iq type='set' id='evil2' to='%s'>%s</iq>" % (J('mia'), push))
        ans = raw_next(mal, lambda e: is_iq(e, 'evil2'), 10, 'answer to the roster set on another account')
        self.assertEqual(ans.get('type'), 'error', ET.tostring(ans).decode())
        self.assertEqual(error_of(ans)[1], 'forbidden', 'RFC 6121 2.3.3: <forbidden/>, got %r' % (error_of(ans),))
        log("roster set to another user's bare JID: <forbidden/>")

        # 3. with the victim's bare JID (what a client would accept) or the
        #    server's JID as a forged 'from': <invalid-from/>, nothing delivered
        for forged in (J('mia'), DOMAIN):
            m, _ = self.raw('mal', 'forger')
            m.send("<iq type='set' id='evil3' from='%s' to='%s'>%s</iq>" % (forged, mia.boundjid.full, push))
            text = m.read_to_close(10)
            self.assertEqual(stream_error_condition(text), 'invalid-from',
                             "from='%s': %r" % (forged, text[-300:]))
            log("forged from='%s': <invalid-from/> stream error" % forged)

        async def after():
            pushes = []
            while not mia.pushes.empty():
                pushes.append(str(mia.pushes.get_nowait()))
            await asyncio.sleep(0.3)
            while not mia.pushes.empty():
                pushes.append(str(mia.pushes.get_nowait()))
            items = await roster_get(mia)
            return pushes, items, J('mal') in mia.client_roster
        pushes, items, in_client = self.loop.run(after(), 20)
        self.assertFalse(pushes, 'the victim client took a forged push: %r' % pushes)
        self.assertFalse(in_client, "mal is in slixmpp's roster")
        self.assertNotIn(J('mal'), items, "mal is in the victim's roster on the server: %r" % items)
        log("victim's roster unchanged in the client and on the server")

    # ------------------------------------------------------------------
    def test_roster_set_errors(self):
        r, jid = self.raw('nia')
        raw_roster(r, 'g0')
        cases = [
            ('two items', "<item jid='%s'/><item jid='%s'/>" % (J('x1'), J('x2')), 'bad-request'),
            ('duplicate groups', "<item jid='%s'><group>G</group><group>G</group></item>" % J('x3'),
             'bad-request'),
            ('empty group <group/>', "<item jid='%s'><group/></item>" % J('x4'), 'not-acceptable'),
            ('empty group <group></group>', "<item jid='%s'><group></group></item>" % J('x5'),
             'not-acceptable'),
            ('remove an absent item', "<item jid='%s' subscription='remove'/>" % J('nobody'),
             'item-not-found'),
            # "greater than a server-configured limit" (stanzad: 1024 characters)
            ('name of 4000 characters', "<item jid='%s' name='%s'/>" % (J('x6'), 'n' * 4000),
             'not-acceptable'),
            ('group of 4000 characters', "<item jid='%s'><group>%s</group></item>" % (J('x7'), 'g' * 4000),
             'not-acceptable'),
        ]
        pushes = []

        def answer(iq_id):
            def pred(e):
                if is_iq(e, typ='set') and e.find('{%s}query' % NS_ROSTER) is not None:
                    pushes.append(ET.tostring(e).decode())
                    return False
                return is_iq(e, iq_id)
            return raw_next(r, pred, 10, 'answer to %s' % iq_id)

        for i, (what, items, want) in enumerate(cases):
            r.send("<iq type='set' id='bad%d'><query xmlns='jabber:iq:roster'>%s</query></iq>" % (i, items))
            ans = answer('bad%d' % i)
            err = error_of(ans)
            self.assertEqual(ans.get('type'), 'error', '%s: answered %s' % (what, ET.tostring(ans).decode()))
            self.assertEqual(err[1], want, '%s: <%s/>, RFC 6121 2.3.3/2.5.3 want <%s/>' % (what, err[1], want))
            self.assertIn(err[0], ('modify', 'cancel'), '%s: error type %r' % (what, err[0]))
            log('%s: <%s/> type=%s' % (what, err[1], err[0]))
        # malformed items: no jid, an invalid jid (RFC 6120 8.3.3.1 / 8.3.3.8)
        for i, (what, item) in enumerate((('item without jid', "<item name='x'/>"),
                                          ('invalid jid', "<item jid='a@b@c'/>"))):
            r.send("<iq type='set' id='mal%d'><query xmlns='jabber:iq:roster'>%s</query></iq>" % (i, item))
            ans = answer('mal%d' % i)
            self.assertEqual(ans.get('type'), 'error', '%s: %s' % (what, ET.tostring(ans).decode()))
            self.assertIn(error_of(ans)[1], ('bad-request', 'jid-malformed'), '%s: %r' % (what, error_of(ans)))
            log('%s: <%s/>' % (what, error_of(ans)[1]))
        # subscription='both' / 'from' in a set: ignored (RFC 6121 2.1.2.5)
        for i, sub in enumerate(('both', 'from', 'to')):
            contact = J('grant%d' % i)
            r.send("<iq type='set' id='sub%d'><query xmlns='jabber:iq:roster'><item jid='%s' subscription='%s'/>"
                   "</query></iq>" % (i, contact, sub))
            pushed = []

            def pred(e, contact=contact, pushed=pushed):
                if is_iq(e, typ='set'):
                    it = items_of(e.find('{%s}query' % NS_ROSTER)).get(contact)
                    if it:
                        pushed.append(it)
                    return False
                return is_iq(e, 'sub%d' % i)
            ans = raw_next(r, pred, 10, 'answer to subscription=%s' % sub)
            self.assertEqual(ans.get('type'), 'result',
                             "subscription='%s' in a roster set must be ignored (RFC 6121 2.1.2.5), got %s"
                             % (sub, ET.tostring(ans).decode()))
            if not pushed:   # the push may follow the result (RFC 6121 2.3.2 fixes no order)
                e = raw_next(r, lambda e, contact=contact: is_iq(e, typ='set') and
                             contact in items_of(e.find('{%s}query' % NS_ROSTER)), 5, 'push for %s' % contact)
                pushed.append(items_of(e.find('{%s}query' % NS_ROSTER))[contact])
            self.assertEqual(pushed[0]['subscription'], 'none',
                             "subscription='%s' in a set granted %r" % (sub, pushed[0]))
            log("subscription='%s' in a set: result, item pushed with subscription='none'" % sub)
        items = raw_roster(r, 'g1')
        for i in range(3):
            self.assertEqual(items[J('grant%d' % i)]['subscription'], 'none', items)
        bad = [j for j in items if j in {J('x%d' % k) for k in range(1, 8)} | {J('nobody')}]
        self.assertFalse(bad, 'refused sets changed the roster: %r' % bad)
        self.assertFalse(pushes, 'pushes for refused sets: %r' % pushes)
        log('refused sets left no item and sent no push')

    # ------------------------------------------------------------------
    def test_roster_size_bounded(self):
        """im.roster_max (25 here): roster sets beyond it are refused, and so
        are outbound subscription requests that would add a contact (each
        would add a roster item, RFC 6121 3.1.2); the roster stays at the
        limit and the session keeps working. RFC 6121 defines no condition
        for a full roster: any error is accepted, a result is not."""
        r, _ = self.raw('big')
        raw_roster(r, 'g0')
        for i in range(ROSTER_MAX):
            r.send("<iq type='set' id='s%d'><query xmlns='jabber:iq:roster'><item jid='%s'/></query></iq>"
                   % (i, J('c%d' % i)))
        for i in range(ROSTER_MAX):
            ans = raw_next(r, lambda e, i=i: is_iq(e, 's%d' % i), 10, 'answer to set %d' % i)
            self.assertEqual(ans.get('type'), 'result', 'set %d of %d: %s' % (i, ROSTER_MAX, ET.tostring(ans)))
        r.send("<iq type='set' id='over'><query xmlns='jabber:iq:roster'><item jid='%s'/></query></iq>"
               % J('one-too-many'))
        ans = raw_next(r, lambda e: is_iq(e, 'over'), 10, 'answer to the set beyond roster_max')
        self.assertEqual(ans.get('type'), 'error', 'a roster set beyond roster_max=%d: %s'
                         % (ROSTER_MAX, ET.tostring(ans).decode()))
        log('%d roster sets accepted; the next one: <%s/>' % (ROSTER_MAX, error_of(ans)[1]))
        for i in range(3 * ROSTER_MAX):
            r.send("<presence to='%s' type='subscribe'/>" % J('ghost%d' % i))
        items = raw_roster(r, 'g1')
        self.assertEqual(len(items), ROSTER_MAX, 'roster of %d items after a subscribe flood (roster_max %d)'
                         % (len(items), ROSTER_MAX))
        self.assertNotIn(J('one-too-many'), items)
        # an existing contact can still be updated, and removed
        r.send("<iq type='set' id='upd'><query xmlns='jabber:iq:roster'><item jid='%s' name='renamed'/>"
               "</query></iq>" % J('c0'))
        self.assertEqual(raw_next(r, lambda e: is_iq(e, 'upd'), 10, 'update').get('type'), 'result')
        r.send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='%s' subscription='remove'/>"
               "</query></iq>" % J('c1'))
        self.assertEqual(raw_next(r, lambda e: is_iq(e, 'rm'), 10, 'remove').get('type'), 'result')
        log('%d subscribe requests to new contacts: roster stays at %d; updates and removal still work'
            % (3 * ROSTER_MAX, ROSTER_MAX))

    # ------------------------------------------------------------------
    def test_subscription_flood_bounded(self):
        inn, inn_jid = self.raw('in1', 'innocent')
        peer, peer_jid = self.raw('in2', 'peer')
        rtts = []

        def ping(k):
            t = time.monotonic()
            inn.send("<iq type='get' id='p%d' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % (k, DOMAIN))
            raw_next(inn, lambda e: is_iq(e, 'p%d' % k), 10, 'innocent ping %d' % k)
            rtts.append(time.monotonic() - t)

        # many requesters, one offline victim; one requester repeating, another victim
        rep, _ = self.raw('rep', 'r')
        t0 = time.monotonic()
        for i in range(FLOODERS):
            f, _ = raw_login(self.server.port, 'fl%d' % i, 'f')
            try:
                for k in range(REPEATS):
                    f.send("<presence to='%s' type='subscribe'/>" % J('vic'))
                rep.send("<presence to='%s' type='subscribe'/>" % J('vic2'))
                # a ping round trip: the worker has read everything before it
                f.send("<iq type='get' id='fp' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % DOMAIN)
                raw_next(f, lambda e: is_iq(e, 'fp'), 10, 'flooder ping')
            finally:
                f.close()
            ping(i)
        log('%d accounts x %d subscribe each to an offline user, %d repeats from one account, in %.1f s'
            % (FLOODERS, REPEATS, FLOODERS, time.monotonic() - t0))
        self.assertLess(max(rtts), 2.0, 'innocent ping RTTs during the flood: max %.2f s' % max(rtts))
        log('innocent session: %d pings during the flood, max RTT %.0f ms' % (len(rtts), 1000 * max(rtts)))
        inn.send("<message to='%s' type='chat'><body>still here</body></message>" % peer_jid)
        raw_next(peer, lambda e: e.tag == '{%s}message' % NS_CLIENT
                 and e.findtext('{%s}body' % NS_CLIENT) == 'still here', 10, 'innocent message')

        def requests_at_login(user):
            v, _ = self.raw(user, 'v')
            raw_roster(v, 'vg')
            v.send('<presence/>')
            got = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    e = raw_next(v, lambda e: e.tag == '{%s}presence' % NS_CLIENT
                                 and e.get('type') == 'subscribe', max(0.05, deadline - time.monotonic()),
                                 'subscribe')
                except AssertionError:
                    break
                got.append(e.get('from'))
            return got
        got = requests_at_login('vic')
        log('victim of %d requesters got %d stored requests at login (pending_max %d)'
            % (FLOODERS, len(got), PENDING_MAX))
        self.assertLessEqual(len(got), PENDING_MAX, 'more than pending_max requests kept: %d' % len(got))
        self.assertEqual(len(set(got)), len(got), 'a requester delivered twice: %r' % got)
        self.assertEqual(len(got), PENDING_MAX,
                         'pending_max=%d requests should be kept (40 distinct requesters), got %d'
                         % (PENDING_MAX, len(got)))
        got2 = requests_at_login('vic2')
        self.assertEqual(got2, [J('rep')], 'one requester repeating %d times: %r' % (FLOODERS, got2))
        log('one requester repeating %d times: stored once' % FLOODERS)
        ping(9999)
        log('server still answers the innocent session')


if __name__ == '__main__':
    unittest.main(verbosity=2)
