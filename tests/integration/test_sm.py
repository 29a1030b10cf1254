"""XEP-0198 stream management with slixmpp's own plugin (xep_0198) against a
real stanzad:

  * resumption: a client enables SM with resume, its TCP connection is cut
    without </stream:stream> (the transport is aborted under slixmpp), a
    message is sent to its full JID meanwhile, the client connects again,
    resumes (slixmpp sends <resume/> before binding) and gets the message;
    the session kept its full JID and later messages reach it;
  * no resumption: a client with SM stops reading, a message reaches the
    server's queue for it (unacknowledged), the connection is cut and not
    resumed in time: the server hands the unacknowledged stanza to offline
    storage, and the user's next session gets it (XEP-0160) - so nothing the
    server accepted is lost.
"""

import asyncio
import copy
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import DOMAIN, ServerTestCase, log, make_client  # noqa: E402

RESUME_S = 3   # sm_resume_ms of the second server, in seconds


def settings(resume_ms):
    s = copy.deepcopy(harness.TEST_SETTINGS)
    s['im'] = {'sm_resume_ms': resume_ms, 'sm_max_unacked': 1000}
    return s


def sm_client(jid):
    c = make_client(jid)
    c.register_plugin('xep_0198')
    c.resumed = asyncio.Event()
    c.add_event_handler('session_resumed', lambda _: c.resumed.set())
    return c


async def wait_for(cond, timeout, what):
    for _ in range(int(timeout * 20)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError('timed out waiting for %s' % what)


def cut(c):
    """Drop the TCP connection under the client: no </stream:stream>."""
    c.transport.abort()


class SmResumeTest(ServerTestCase):

    accounts = ['alice@%s' % DOMAIN, 'bob@%s' % DOMAIN]
    server_settings = settings(60000)

    def test_resume_after_cut(self):
        port = self.server.port

        async def go():
            a = sm_client('alice@%s/phone' % DOMAIN)
            b = make_client('bob@%s/desk' % DOMAIN)
            await asyncio.gather(a.login(port), b.login(port))
            sm = a['xep_0198']
            await wait_for(lambda: sm.sm_id, 10, 'SM enabled with an id')
            log('SM enabled, id %s...' % sm.sm_id[:12])
            b.send_message(mto=a.boundjid.full, mbody='before', mtype='chat')
            await a.recv_body('before')

            cut(a)
            await asyncio.sleep(0.5)    # the server sees the connection go
            b.send_message(mto='alice@%s/phone' % DOMAIN, mbody='while-away', mtype='chat')
            await asyncio.sleep(0.3)

            a.connect(('127.0.0.1', port), force_starttls=True, disable_starttls=False)
            await asyncio.wait_for(a.resumed.wait(), 15)
            log('resumed')
            m = await a.recv_body('while-away', timeout=10)
            assert m['from'].full == b.boundjid.full, m['from'].full
            assert m['to'].full == 'alice@%s/phone' % DOMAIN, m['to'].full

            b.send_message(mto='alice@%s/phone' % DOMAIN, mbody='after', mtype='chat')
            await a.recv_body('after', timeout=10)
            a.send_message(mto=b.boundjid.full, mbody='from-resumed', mtype='chat')
            m = await b.recv_body('from-resumed', timeout=10)
            assert m['from'].full == 'alice@%s/phone' % DOMAIN, m['from'].full
            await asyncio.gather(a.close(), b.close())
        self.loop.run(go(), 60)


class SmOfflineTest(ServerTestCase):

    accounts = ['carol@%s' % DOMAIN, 'dave@%s' % DOMAIN]
    server_settings = settings(RESUME_S * 1000)

    def test_unacked_goes_offline(self):
        port = self.server.port

        async def go():
            c = sm_client('carol@%s/phone' % DOMAIN)
            d = make_client('dave@%s/desk' % DOMAIN)
            await asyncio.gather(c.login(port), d.login(port))
            await wait_for(lambda: c['xep_0198'].sm_id, 10, 'SM enabled')
            # Carol stops reading: what the server sends her now is never
            # acknowledged.
            c.transport.pause_reading()
            d.send_message(mto=c.boundjid.full, mbody='kept-for-later', mtype='chat')
            await asyncio.sleep(0.5)
            cut(c)
            # Not resumed: after sm_resume_ms the session ends and hands
            # the stanza over.
            await asyncio.sleep(RESUME_S + 1.5)

            c2 = make_client('carol@%s/laptop' % DOMAIN)
            await c2.login(port)
            c2.send_presence()   # initial presence: offline messages come
            m = await c2.recv_body('kept-for-later', timeout=10)
            assert m['from'].bare == 'dave@%s' % DOMAIN, m['from'].full
            await asyncio.gather(c2.close(), d.close())
        self.loop.run(go(), 60)


if __name__ == '__main__':
    if len(sys.argv) > 1 and not sys.argv[1].startswith('-'):
        build = sys.argv.pop(1)
        os.environ.setdefault('STANZAD', os.path.join(build, 'cmd', 'stanzad'))
        os.environ.setdefault('STANZACTL', os.path.join(build, 'cmd', 'stanzactl'))
    unittest.main(verbosity=2)
