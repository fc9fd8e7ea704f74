/* revocations.h - the revoked sessions a process knows of, kept fresh by polling the auth
 * service, and the token check that uses them (see revocations.c for how and why). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#include "token.h"

typedef struct gn_revocations gn_revocations;

gn_revocations *gn_revocations_new (void);
/* Stops the poller first if one runs. */
void gn_revocations_free (gn_revocations *set);

/* Records that session_id is revoked; the entry stays until tokens_expire_at_us (the latest
 * expiry of the session's access tokens), or later if an earlier entry said so. */
void gn_revocations_add (gn_revocations *set, const char *session_id, int64_t tokens_expire_at_us);
bool gn_revocations_contains (gn_revocations *set, const char *session_id);
/* Forgets the sessions whose tokens have all expired at now_us; returns how many. */
size_t gn_revocations_prune (gn_revocations *set, int64_t now_us);
size_t gn_revocations_count (gn_revocations *set);

/* One round: asks the auth service at auth_address for the sessions revoked since the set's
 * cursor, adds them, advances the cursor and prunes.  FALSE (set unchanged) if the call fails. */
gboolean gn_revocations_poll (gn_revocations *set, const char *auth_address, int timeout_ms,
                              GError **error);
/* Polls every interval_ms on a thread of its own until gn_revocations_free.  The first round
 * runs before this returns, so a process starts with the revocations of its predecessors; if
 * the auth service cannot be reached, it starts with what it has and keeps trying. */
void gn_revocations_start_polling (gn_revocations *set, const char *auth_address, int interval_ms);
/* Joins the poller; the set keeps what it knows and still answers. */
void gn_revocations_stop_polling (gn_revocations *set);

/* The bearer-token check of the gateway and the rpc layer (gn_http_authenticator,
 * gn_rpc_authenticator): signature, algorithm, type and expiry (token.c), then the session
 * must not be revoked.  data: a gn_token_verifier. */
typedef struct {
  const gn_token_key *key;
  gn_revocations *revocations;
} gn_token_verifier;

bool gn_token_verifier_check (void *data, const char *token, char user_id[64]);
