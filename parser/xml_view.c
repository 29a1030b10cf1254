/* Stanza views: one pass over a complete stanza that checks everything
 * RFC 6120 section 11 and XML 1.0 + Namespaces ask, and writes a flat token
 * index (offset + length into the stanza's bytes). No allocation, no copy:
 * values stay escaped in the buffer until someone asks for them.
 */
#include <assert.h>
#include <string.h>
#include "parser/scan.h"
#include "parser/utf8.h"
#include "parser/xml.h"

static const char NS_XML[] = "http://www.w3.org/XML/1998/namespace";
static const char NS_XMLNS[] = "http://www.w3.org/2000/xmlns/";
static const char NS_STREAMS[] = "http://etherx.jabber.org/streams";

static struct xml_charset cs_text;   /* < & CR >  (']]>' is checked at '>') */
static struct xml_charset cs_dq;     /* " < & TAB LF CR */
static struct xml_charset cs_sq;     /* ' < & TAB LF CR */

__attribute__((constructor))
static void view_charsets_init(void)
{
	xml_charset_init(&cs_text, "<&\r>", 4);
	xml_charset_init(&cs_dq, "\"<&\t\n\r", 6);
	xml_charset_init(&cs_sq, "'<&\t\n\r", 6);
}

/* ASCII name classes: 1 = NameStartChar, 2 = NameChar only. ':' is handled
 * by the QName rules, not here. */
static const uint8_t name_class[128] = {
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['_'] = 1,
	['0'] = 2, ['1'] = 2, ['2'] = 2, ['3'] = 2, ['4'] = 2, ['5'] = 2, ['6'] = 2,
	['7'] = 2, ['8'] = 2, ['9'] = 2, ['-'] = 2, ['.'] = 2,
};

/* name_class for all 256 bytes, one load per byte in the name loop:
 * N_START for an ASCII NameStartChar, N_CHAR for any ASCII NameChar,
 * N_HI for >= 0x80 (the per-character path decides). */
enum { N_START = 1, N_CHAR = 2, N_HI = 4 };
static uint8_t name_tab[256];

__attribute__((constructor))
static void view_name_tab_init(void)
{
	for (unsigned c = 0; c < 256; c++)
		name_tab[c] = c >= 0x80 ? N_HI : name_class[c] == 1 ? N_START | N_CHAR : name_class[c] ? N_CHAR : 0;
}

static inline int is_ws(uint8_t c)
{
	const uint64_t ws = 1ull << ' ' | 1ull << '\n' | 1ull << '\t' | 1ull << '\r';

	return c <= ' ' && ((ws >> c) & 1);
}

static inline int is_xml_char(uint32_t c)
{
	return c >= 0x20 ? (c <= 0xD7FF || (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF))
			 : (c == 0x9 || c == 0xA || c == 0xD);
}

/* XML 1.0 fifth edition, section 2.3, for code points >= 0x80. */
static int is_name_start_cp(uint32_t c)
{
	return (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x2FF) ||
	       (c >= 0x370 && c <= 0x37D) || (c >= 0x37F && c <= 0x1FFF) || (c >= 0x200C && c <= 0x200D) ||
	       (c >= 0x2070 && c <= 0x218F) || (c >= 0x2C00 && c <= 0x2FEF) || (c >= 0x3001 && c <= 0xD7FF) ||
	       (c >= 0xF900 && c <= 0xFDCF) || (c >= 0xFDF0 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0xEFFFF);
}

static int is_name_cp(uint32_t c)
{
	return is_name_start_cp(c) || c == 0xB7 || (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040);
}

/* Decode one code point of already validated UTF-8; returns its length. */
static unsigned utf8_decode(const uint8_t *p, uint32_t *cp)
{
	if (p[0] < 0xE0) {
		*cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
		return 2;
	}
	if (p[0] < 0xF0) {
		*cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
		return 3;
	}
	*cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
	      ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
	return 4;
}

/* The general NCName loop, from p; first: p is the name's first byte. */
static const uint8_t *scan_ncname_slow(const uint8_t *p, const uint8_t *e, int first)
{
	while (p < e) {
		uint8_t c = *p;
		if (c < 0x80) {
			uint8_t k = name_class[c];
			if (!k || (first && k != 1))
				break;
			p++;
		} else {
			uint32_t cp;
			unsigned n = utf8_decode(p, &cp);
			if (first ? !is_name_start_cp(cp) : !is_name_cp(cp))
				break;
			p += n;
		}
		first = 0;
	}
	return first ? NULL : p;
}

/* An NCName (no colon) at p; returns its end, or NULL if there is none.
 * ASCII names, nearly all of them, take the table loop. */
static inline const uint8_t *scan_ncname(const uint8_t *p, const uint8_t *e)
{
	if (p >= e)
		return NULL;
	if (!(name_tab[*p] & N_START))
		return *p >= 0x80 ? scan_ncname_slow(p, e, 1) : NULL;
	p++;
	for (; e - p >= 4; p += 4) {
		if (!(name_tab[p[0]] & N_CHAR))
			goto out;
		if (!(name_tab[p[1]] & N_CHAR))
			return p[1] >= 0x80 ? scan_ncname_slow(p + 1, e, 0) : p + 1;
		if (!(name_tab[p[2]] & N_CHAR)) {
			p += 2;
			goto out;
		}
		if (!(name_tab[p[3]] & N_CHAR)) {
			p += 3;
			goto out;
		}
	}
	while (p < e && (name_tab[*p] & N_CHAR))
		p++;
out:
	if (p < e && *p >= 0x80)
		return scan_ncname_slow(p, e, 0);
	return p;
}

/* Whitespace at p: usually none or one byte. */
static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e)
{
	while (p < e && is_ws(*p))
		p++;
	return p;
}

/* A QName (NCName, or NCName ':' NCName) at p. Returns its end or NULL;
 * *prefix gets the prefix length (0 when unprefixed). */
