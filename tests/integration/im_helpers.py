"""Helpers for the IM integration tests (test_im*.py, test_durability.py).

slixmpp clients made IM-neutral (they must not answer subscription
requests on their own: slixmpp's roster approves every request by default,
which would hide what the server does), roster and presence waits, worker
placement from `stanzactl sessions`, raw-socket IM helpers, and a Server
that can be killed with SIGKILL and restarted on the same data directory.
Every wait is bounded in time and every loop in count.
"""

import asyncio
import os
import re
import signal
import subprocess
import time
import unittest
import xml.etree.ElementTree as ET

import harness
from harness import DOMAIN, Raw, Server, log, make_client, wait_port

NS_ROSTER = 'jabber:iq:roster'
NS_BLOCK = 'urn:xmpp:blocking'
NS_BLOCK_ERR = 'urn:xmpp:blocking:errors'
NS_CARBONS = 'urn:xmpp:carbons:2'
NS_FORWARD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
NS_SM = 'urn:xmpp:sm:3'
NS_CLIENT = 'jabber:client'

# Settings for the IM tests: the harness's, plus small IM limits so that
# the flood tests are quick (no test user has more than a few contacts).
IM_SETTINGS = {k: dict(v) for k, v in harness.TEST_SETTINGS.items()}
IM_SETTINGS['im'] = {'pending_max': 10, 'offline_max': 100, 'roster_max': 25}


def bare(jid):
    return str(jid).split('/', 1)[0]


def jid_of(user):
    return '%s@%s' % (user, DOMAIN)


# --------------------------------------------------------------------------
# slixmpp

def im_client(full_jid):
    """A harness slixmpp client that leaves subscriptions to the test and
    queues roster pushes and block-list pushes. Call inside the loop."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    c = make_client(full_jid)
    c.roster.auto_authorize = None        # neither approve nor refuse
    c.roster.auto_subscribe = False
    c.pushes = asyncio.Queue()            # roster pushes (slixmpp Iq)
    c.block_pushes = asyncio.Queue()      # XEP-0191 pushes (ET <block/>/<unblock/>)
    c.add_event_handler('roster_update', lambda iq: c.pushes.put_nowait(iq) if iq['type'] == 'set' else None)

    def on_block_push(iq):
        if iq['type'] != 'set':
            return
        frm = iq['from'].bare      # a slixmpp JID('') is truthy: compare strings
        if frm and frm != c.boundjid.bare:
            r = iq.reply()
            r['type'] = 'error'
            r['error']['type'] = 'cancel'
            r['error']['condition'] = 'service-unavailable'
            r.send()
            return
        for child in iq.xml:
            c.block_pushes.put_nowait(child)
        iq.reply().send()
    # XEP-0280 carbons have no top-level <body/>: slixmpp's 'message' event
    # (a match on message/body) never fires for them
    c.carbons = asyncio.Queue()
    for kind in ('received', 'sent'):
        c.register_handler(Callback('carbon ' + kind,
                                    MatchXPath('{%s}message/{%s}%s' % (NS_CLIENT, NS_CARBONS, kind)),
                                    lambda m: c.carbons.put_nowait(m)))
    for name in ('block', 'unblock'):
        c.register_handler(Callback('block push ' + name,
                                    MatchXPath('{%s}iq/{%s}%s' % (NS_CLIENT, NS_BLOCK, name)),
                                    on_block_push))
    return c


async def within(aw, timeout, what):
    """await aw, or an AssertionError that says what did not come."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise AssertionError('no %s within %ss' % (what, timeout)) from None


def items_of(xml_query):
    """{bare jid: {'subscription','ask','name','groups'}} from a <query/>."""
    out = {}
    if xml_query is None:
        return out
    for it in xml_query.findall('{%s}item' % NS_ROSTER):
        out[it.get('jid')] = {
            'subscription': it.get('subscription', 'none'),
            'ask': it.get('ask'),
            'name': it.get('name'),
            'groups': sorted((g.text or '') for g in it.findall('{%s}group' % NS_ROSTER)),
        }
    return out


async def roster_get(c, timeout=10):
    """The roster by a plain roster get (no versioning); the session
    becomes an interested resource (RFC 6121 2.1.3)."""
    iq = c.make_iq_get(queryxmlns=NS_ROSTER)
    r = await iq.send(timeout=timeout)
    return items_of(r.xml.find('{%s}query' % NS_ROSTER))


