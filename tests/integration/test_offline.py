"""Offline messages, XEP-0013 and XEP-0077 against a real stanzad, with
slixmpp:

- a message to a user with no resource is delivered, in order, after the
  user logs in and sends presence, with a XEP-0203 delay from the domain
  (XEP-0160); the queue is empty afterwards;
- the quota (im.offline_max): the message past it comes back to the sender
  as <service-unavailable/> (RFC 6121 8.5.2.2.1);
- XEP-0013: the count (disco#info on the offline node), the headers
  (disco#items), fetch, remove; then initial presence floods nothing;
- XEP-0012: the server's uptime;
- `stanzactl account del` on the running server purges the user's records;
- XEP-0077 with slixmpp's xep_0077 plugin: register (im.register on), log in
  with the new account, change the password, cancel the registration (the
  session is closed with not-authorized and the account is gone), and the
  per-address limit (im.register_per_hour).
"""

import asyncio
import copy
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, PASSWORD, ServerTestCase, log, make_client  # noqa: E402

NS_OFFLINE = 'http://jabber.org/protocol/offline'
NS_DELAY = 'urn:xmpp:delay'
QUOTA = 4
PER_HOUR = 3


def settings():
    s = copy.deepcopy(harness.TEST_SETTINGS)
    s['im'] = {'offline_max': QUOTA, 'register': True, 'register_per_hour': PER_HOUR}
    return s


def iq_with(c, itype, elem):
    iq = c.Iq()
    iq['type'] = itype
    iq.xml.append(elem)
    return iq


async def no_message(c, wait=1.5):
    try:
        m = await asyncio.wait_for(c.inbox.get(), wait)
    except asyncio.TimeoutError:
        return
    raise AssertionError('unexpected message %s' % m)