static inline __attribute__((always_inline))
const uint8_t *scan_qname(const uint8_t *p, const uint8_t *e, uint16_t *prefix)
{
	const uint8_t *q = scan_ncname(p, e);

	*prefix = 0;
	if (!q)
		return NULL;
	if (q < e && *q == ':') {
		const uint8_t *r = scan_ncname(q + 1, e);
		if (!r || (r < e && *r == ':') || q - p > UINT16_MAX)
			return NULL;
		*prefix = (uint16_t)(q - p);
		return r;
	}
	return q;
}

struct builder {
	struct xml_view *v;
	const uint8_t *s;       /* stanza start */
	const uint8_t *e;       /* stanza end */
	uint32_t nscope;
	int xml_fixed;          /* the xml prefix resolves to XML_NS_XML (no stream declaration rebinds it) */
	/* The default namespace, cached: valid while no declaration was
	 * pushed since (pushes == dflt_pushes) and the scope has the same
	 * depth, because between pushes the scope only shrinks. */
	uint32_t pushes;
	uint32_t dflt_pushes;
	uint32_t dflt_at;
	int dflt;
};

static int fail(struct builder *b, enum xml_error err, const uint8_t *at)
{
	b->v->err = err;
	b->v->err_off = (uint32_t)(at - b->s);
	return -1;
}

static inline uint32_t off_of(const struct builder *b, const uint8_t *p)
{
	return (uint32_t)(p - b->s);
}

/* A reference at p ('&'). Returns the byte after ';', or NULL with the
 * error set: restricted-xml for a well-formed reference to an entity other
 * than the five predefined ones, not-well-formed for anything malformed. */
static const uint8_t *check_ref(struct builder *b, const uint8_t *p)
{
	const uint8_t *q = p + 1, *e = b->e;

	/* The five predefined entities, nearly every reference there is. */
	if (e - p >= 4 && p[3] == ';' && p[2] == 't' && (p[1] == 'l' || p[1] == 'g'))
		return p + 4;
	if (e - p >= 5 && !memcmp(q, "amp;", 4))
		return p + 5;
	if (e - p >= 6 && (!memcmp(q, "quot;", 5) || !memcmp(q, "apos;", 5)))
		return p + 6;
	if (q < e && *q == '#') {
		uint32_t cp = 0;
		unsigned digits = 0;
		int hex = ++q < e && *q == 'x';

		if (hex)
			q++;
		for (; q < e; q++, digits++) {
			unsigned d;
			uint8_t c = *q;
			if (c >= '0' && c <= '9')
				d = c - '0';
			else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f')
				d = (c | 0x20) - 'a' + 10;
			else
				break;
			cp = cp * (hex ? 16 : 10) + d;
			if (cp > 0x10FFFF)
				cp = 0x110000;   /* saturate: stays invalid */
		}
		if (!digits || q >= e || *q != ';' || !is_xml_char(cp)) {
			fail(b, XML_ERR_NOT_WELL_FORMED, p);
			return NULL;
		}
		return q + 1;
	}
	const uint8_t *ne = scan_ncname(q, e);
	if (!ne || ne >= e || *ne != ';') {
		fail(b, XML_ERR_NOT_WELL_FORMED, p);
		return NULL;
	}
	size_t n = (size_t)(ne - q);
	if ((n == 2 && (!memcmp(q, "lt", 2) || !memcmp(q, "gt", 2))) ||
	    (n == 3 && !memcmp(q, "amp", 3)) ||
	    (n == 4 && (!memcmp(q, "apos", 4) || !memcmp(q, "quot", 4))))
		return ne + 1;
	fail(b, XML_ERR_RESTRICTED_XML, p);
	return NULL;
}

static inline int slice_is(const char *p, size_t n, const char *lit, size_t litn)
{
	return n == litn && memcmp(p, lit, n) == 0;
}

/* Record xmlns[:prefix]='uri' of the element being opened. */
static int declare_ns(struct builder *b, const uint8_t *at, const uint8_t *prefix, uint16_t plen,
		      const uint8_t *val, uint32_t vlen, int escaped, uint32_t elem_scope)
{
	struct xml_view *v = b->v;
	const char *uri = (const char *)val;
	uint32_t ulen = vlen;

	if (v->nns >= v->ns_cap || b->nscope >= v->scope_cap ||
	    (uint32_t)(v->nns - v->ns_own) >= v->lim.max_ns)
		return fail(b, XML_ERR_POLICY_VIOLATION, at);
	/* The same prefix twice on one element is a duplicate attribute. */
	for (uint32_t i = elem_scope; i < b->nscope; i++) {
		const struct xml_ns *o = &v->ns[v->scope[i]];
		if (o->prefix_len == plen && (plen == 0 || !memcmp(o->prefix, prefix, plen)))
			return fail(b, XML_ERR_NOT_WELL_FORMED, at);
	}
	if (escaped) {
		if (vlen > sizeof(v->nsbuf) - v->nsbuf_used)
			return fail(b, XML_ERR_POLICY_VIOLATION, at);
		uri = v->nsbuf + v->nsbuf_used;
		ulen = (uint32_t)xml_unescape((const char *)val, vlen, v->nsbuf + v->nsbuf_used, true);
		v->nsbuf_used = (uint16_t)(v->nsbuf_used + ulen);
	}
	/* Namespaces in XML 1.0, section 3: reserved prefixes and names, no
	 * undeclaring of prefixes. */
	int is_xml_uri = slice_is(uri, ulen, NS_XML, sizeof(NS_XML) - 1);
	if (plen) {
		if ((plen == 5 && !memcmp(prefix, "xmlns", 5)) || ulen == 0)
			return fail(b, XML_ERR_NOT_WELL_FORMED, at);
		if ((plen == 3 && !memcmp(prefix, "xml", 3)) != is_xml_uri)
			return fail(b, XML_ERR_NOT_WELL_FORMED, at);
	} else if (is_xml_uri) {
		return fail(b, XML_ERR_NOT_WELL_FORMED, at);
	}
	if (slice_is(uri, ulen, NS_XMLNS, sizeof(NS_XMLNS) - 1))
		return fail(b, XML_ERR_NOT_WELL_FORMED, at);
	if (is_xml_uri) {
		/* xmlns:xml='...XML namespace' restates the built-in binding:
		 * keep XML_NS_XML so xml:lang stays recognisable. */
		v->scope[b->nscope++] = XML_NS_XML;
		b->pushes++;
		return 0;
	}

	struct xml_ns *n = &v->ns[v->nns];
	n->uri = uri;
	n->uri_len = ulen;
	n->prefix = plen ? (const char *)prefix : NULL;
	n->prefix_len = plen;
	v->scope[b->nscope++] = v->nns++;
	b->pushes++;
	return 0;
}

