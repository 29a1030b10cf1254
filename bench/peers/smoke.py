#!/usr/bin/env python3
"""A smoke test for a peer instance, with nothing but the standard library.

    smoke.py MODE PORT DOMAIN USER1 USER2 PASSWORD

MODE is how the client secures the stream before SASL PLAIN:
  plain     plaintext TCP (the peers offer STARTTLS but do not require it)
  starttls  STARTTLS on the c2s port
  tls       direct TLS (XEP-0368), e.g. stanzad's --listen-tls port
Both users log in on 127.0.0.1:PORT, bind, send initial presence; USER1
sends USER2 one chat message to the bare JID and USER2 must receive it.
Exit status 0 on success. Certificates are not verified (self-signed).
"""
import base64
import socket
import ssl
import sys
import time
import uuid
import xml.etree.ElementTree as ET

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
TIMEOUT = 10.0


def q(ns, name):
    return "{%s}%s" % (ns, name)


class Client:
    def __init__(self, port, domain, mode, name):
        self.domain, self.name = domain, name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if mode == "tls":
            self.sock = self.tls_context().wrap_socket(self.sock, server_hostname=domain)
        self.parser = None
        self.depth = 0

    @staticmethod
    def tls_context():
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def send(self, text):
        self.sock.sendall(text.encode())

    def open_stream(self):
        """Send a stream header and return the <stream:features/> element."""
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.send("<?xml version='1.0'?><stream:stream to='%s' version='1.0' "
                  "xml:lang='en' xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams'>" % self.domain)
        features = self.next_element()
        if features.tag != q(NS_STREAM, "features"):
            raise RuntimeError("%s: expected stream features, got %s" % (self.name, features.tag))
        return features

    def next_element(self):
        """The next complete top-level element of the stream."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event, elem in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    if self.depth == 1 and elem.tag != q(NS_STREAM, "stream"):
                        raise RuntimeError("%s: not a stream: %s" % (self.name, elem.tag))
                else:
                    self.depth -= 1
                    if self.depth == 0:
                        raise RuntimeError("%s: the server closed the stream" % self.name)
                    if self.depth == 1:
                        if elem.tag == q(NS_STREAM, "error"):
                            raise RuntimeError("%s: stream error: %s" % (
                                self.name, [c.tag for c in elem]))
                        return elem
            if time.monotonic() > deadline:
                raise RuntimeError("%s: timed out waiting for the server" % self.name)
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("%s: connection closed by the server" % self.name)
            self.parser.feed(data)

    def login(self, mode, user, password):
        features = self.open_stream()
        if mode == "starttls":
            if features.find(q(NS_TLS, "starttls")) is None:
                raise RuntimeError("%s: STARTTLS not offered" % self.name)
            self.send("<starttls xmlns='%s'/>" % NS_TLS)
            reply = self.next_element()
            if reply.tag != q(NS_TLS, "proceed"):
                raise RuntimeError("%s: STARTTLS refused: %s" % (self.name, reply.tag))
            self.sock = self.tls_context().wrap_socket(self.sock, server_hostname=self.domain)
            features = self.open_stream()
        elif mode == "plain" and features.find(q(NS_TLS, "starttls")) is None:
            raise RuntimeError("%s: STARTTLS not offered (it should be, not required)" % self.name)
        mechs = [m.text for m in features.iter(q(NS_SASL, "mechanism"))]
        if "PLAIN" not in mechs:
            raise RuntimeError("%s: PLAIN not offered (offered: %s)" % (self.name, mechs))
        token = base64.b64encode(("\0%s\0%s" % (user, password)).encode()).decode()
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, token))
        reply = self.next_element()
        if reply.tag != q(NS_SASL, "success"):
            raise RuntimeError("%s: authentication failed: %s" % (
                self.name, [c.tag for c in reply]))
        features = self.open_stream()
        if features.find(q(NS_BIND, "bind")) is None:
            raise RuntimeError("%s: no resource binding offered" % self.name)
        self.send("<iq type='set' id='bind1'><bind xmlns='%s'><resource>smoke</resource>"
                  "</bind></iq>" % NS_BIND)
        reply = self.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "bind1")
        if reply.get("type") != "result":
            raise RuntimeError("%s: bind failed" % self.name)
        self.jid = reply.find("%s/%s" % (q(NS_BIND, "bind"), q(NS_BIND, "jid"))).text
        # RFC 3921 session establishment: harmless where it is optional.
        self.send("<iq type='set' id='sess1'><session "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        self.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == "sess1")
        self.send("<presence/>")

    def wait_for(self, match):
        while True:
            elem = self.next_element()
            if match(elem):
                return elem

    def close(self):
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass


def main():
    if len(sys.argv) != 7 or sys.argv[1] not in ("plain", "starttls", "tls"):
        sys.exit(__doc__)
    mode, port, domain, user1, user2, password = sys.argv[1:]
    port = int(port)
    t0 = time.monotonic()
    a = Client(port, domain, mode, user1)
    a.login(mode, user1, password)
    b = Client(port, domain, mode, user2)
    b.login(mode, user2, password)
    t1 = time.monotonic()
    body = "smoke " + str(uuid.uuid4())
    a.send("<message type='chat' to='%s@%s' id='m1'><body>%s</body></message>"
           % (user2, domain, body))
    got = b.wait_for(lambda e: e.tag == q(NS_CLIENT, "message")
                     and e.findtext(q(NS_CLIENT, "body")) == body)
    t2 = time.monotonic()
    sender = got.get("from", "")
    if not sender.startswith("%s@%s" % (user1, domain)):
        raise RuntimeError("message from %r, expected %s@%s" % (sender, user1, domain))
    a.close()
    b.close()
    print("ok: %s logged in as %s and %s (%.0f ms), message delivered from %s (%.1f ms)"
          % (mode, a.jid, b.jid, (t1 - t0) * 1000, sender, (t2 - t1) * 1000))


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError, ET.ParseError) as e:
        sys.exit("FAILED: %s" % e)
