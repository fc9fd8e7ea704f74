/* revocations.c - the set of revoked sessions every token-verifying process keeps in memory.
 *
 * Why: access tokens are JWTs that the gateway and every service verify locally (token.c), so a
 * request costs one HMAC and no round trip.  The price is that a signature alone cannot say
 * "this person logged out".  Our own clients refresh and get 15-minute tokens, but API v1's web
 * client never refreshes, so its tokens must live 24 hours, and a logout (or a stolen refresh
 * token presented twice, which revokes the whole token family) has to cut such a session off
 * long before its tokens expire.  Each access token therefore names its session ("sid", the
 * token family id), and a token whose session is in this set is refused.
 *
 * How the set stays fresh: the auth service owns the truth (auth.token_families, revoked_at and
 * revoked_xid).  A poller thread calls AuthService.ListRevokedSessions every interval (1 s by
 * default, auth.revocation_poll_ms) with the cursor of its previous answer and adds what comes
 * back.  The cursor is a PostgreSQL transaction id (the xmin of the answering snapshot): every
 * transaction below it has ended, so a revocation that commits late is still picked up by the
 * next poll, and a revocation is seen everywhere within about one interval plus one round trip.
 * The first poll starts from an empty cursor and brings every revocation whose tokens can
 * still be valid, so a process that starts (or restarts) knows its predecessors' revocations.
 * It runs before gn_revocations_start_polling returns, i.e. before the process serves.
 *
 * When the auth service cannot be reached, the process keeps the set it has and retries every
 * interval, logging once when polls start failing and once when they succeed again.  Sessions
 * revoked in the meantime stay usable at that process until it reaches the auth service again
 * (a logout needs the auth service too, so this is the case of a process cut off from auth
 * while others are not).  Nothing is ever dropped for failing to poll; entries are only dropped
 * once every access token of their session has expired (tokens_expire_at_us, which the auth
 * service records as the latest expiry it issued in the family), so memory is bounded by the
 * sessions revoked within one legacy token lifetime.
 *
 * The hot path is gn_revocations_contains: a read lock and one hash lookup, taken by every
 * authenticated request; writers (the poller, once a second) take the write lock briefly. */
#include "revocations.h"

#include <string.h>
#include <gio/gio.h>

#include "auth.pb-c.h"
#include "log.h"
#include "rpc.h"

/* Upper bound on the cursor text: a xid8 is at most 20 decimal digits. */
#define CURSOR_MAX 32

struct gn_revocations {
  GRWLock lock;
  GHashTable *sessions; /* session id (owned) -> int64_t* tokens_expire_at_us (owned) */

  /* The poller's own state; poll_lock serialises rounds (the thread and direct callers). */
  GMutex poll_lock;
  char cursor[CURSOR_MAX];
  gboolean failing;

  GThread *thread;
  GMutex thread_lock;
  GCond wake;
  gboolean stopping;
  char *auth_address;
  int interval_ms;
};

gn_revocations *
gn_revocations_new (void)
{
  gn_revocations *set = g_new0 (gn_revocations, 1);
  g_rw_lock_init (&set->lock);
  g_mutex_init (&set->poll_lock);
  g_mutex_init (&set->thread_lock);
  g_cond_init (&set->wake);
  set->sessions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return set;
}

void
gn_revocations_stop_polling (gn_revocations *set)
{
  if (set->thread == NULL)
    return;
  g_mutex_lock (&set->thread_lock);
  set->stopping = TRUE;
  g_cond_signal (&set->wake);
  g_mutex_unlock (&set->thread_lock);
  g_thread_join (set->thread);
  set->thread = NULL;
}

void
gn_revocations_free (gn_revocations *set)
{
  if (set == NULL)
    return;
  gn_revocations_stop_polling (set);
  g_hash_table_destroy (set->sessions);
  g_rw_lock_clear (&set->lock);
  g_mutex_clear (&set->poll_lock);
  g_mutex_clear (&set->thread_lock);
  g_cond_clear (&set->wake);
  g_free (set->auth_address);
  g_free (set);
}

/* Called with the write lock held. */
static void
add_locked (gn_revocations *set, const char *session_id, int64_t tokens_expire_at_us)
{
  int64_t *until = g_hash_table_lookup (set->sessions, session_id);
  if (until != NULL) {
    if (*until < tokens_expire_at_us)
      *until = tokens_expire_at_us;
    return;
  }
  until = g_new (int64_t, 1);
  *until = tokens_expire_at_us;
  g_hash_table_insert (set->sessions, g_strdup (session_id), until);
}

void
gn_revocations_add (gn_revocations *set, const char *session_id, int64_t tokens_expire_at_us)
{
  g_rw_lock_writer_lock (&set->lock);
  add_locked (set, session_id, tokens_expire_at_us);
  g_rw_lock_writer_unlock (&set->lock);
}

bool
gn_revocations_contains (gn_revocations *set, const char *session_id)
{
  g_rw_lock_reader_lock (&set->lock);
  bool found = g_hash_table_contains (set->sessions, session_id);
  g_rw_lock_reader_unlock (&set->lock);
  return found;
}