/* Namespace index for a prefix (plen 0: the default namespace), or -1. */
static int resolve(const struct builder *b, const uint8_t *prefix, uint16_t plen)
{
	const struct xml_view *v = b->v;

	for (uint32_t i = b->nscope; i-- > 0;) {
		const struct xml_ns *n = &v->ns[v->scope[i]];
		if (n->prefix_len != plen)
			continue;
		if (plen == 0) {
			if (n->prefix == NULL)
				return n->uri_len ? v->scope[i] : XML_NS_NONE;
		} else if (!memcmp(n->prefix, prefix, plen)) {
			return v->scope[i];
		}
	}
	return plen ? -1 : XML_NS_NONE;
}

static inline int resolve_default(struct builder *b)
{
	if (b->dflt_pushes != b->pushes || b->dflt_at != b->nscope) {
		b->dflt = resolve(b, NULL, 0);
		b->dflt_pushes = b->pushes;
		b->dflt_at = b->nscope;
	}
	return b->dflt;
}

/* Equal bytes, for the short names of end tags. */
static inline int same_bytes(const uint8_t *x, const uint8_t *y, uint32_t n)
{
	for (; n >= 8; n -= 8, x += 8, y += 8) {
		uint64_t a, c;
		memcpy(&a, x, 8);
		memcpy(&c, y, 8);
		if (a != c)
			return 0;
	}
	for (; n; n--)
		if (*x++ != *y++)
			return 0;
	return 1;
}

static struct xml_token *new_token(struct builder *b, const uint8_t *at)
{
	struct xml_view *v = b->v;

	if (v->ntok >= v->tok_cap) {
		fail(b, XML_ERR_POLICY_VIOLATION, at);
		return NULL;
	}
	return &v->tok[v->ntok++];
}

/* v->info for attribute i of the top-level element (qualified name n, len
 * bytes, namespace ns). The last match wins, as in document order. */
static inline void note_info(struct xml_view *v, uint32_t i, const uint8_t *n, uint32_t len, uint16_t ns)
{
	if (ns == XML_NS_NONE) {
		if (len == 2) {
			if (n[0] == 't' && n[1] == 'o')
				v->info.to = i;
			else if (n[0] == 'i' && n[1] == 'd')
				v->info.id = i;
		} else if (len == 4) {
			if (!memcmp(n, "from", 4))
				v->info.from = i;
			else if (!memcmp(n, "type", 4))
				v->info.type = i;
		}
	} else if (ns == XML_NS_XML && len == 8 && !memcmp(n + 4, "lang", 4)) {
		v->info.lang = i;
	}
}

static void fill_info(struct xml_view *v)
{
	for (uint32_t i = 1; i <= v->tok[0].nattr; i++) {
		const struct xml_token *a = &v->tok[i];
		note_info(v, i, (const uint8_t *)v->base + a->off, a->len, a->ns);
	}
}

/* A 64-bit set of hashed local names: an attribute whose bit is new has
 * no duplicate before it, literal or after namespace expansion (both
 * kinds share the local name). */
static inline uint64_t local_bit(const uint8_t *ln, uint32_t ll)
{
	return (uint64_t)1 << ((ll + 3u * ln[0] + 5u * ln[ll - 1]) & 63);
}

/* The namespaces of the attributes elem+1..elem+nattr, and uniqueness,
 * for tags the single pass could not settle: a prefix other than xml, or
 * two local names with the same hash. */
static int settle_attrs(struct builder *b, uint32_t elem, uint32_t nattr)
{
	struct xml_view *v = b->v;
	uint64_t seen = 0;

	for (uint32_t i = elem + 1; i <= elem + nattr; i++) {
		struct xml_token *a = &v->tok[i];
		if (a->prefix) {
			int ns = resolve(b, b->s + a->off, a->prefix);
			if (ns < 0)
				return fail(b, XML_ERR_BAD_NAMESPACE_PREFIX, b->s + a->off);
			a->ns = (uint16_t)ns;
		} else {
			a->ns = XML_NS_NONE;
		}
		uint32_t skip = a->prefix ? a->prefix + 1u : 0u;
		uint64_t bit = local_bit(b->s + a->off + skip, a->len - skip);
		if (!(seen & bit)) {
			seen |= bit;
			continue;
		}
		for (uint32_t j = elem + 1; j < i; j++) {
			const struct xml_token *o = &v->tok[j];
			int dup = o->len == a->len && b->s[o->off] == b->s[a->off] &&
				  !memcmp(b->s + o->off, b->s + a->off, a->len);
			if (!dup && a->ns != XML_NS_NONE && o->ns != XML_NS_NONE) {
				struct xml_slice al = xml_tok_local(v, i), ol = xml_tok_local(v, j);
				const struct xml_ns *na = &v->ns[a->ns], *no = &v->ns[o->ns];
				dup = al.len == ol.len && !memcmp(al.ptr, ol.ptr, al.len) &&
				      (a->ns == o->ns ||
				       (na->uri_len == no->uri_len && !memcmp(na->uri, no->uri, na->uri_len)));
			}
			if (dup)
				return fail(b, XML_ERR_NOT_WELL_FORMED, b->s + a->off);
		}
	}
	return 0;
}

