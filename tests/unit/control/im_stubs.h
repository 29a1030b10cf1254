/* Weak stand-ins for every IM module entry point (im_stubs.c), for the
 * tests that link control/im.c and the one module they test from source
 * (test_privacy, test_services): the real module's definitions win over
 * these. The roster is scripted. Not for tests linking the real modules
 * (dep_im): a weak definition keeps the linker from taking the real one
 * out of the library. */
#ifndef STANZA_TESTS_IM_STUBS_H
#define STANZA_TESTS_IM_STUBS_H

/* Roster: owner's contact with subscription bits and one group ("" none). */
void fake_roster_add(const char *owner, const char *contact, unsigned sub, const char *group);

/* Calls of offline_disco_info / offline_disco_items seen. */
extern unsigned fake_offline_info_calls, fake_offline_items_calls;

/* An empty roster, no calls seen. */
void fake_stubs_reset(void);

#endif
