#!/usr/bin/env python3
"""Extract the example stanzas of the XEP sources into the seed corpus.

    tests/corpus/extract.py [--specs DIR] [--out DIR]

Defaults: specs in ../shared/specs/xeps relative to the repository, output
in tests/corpus/xeps. Each kept example becomes <xep>-<n>.xml where n is the
example's number in its XEP (counting every example, so it matches "Example
n" of the rendered spec even though some are skipped).

An example is kept when, wrapped in a jabber:client stream element, it is
namespace-well-formed for expat, holds only elements (and whitespace) at
stream level, and has no PI, DTD or stream header of its own. XML comments
are stripped first (the examples use them as narration between stanzas)
and the example is kept if what remains is still well-formed. The files are
the differential test's input and the fuzzers' seeds, so they are written
byte for byte as the XEP shows them, minus comments and leading/trailing
blank lines.

Standard library only.
"""

import argparse
import html
import os
import re
import sys
import xml.parsers.expat

STREAM_OPEN = ("<stream:stream xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams'>")
STREAM_CLOSE = "</stream:stream>"
STREAM_NS = "http://etherx.jabber.org/streams"

EXAMPLE_RE = re.compile(r"<example\b[^>]*?(?:/>|>(.*?)</example>)", re.S)
CDATA_RE = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.S)
ENTITY_DECL_RE = re.compile(r"<!ENTITY\s+([A-Za-z_][\w.-]*)\s+(\"[^\"]*\"|'[^']*')\s*>")
ENTITY_REF_RE = re.compile(r"&([A-Za-z_][\w.-]*);")
COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}


class Unresolved(Exception):
    pass


def internal_entities(src):
    """General entities of the XEP's internal DTD subset (the namespaces
    the examples splice in between CDATA sections)."""
    m = re.search(r"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", src, re.S)
    if not m:
        return {}
    return {name: val[1:-1] for name, val in ENTITY_DECL_RE.findall(m.group(1))}


def expand(text, ents, depth=0):
    """Decode markup-free text outside CDATA: internal entities, then the
    predefined ones and character references. Entities from the external
    xep.ent are unknown here, and the example is skipped."""
    if depth > 8:
        raise Unresolved("entity loop")

    def one(m):
        name = m.group(1)
        if name in ents:
            return expand(ents[name], ents, depth + 1)
        if name in PREDEFINED:
            return PREDEFINED[name]
        raise Unresolved(name)

    text = ENTITY_REF_RE.sub(one, text)
    return html.unescape(text) if "&#" in text else text


def example_text(body, ents):
    """The example's content: its CDATA sections concatenated, with the text
    between them (entity references, usually) expanded."""
    out = []
    pos = 0
    for m in CDATA_RE.finditer(body):
        out.append(expand(body[pos:m.start()], ents))
        out.append(m.group(1))
        pos = m.end()
    out.append(expand(body[pos:], ents))
    return "".join(out)


class Verdict:
    def __init__(self):
        self.reason = None
        self.depth = 0
        self.elements = 0

    def fail(self, reason):
        if self.reason is None:
            self.reason = reason


def check(content):
    """None if content is a corpus stream body, else why not."""
    v = Verdict()
    p = xml.parsers.expat.ParserCreate(namespace_separator="\x01")

    def start(name, attrs):
        v.depth += 1
        if v.depth == 2:
            v.elements += 1
            if name == STREAM_NS + "\x01stream":
                v.fail("stream header")
        if v.depth > 1 and name == STREAM_NS + "\x01stream":
            v.fail("stream header")

    def end(name):
        v.depth -= 1

    def chars(data):
        if v.depth == 1 and data.strip(" \t\r\n"):
            v.fail("text at stream level")

    p.StartElementHandler = start
    p.EndElementHandler = end
    p.CharacterDataHandler = chars
    p.ProcessingInstructionHandler = lambda t, d: v.fail("processing instruction")
    p.CommentHandler = lambda d: v.fail("comment")
    p.StartDoctypeDeclHandler = lambda *a: v.fail("DTD")
    p.XmlDeclHandler = lambda *a: v.fail("XML declaration")
    try:
        p.Parse((STREAM_OPEN + content + STREAM_CLOSE).encode("utf-8"), True)
    except xml.parsers.expat.ExpatError as e:
        return "not well-formed (%s)" % xml.parsers.expat.ErrorString(e.code)
    if v.reason:
        return v.reason
    if v.elements == 0:
        return "no element"
    return None


def trim_lines(text):
    """Drop blank lines at both ends but keep the first line's indentation
    and the rest byte for byte."""
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--specs", default=os.path.join(repo, "..", "shared", "specs", "xeps"))
    ap.add_argument("--out", default=os.path.join(here, "xeps"))
    ap.add_argument("-v", "--verbose", action="store_true", help="print why each example is skipped")
    args = ap.parse_args()

    sources = sorted(f for f in os.listdir(args.specs) if re.fullmatch(r"xep-\d+\.xml", f))
    if not sources:
        sys.exit("no xep-*.xml in %s" % args.specs)
    os.makedirs(args.out, exist_ok=True)
    # The directory holds only what this run produces, so a removed or
    # newly rejected example does not linger as a stale seed.
    for f in os.listdir(args.out):
        if f.endswith(".xml"):
            os.unlink(os.path.join(args.out, f))

    total = kept = stripped = nbytes = 0
    skipped = {}
    for src_name in sources:
        xep = src_name[len("xep-"):-len(".xml")]
        with open(os.path.join(args.specs, src_name), encoding="utf-8") as fh:
            src = fh.read()
        ents = internal_entities(src)
        for n, m in enumerate(EXAMPLE_RE.finditer(src), start=1):
            total += 1
            try:
                content = example_text(m.group(1) or "", ents)
            except Unresolved as e:
                why = "external entity"
                if args.verbose:
                    print("skip %s-%d: %s &%s;" % (xep, n, why, e))
                skipped[why] = skipped.get(why, 0) + 1
                continue
            had_comment = "<!--" in content
            if had_comment:
                content = COMMENT_RE.sub("", content)
            content = trim_lines(content)
            why = check(content)
            if why:
                key = why.split(" (")[0]
                skipped[key] = skipped.get(key, 0) + 1
                if args.verbose:
                    print("skip %s-%d: %s" % (xep, n, why))
                continue
            data = content.encode("utf-8")
            with open(os.path.join(args.out, "%s-%d.xml" % (xep, n)), "wb") as fh:
                fh.write(data)
            kept += 1
            stripped += had_comment
            nbytes += len(data)

    print("%d XEPs, %d examples: %d kept (%d after stripping comments), %d bytes"
          % (len(sources), total, kept, stripped, nbytes))
    for why in sorted(skipped, key=lambda k: -skipped[k]):
        print("  skipped %4d  %s" % (skipped[why], why))


if __name__ == "__main__":
    main()