/* A start tag at p ('<'). Appends the ELEM and its ATTRs, opens the
 * element's namespace scope (closed by the caller at its end tag), and
 * returns the byte after '>' (or NULL). For the top-level element
 * (parent XML_NO_TOK) it also fills v->info.
 *
 * One pass settles nearly every tag: unprefixed and xml: attributes get
 * their namespace at once (xml is bound for good: declare_ns refuses
 * to rebind it), and the hashed local names show that there is no
 * duplicate. Only other prefixes, which must wait for the tag's own
 * declarations, or a hash collision send the tag through settle_attrs. */
static const uint8_t *parse_start_tag(struct builder *b, const uint8_t *p, uint32_t parent, int *empty)
{
	struct xml_view *v = b->v;
	const uint8_t *e = b->e;
	const uint8_t *name = p + 1;
	uint16_t prefix;
	const uint8_t *q = scan_qname(name, e, &prefix);
	const uint32_t elem = v->ntok;
	const uint32_t elem_scope = b->nscope;
	const int info = parent == XML_NO_TOK && b->xml_fixed;
	const uint8_t *const s = b->s;
	struct xml_token *t;
	uint32_t nt = elem, nall = 0;
	uint64_t seen = 0;
	int late = 0;

	if (!q) {
		fail(b, XML_ERR_NOT_WELL_FORMED, name);
		return NULL;
	}
	if (elem >= v->tok_cap) {
		fail(b, XML_ERR_POLICY_VIOLATION, p);
		return NULL;
	}
	/* Room for as many attributes as the limit allows: then no
	 * attribute needs its own capacity check. */
	const int room = v->tok_cap - elem > v->lim.max_attrs;
	t = &v->tok[nt++];
	t->type = XML_TOK_ELEM;
	t->flags = 0;
	t->ns = 0;
	t->prefix = prefix;
	t->nattr = 0;
	t->off = (uint32_t)(name - s);
	t->len = (uint32_t)(q - name);
	t->a = elem_scope;   /* until its END: the scope to restore */
	t->b = parent;

	for (;;) {
		const uint8_t *ws = q;
		q = skip_ws(q, e);
		if (q >= e)
			goto nwf;
		if (*q == '>') {
			*empty = 0;
			q++;
			break;
		}
		if (*q == '/') {
			if (q + 1 >= e || q[1] != '>')
				goto nwf;
			*empty = 1;
			q += 2;
			break;
		}
		if (q == ws)
			goto nwf;   /* attributes are separated by whitespace */

		const uint8_t *an = q;
		uint16_t aprefix;
		q = scan_qname(an, e, &aprefix);
		if (!q) {
			q = an;   /* the error is reported at the bad name */
			goto nwf;
		}
		const uint8_t *an_end = q;
		uint8_t quote;
		if (e - q >= 2 && q[0] == '=' && (q[1] == '"' || q[1] == '\'')) {
			quote = q[1];
			q += 2;
		} else {
			q = skip_ws(q, e);
			if (q >= e || *q != '=')
				goto nwf;
			q = skip_ws(q + 1, e);
			if (q >= e || (*q != '"' && *q != '\''))
				goto nwf;
			quote = *q++;
		}
		const uint8_t *val = q;
		int escaped = 0;
		const struct xml_charset *cs = quote == '"' ? &cs_dq : &cs_sq;
		for (;;) {
			q += xml_scan(cs, (const char *)q, (size_t)(e - q));
			if (q >= e)
				goto nwf;
			if (*q == quote)
				break;
			if (*q == '<')
				goto nwf;
			escaped = 1;
			if (*q == '&') {
				if (!(q = check_ref(b, q)))
					goto out;
			} else {
				q++;   /* TAB LF CR: normalised when read */
			}
		}
		const uint8_t *val_end = q++;

		if (++nall > v->lim.max_attrs) {
			fail(b, XML_ERR_POLICY_VIOLATION, an);
			goto out;
		}
		uint32_t alen = (uint32_t)(an_end - an);
		if ((aprefix ? aprefix == 5 : alen == 5) && !memcmp(an, "xmlns", 5)) {
			const uint8_t *pfx = aprefix ? an + 6 : NULL;
			uint16_t plen = aprefix ? (uint16_t)(alen - 6) : 0;
			if (declare_ns(b, an, pfx, plen, val, (uint32_t)(val_end - val), escaped, elem_scope))
				goto out;
			continue;
		}
		if (!room && nt >= v->tok_cap) {
			fail(b, XML_ERR_POLICY_VIOLATION, an);
			goto out;
		}
		uint16_t ans = XML_NS_NONE;
		const uint8_t *ln = an;
		uint32_t ll = alen;
		if (aprefix) {
			ln = an + aprefix + 1;
			ll = alen - aprefix - 1u;
			if (aprefix == 3 && an[0] == 'x' && an[1] == 'm' && an[2] == 'l' && b->xml_fixed)
				ans = XML_NS_XML;
			else
				late = 1;   /* resolved after the tag's declarations */
		}
		uint64_t bit = local_bit(ln, ll);
		late |= (seen & bit) != 0;
		seen |= bit;
		t = &v->tok[nt];
		t->type = XML_TOK_ATTR;
		t->flags = escaped ? XML_TF_ESCAPED : 0;
		t->ns = ans;
		t->prefix = aprefix;
		t->nattr = 0;
		t->off = (uint32_t)(an - s);
		t->len = alen;
		t->a = (uint32_t)(val - s);
		t->b = (uint32_t)(val_end - val);
		if (info && (!aprefix || ans))
			note_info(v, nt, an, alen, ans);
		nt++;
	}

	/* Declarations on this element are in force for its own name and its
	 * attributes, so resolve only now. */
	v->ntok = nt;
	v->tok[elem].nattr = (uint16_t)(nt - elem - 1);
	int ns = prefix ? resolve(b, name, prefix) : resolve_default(b);
	if (ns < 0) {
		fail(b, XML_ERR_BAD_NAMESPACE_PREFIX, name);
		return NULL;
	}
	v->tok[elem].ns = (uint16_t)ns;
	if (late && settle_attrs(b, elem, nt - elem - 1))
		return NULL;
	if (parent == XML_NO_TOK && !b->xml_fixed)
		fill_info(v);
	return q;

nwf:
	fail(b, XML_ERR_NOT_WELL_FORMED, q < e ? q : e);
out:
	v->ntok = nt;
	return NULL;
}

