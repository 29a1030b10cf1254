"""slixmpp against a real stanzad: the services the server answers itself
(control/services.c) and the blocking command (control/privacy.c), with
slixmpp's own plugins as the client side:

  * XEP-0030 disco#info of the server (identity server/im, the features)
    and of an account; XEP-0092 version; XEP-0202 time;
  * XEP-0054 vcard-temp: publish, read back, read by another user;
  * XEP-0049 private XML: store and retrieve, reserved namespace refused;
  * XEP-0191 blocking: block list get/push, a block stops delivery in both
    directions (in: <service-unavailable/> to the blocked sender; out:
    <not-acceptable/> with <blocked/>), unblock restores it;
  * XEP-0280 carbons: enable, and a sent carbon on the other resource.

The last two need the router's side (privacy enforcement, carbons copies).
"""

import asyncio
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DOMAIN, ServerTestCase, log, make_client  # noqa: E402

PLUGINS = ('xep_0030', 'xep_0049', 'xep_0054', 'xep_0092', 'xep_0191', 'xep_0202', 'xep_0280')


class ServicesTest(ServerTestCase):

    accounts = ['%s@%s' % (u, DOMAIN) for u in ('alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'harry', 'kate')]

    def clients(self, *jids):
        async def go():
            cs = []
            for j in jids:
                user, _, res = j.partition('/')
                c = make_client('%s@%s/%s' % (user, DOMAIN, res or 't'))
                for p in PLUGINS:
                    c.register_plugin(p)
                cs.append(c)
            await asyncio.gather(*(c.login(self.server.port) for c in cs))
            return cs
        return self.loop.run(go(), 30)

    def close(self, *clients):
        async def go():
            await asyncio.gather(*(c.close() for c in clients))
        self.loop.run(go(), 15)

    def run_with(self, users, fn, timeout=40):
        cs = self.clients(*users)
        try:
            return self.loop.run(fn(*cs), timeout)
        finally:
            self.close(*cs)

    # -- XEP-0030, XEP-0092, XEP-0202 ---------------------------------------
    def test_disco_version_time(self):
        async def go(a):
            iq = await a['xep_0030'].get_info(jid=DOMAIN, timeout=5)
            info = iq['disco_info']
            cats = {(c, t) for (c, t, _lang, _name) in info['identities']}
            assert ('server', 'im') in cats, info['identities']
            feats = set(info['features'])
            for f in ('http://jabber.org/protocol/disco#info', 'http://jabber.org/protocol/disco#items',
                      'urn:xmpp:blocking', 'jabber:iq:privacy', 'urn:xmpp:carbons:2', 'vcard-temp',
                      'jabber:iq:private', 'jabber:iq:version', 'urn:xmpp:time', 'urn:xmpp:ping'):
                assert f in feats, '%s not announced: %s' % (f, sorted(feats))
            log('disco#info of %s: server/im and %d features' % (DOMAIN, len(feats)))
            iq = await a['xep_0030'].get_info(jid=a.boundjid.bare, timeout=5)
            cats = {(c, t) for (c, t, _lang, _name) in iq['disco_info']['identities']}
            assert ('account', 'registered') in cats, iq['disco_info']['identities']
            log('disco#info of the own account: account/registered')
            iq = await a['xep_0030'].get_items(jid=DOMAIN, timeout=5)
            assert iq['type'] == 'result'
            # XEP-0013's node, answered by offline.c through disco.
            iq = await a['xep_0030'].get_info(jid=a.boundjid.bare, node='http://jabber.org/protocol/offline',
                                              timeout=5)
            assert iq['type'] == 'result', iq
            assert 'http://jabber.org/protocol/offline' in iq['disco_info']['features'], iq
            log('disco#info of the XEP-0013 node answered')
            v = await a['xep_0092'].get_version(DOMAIN, timeout=5)
            assert v['software_version']['name'] == 'stanzad', v
            assert v['software_version']['version'], v
            log('version: %s %s' % (v['software_version']['name'], v['software_version']['version']))
            t = await a['xep_0202'].get_entity_time(DOMAIN, timeout=5)
            assert t['type'] == 'result'
            # slixmpp 1.8.3's ['utc'] appends its own 'Z' to the text and
            # cannot parse the XEP-0202 format: read the element.
            utc = t.xml.find('{urn:xmpp:time}time/{urn:xmpp:time}utc').text
            assert utc and utc.endswith('Z') and len(utc) >= 20, utc
            log('time: utc %s tzo %s' % (utc, t.xml.find('{urn:xmpp:time}time/{urn:xmpp:time}tzo').text))
        self.run_with(['alice'], go)

    def test_caps_stream_feature(self):
        """XEP-0115: the <c/> of the stream features names a ver that the
        server's disco#info, asked with node#ver, hashes to (5.1, computed
        here independently)."""
        import base64
        import hashlib

        async def go():
            c = make_client('bob@%s/caps' % DOMAIN)
            c.register_plugin('xep_0030')
            c.register_plugin('xep_0115')
            seen = asyncio.Queue()
            c.add_event_handler('entity_caps', lambda p: seen.put_nowait(p))
            await c.login(self.server.port)
            try:
                p = await asyncio.wait_for(seen.get(), 5)
                node, ver, h = p['caps']['node'], p['caps']['ver'], p['caps']['hash']
                assert h == 'sha-1' and node and ver, (node, ver, h)
                iq = await c['xep_0030'].get_info(jid=DOMAIN, node='%s#%s' % (node, ver), timeout=5)
                q = iq.xml.find('{http://jabber.org/protocol/disco#info}query')
                assert q.get('node') == '%s#%s' % (node, ver), ET.tostring(iq.xml)
                ids = sorted('%s/%s/%s/%s' % (i.get('category'), i.get('type'),
                                              i.get('{http://www.w3.org/XML/1998/namespace}lang') or '',
                                              i.get('name') or '')
                             for i in q.findall('{http://jabber.org/protocol/disco#info}identity'))
                feats = sorted(f.get('var') for f in q.findall('{http://jabber.org/protocol/disco#info}feature'))
                s = ''.join(x + '<' for x in ids + feats).encode()
                mine = base64.b64encode(hashlib.sha1(s).digest()).decode()
                assert mine == ver, 'ver %s in stream features, disco#info hashes to %s' % (ver, mine)
                log('stream feature caps ver %s matches the disco#info at %s#ver' % (ver, node))
            finally:
                await c.close()
        self.loop.run(go(), 30)

    # -- XEP-0054 --------------------------------------------------------------
    def test_vcard(self):
        async def go(a, b):
            from slixmpp.exceptions import IqError
            vc = a['xep_0054'].make_vcard()
            vc['FN'] = 'Alice Liddell & co'
            vc['NICKNAME'] = 'ali'
            await a['xep_0054'].publish_vcard(vc, timeout=5)
            r = await a['xep_0054'].get_vcard(a.boundjid.bare, local=False, timeout=5)
            assert r['vcard_temp']['FN'] == 'Alice Liddell & co', r
            r = await b['xep_0054'].get_vcard(a.boundjid.bare, local=False, timeout=5)
            assert r.xml.find('{vcard-temp}vCard/{vcard-temp}NICKNAME').text == 'ali', r
            log('vCard published, read back by its owner and by another user')
            try:
                await b['xep_0054'].get_vcard('nobody@' + DOMAIN, local=False, timeout=5)
                raise AssertionError('vCard of a missing account answered')
            except IqError as e:
                assert e.iq['error']['condition'] == 'service-unavailable', e.iq
            iq = b.make_iq_set(ito=a.boundjid.bare)
            iq.append(b['xep_0054'].make_vcard())
            try:
                await iq.send(timeout=5)
                raise AssertionError("setting another user's vCard succeeded")
            except IqError as e:
                assert e.iq['error']['condition'] in ('forbidden', 'not-allowed'), e.iq
            log("no vCard -> service-unavailable; another's vCard not writable")
        self.run_with(['alice', 'bob'], go)

    # -- XEP-0049 ---------------------------------------------------------------
    def test_private(self):
        async def go(a):
            from slixmpp.exceptions import IqError
            iq = a.make_iq_set()
            q = ET.SubElement(iq.xml, '{jabber:iq:private}query')
            s = ET.SubElement(q, '{storage:bookmarks}storage')
            ET.SubElement(s, '{storage:bookmarks}conference', {'jid': 'room@conf.example', 'autojoin': 'true'})
            await iq.send(timeout=5)
            iq = a.make_iq_get()
            q = ET.SubElement(iq.xml, '{jabber:iq:private}query')
            ET.SubElement(q, '{storage:bookmarks}storage')
            r = await iq.send(timeout=5)
            conf = r.xml.find('{jabber:iq:private}query/{storage:bookmarks}storage/{storage:bookmarks}conference')
            assert conf is not None and conf.get('jid') == 'room@conf.example', ET.tostring(r.xml)
            log('private XML stored and read back')
            iq = a.make_iq_set()
            q = ET.SubElement(iq.xml, '{jabber:iq:private}query')
            ET.SubElement(q, '{jabber:iq:roster}query')
            try:
                await iq.send(timeout=5)
                raise AssertionError('a jabber: namespace was accepted')
            except IqError as e:
                assert e.iq['error']['condition'] == 'not-acceptable', e.iq
            log('private XML in a jabber: namespace -> not-acceptable')
        self.run_with(['carol'], go)

    # -- XEP-0191 ---------------------------------------------------------------
    def test_blocking(self):
        async def go(a1, a2, b):
            pushes = asyncio.Queue()
            a2.add_event_handler('blocked', lambda iq: pushes.put_nowait(iq))
            for c in (a1, a2, b):
                c.send_presence()   # available: delivery goes through the sessions' rules
            await asyncio.sleep(0.3)
            r = await a2['xep_0191'].get_blocked(timeout=5)   # a2 now receives pushes
            assert len(r['blocklist']['items']) == 0, r
            await a1['xep_0191'].block([b.boundjid.bare], timeout=5)
            r = await a1['xep_0191'].get_blocked(timeout=5)
            assert {j.bare for j in r['blocklist']['items']} == {b.boundjid.bare}, r
            p = await asyncio.wait_for(pushes.get(), 5)
            log('block: result, block list, push to the other resource')

            # in: b -> a is not delivered; b gets service-unavailable
            b.send_message(mto=a1.boundjid.bare, mbody='blocked-in', mtype='chat')
            e = await asyncio.wait_for(b.errors_in.get(), 5)
            assert e['error']['condition'] == 'service-unavailable', e
            # out: a -> b is refused with not-acceptable + <blocked/>
            a1.send_message(mto=b.boundjid.full, mbody='blocked-out', mtype='chat')
            e = await asyncio.wait_for(a1.errors_in.get(), 5)
            assert e['error']['condition'] == 'not-acceptable', e
            assert e.xml.find('.//{urn:xmpp:blocking:errors}blocked') is not None, ET.tostring(e.xml)
            await asyncio.sleep(0.5)
            for c in (a1, a2, b):
                while not c.inbox.empty():
                    m = c.inbox.get_nowait()
                    assert m['body'] not in ('blocked-in', 'blocked-out'), 'blocked message delivered'
            log('blocked both ways: in -> service-unavailable, out -> not-acceptable/<blocked/>')

            await a1['xep_0191'].unblock([b.boundjid.bare], timeout=5)
            b.send_message(mto=a1.boundjid.full, mbody='after-unblock', mtype='chat')
            await a1.recv_body('after-unblock', 5)
            log('unblock restores delivery')
        self.run_with(['dave/one', 'dave/two', 'erin'], go)

    def test_blocking_offline(self):
        """A blocked sender's message to a user with no available session
        is not stored for later (XEP-0191 3.3: <service-unavailable/>):
        offline storage asks privacy_check_in."""
        async def block(a):
            await a['xep_0191'].block(['erin@' + DOMAIN], timeout=5)
        self.run_with(['alice/blk'], block)

        async def send(b):
            b.send_message(mto='alice@' + DOMAIN, mbody='blocked-offline', mtype='chat')
            e = await asyncio.wait_for(b.errors_in.get(), 5)
            assert e['error']['condition'] == 'service-unavailable', e
        self.run_with(['erin/off'], send)

        async def later(a):
            a.send_presence()
            await asyncio.sleep(1.0)
            while not a.inbox.empty():
                m = a.inbox.get_nowait()
                assert m['body'] != 'blocked-offline', 'a blocked message was stored and delivered'
            await a['xep_0191'].unblock([], timeout=5)
        self.run_with(['alice/blk2'], later)
        log('blocked sender to an offline user: service-unavailable, nothing stored')

    def test_blocking_subscription_request(self):
        """A subscription request from a blocked JID to a user who is
        offline is dropped (XEP-0191 3.3: presence from a blocked entity
        is not delivered), not kept and handed over at the next login."""
        async def block(k):
            await k['xep_0191'].block(['harry@' + DOMAIN], timeout=5)
        self.run_with(['kate/blk'], block)

        async def ask(h):
            h.send_presence(pto='kate@' + DOMAIN, ptype='subscribe')
            await asyncio.sleep(0.5)
        self.run_with(['harry/ask'], ask)

        async def later(k):
            asked = []
            k.add_event_handler('presence_subscribe', lambda p: asked.append(str(p['from'])))
            k.send_presence()
            await asyncio.sleep(1.0)
            assert not asked, 'a blocked subscription request was kept and delivered: %r' % asked
            await k['xep_0191'].unblock([], timeout=5)
        self.run_with(['kate/later'], later)
        log('subscription request from a blocked JID to an offline user: dropped')

    # -- XEP-0016 ----------------------------------------------------------------
    def test_privacy_lists(self):
        """A privacy list with a roster group item, made the session's
        active list: messages only from the group's members; adding a
        contact to the group (a roster push) takes effect at once
        (XEP-0016 2.2 rule 9)."""
        P = 'jabber:iq:privacy'

        def privacy_iq(c, typ, build):
            iq = c.make_iq_set() if typ == 'set' else c.make_iq_get()
            q = ET.SubElement(iq.xml, '{%s}query' % P)
            build(q)
            return iq.send(timeout=5)

        async def go(g1, h, k):
            for c in (g1, h, k):
                c.send_presence()
            await g1.update_roster(h.boundjid.bare, groups=['Friends'], timeout=5)
            await g1.update_roster(k.boundjid.bare, groups=['Others'], timeout=5)

            def the_list(q):
                li = ET.SubElement(q, '{%s}list' % P, {'name': 'friends-only'})
                ET.SubElement(li, '{%s}item' % P, {'type': 'group', 'value': 'Friends', 'action': 'allow', 'order': '1'})
                it = ET.SubElement(li, '{%s}item' % P, {'action': 'deny', 'order': '2'})
                ET.SubElement(it, '{%s}message' % P)
            await privacy_iq(g1, 'set', the_list)
            await privacy_iq(g1, 'set', lambda q: ET.SubElement(q, '{%s}active' % P, {'name': 'friends-only'}))
            r = await privacy_iq(g1, 'get', lambda q: None)
            assert r.xml.find('{%s}query/{%s}active' % (P, P)).get('name') == 'friends-only', ET.tostring(r.xml)
            log('privacy list with a group item stored and made active')

            h.send_message(mto=g1.boundjid.full, mbody='from-friend', mtype='chat')
            await g1.recv_body('from-friend', 5)
            k.send_message(mto=g1.boundjid.full, mbody='from-other', mtype='chat')
            e = await asyncio.wait_for(k.errors_in.get(), 5)
            assert e['error']['condition'] == 'service-unavailable', e
            log('group member delivered, others refused with service-unavailable')

            await g1.update_roster(k.boundjid.bare, groups=['Friends'], timeout=5)
            await asyncio.sleep(0.3)
            k.send_message(mto=g1.boundjid.full, mbody='now-friend', mtype='chat')
            await g1.recv_body('now-friend', 5)
            log('a roster group change recompiles the active list')

            await privacy_iq(g1, 'set', lambda q: ET.SubElement(q, '{%s}active' % P))
            await privacy_iq(g1, 'set', lambda q: ET.SubElement(q, '{%s}list' % P, {'name': 'friends-only'}))
        self.run_with(['gina', 'harry', 'kate'], go)

    # -- XEP-0280 ---------------------------------------------------------------
    def test_carbons(self):
        async def go(f1, f2, e):
            sent = asyncio.Queue()
            f1.add_event_handler('carbon_sent', lambda m: sent.put_nowait(m))
            r = await f1['xep_0280'].enable(timeout=5)
            assert r['type'] == 'result'
            log('carbons enabled')
            f1.send_presence()
            f2.send_presence()
            await asyncio.sleep(0.3)
            f2.send_message(mto=e.boundjid.full, mbody='carbon-me', mtype='chat')
            await e.recv_body('carbon-me', 5)
            m = await asyncio.wait_for(sent.get(), 5)
            assert m['carbon_sent']['body'] == 'carbon-me', m
            log('a message sent by the other resource arrives as a sent carbon')
            r = await f1['xep_0280'].disable(timeout=5)
            assert r['type'] == 'result'
        self.run_with(['frank/one', 'frank/two', 'bob'], go)


if __name__ == '__main__':
    # Optional first argument: a build directory (its cmd/stanzad, cmd/stanzactl).
    if len(sys.argv) > 1 and os.path.isdir(sys.argv[1]):
        build = sys.argv.pop(1)
        os.environ.setdefault('STANZAD', os.path.join(build, 'cmd', 'stanzad'))
        os.environ.setdefault('STANZACTL', os.path.join(build, 'cmd', 'stanzactl'))
    unittest.main(verbosity=2)
