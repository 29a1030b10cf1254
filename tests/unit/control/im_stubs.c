/* See im_stubs.h. Every module entry point is defined weak here; the
 * module under test, compiled into the same executable, overrides its own. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "im_stubs.h"
#include "control/im.h"

#define WEAK __attribute__((weak))

unsigned fake_offline_info_calls, fake_offline_items_calls;

/* ---- scripted roster ------------------------------------------------------ */

static struct {
	char owner[128], contact[128], group[64];
	unsigned sub;
} roster[64];
static size_t nroster;

void fake_roster_add(const char *owner, const char *contact, unsigned sub, const char *group)
{
	if (nroster == 64)
		abort();
	strcpy(roster[nroster].owner, owner);
	strcpy(roster[nroster].contact, contact);
	strcpy(roster[nroster].group, group);
	roster[nroster++].sub = sub;
}

void fake_stubs_reset(void)
{
	nroster = 0;
	fake_offline_info_calls = fake_offline_items_calls = 0;
}

static bool eqn(const char *s, const char *p, size_t n)
{
	return strlen(s) == n && !memcmp(s, p, n);
}

WEAK unsigned roster_sub_of(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *peer, size_t peer_len)
{
	for (size_t i = 0; i < nroster; i++)
		if (eqn(roster[i].owner, bare, bare_len) && eqn(roster[i].contact, peer, peer_len))
			return roster[i].sub;
	return 0;
}

WEAK void roster_group_members(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *group, size_t glen,
			       void (*fn)(void *arg, const char *jid, size_t len), void *arg)
{
	for (size_t i = 0; i < nroster; i++)
		if (eqn(roster[i].owner, bare, bare_len) && eqn(roster[i].group, group, glen))
			fn(arg, roster[i].contact, strlen(roster[i].contact));
}

/* ---- the other modules, absent --------------------------------------------- */

WEAK int roster_init(struct im_ctx *ctx) { return 0; }
WEAK void roster_free(struct im_ctx *ctx) {}
WEAK void roster_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void roster_presence(struct im_call *c) {}
WEAK int roster_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len) { return 0; }
WEAK void roster_initial_presence(struct im_call *c) {}
WEAK int roster_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }

WEAK int offline_init(struct im_ctx *ctx) { return 0; }
WEAK void offline_free(struct im_ctx *ctx) {}
WEAK void offline_message(struct im_call *c) {}
WEAK void offline_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void offline_initial_presence(struct im_call *c) {}
WEAK void offline_unacked(struct im_call *c) {}
WEAK void last_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void last_session_end(struct im_call *c) {}
WEAK bool last_get(struct im_ctx *ctx, const char *bare, size_t len, time_t *when, char *status, size_t cap,
		   size_t *status_len) { return false; }
WEAK int offline_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }
WEAK void offline_session_moved(struct im_call *c, uint64_t old) {}
WEAK void offline_flush(struct im_ctx *ctx, const struct im_out *out) {}
WEAK void offline_disco_info(struct im_call *c, uint32_t query)
{
	fake_offline_info_calls++;
	im_result(c, NULL, 0);
}
WEAK void offline_disco_items(struct im_call *c, uint32_t query)
{
	fake_offline_items_calls++;
	im_result(c, NULL, 0);
}

WEAK int privacy_init(struct im_ctx *ctx) { return 0; }
WEAK void privacy_free(struct im_ctx *ctx) {}
WEAK void blocking_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void privacy_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK int privacy_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len) { return 0; }
WEAK void privacy_roster_changed(struct im_ctx *ctx, const struct im_out *out, const char *bare, size_t len) {}
WEAK int privacy_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }
WEAK void privacy_session_end(struct im_call *c) {}
WEAK void privacy_session_moved(struct im_call *c, uint64_t old) {}
WEAK unsigned privacy_check_in(struct im_ctx *ctx, const char *bare, size_t bare_len, unsigned kind, const char *peer,
			       size_t peer_len) { return 0; }

WEAK int services_init(struct im_ctx *ctx) { return 0; }
WEAK void services_free(struct im_ctx *ctx) {}
WEAK void disco_info_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void disco_items_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void version_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void time_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void vcard_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void private_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void carbons_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void services_caps_ver(char *out, size_t cap) { if (cap) out[0] = 0; }
WEAK int services_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }

WEAK int register_init(struct im_ctx *ctx) { return 0; }
WEAK void register_free(struct im_ctx *ctx) {}
WEAK void register_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void register_preauth_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