class OfflineTest(ServerTestCase):

    accounts = ['%s@%s' % (u, DOMAIN) for u in ('romeo', 'juliet', 'nurse', 'tybalt', 'mercutio', 'benvolio')]
    server_settings = settings()

    def client(self, user, res='r', password=PASSWORD):
        async def go():
            c = make_client('%s@%s/%s' % (user, DOMAIN, res), password=password)
            await c.login(self.server.port)
            return c
        return self.loop.run(go(), 30)

    def close(self, *clients):
        async def go():
            await asyncio.gather(*(c.close() for c in clients))
        self.loop.run(go(), 15)

    def test_delivery_after_login(self):
        a = self.client('romeo', 'orchard')
        try:
            for i in range(3):
                a.send_message(mto='juliet@%s' % DOMAIN, mbody='offline-%d' % i, mtype='chat')

            async def go():
                await no_message(a, 1.0)   # no error came back: stored
                b = make_client('juliet@%s/balcony' % DOMAIN)
                await b.login(self.server.port)
                try:
                    await no_message(b, 0.5)   # nothing before presence
                    b.send_presence()
                    for i in range(3):
                        m = await b.recv(10)
                        self.assertEqual(m['body'], 'offline-%d' % i, 'order')
                        self.assertEqual(m['from'].full, a.boundjid.full)
                        self.assertEqual(m['to'].full, b.boundjid.full)
                        d = m.xml.find('{%s}delay' % NS_DELAY)
                        self.assertIsNotNone(d, 'XEP-0203 delay: %s' % m)
                        self.assertEqual(d.get('from'), DOMAIN)
                        self.assertRegex(d.get('stamp'), r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
                finally:
                    await b.close()
                # Delivered once: a new login gets nothing.
                b = make_client('juliet@%s/again' % DOMAIN)
                await b.login(self.server.port)
                try:
                    b.send_presence()
                    await no_message(b)
                finally:
                    await b.close()
            self.loop.run(go(), 60)
            log('XEP-0160: 3 messages stored, delivered in order after presence with a delay')
        finally:
            self.close(a)

    def test_quota(self):
        a = self.client('romeo', 'quota')
        try:
            async def go():
                for i in range(QUOTA + 1):
                    a.send_message(mto='nurse@%s' % DOMAIN, mbody='q-%d' % i, mtype='chat')
                e = await asyncio.wait_for(a.errors_in.get(), 10)
                self.assertEqual(e['error']['condition'], 'service-unavailable')
                self.assertEqual(e['from'].bare, 'nurse@%s' % DOMAIN)
                self.assertEqual(e['body'] if e['body'] else 'q-%d' % QUOTA, 'q-%d' % QUOTA)
                b = make_client('nurse@%s/n' % DOMAIN)
                await b.login(self.server.port)
                try:
                    b.send_presence()
                    for i in range(QUOTA):
                        m = await b.recv(10)
                        self.assertEqual(m['body'], 'q-%d' % i)
                    await no_message(b)
                finally:
                    await b.close()
            self.loop.run(go(), 60)
            log('quota: message %d bounced with service-unavailable, %d delivered' % (QUOTA + 1, QUOTA))
        finally:
            self.close(a)

    def test_flexible_retrieval(self):
        a = self.client('romeo', 'flex')
        try:
            for i in range(2):
                a.send_message(mto='tybalt@%s' % DOMAIN, mbody='flex-%d' % i, mtype='chat')

            async def go():
                await no_message(a, 1.0)
                b = make_client('tybalt@%s/pda' % DOMAIN)
                await b.login(self.server.port)
                try:
                    # 2.2 the count
                    q = ET.Element('{http://jabber.org/protocol/disco#info}query', node=NS_OFFLINE)
                    r = await iq_with(b, 'get', q).send(timeout=10)
                    vals = [f.find('{jabber:x:data}value').text
                            for f in r.xml.iter('{jabber:x:data}field') if f.get('var') == 'number_of_messages']
                    self.assertEqual(vals, ['2'])
                    # 2.3 the headers
                    q = ET.Element('{http://jabber.org/protocol/disco#items}query', node=NS_OFFLINE)
                    r = await iq_with(b, 'get', q).send(timeout=10)
                    items = list(r.xml.iter('{http://jabber.org/protocol/disco#items}item'))
                    self.assertEqual(len(items), 2)
                    self.assertEqual(items[0].get('name'), a.boundjid.full)
                    nodes = [i.get('node') for i in items]
                    # 2.6 fetch
                    q = ET.Element('{%s}offline' % NS_OFFLINE)
                    ET.SubElement(q, '{%s}fetch' % NS_OFFLINE)
                    await iq_with(b, 'get', q).send(timeout=10)
                    for i in range(2):
                        m = await b.recv(10)
                        self.assertEqual(m['body'], 'flex-%d' % i)
                        item = m.xml.find('{%s}offline/{%s}item' % (NS_OFFLINE, NS_OFFLINE))
                        self.assertIsNotNone(item)
                        self.assertEqual(item.get('node'), nodes[i])
                    # no flood at presence (2.2)
                    b.send_presence()
                    await no_message(b)
                    # 2.5 remove one, then the count says 1
                    q = ET.Element('{%s}offline' % NS_OFFLINE)
                    ET.SubElement(q, '{%s}item' % NS_OFFLINE, action='remove', node=nodes[0])
                    await iq_with(b, 'set', q).send(timeout=10)
                    q = ET.Element('{http://jabber.org/protocol/disco#info}query', node=NS_OFFLINE)
                    r = await iq_with(b, 'get', q).send(timeout=10)
                    vals = [f.find('{jabber:x:data}value').text
                            for f in r.xml.iter('{jabber:x:data}field') if f.get('var') == 'number_of_messages']
                    self.assertEqual(vals, ['1'])
                    # 2.7 purge
                    q = ET.Element('{%s}offline' % NS_OFFLINE)
                    ET.SubElement(q, '{%s}purge' % NS_OFFLINE)
                    await iq_with(b, 'set', q).send(timeout=10)
                finally:
                    await b.close()
            self.loop.run(go(), 60)
            log('XEP-0013: count, headers, fetch, no flood, remove, purge')
        finally:
            self.close(a)

    def test_last_activity_uptime(self):
        a = self.client('mercutio', 'last')
        try:
            async def go():
                iq = iq_with(a, 'get', ET.Element('{jabber:iq:last}query'))
                iq['to'] = DOMAIN
                r = await iq.send(timeout=10)
                q = r.xml.find('{jabber:iq:last}query')
                self.assertIsNotNone(q)
                self.assertGreaterEqual(int(q.get('seconds')), 0)
            self.loop.run(go(), 20)
        finally:
            self.close(a)

    def test_account_del_purges(self):
        """`stanzactl account del` on a running server takes the user's
        records too: an account made again under the name starts empty."""
        a = self.client('romeo', 'del')
        try:
            a.send_message(mto='benvolio@%s' % DOMAIN, mbody='for the old one', mtype='chat')
            self.loop.run(no_message(a, 1.0), 10)
            rc, out, err = self.server.ctl_run('account', 'del', 'benvolio@%s' % DOMAIN)
            self.assertEqual(rc, 0, out + err)
            self.server.add_account('benvolio@%s' % DOMAIN, PASSWORD)
            b = self.client('benvolio', 'new')
            try:
                b.send_presence()
                self.loop.run(no_message(b), 10)
            finally:
                self.close(b)
            log('account del purged the offline queue: the new benvolio gets nothing')
        finally:
            self.close(a)

    def register(self, user, password):
        """XEP-0077 with slixmpp's plugin, then SASL with the new account.
        Returns the logged-in client, or raises with the registration error."""
        async def go():
            c = make_client('%s@%s/reg' % (user, DOMAIN), password=password)
            c.register_plugin('xep_0004')
            c.register_plugin('xep_0066')
            c.register_plugin('xep_0077')
            c['xep_0077'].force_registration = True
            # slixmpp 1.8.3 holds back every stanza but bind/session
            # before session start ("NOT SENT"), its own xep_0077 iqs
            # included: let them through as the plugin expects.
            c._always_send_everything = True
            outcome = c.loop.create_future()

            async def on_register(form):
                self.assertIsNotNone(form.xml.find('{jabber:iq:register}query/{jabber:iq:register}username'))
                self.assertIsNotNone(form.xml.find('{jabber:iq:register}query/{jabber:iq:register}password'))
                resp = c.Iq()
                resp['type'] = 'set'
                resp['register']['username'] = user
                resp['register']['password'] = password
                try:
                    await resp.send(timeout=10)
                    outcome.set_result(None)
                except Exception as e:   # IqError
                    cond = getattr(e, 'iq', None)
                    outcome.set_result(cond['error']['condition'] if cond is not None else repr(e))
                    c.disconnect()
            c.add_event_handler('register', on_register)
            c.connect(('127.0.0.1', self.server.port), force_starttls=True, disable_starttls=False)
            err = await asyncio.wait_for(outcome, 15)
            if err is not None:
                await c.close()
                if c.started.done():
                    c.started.exception()   # "disconnected before session start": expected
                return None, err
            await asyncio.wait_for(asyncio.shield(c.started), 15)
            return c, None
        return self.loop.run(go(), 30)

    def test_register_password_remove(self):
        c, err = self.register('newbie', 'first pass')
        self.assertIsNone(err, 'registration failed: %s' % err)
        log('XEP-0077: registered newbie@%s with slixmpp and logged in' % DOMAIN)
        try:
            async def chpw():
                await c['xep_0077'].change_password('second pass', timeout=10)
            self.loop.run(chpw(), 20)
            c2 = self.client('newbie', 'check', password='second pass')
            self.close(c2)
            log('XEP-0077: password changed; the new one logs in')

            async def remove():
                await c['xep_0077'].cancel_registration(timeout=10)
                await asyncio.wait_for(c.gone.wait(), 10)
            self.loop.run(remove(), 20)
            self.assertIn('not-authorized', c.stream_errors)
            rc, out, _ = self.server.ctl_run('account', 'list')
            self.assertEqual(rc, 0)
            self.assertNotIn('newbie@', out)
            with self.assertRaises(Exception):
                c3 = self.client('newbie', 'gone', password='second pass')
                self.close(c3)
            log('XEP-0077: registration cancelled: session closed (not-authorized), account gone')
        finally:
            self.close(c)

    def test_register_rate_limit(self):
        # test_register_password_remove may have used one of this
        # address's registrations; the others fill the allowance.
        made = 0
        err = None
        for i in range(PER_HOUR + 1):
            c, err = self.register('burst%d' % i, 'pw%d' % i)
            if c is None:
                break
            made += 1
            self.close(c)
        self.assertLessEqual(made, PER_HOUR)
        self.assertEqual(err, 'not-acceptable')
        log('XEP-0077: %d registrations from 127.0.0.1, then not-acceptable (im.register_per_hour = %d)'
            % (made, PER_HOUR))


if __name__ == '__main__':
    if len(sys.argv) > 1 and not sys.argv[1].startswith('-'):
        build = sys.argv.pop(1)
        os.environ.setdefault('STANZAD', os.path.join(build, 'cmd', 'stanzad'))
        os.environ.setdefault('STANZACTL', os.path.join(build, 'cmd', 'stanzactl'))
    unittest.main(verbosity=2)