async def iq_raw(c, xml_text, timeout=10):
    """Send an iq built from text; ('result', ET) or ('error', (type, condition, ET))."""
    from slixmpp.exceptions import IqError
    from slixmpp.stanza import Iq
    el = ET.fromstring(xml_text)
    if not el.tag.startswith('{'):
        el.tag = '{%s}%s' % (NS_CLIENT, el.tag)
    iq = Iq(c, xml=el)
    if not iq['id']:
        iq['id'] = c.new_id()
    try:
        r = await iq.send(timeout=timeout)
        return 'result', r.xml
    except IqError as e:
        return 'error', (e.iq['error']['type'], e.iq['error']['condition'], e.iq.xml)


async def next_push(c, jid, pred=lambda item: True, timeout=10, what='roster push'):
    """The next roster push for jid that pred accepts (others skipped)."""
    deadline = c.loop.time() + timeout
    seen = []
    for _ in range(1000):
        left = deadline - c.loop.time()
        if left <= 0:
            break
        try:
            iq = await asyncio.wait_for(c.pushes.get(), left)
        except asyncio.TimeoutError:
            break
        items = items_of(iq.xml.find('{%s}query' % NS_ROSTER))
        seen.append(items)
        if jid in items and pred(items[jid]):
            return items[jid]
    raise AssertionError('%s: no %s for %s within %ss (pushes seen: %r)'
                         % (c.boundjid, what, jid, timeout, seen))


def push_is(subscription, ask=None):
    return lambda it: it['subscription'] == subscription and (it['ask'] or None) == ask


async def next_presence(c, from_, ptype='available', timeout=10, pred=None):
    """The next presence from from_ (full JID, or bare: any resource of it)
    of type ptype; others are skipped."""
    deadline = c.loop.time() + timeout
    seen = []
    for _ in range(2000):
        left = deadline - c.loop.time()
        if left <= 0:
            break
        try:
            p = await asyncio.wait_for(c.presences.get(), left)
        except asyncio.TimeoutError:
            break
        f = p['from'].full
        t = p['type'] if p['type'] in ('unavailable', 'subscribe', 'subscribed', 'unsubscribe',
                                       'unsubscribed', 'probe', 'error') else 'available'
        seen.append((f, t))
        if (f == from_ or ('/' not in from_ and bare(f) == from_)) and t == ptype \
                and (pred is None or pred(p)):
            return p
    raise AssertionError('%s: no %s presence from %s within %ss (seen: %r)'
                         % (c.boundjid, ptype, from_, timeout, seen[-20:]))


async def presences_from(c, froms, ptype='available', timeout=10):
    """One presence of ptype from each full JID in froms (any order)."""
    want = set(froms)
    got = {}
    deadline = c.loop.time() + timeout
    seen = []
    for _ in range(2000):
        if not want:
            return got
        left = deadline - c.loop.time()
        if left <= 0:
            break
        try:
            p = await asyncio.wait_for(c.presences.get(), left)
        except asyncio.TimeoutError:
            break
        f = p['from'].full
        t = p['type'] if p['type'] in ('unavailable', 'subscribe', 'subscribed', 'unsubscribe',
                                       'unsubscribed', 'probe', 'error') else 'available'
        seen.append((f, t))
        if f in want and t == ptype:
            want.discard(f)
            got[f] = p
    if want:
        raise AssertionError('%s: no %s presence from %s within %ss (seen: %r)'
                             % (c.boundjid, ptype, sorted(want), timeout, seen[-20:]))
    return got


def _ptype(p):
    return p['type'] if p['type'] in ('unavailable', 'subscribe', 'subscribed', 'unsubscribe',
                                      'unsubscribed', 'probe', 'error') else 'available'


async def expect_presences(c, wanted, timeout=10):
    """Each (from, type) in wanted once, in any order (from: full JID, or a
    bare JID matching exactly); other presences are skipped. Returns
    {(from, type): presence}."""
    want = list(wanted)
    got = {}
    deadline = c.loop.time() + timeout
    seen = []
    for _ in range(2000):
        if not want:
            return got
        left = deadline - c.loop.time()
        if left <= 0:
            break
        try:
            p = await asyncio.wait_for(c.presences.get(), left)
        except asyncio.TimeoutError:
            break
        key = (p['from'].full, _ptype(p))
        seen.append(key)
        if key in want:
            want.remove(key)
            got[key] = p
    raise AssertionError('%s: missing presence %r within %ss (seen: %r)'
                         % (c.boundjid, want, timeout, seen[-20:]))