static void builder_start(struct builder *b, struct xml_view *v, const char *buf, size_t len)
{
	b->v = v;
	b->s = (const uint8_t *)buf;
	b->e = b->s + len;
	v->base = buf;
	v->len = (uint32_t)len;
	v->ntok = 0;
	v->err = XML_ERR_NONE;
	v->err_off = 0;
	v->top_end = 0;
	v->nsbuf_used = 0;
	v->info.to = v->info.from = v->info.type = v->info.id = v->info.lang = XML_NO_TOK;
	v->info.child = XML_NO_TOK;
	/* 0: no namespace; 1: the xml prefix, always in scope. */
	v->ns[0].uri = "";
	v->ns[0].uri_len = 0;
	v->ns[0].prefix = NULL;
	v->ns[0].prefix_len = 0;
	v->ns[1].uri = NS_XML;
	v->ns[1].uri_len = sizeof(NS_XML) - 1;
	v->ns[1].prefix = "xml";
	v->ns[1].prefix_len = 3;
	v->nns = 2;
	v->scope[0] = XML_NS_XML;
	b->nscope = 1;
	b->xml_fixed = 1;
	b->pushes = 0;
	b->dflt_pushes = UINT32_MAX;
	b->dflt_at = 0;
	b->dflt = XML_NS_NONE;
}

static int check_utf8(struct builder *b)
{
	switch (xml_utf8_validate((const char *)b->s, (size_t)(b->e - b->s))) {
	case XML_UTF8_OK:
		return 0;
	case XML_UTF8_BAD_ENCODING:
		return fail(b, XML_ERR_UNSUPPORTED_ENCODING, b->s);
	case XML_UTF8_BAD_CHAR:
		break;
	}
	return fail(b, XML_ERR_NOT_WELL_FORMED, b->s);
}

int xml_view_build(struct xml_view *v, const struct xml_nsctx *ctx, const char *buf, size_t len)
{
	struct builder b;
	const uint8_t *p, *e;
	uint32_t cur = XML_NO_TOK;
	uint32_t depth = 0;

	builder_start(&b, v, buf, len);
	if (ctx) {
		for (unsigned i = 0; i < ctx->n && v->nns < v->ns_cap; i++) {
			struct xml_ns *n = &v->ns[v->nns];
			n->uri = ctx->buf + ctx->d[i].uri_off;
			n->uri_len = ctx->d[i].uri_len;
			n->prefix_len = ctx->d[i].prefix_len;
			n->prefix = n->prefix_len ? ctx->buf + ctx->d[i].prefix_off : NULL;
			if (n->prefix_len == 3 && !memcmp(n->prefix, "xml", 3))
				b.xml_fixed = 0;   /* only a hand-made ctx can */
			v->scope[b.nscope++] = v->nns++;
		}
	}
	v->ns_own = v->nns;
	if (len > v->lim.max_stanza)
		return fail(&b, XML_ERR_POLICY_VIOLATION, b.s);
	if (check_utf8(&b))
		return -1;

	p = b.s;
	e = b.e;
	if (p >= e || *p != '<')
		return fail(&b, XML_ERR_NOT_WELL_FORMED, p);

	for (;;) {
		if (*p == '<') {
			if (p + 1 >= e)
				return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
			uint8_t c = p[1];
			if (c == '/') {
				uint16_t prefix;
				const uint8_t *name = p + 2;
				const uint8_t *q;
				struct xml_token *open, *end;
				if (cur == XML_NO_TOK)
					return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
				open = &v->tok[cur];
				/* The start tag's name (a QName) again, then a byte
				 * that cannot continue a name: where scan_qname
				 * would stop, without the scan. */
				q = name + open->len;
				if ((uint32_t)(e - name) <= open->len || name_tab[*q] || *q == ':' ||
				    !same_bytes(name, b.s + open->off, open->len)) {
					q = scan_qname(name, e, &prefix);
					if (!q || (uint32_t)(q - name) != open->len ||
					    !same_bytes(name, b.s + open->off, open->len))
						return fail(&b, XML_ERR_NOT_WELL_FORMED, name);
				}
				while (q < e && is_ws(*q))
					q++;
				if (q >= e || *q != '>')
					return fail(&b, XML_ERR_NOT_WELL_FORMED, q < e ? q : e);
				if (!(end = new_token(&b, p)))
					return -1;
				open = &v->tok[cur];
				end->type = XML_TOK_END;
				end->flags = 0;
				end->ns = open->ns;
				end->prefix = open->prefix;
				end->nattr = 0;
				end->off = off_of(&b, name);
				end->len = open->len;
				end->a = cur;
				end->b = 0;
				b.nscope = open->a;
				open->a = v->ntok - 1;
				cur = open->b;
				depth--;
				p = q + 1;
				if (cur == XML_NO_TOK)
					break;
			} else if (c == '!') {
				if (e - p >= 9 && !memcmp(p, "<![CDATA[", 9)) {
					const uint8_t *q = p + 9, *r;
					if (cur == XML_NO_TOK)
						return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
					for (;;) {
						r = memchr(q, ']', (size_t)(e - q));
						if (!r || e - r < 3)
							return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
						if (r[1] == ']' && r[2] == '>')
							break;
						q = r + 1;
					}
					if (r > p + 9) {
						struct xml_token *t = new_token(&b, p);
						if (!t)
							return -1;
						t->type = XML_TOK_TEXT;
						t->flags = XML_TF_CDATA;
						if (memchr(p + 9, '\r', (size_t)(r - (p + 9))))
							t->flags |= XML_TF_ESCAPED;
						t->ns = 0;
						t->prefix = 0;
						t->nattr = 0;
						t->off = off_of(&b, p + 9);
						t->len = (uint32_t)(r - (p + 9));
						t->a = t->b = 0;
					}
					p = r + 3;
				} else if (e - p >= 3 && (p[2] == '-' || p[2] == 'D')) {
					return fail(&b, XML_ERR_RESTRICTED_XML, p);
				} else {
					return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
				}
			} else if (c == '?') {
				return fail(&b, XML_ERR_RESTRICTED_XML, p);
			} else {
				int empty;
				uint32_t elem = v->ntok;
				const uint8_t *q;
				if (++depth > v->lim.max_depth)
					return fail(&b, XML_ERR_POLICY_VIOLATION, p);
				if (!(q = parse_start_tag(&b, p, cur, &empty)))
					return -1;
				if (elem == 0) {
					v->top_end = (uint32_t)(q - b.s) - (empty ? 2u : 1u);
				} else if (cur == 0 && v->info.child == XML_NO_TOK) {
					v->info.child = elem;
				}
				p = q;
				if (empty) {
					struct xml_token *end = new_token(&b, p);
					if (!end)
						return -1;
					struct xml_token *open = &v->tok[elem];
					open->flags |= XML_TF_EMPTY;
					*end = *open;
					end->type = XML_TOK_END;
					end->nattr = 0;
					end->a = elem;
					end->b = 0;
					b.nscope = open->a;
					open->a = v->ntok - 1;
					depth--;
					if (cur == XML_NO_TOK)
						break;
				} else {
					cur = elem;
				}
			}
			if (p >= e)
				return fail(&b, XML_ERR_NOT_WELL_FORMED, e);
		} else {
			/* Character data up to the next '<'. */
			const uint8_t *start = p;
			uint8_t flags = 0;
			for (;;) {
				p += xml_scan(&cs_text, (const char *)p, (size_t)(e - p));
				if (p >= e || *p == '<')
					break;
				if (*p == '&') {
					if (!(p = check_ref(&b, p)))
						return -1;
					flags = XML_TF_ESCAPED;
				} else if (*p == '\r') {
					flags = XML_TF_ESCAPED;
					p++;
				} else {
					/* '>' may stand alone, but not as the end of "]]>". */
					if (p - start >= 2 && p[-1] == ']' && p[-2] == ']')
						return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
					p++;
				}
			}
			struct xml_token *t = new_token(&b, start);
			if (!t)
				return -1;
			t->type = XML_TOK_TEXT;
			t->flags = flags;
			t->ns = 0;
			t->prefix = 0;
			t->nattr = 0;
			t->off = off_of(&b, start);
			t->len = (uint32_t)(p - start);
			t->a = t->b = 0;
			if (p >= e)
				return fail(&b, XML_ERR_NOT_WELL_FORMED, e);
		}
	}
	if (p != e)
		return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
	return 0;
}

