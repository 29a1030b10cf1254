#include <stdbool.h>
#include <string.h>
#include "util/b64.h"

static const char b64_alpha[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	size_t need = b64_enc_len(len);
	if (cap < need + 1)
		return 0;
	if (len == 0) {
		memcpy(out, "=", 2);
		return 1;
	}
	char *o = out;
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*o++ = b64_alpha[v >> 18];
		*o++ = b64_alpha[(v >> 12) & 63];
		*o++ = b64_alpha[(v >> 6) & 63];
		*o++ = b64_alpha[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		*o++ = b64_alpha[v >> 18];
		*o++ = b64_alpha[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64_alpha[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return need;
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

int b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	if (len == 0 || (len == 1 && in[0] == '='))
		return 0;
	if (len % 4)
		return -1;
	size_t pad = in[len - 1] == '=' ? (in[len - 2] == '=' ? 2 : 1) : 0;
	size_t n = len / 4 * 3 - pad;
	if (n > cap)
		return -2;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		for (size_t k = 0; k < 4; k++) {
			if (last && k >= 4 - pad) {
				v[k] = 0;
				continue;
			}
			v[k] = b64_val((unsigned char)in[i + k]);
			if (v[k] < 0)
				return -1;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		/* Canonical form only: bits past the data must be zero, so that one
		 * payload has one encoding. */
		if (last && pad == 2 && (w & 0xffff))
			return -1;
		if (last && pad == 1 && (w & 0xff))
			return -1;
		out[o++] = (uint8_t)(w >> 16);
		if (!(last && pad == 2))
			out[o++] = (uint8_t)(w >> 8);
		if (!(last && pad >= 1))
			out[o++] = (uint8_t)w;
	}
	*out_len = o;
	return 0;
}