async def quiet(c, wait=0.7, presence_from=None, message_from=None):
    """Collect what arrives within wait seconds; returns (presences,
    messages) whose 'from' bare JID matches (None: any)."""
    await asyncio.sleep(wait)
    pres, msgs = [], []
    while not c.presences.empty():
        p = c.presences.get_nowait()
        if presence_from is None or bare(p['from'].full) == presence_from:
            pres.append(p)
    while not c.inbox.empty():
        m = c.inbox.get_nowait()
        if message_from is None or bare(m['from'].full) == message_from:
            msgs.append(m)
    return pres, msgs


def drain(c):
    for q in (c.presences, c.inbox, c.pushes, c.block_pushes, c.errors_in, c.carbons):
        while not q.empty():
            q.get_nowait()


def delay_of(msg_xml):
    d = msg_xml.find('{%s}delay' % NS_DELAY)
    return None if d is None else (d.get('stamp'), d.get('from'))


def parse_stamp(stamp):
    """XEP-0082 DateTime (UTC 'Z', optional fraction) → epoch seconds."""
    m = re.match(r'^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$', stamp or '')
    if not m:
        raise AssertionError('bad XEP-0082 stamp %r' % stamp)
    import calendar
    t = calendar.timegm(tuple(int(m.group(i)) for i in range(1, 7)) + (0, 0, 0))
    tz = m.group(8)
    if tz != 'Z':
        sign = 1 if tz[0] == '+' else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t


# --------------------------------------------------------------------------
# Worker placement

def worker_of(server, full_jid, tries=20):
    for _ in range(tries):
        for j, w in server.sessions():
            if j == full_jid:
                return w
        time.sleep(0.05)
    raise AssertionError('%s not listed by stanzactl sessions: %r' % (full_jid, server.sessions()))


def login_spread(loop, server, jids, attempts=12):
    """Log in slixmpp clients for jids so that they alternate over the two
    workers (jids[i] on worker i % 2), reconnecting a session that landed
    on the other worker (the kernel spreads accepts by a hash of the
    address pair; 12 tries leave a 1/4096 chance per session). Returns the
    clients and {full jid: worker}."""
    clients, where = [], {}
    for i, j in enumerate(jids):
        want = i % 2
        for k in range(attempts):
            async def go():
                c = im_client(j)
                await c.login(server.port)
                return c
            c = loop.run(go(), 30)
            w = worker_of(server, c.boundjid.full)
            if w == want or k == attempts - 1:
                break
            loop.run(c.close(), 10)
        clients.append(c)
        where[c.boundjid.full] = w
    log('sessions on workers: %s' % ', '.join('%s@w%d' % (j, w) for j, w in where.items()))
    if len(set(where.values())) < 2 and len(jids) > 1:
        raise AssertionError('all sessions on one worker after %d tries each: %r' % (attempts, where))
    return clients, where


def close_all(loop, clients):
    async def go():
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    try:
        loop.run(go(), 20)
    except Exception:
        pass


# --------------------------------------------------------------------------
# Raw connections

def raw_login(port, user, resource='raw'):
    r = Raw(port)
    jid = r.login(user, resource=resource)
    return r, jid


def raw_iq(r, xml_text, iq_id, timeout=10):
    """Send an iq with this id; the answer (ET) or an AssertionError."""
    r.send(xml_text)
    m = r.read_until(r"<iq\b[^>]*\bid=['\"]%s['\"][^>]*?(?:/>|>.*?</iq>)" % re.escape(iq_id), timeout)
    if not m:
        raise AssertionError('no answer to iq %s: %r' % (iq_id, r.buf[-800:]))
    text = m.group(0)
    r.take(m.end())
    return ET.fromstring(text.replace('<iq', "<iq xmlns='jabber:client'", 1)
                         if 'xmlns=' not in text.split('>', 1)[0] else text)


def error_of(iq_el):
    """(type, defined condition, app-specific children tags) of an error stanza."""
    e = iq_el.find('{%s}error' % NS_CLIENT)
    if e is None:
        e = iq_el.find('error')
    if e is None:
        return None
    cond, app = None, []
    for ch in e:
        ns = ch.tag[1:].split('}')[0] if ch.tag.startswith('{') else ''
        local = ch.tag.split('}')[-1]
        if ns == NS_STANZAS and local != 'text':
            cond = local
        elif ns != NS_STANZAS:
            app.append(ch.tag)
    return e.get('type'), cond, app