/* <?xml version='1.0' encoding='UTF-8' standalone='yes'?>, at p. Returns
 * the byte after "?>" or NULL. */
static const uint8_t *parse_decl(struct builder *b, const uint8_t *p)
{
	static const char *const names[] = { "version", "encoding", "standalone" };
	const uint8_t *e = b->e, *q = p + 5;
	int next = 0;   /* pseudo-attributes come in this order; version is required */

	for (;;) {
		const uint8_t *ws = q;
		while (q < e && is_ws(*q))
			q++;
		if (e - q >= 2 && q[0] == '?' && q[1] == '>') {
			if (next == 0)
				break;
			return q + 2;
		}
		if (q == ws)
			break;
		const uint8_t *n = q;
		while (q < e && *q >= 'a' && *q <= 'z')
			q++;
		int which = -1;
		for (int i = next; i < 3; i++)
			if ((size_t)(q - n) == strlen(names[i]) && !memcmp(n, names[i], (size_t)(q - n)))
				which = i;
		if (which < 0 || (next == 0 && which != 0))
			break;
		while (q < e && is_ws(*q))
			q++;
		if (q >= e || *q != '=')
			break;
		q++;
		while (q < e && is_ws(*q))
			q++;
		if (q >= e || (*q != '"' && *q != '\''))
			break;
		uint8_t quote = *q++;
		const uint8_t *val = q;
		while (q < e && *q != quote)
			q++;
		if (q >= e)
			break;
		size_t vlen = (size_t)(q - val);
		q++;
		if (which == 0 && !(vlen == 3 && !memcmp(val, "1.0", 3)))
			break;
		if (which == 1 && !(vlen == 5 && (val[0] | 0x20) == 'u' && (val[1] | 0x20) == 't' &&
				    (val[2] | 0x20) == 'f' && val[3] == '-' && val[4] == '8')) {
			fail(b, XML_ERR_UNSUPPORTED_ENCODING, val);
			return NULL;
		}
		if (which == 2 && !slice_is((const char *)val, vlen, "yes", 3) &&
		    !slice_is((const char *)val, vlen, "no", 2))
			break;
		next = which + 1;
	}
	fail(b, XML_ERR_NOT_WELL_FORMED, q < e ? q : e);
	return NULL;
}

