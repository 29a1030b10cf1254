"""Durability (issue 4): kill -9 stanzad right after the client saw a write
acknowledged, restart it on the same data directory, and the write is there.

  (a) a roster change: kill as soon as the roster set's result iq is read
      (RFC 6121 2.3.2: the result acknowledges the set);
  (b) a subscription approval: kill as soon as the approving contact reads
      the roster push with subscription='from' (RFC 6121 3.1.5; presence
      has no result, the push is the server's acknowledgement); after the
      restart both users' rosters hold the new state ('from' for the
      contact, 'to' without ask for the user);
  (c) an offline message: kill as soon as the sender reads the XEP-0198
      <a/> whose h covers it; after the restart it arrives with <delay/>;
      and a burst: 20 messages and one <r/>, kill as soon as the <a/>
      covering all 20 is read (a server that batches its store writes must
      have committed the batch before it acknowledges); all 20 arrive, in
      order;
  (e) a subscription request to an offline contact: kill as soon as the
      requester reads its push with ask='subscribe' (RFC 6121 3.1.2); after
      the restart the contact gets the request at its initial presence
      (3.1.3) and the requester's roster still has ask='subscribe'.

What 'accepted' means for a message. XMPP has no acknowledgement of a
message in RFC 6120/6121; XEP-0198's <a h='n'/> is the only one, and it
tells the client that the server has handled n stanzas so that it will not
resend them: a stanza covered by an <a/> that is lost in a crash is lost
for good. So the test uses SM. An iq ping round trip after the message is
not used: stanzad's workers answer a ping to the server themselves
(router/deliver.c), while an offline message is stored by the control
thread, so a pong says nothing about whether the message was committed.
Without SM offered the offline-message tests fail (SM is part of issue 4)
instead of falling back to something that proves nothing.

Also: all three acknowledged, then one kill -9 (the issue's sentence as
written). Each kill is SIGKILL to the PID this test started, and nothing
else. Raw sockets are used so that the kill follows the acknowledgement
by microseconds, not by a client library's event loop.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DOMAIN, ServerTestCase, log  # noqa: E402
from im_helpers import (IM_SETTINGS, NS_CLIENT, NS_DELAY, NS_SM, DurableServer, is_iq,  # noqa: E402
                        parse_stamp, raw_login, raw_next, raw_roster, raw_sm_enable, roster_push_pred)

USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hugo', 'ivan', 'judy']
BATCH = 20


def J(u):
    return '%s@%s' % (u, DOMAIN)


class DurabilityTest(ServerTestCase):

    def setUp(self):
        self.server = DurableServer(accounts=[J(u) for u in USERS], workers=2,
                                    settings=IM_SETTINGS).start()
        type(self).server = self.server     # log tail on failure
        self.raws = []

    def tearDown(self):
        for r in self.raws:
            r.close()
        rc = self.server.stop()
        self.server.cleanup()
        self.assertEqual(rc, 0, 'stanzad exit code %r after SIGTERM (after the restart)' % rc)

    def login(self, user, resource='r'):
        r, jid = raw_login(self.server.port, user, resource)
        self.raws.append(r)
        return r, jid

    def drop_all(self):
        for r in self.raws:
            r.close()
        self.raws = []

    # -- the three acknowledged writes, each returns a check to run later --
    def roster_change(self, user, contact):
        r, _ = self.login(user)
        raw_roster(r, 'g0')
        r.send("<iq type='set' id='set1'><query xmlns='jabber:iq:roster'><item jid='%s' name='Durable %s'>"
               "<group>Kill9</group></item></query></iq>" % (J(contact), contact))
        el = raw_next(r, lambda e: is_iq(e, 'set1'), 10, 'roster set result')
        self.assertEqual(el.get('type'), 'result', 'roster set answered %s' % el.get('type'))
        log('%s: roster set acknowledged (result iq)' % user)

        def check():
            r2, _ = self.login(user, 'after')
            items = raw_roster(r2, 'g1')
            it = items.get(J(contact))
            self.assertIsNotNone(it, 'roster item added before kill -9 is gone: %r' % items)
            self.assertEqual(it['name'], 'Durable %s' % contact)
            self.assertEqual(it['groups'], ['Kill9'])
            log('%s: roster item %s with name and group survived kill -9' % (user, contact))
        return check

    def approval(self, user, contact):
        """user subscribes to contact; contact approves; returns once the
        contact has read its push (the acknowledgement)."""
        ru, _ = self.login(user)
        rc, _ = self.login(contact)
        raw_roster(ru, 'gu')
        raw_roster(rc, 'gc')
        ru.send('<presence/>')
        rc.send('<presence/>')
        ru.send("<presence to='%s' type='subscribe'/>" % J(contact))
        raw_next(rc, lambda e: e.tag == '{%s}presence' % NS_CLIENT and e.get('type') == 'subscribe',
                 10, 'subscription request')
        rc.send("<presence to='%s' type='subscribed'/>" % J(user))
        raw_next(rc, roster_push_pred(J(user), 'from'), 10, "contact's push subscription='from'")
        log("%s approved %s: push subscription='from' read" % (contact, user))

        def check():
            r1, _ = self.login(contact, 'after')
            r2, _ = self.login(user, 'after')
            ci = raw_roster(r1, 'a1').get(J(user))
            ui = raw_roster(r2, 'a2').get(J(contact))
            self.assertIsNotNone(ci, "the contact's roster lost the approved user")
            self.assertEqual(ci['subscription'], 'from', 'contact side: %r' % ci)
            self.assertIsNotNone(ui, "the user's roster lost the contact")
            self.assertEqual(ui['subscription'], 'to', 'user side: %r' % ui)
            self.assertIsNone(ui['ask'], "user side still has ask=%r" % ui['ask'])
            log("approval survived kill -9: %s has %s 'from', %s has %s 'to' (no ask)"
                % (contact, user, user, contact))
        return check

    def offline_message(self, sender, rcpt, body, n=BATCH):
        r, _ = self.login(sender, 'sm')
        if not raw_sm_enable(r):
            self.fail('XEP-0198 not enabled: without it nothing acknowledges a message '
                      '(see the module docstring); SM is part of issue 4')
        bodies = ['%s #%d' % (body, i) for i in range(n)]
        r.send(''.join("<message to='%s' type='chat' id='dm%d'><body>%s</body></message>" % (J(rcpt), i, b)
                       for i, b in enumerate(bodies)) + "<r xmlns='%s'/>" % NS_SM)
        a = raw_next(r, lambda e: e.tag == '{%s}a' % NS_SM and int(e.get('h', '-1')) >= n, 10,
                     'SM <a h=%d/>' % n)
        t_ack = time.time()
        log('%s -> %s (offline): %d messages, <a h=%s/> read' % (sender, rcpt, n, a.get('h')))

        def check():
            r2, _ = self.login(rcpt, 'after')
            r2.send('<presence/>')
            got = []
            for i in range(n):
                m = raw_next(r2, lambda e: e.tag == '{%s}message' % NS_CLIENT, 10,
                             'offline message %d of %d after the restart (got %r)' % (i + 1, n, got))
                got.append(m.findtext('{%s}body' % NS_CLIENT))
                d = m.find('{%s}delay' % NS_DELAY)
                self.assertIsNotNone(d, 'offline message without <delay/>')
                ts = parse_stamp(d.get('stamp'))
                self.assertLessEqual(ts, t_ack + 1, 'stamp %s is later than the acknowledgement'
                                     % d.get('stamp'))
            self.assertEqual(got, bodies, 'acknowledged offline messages after kill -9')
            log('%d acknowledged offline messages survived kill -9, in order, with <delay/>' % n)
        return check

    def pending_request(self, user, contact):
        r, _ = self.login(user, 'req')
        raw_roster(r, 'p0')
        r.send("<presence to='%s' type='subscribe'/>" % J(contact))
        raw_next(r, roster_push_pred(J(contact), 'none', 'subscribe'), 10, "push ask='subscribe'")
        log("%s -> %s (offline) subscribe: push ask='subscribe' read" % (user, contact))

        def check():
            rc, _ = self.login(contact, 'after')
            raw_roster(rc, 'p1')
            rc.send('<presence/>')
            p = raw_next(rc, lambda e: e.tag == '{%s}presence' % NS_CLIENT and e.get('type') == 'subscribe',
                         10, 'the stored subscription request after the restart')
            self.assertEqual(p.get('from'), J(user))
            ru, _ = self.login(user, 'after')
            it = raw_roster(ru, 'p2').get(J(contact))
            self.assertIsNotNone(it, "the requester's roster lost the contact")
            self.assertEqual((it['subscription'], it['ask']), ('none', 'subscribe'), it)
            log('pending request survived kill -9: delivered at the contact\'s initial presence')
        return check

    def kill_restart(self):
        self.server.kill9()
        self.drop_all()
        self.server.restart()

    # ------------------------------------------------------------------
    def test_a_roster_change(self):
        check = self.roster_change('alice', 'zed')
        self.kill_restart()
        check()

    def test_b_subscription_approval(self):
        check = self.approval('bob', 'carol')
        self.kill_restart()
        check()

    def test_c_offline_message(self):
        check = self.offline_message('dave', 'erin', 'kept through kill -9', n=1)
        self.kill_restart()
        check()

    def test_c_offline_burst(self):
        check = self.offline_message('dave', 'erin', 'burst through kill -9', n=BATCH)
        self.kill_restart()
        check()

    def test_e_pending_request(self):
        check = self.pending_request('ivan', 'judy')
        self.kill_restart()
        check()

    def test_d_all_three_one_kill(self):
        checks = [self.roster_change('frank', 'yan'),
                  self.approval('gina', 'hugo'),
                  self.offline_message('frank', 'alice', 'all three', n=1)]
        self.kill_restart()
        failures = []
        for c in checks:
            try:
                c()
            except AssertionError as e:
                failures.append(str(e))
        self.assertFalse(failures, '\n'.join(failures))


if __name__ == '__main__':
    unittest.main(verbosity=2)