static gboolean
expired (gpointer key, gpointer value, gpointer now_us)
{
  return *(int64_t *)value <= *(int64_t *)now_us;
}

size_t
gn_revocations_prune (gn_revocations *set, int64_t now_us)
{
  g_rw_lock_writer_lock (&set->lock);
  size_t dropped = g_hash_table_foreach_remove (set->sessions, expired, &now_us);
  g_rw_lock_writer_unlock (&set->lock);
  return dropped;
}

size_t
gn_revocations_count (gn_revocations *set)
{
  g_rw_lock_reader_lock (&set->lock);
  size_t count = g_hash_table_size (set->sessions);
  g_rw_lock_reader_unlock (&set->lock);
  return count;
}

gboolean
gn_revocations_poll (gn_revocations *set, const char *auth_address, int timeout_ms, GError **error)
{
  gn_arena *arena = gn_arena_new ();
  gboolean ok = FALSE;
  g_mutex_lock (&set->poll_lock);

  Generia__Auth__V1__ListRevokedSessionsRequest req
      = GENERIA__AUTH__V1__LIST_REVOKED_SESSIONS_REQUEST__INIT;
  req.cursor = set->cursor;
  g_autofree char *request_id = g_uuid_string_random ();
  gn_rpc_call_options options = { .request_id = request_id, .timeout_ms = timeout_ms };
  gn_rpc_status status;
  ProtobufCMessage *response = NULL;
  if (gn_rpc_unary (gn_rpc_client_get (auth_address), &generia__auth__v1__auth_service__descriptor,
                    "ListRevokedSessions", &req.base, &response, arena, &options, &status)
      != GRPC_STATUS_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", gn_rpc_status_name (status.code),
                 status.message);
    goto done;
  }
  const Generia__Auth__V1__ListRevokedSessionsResponse *answer = (const void *)response;
  if (strlen (answer->next_cursor) >= sizeof set->cursor) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                 "the auth service answered an overlong cursor");
    goto done;
  }
  int64_t now_us = g_get_real_time ();
  g_rw_lock_writer_lock (&set->lock);
  for (size_t i = 0; i < answer->n_sessions; i++)
    if (answer->sessions[i]->tokens_expire_at_us > now_us)
      add_locked (set, answer->sessions[i]->session_id, answer->sessions[i]->tokens_expire_at_us);
  g_rw_lock_writer_unlock (&set->lock);
  g_strlcpy (set->cursor, answer->next_cursor, sizeof set->cursor);
  ok = TRUE;

done:
  g_mutex_unlock (&set->poll_lock);
  gn_arena_free (arena);
  /* Dropping entries whose tokens expired is right whether or not the auth service answered. */
  gn_revocations_prune (set, g_get_real_time ());
  return ok;
}

/* One round of the poller, logging only the changes between failing and working. */
static void
poll_round (gn_revocations *set)
{
  g_autoptr (GError) error = NULL;
  int timeout_ms = MAX (set->interval_ms, 2000);
  if (gn_revocations_poll (set, set->auth_address, timeout_ms, &error)) {
    if (set->failing)
      gn_info ("revoked sessions: the auth service answers again (%zu known)",
               gn_revocations_count (set));
    set->failing = FALSE;
  } else if (!set->failing) {
    gn_warn ("revoked sessions: cannot reach the auth service at %s (%s); keeping the %zu known"
             " and retrying every %d ms",
             set->auth_address, error->message, gn_revocations_count (set), set->interval_ms);
    set->failing = TRUE;
  }
}

static gpointer
poller_main (gpointer data)
{
  gn_revocations *set = data;
  gn_log_set_service ("revocations");
  g_mutex_lock (&set->thread_lock);
  while (!set->stopping) {
    gint64 until = g_get_monotonic_time () + (gint64)set->interval_ms * 1000;
    while (!set->stopping && g_cond_wait_until (&set->wake, &set->thread_lock, until))
      ;
    if (set->stopping)
      break;
    g_mutex_unlock (&set->thread_lock);
    poll_round (set);
    g_mutex_lock (&set->thread_lock);
  }
  g_mutex_unlock (&set->thread_lock);
  return NULL;
}

void
gn_revocations_start_polling (gn_revocations *set, const char *auth_address, int interval_ms)
{
  g_return_if_fail (set->thread == NULL);
  set->auth_address = g_strdup (auth_address);
  set->interval_ms = interval_ms;
  poll_round (set);
  set->thread = g_thread_new ("revocations", poller_main, set);
}

bool
gn_token_verifier_check (void *data, const char *token, char user_id[64])
{
  const gn_token_verifier *verifier = data;
  gn_token_claims claims;
  if (!gn_token_verify (verifier->key, token, g_get_real_time (), &claims))
    return false;
  /* Tokens without a session are a service's own short-lived ones (token.h). */
  if (claims.session_id[0] != '\0' && verifier->revocations != NULL
      && gn_revocations_contains (verifier->revocations, claims.session_id))
    return false;
  memcpy (user_id, claims.user_id, sizeof claims.user_id);
  return true;
}