int xml_view_header(struct xml_view *v, struct xml_nsctx *ctx, const char *buf, size_t len)
{
	struct builder b;
	const uint8_t *p;
	int empty;

	builder_start(&b, v, buf, len);
	v->ns_own = v->nns;
	if (len > v->lim.max_stanza)
		return fail(&b, XML_ERR_POLICY_VIOLATION, b.s);
	if (check_utf8(&b))
		return -1;
	p = b.s;
	if (b.e - p >= 6 && !memcmp(p, "<?xml", 5) && is_ws(p[5])) {
		if (!(p = parse_decl(&b, p)))
			return -1;
		while (p < b.e && is_ws(*p))
			p++;
	}
	if (p >= b.e || *p != '<')
		return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
	if (p + 1 < b.e && (p[1] == '!' || p[1] == '?'))
		return fail(&b, XML_ERR_RESTRICTED_XML, p);
	if (!(p = parse_start_tag(&b, p, XML_NO_TOK, &empty)))
		return -1;
	if (empty)
		return fail(&b, XML_ERR_BAD_FORMAT, p);
	if (p != b.e)
		return fail(&b, XML_ERR_NOT_WELL_FORMED, p);
	v->top_end = v->len - 1;

	struct xml_slice ns = xml_tok_ns(v, 0), local = xml_tok_local(v, 0);
	if (!slice_is(ns.ptr, ns.len, NS_STREAMS, sizeof(NS_STREAMS) - 1) || !xml_slice_eq(local, "stream"))
		return fail(&b, XML_ERR_INVALID_NAMESPACE, b.s + v->tok[0].off);

	/* Keep the stream prefix and the declarations for the stream's life. */
	uint32_t used = v->tok[0].prefix;
	if (used > XML_NSCTX_BYTES || v->nns - v->ns_own > XML_NSCTX_MAX)
		return fail(&b, XML_ERR_POLICY_VIOLATION, b.s);
	memcpy(ctx->buf, v->base + v->tok[0].off, used);
	ctx->stream_prefix_len = (uint8_t)used;
	ctx->n = 0;
	for (uint16_t i = v->ns_own; i < v->nns; i++) {
		const struct xml_ns *n = &v->ns[i];
		if (n->prefix_len > 255 || used + n->prefix_len + n->uri_len > XML_NSCTX_BYTES)
			return fail(&b, XML_ERR_POLICY_VIOLATION, b.s);
		ctx->d[ctx->n].prefix_off = (uint16_t)used;
		ctx->d[ctx->n].prefix_len = (uint8_t)n->prefix_len;
		ctx->d[ctx->n].pad = 0;
		if (n->prefix_len)
			memcpy(ctx->buf + used, n->prefix, n->prefix_len);
		used += n->prefix_len;
		ctx->d[ctx->n].uri_off = (uint16_t)used;
		ctx->d[ctx->n].uri_len = (uint16_t)n->uri_len;
		memcpy(ctx->buf + used, n->uri, n->uri_len);
		used += n->uri_len;
		ctx->n++;
	}
	ctx->used = (uint16_t)used;
	return 0;
}

enum xml_error xml_check_close(const struct xml_nsctx *ctx, const char *buf, size_t len)
{
	const char *p = buf, *e = buf + len;
	size_t pl = ctx->stream_prefix_len;

	if (len < 2 || p[0] != '<' || p[1] != '/')
		return XML_ERR_NOT_WELL_FORMED;
	p += 2;
	if (pl) {
		if ((size_t)(e - p) < pl + 1 || memcmp(p, ctx->buf, pl) || p[pl] != ':')
			return XML_ERR_NOT_WELL_FORMED;
		p += pl + 1;
	}
	if (e - p < 6 || memcmp(p, "stream", 6))
		return XML_ERR_NOT_WELL_FORMED;
	p += 6;
	while (p < e && is_ws((uint8_t)*p))
		p++;
	if (p + 1 != e || *p != '>')
		return XML_ERR_NOT_WELL_FORMED;
	return XML_ERR_NONE;
}

void xml_view_init(struct xml_view *v, const struct xml_limits *lim,
		   struct xml_token *tok, uint32_t tok_cap,
		   struct xml_ns *ns, uint16_t ns_cap,
		   uint16_t *scope, uint32_t scope_cap)
{
	memset(v, 0, sizeof(*v));
	if (lim)
		v->lim = *lim;
	else
		xml_limits_default(&v->lim);
	assert(ns_cap >= 2 + XML_NSCTX_MAX && scope_cap >= 1 + XML_NSCTX_MAX);
	v->tok = tok;
	v->tok_cap = tok_cap;
	v->ns = ns;
	v->ns_cap = ns_cap;
	v->scope = scope;
	v->scope_cap = scope_cap;
}

uint32_t xml_view_storage_tokens(const struct xml_limits *lim)
{
	/* Densest input: "x<a/>" repeated, 3 tokens in 5 bytes. */
	return (uint32_t)((uint64_t)lim->max_stanza * 3 / 5) + 8;
}

/* ---- reading --------------------------------------------------------- */

static char *put_utf8(char *d, uint32_t cp)
{
	if (cp < 0x80) {
		*d++ = (char)cp;
	} else if (cp < 0x800) {
		*d++ = (char)(0xC0 | (cp >> 6));
		*d++ = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		*d++ = (char)(0xE0 | (cp >> 12));
		*d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*d++ = (char)(0x80 | (cp & 0x3F));
	} else {
		*d++ = (char)(0xF0 | (cp >> 18));
		*d++ = (char)(0x80 | ((cp >> 12) & 0x3F));
		*d++ = (char)(0x80 | ((cp >> 6) & 0x3F));
		*d++ = (char)(0x80 | (cp & 0x3F));
	}
	return d;
}