def raw_stanza(r, pattern, timeout=10):
    """Read until a top-level stanza matching regex pattern; returns its text."""
    m = r.read_until(pattern, timeout)
    if not m:
        return None
    r.take(m.end())
    return m.group(0)


# --------------------------------------------------------------------------
# A server that survives kill -9 on the same data directory

class DurableServer(Server):
    """harness.Server plus kill9() and restart() on the same data dir."""

    def kill9(self):
        """SIGKILL to the PID this test started (and only that one)."""
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        log('kill -9 %d (exit %r)' % (pid, self.proc.returncode))

    def restart(self, timeout=20):
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError('restart while running')
        self.port = harness.free_port()
        self.tls_port = harness.free_port()
        while self.tls_port == self.port:
            self.tls_port = harness.free_port()
        argv = [self.exe, '-c', self.conf, '-d', self.data, '-D', DOMAIN,
                '-w', str(self.workers),
                '--listen', '127.0.0.1:%d' % self.port,
                '--listen-tls', '127.0.0.1:%d' % self.tls_port]
        log('restart on the same data dir: %s' % ' '.join(argv))
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + timeout
        if not (wait_port(self.port, deadline, self.proc) and wait_port(self.tls_port, deadline, self.proc)):
            rc = self.proc.poll()
            self.kill()
            raise AssertionError('stanzad did not come back on the same data dir (exit %r)\n%s'
                                 % (rc, self.log_tail()))
        return self


def need(cond, why):
    if not cond:
        raise unittest.SkipTest(why)


_TOP = re.compile(r"<(iq|message|presence|a|r|enabled|failed|resumed)\b(?:[^>'\"]|'[^']*'|\"[^\"]*\")*?"
                  r"(?:/>|>.*?</\1>)", re.S)


def raw_next(r, pred=lambda el: True, timeout=10, what='stanza'):
    """The next top-level element (ET, jabber:client default namespace) read
    on raw connection r for which pred is true; others are dropped."""
    deadline = time.monotonic() + timeout
    for _ in range(100000):
        m = _TOP.search(r.buf)
        while m:
            text = m.group(0)
            r.take(m.end())
            el = ET.fromstring("<w xmlns='%s'>%s</w>" % (NS_CLIENT, text))[0]
            if pred(el):
                return el
            m = _TOP.search(r.buf)
        left = deadline - time.monotonic()
        if r.eof or left <= 0:
            break
        r._recv_once(left)
    raise AssertionError('no %s within %ss (eof=%s): %r' % (what, timeout, r.eof, r.buf[-600:]))


def is_iq(el, iq_id=None, typ=None):
    return (el.tag == '{%s}iq' % NS_CLIENT and (iq_id is None or el.get('id') == iq_id)
            and (typ is None or el.get('type') == typ))


def roster_push_pred(jid, subscription, ask=None):
    def pred(el):
        if not is_iq(el, typ='set'):
            return False
        it = items_of(el.find('{%s}query' % NS_ROSTER)).get(jid)
        return bool(it and it['subscription'] == subscription and (it['ask'] or None) == ask)
    return pred


def raw_roster(r, iq_id='rg', timeout=10):
    r.send("<iq type='get' id='%s'><query xmlns='%s'/></iq>" % (iq_id, NS_ROSTER))
    el = raw_next(r, lambda e: is_iq(e, iq_id), timeout, 'roster result')
    if el.get('type') != 'result':
        raise AssertionError('roster get: %s' % ET.tostring(el).decode())
    return items_of(el.find('{%s}query' % NS_ROSTER))


def raw_sm_enable(r, timeout=10):
    """XEP-0198 enable; True if <enabled/>, False if the server has no SM."""
    r.send("<enable xmlns='%s'/>" % NS_SM)
    try:
        el = raw_next(r, lambda e: e.tag in ('{%s}enabled' % NS_SM, '{%s}failed' % NS_SM)
                       and (e.tag.endswith('enabled') or e.tag.endswith('failed')), timeout,
                       'SM enabled/failed')
    except AssertionError as e:
        log('XEP-0198 enable: %s' % str(e)[:300])
        return False
    return el.tag.endswith('enabled')
