#!/usr/bin/env python3
"""Server memory per idle session, until stanza-bench's `idle` scenario
exists (issue 5). Opens N sessions against a running stanzad and reads the
server's RSS (VmRSS from /proc) before and after:

  plain: TCP connection with an open stream (header exchanged), not
         authenticated (stanzad requires TLS before authentication)
  tls:   direct TLS, authenticated (PLAIN), resource bound, initial presence

usage: idle_rss.py --pid PID --port PORT --mode plain|tls -n N
       [--stanzactl PATH --data DIR]   (tls mode: creates accounts
       idle0..idleK@DOMAIN with password "secret", 200 sessions each,
       through stanzactl)
Loopback only; bounded: N connections, each step with a timeout."""
import argparse, base64, socket, ssl, sys, time

HDR = ("<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
       "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")

def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS for pid %d" % pid)

def read_until(s, token, limit=5.0):
    s.settimeout(limit)
    buf = b""
    end = time.monotonic() + limit
    while token not in buf:
        if time.monotonic() > end:
            raise SystemExit("timeout waiting for %r, got %r" % (token, buf[-200:]))
        d = s.recv(65536)
        if not d:
            raise SystemExit("closed while waiting for %r: %r" % (token, buf[-200:]))
        buf += d
    return buf

def open_plain(port, domain):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((HDR % domain).encode())
    read_until(s, b"</stream:features>")
    return s

PER_ACCOUNT = 200   # below the router's resources-per-account limit

def open_tls(port, domain, user, password, i, ctx):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=domain)
    s.sendall((HDR % domain).encode())
    read_until(s, b"</stream:features>")
    local = "idle%d" % (i // PER_ACCOUNT)
    tok = base64.b64encode(b"\0" + local.encode() + b"\0" + password.encode()).decode()
    s.sendall(("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % tok).encode())
    read_until(s, b"<success")
    s.sendall((HDR % domain).encode())
    read_until(s, b"</stream:features>")
    s.sendall(("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
               "<resource>r%d</resource></bind></iq>" % i).encode())
    got = read_until(s, b"</iq>")
    if b"type='result'" not in got:
        raise SystemExit("bind %d failed: %r" % (i, got[-300:]))
    s.sendall(b"<presence/>")
    read_until(s, b"<presence")
    return s

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("plain", "tls"), required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--password", default="secret")
    ap.add_argument("--stanzactl", default="build/cmd/stanzactl")
    ap.add_argument("--data", default="data")
    a = ap.parse_args()
    a.user = None
    if a.mode == "tls":
        import subprocess
        for k in range((a.n + 50 * PER_ACCOUNT) // PER_ACCOUNT + 2):
            subprocess.run([a.stanzactl, "-d", a.data, "account", "add", "idle%d@%s" % (k, a.domain)],
                           input=(a.password + "\n").encode(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Warm up: the first sessions grow per-worker pools and tables once.
    warm = [open_plain(a.port, a.domain) if a.mode == "plain" else
            open_tls(a.port, a.domain, a.user, a.password, a.n + i, ctx) for i in range(50)]
    time.sleep(1)
    before = rss_kib(a.pid)
    conns = []
    for i in range(a.n):
        conns.append(open_plain(a.port, a.domain) if a.mode == "plain" else
                     open_tls(a.port, a.domain, a.user, a.password, i, ctx))
    time.sleep(float(__import__("os").environ.get("IDLE_HOLD", "2")))   # idle: buffers released
    after = rss_kib(a.pid)
    per = (after - before) * 1024.0 / a.n
    print("mode=%s sessions=%d rss_before=%d KiB rss_after=%d KiB per_session=%.0f bytes"
          % (a.mode, a.n, before, after, per))
    for s in conns + warm:
        s.close()

if __name__ == "__main__":
    main()