size_t xml_unescape(const char *src, size_t n, char *dst, bool attr)
{
	const char *s = src, *e = src + n;
	char *d = dst;

	while (s < e) {
		char c = *s;
		if (c == '&') {
			if (s[1] == '#') {
				uint32_t cp = 0;
				s += 2;
				if (*s == 'x') {
					for (s++; *s != ';'; s++)
						cp = cp * 16 + (uint32_t)(*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
				} else {
					for (; *s != ';'; s++)
						cp = cp * 10 + (uint32_t)(*s - '0');
				}
				s++;
				d = put_utf8(d, cp);
				continue;
			}
			switch (s[1]) {
			case 'l': *d++ = '<'; s += 4; break;
			case 'g': *d++ = '>'; s += 4; break;
			case 'q': *d++ = '"'; s += 6; break;
			default:
				if (s[2] == 'm') {
					*d++ = '&';
					s += 5;
				} else {
					*d++ = '\'';
					s += 6;
				}
			}
		} else if (c == '\r') {
			*d++ = attr ? ' ' : '\n';
			s += (s + 1 < e && s[1] == '\n') ? 2 : 1;
		} else if (attr && (c == '\t' || c == '\n')) {
			*d++ = ' ';
			s++;
		} else {
			*d++ = c;
			s++;
		}
	}
	return (size_t)(d - dst);
}

struct xml_slice xml_tok_value(const struct xml_view *v, uint32_t t, char *dst)
{
	const struct xml_token *k = &v->tok[t];
	struct xml_slice raw = xml_tok_raw(v, t);

	if (!(k->flags & XML_TF_ESCAPED))
		return raw;
	if (k->flags & XML_TF_CDATA) {
		/* CDATA is raw, but line ends are still normalised. */
		const char *s = raw.ptr, *e = raw.ptr + raw.len;
		char *d = dst;
		while (s < e) {
			if (*s == '\r') {
				*d++ = '\n';
				s += (s + 1 < e && s[1] == '\n') ? 2 : 1;
			} else {
				*d++ = *s++;
			}
		}
		raw.len = (uint32_t)(d - dst);
	} else {
		raw.len = (uint32_t)xml_unescape(raw.ptr, raw.len, dst, k->type == XML_TOK_ATTR);
	}
	raw.ptr = dst;
	return raw;
}

uint32_t xml_attr_find(const struct xml_view *v, uint32_t elem, const char *local, const char *ns)
{
	const struct xml_token *t = &v->tok[elem];

	for (uint32_t i = elem + 1; i <= elem + t->nattr; i++) {
		if (!xml_slice_eq(xml_tok_local(v, i), local))
			continue;
		if (ns ? xml_slice_eq(xml_tok_ns(v, i), ns) : v->tok[i].ns == XML_NS_NONE)
			return i;
	}
	return XML_NO_TOK;
}

static uint32_t next_elem_from(const struct xml_view *v, uint32_t t)
{
	while (t < v->ntok && v->tok[t].type == XML_TOK_TEXT)
		t++;
	return t < v->ntok && v->tok[t].type == XML_TOK_ELEM ? t : XML_NO_TOK;
}

uint32_t xml_first_child(const struct xml_view *v, uint32_t elem)
{
	return next_elem_from(v, elem + 1 + v->tok[elem].nattr);
}

uint32_t xml_next_sibling(const struct xml_view *v, uint32_t t)
{
	if (v->tok[t].b == XML_NO_TOK)
		return XML_NO_TOK;   /* the top-level element has no siblings in its view */
	return next_elem_from(v, v->tok[t].a + 1);
}

/* ---- forwarding ------------------------------------------------------ */

static char *put_attr(char *d, const char *name, size_t nlen, const struct xml_slice *val)
{
	*d++ = ' ';
	memcpy(d, name, nlen);
	d += nlen;
	*d++ = '=';
	*d++ = '\'';
	for (uint32_t i = 0; i < val->len; i++) {
		const char *rep = NULL;
		switch (val->ptr[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		case '\t': rep = "&#9;"; break;
		case '\n': rep = "&#10;"; break;
		case '\r': rep = "&#13;"; break;
		}
		if (rep) {
			size_t n = strlen(rep);
			memcpy(d, rep, n);
			d += n;
		} else {
			*d++ = val->ptr[i];
		}
	}
	*d++ = '\'';
	return d;
}

/* The bytes of attribute token t with the whitespace before it. */
static void attr_span(const struct xml_view *v, uint32_t t, uint32_t *from, uint32_t *to)
{
	const struct xml_token *a = &v->tok[t];
	uint32_t s = a->off;

	while (s > 0 && is_ws((uint8_t)v->base[s - 1]))
		s--;
	*from = s;
	*to = a->a + a->b + 1;   /* past the closing quote */
}

int xml_view_rewrite(const struct xml_view *v, const struct xml_slice *from, const struct xml_slice *to,
		     char *scratch, size_t scratch_len, struct iovec *iov)
{
	size_t need = 16 + 6 * ((from ? from->len : 0) + (to ? to->len : 0));
	uint32_t cut[2][2];
	unsigned ncut = 0;
	int n = 0;
	char *d = scratch;

	if (scratch_len < need)
		return -1;
	if (from)
		d = put_attr(d, "from", 4, from);
	if (to)
		d = put_attr(d, "to", 2, to);

	if (v->info.from != XML_NO_TOK)
		attr_span(v, v->info.from, &cut[ncut][0], &cut[ncut][1]), ncut++;
	if (v->info.to != XML_NO_TOK)
		attr_span(v, v->info.to, &cut[ncut][0], &cut[ncut][1]), ncut++;
	if (ncut == 2 && cut[0][0] > cut[1][0]) {
		uint32_t t0 = cut[0][0], t1 = cut[0][1];
		cut[0][0] = cut[1][0];
		cut[0][1] = cut[1][1];
		cut[1][0] = t0;
		cut[1][1] = t1;
	}

	uint32_t name_end = v->tok[0].off + v->tok[0].len;
	iov[n].iov_base = (void *)v->base;
	iov[n++].iov_len = name_end;
	if (d > scratch) {
		iov[n].iov_base = scratch;
		iov[n++].iov_len = (size_t)(d - scratch);
	}
	uint32_t at = name_end;
	for (unsigned i = 0; i < ncut; i++) {
		if (cut[i][0] > at) {
			iov[n].iov_base = (void *)(v->base + at);
			iov[n++].iov_len = cut[i][0] - at;
		}
		at = cut[i][1];
	}
	if (v->len > at) {
		iov[n].iov_base = (void *)(v->base + at);
		iov[n++].iov_len = v->len - at;
	}
	return n;
}
