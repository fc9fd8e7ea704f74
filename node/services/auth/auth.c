/* auth.c - the auth service: accounts, passwords, access and refresh tokens.
 *
 * Data (schema "auth", see migrations/): users; token_families, one per login; refresh_tokens,
 * stored as SHA-256 hashes only.
 *
 * Passwords are hashed with argon2id (libsodium crypto_pwhash_str, the library's interactive
 * limits: 2 passes over 64 MiB), outside any transaction, so a slow hash never holds a row
 * lock.  Each hash (and each verification) takes 64 MiB while it runs, so at most
 * auth.max_concurrent_hashes of them run at once (a counting semaphore): a call waits for a
 * slot at most until its deadline, and at most HASH_WAIT_MAX_MS, then fails with
 * RESOURCE_EXHAUSTED "busy" (503 + Retry-After at the gateway).  Memory for hashing thus stays
 * below max_concurrent_hashes x 64 MiB however many sign-ins arrive together.
 *
 * Sessions: a login (Register or Login) creates a token family and its first refresh token,
 * plus a JWT access token (token.c) that names the family as its session ("sid").  Clients
 * that say they refresh (client_refreshes) get short-lived access tokens; the others (API v1's
 * web client, which never refreshes) get long-lived ones, and the family remembers which.
 * RefreshToken marks the presented token used and issues the next one in the same family,
 * under row locks, so two concurrent refreshes with one token cannot both succeed.  Presenting
 * a token that was already used means it was copied: the whole family is revoked and the
 * caller must log in again (OAuth 2.0 Security BCP, refresh token rotation with reuse
 * detection).  Logout revokes the family.  A revocation records its transaction id, and
 * ListRevokedSessions hands the revoked families to every process that verifies access tokens
 * (lib/revocations.c), which then refuse the family's access tokens within about a second.
 *
 * Authorisation: GetUserInfo returns private fields (e-mail) only to the user themself; the
 * rpc layer has already verified the caller's bearer token (gn_rpc_call_user_id). */
#include "service.h"

#include <string.h>
#include <gio/gio.h>
#include <sodium.h>

#include "auth.pb-c.h"
#include "log.h"
#include "pg.h"

#define MAX_PASSWORD_BYTES 1024
#define MAX_CLIENT_NAME 100
#define HASH_WAIT_MAX_MS 10000
#define HASH_ANSWER_MARGIN_MS 50

typedef struct {
  char *database_url;
  const gn_token_key *key;
  gn_revocations *revocations;
  int access_ttl_s;
  int legacy_access_ttl_s;
  int refresh_ttl_s;
  /* The password hash semaphore: free slots, and the wait for one. */
  GMutex hash_lock;
  GCond hash_freed;
  int hash_slots;
} auth_state;

static auth_state *
state_of (gn_rpc_call *call)
{
  return gn_rpc_call_service_data (call);
}

static PGconn *
conn_or_fail (gn_rpc_call *call, grpc_status_code *code)
{
  return gn_service_db (call, state_of (call)->database_url, code);
}

/* --- the password hash semaphore ---------------------------------------------------- */

/* Takes a hashing slot, waiting until the call's deadline at most; RESOURCE_EXHAUSTED "busy"
 * if none came free in time. */
static grpc_status_code
hash_slot_take (gn_rpc_call *call)
{
  auth_state *state = state_of (call);
  /* What is left of the deadline, less a fifth of it (at least HASH_ANSWER_MARGIN_MS) for the
   * "busy" answer to reach the caller before the deadline turns it into a bare
   * DEADLINE_EXCEEDED: on a machine busy hashing, a woken thread may wait a while for a core. */
  int64_t remaining = gn_rpc_call_remaining_ms (call);
  int64_t wait_ms
      = CLAMP (remaining - MAX (remaining / 5, HASH_ANSWER_MARGIN_MS), 0, HASH_WAIT_MAX_MS);
  gint64 until = g_get_monotonic_time () + wait_ms * G_TIME_SPAN_MILLISECOND;
  gboolean taken = TRUE;

  g_mutex_lock (&state->hash_lock);
  while (state->hash_slots == 0 && taken)
    taken = g_cond_wait_until (&state->hash_freed, &state->hash_lock, until);
  taken = state->hash_slots > 0;
  if (taken)
    state->hash_slots--;
  g_mutex_unlock (&state->hash_lock);
  if (!taken)
    return gn_rpc_call_fail (call, GRPC_STATUS_RESOURCE_EXHAUSTED, "busy",
                             "too many sign-ins at once; try again in a moment");
  return GRPC_STATUS_OK;
}

static void
hash_slot_give (gn_rpc_call *call)
{
  auth_state *state = state_of (call);

  g_mutex_lock (&state->hash_lock);
  state->hash_slots++;
  g_cond_signal (&state->hash_freed);
  g_mutex_unlock (&state->hash_lock);
}

/* --- input checks --------------------------------------------------------------------- */

/* Lower-cases into the arena; NULL if not 3-30 of [a-z0-9_.]. */
static char *
normalize_username (gn_arena *arena, const char *input)
{
  size_t len = strlen (input);
  if (len < 3 || len > 30)
    return NULL;
  char *out = gn_arena_strndup (arena, input, len);
  for (size_t i = 0; i < len; i++) {
    char c = g_ascii_tolower (out[i]);
    if (!(g_ascii_isdigit (c) || (c >= 'a' && c <= 'z') || c == '_' || c == '.'))
      return NULL;
    out[i] = c;
  }
  return out;
}

/* A deliberately plain check (RFC 5321 sizes, one @, a dotted domain of LDH labels): a
 * confirmation mail is the only real test of an address. */
static gboolean
email_is_valid (const char *email)
{
  size_t len = strlen (email);
  const char *at = strchr (email, '@');
  if (len < 3 || len > 254 || at == NULL || strchr (at + 1, '@') != NULL)
    return FALSE;
  size_t local_len = (size_t)(at - email);
  if (local_len == 0 || local_len > 64)
    return FALSE;
  for (const char *p = email; p < at; p++)
    if ((unsigned char)*p <= ' ' || *p == '"' || *p == '(' || *p == ')' || *p == ',' || *p == ':'
        || *p == ';' || *p == '<' || *p == '>' || *p == '[' || *p == ']' || *p == '\\'
        || (unsigned char)*p >= 0x7f)
      return FALSE;
  const char *domain = at + 1;
  if (strchr (domain, '.') == NULL)
    return FALSE;
  size_t label = 0;
  for (const char *p = domain;; p++) {
    if (*p == '.' || *p == '\0') {
      if (label == 0 || label > 63 || p[-1] == '-')
        return FALSE;
      if (*p == '\0')
        break;
      label = 0;
      continue;
    }
    if (!(g_ascii_isalnum (*p) || *p == '-') || (label == 0 && *p == '-'))
      return FALSE;
    label++;
  }
  return TRUE;
}

static grpc_status_code
check_password (gn_rpc_call *call, const char *password)
{
  if (strlen (password) > MAX_PASSWORD_BYTES)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "password_too_long",
                             "password must be at most %d bytes", MAX_PASSWORD_BYTES);
  if (!g_utf8_validate (password, -1, NULL))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_password",
                             "password must be valid UTF-8");
  if (g_utf8_strlen (password, -1) < 8)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "weak_password",
                             "password must be at least 8 characters");
  return GRPC_STATUS_OK;
}

static gboolean
is_uuid (const char *s)
{
  return s != NULL && g_uuid_string_is_valid (s);
}

static const char *
client_name (gn_rpc_call *call, const char *name)
{
  if (name == NULL || !g_utf8_validate (name, -1, NULL))
    return "";
  if (g_utf8_strlen (name, -1) <= MAX_CLIENT_NAME)
    return name;
  const char *end = g_utf8_offset_to_pointer (name, MAX_CLIENT_NAME);
  return gn_arena_strndup (gn_rpc_call_arena (call), name, (size_t)(end - name));
}

/* --- rows to messages ------------------------------------------------------------------ */

#define USER_COLUMNS                                                                               \
  "id, username, email, (extract(epoch FROM created_at) * 1000000)::int8, display_name, bio,"      \
  " coalesce(avatar_media_id::text, '')"

static Generia__Auth__V1__User *
user_from_row (gn_arena *arena, PGresult *res, int row)
{
  Generia__Auth__V1__User *user = gn_arena_alloc (arena, sizeof *user);
  generia__auth__v1__user__init (user);
  user->id = gn_arena_strdup (arena, PQgetvalue (res, row, 0));
  user->username = gn_arena_strdup (arena, PQgetvalue (res, row, 1));
  user->email = gn_arena_strdup (arena, PQgetvalue (res, row, 2));
  user->created_at_us = g_ascii_strtoll (PQgetvalue (res, row, 3), NULL, 10);
  user->display_name = gn_arena_strdup (arena, PQgetvalue (res, row, 4));
  user->bio = gn_arena_strdup (arena, PQgetvalue (res, row, 5));
  user->avatar_media_id = gn_arena_strdup (arena, PQgetvalue (res, row, 6));
  return user;
}

static Generia__Auth__V1__UserSummary *
summary_from_row (gn_arena *arena, PGresult *res, int row)
{
  Generia__Auth__V1__UserSummary *user = gn_arena_alloc (arena, sizeof *user);
  generia__auth__v1__user_summary__init (user);
  user->id = gn_arena_strdup (arena, PQgetvalue (res, row, 0));
  user->username = gn_arena_strdup (arena, PQgetvalue (res, row, 1));
  user->display_name = gn_arena_strdup (arena, PQgetvalue (res, row, 2));
  user->avatar_media_id = gn_arena_strdup (arena, PQgetvalue (res, row, 3));
  return user;
}

/* --- sessions -------------------------------------------------------------------------- */

/* Signs an access token of the session `family_id` (or of a new family for user_id when
 * family_id is NULL) and inserts the next refresh token, inside the caller's transaction.  The
 * family records the latest access-token expiry, which tells revocation sets when they may
 * forget it.  client_refreshes picks the access token's lifetime.  Fills `session`. */
static gboolean
issue_session (gn_rpc_call *call, PGconn *conn, const char *user_id, const char *family_id,
               const char *name, gboolean client_refreshes, Generia__Auth__V1__Session *session,
               GError **error)
{
  auth_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  char token[GN_REFRESH_TOKEN_CHARS + 1];
  char hash[65];
  char ttl[16];
  char access_expires_s[24];
  gboolean new_family = family_id == NULL;
  if (new_family) {
    g_autofree char *id = g_uuid_string_random ();
    family_id = gn_arena_strdup (arena, id);
  }

  int access_ttl_s = client_refreshes ? state->access_ttl_s : state->legacy_access_ttl_s;
  char *access = gn_token_sign_session (state->key, user_id, family_id, access_ttl_s,
                                        g_get_real_time (), &session->access_expires_at_us);
  if (access == NULL) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "signing the access token failed");
    return FALSE;
  }
  session->access_token = gn_arena_strdup (arena, access);
  g_free (access);

  gn_refresh_token_new (token);
  gn_refresh_token_hash (token, hash);
  g_snprintf (ttl, sizeof ttl, "%d", state->refresh_ttl_s);
  g_snprintf (access_expires_s, sizeof access_expires_s, "%" G_GINT64_FORMAT,
              session->access_expires_at_us / G_USEC_PER_SEC);

  PGresult *res;
  if (new_family) {
    const char *params[] = { family_id,        user_id, name, client_refreshes ? "true" : "false",
                             access_expires_s, hash,    ttl };
    res = gn_pg_exec (conn, error,
                      "WITH family AS ("
                      "  INSERT INTO auth.token_families"
                      "    (id, user_id, client_name, client_refreshes, access_expires_at)"
                      "  VALUES ($1, $2, $3, $4, to_timestamp($5::float8)) RETURNING id)"
                      " INSERT INTO auth.refresh_tokens (token_hash, family_id, expires_at)"
                      " SELECT $6, family.id, now() + make_interval(secs => $7::float8)"
                      " FROM family"
                      " RETURNING (extract(epoch FROM expires_at) * 1000000)::int8",
                      7, params);
  } else {
    const char *params[] = { family_id, access_expires_s, hash, ttl };
    res = gn_pg_exec (conn, error,
                      "WITH family AS ("
                      "  UPDATE auth.token_families"
                      "  SET access_expires_at = greatest(access_expires_at,"
                      "                                   to_timestamp($2::float8))"
                      "  WHERE id = $1 RETURNING id)"
                      " INSERT INTO auth.refresh_tokens (token_hash, family_id, expires_at)"
                      " SELECT $3, family.id, now() + make_interval(secs => $4::float8)"
                      " FROM family"
                      " RETURNING (extract(epoch FROM expires_at) * 1000000)::int8",
                      4, params);
  }
  sodium_memzero (hash, sizeof hash);
  if (res == NULL || PQntuples (res) != 1) {
    if (res != NULL)
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "token family %s is gone", family_id);
    PQclear (res);
    sodium_memzero (token, sizeof token);
    return FALSE;
  }
  session->refresh_expires_at_us = g_ascii_strtoll (PQgetvalue (res, 0, 0), NULL, 10);
  PQclear (res);
  session->refresh_token = gn_arena_strdup (arena, token);
  sodium_memzero (token, sizeof token);
  return TRUE;
}

static Generia__Auth__V1__Session *
session_new (gn_arena *arena)
{
  Generia__Auth__V1__Session *session = gn_arena_alloc (arena, sizeof *session);
  generia__auth__v1__session__init (session);
  return session;
}

/* --- handlers -------------------------------------------------------------------------- */

static grpc_status_code
handle_register (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Auth__V1__RegisterRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  char *username = normalize_username (arena, req->username);
  if (username == NULL)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_username",
                             "username must be 3 to 30 characters of a-z, 0-9, _ and .");
  char *email = gn_arena_strdup (arena, req->email);
  g_strstrip (email);
  if (!email_is_valid (email))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_email",
                             "that is not a valid e-mail address");
  if ((code = check_password (call, req->password)) != GRPC_STATUS_OK)
    return code;

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  /* Cheap early answer for the common case; the unique indexes decide races below. */
  const char *taken_params[] = { username, email };
  PGresult *taken = gn_pg_exec (conn, &error,
                                "SELECT username = $1 FROM auth.users"
                                " WHERE username = $1 OR lower(email) = lower($2)",
                                2, taken_params);
  if (taken == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (taken) > 0) {
    gboolean name_taken = FALSE;
    for (int i = 0; i < PQntuples (taken); i++)
      if (PQgetvalue (taken, i, 0)[0] == 't')
        name_taken = TRUE;
    PQclear (taken);
    return name_taken ? gn_rpc_call_fail (call, GRPC_STATUS_ALREADY_EXISTS, "username_taken",
                                          "that username is taken")
                      : gn_rpc_call_fail (call, GRPC_STATUS_ALREADY_EXISTS, "email_taken",
                                          "an account with that e-mail address exists");
  }
  PQclear (taken);

  char hash[crypto_pwhash_STRBYTES];
  if ((code = hash_slot_take (call)) != GRPC_STATUS_OK)
    return code;
  int hashed
      = crypto_pwhash_str (hash, req->password, strlen (req->password),
                           crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE);
  hash_slot_give (call);
  if (hashed != 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_RESOURCE_EXHAUSTED, "busy",
                             "the server is out of memory for password hashing; try again");

  Generia__Auth__V1__Session *session = session_new (arena);
  const char *params[] = { username, email, hash };
  PGresult *res = NULL;
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  res = gn_pg_exec (conn, &error,
                    "INSERT INTO auth.users (username, email, password_hash)"
                    " VALUES ($1, $2, $3) RETURNING " USER_COLUMNS,
                    3, params);
  if (res == NULL)
    goto fail;
  session->user = user_from_row (arena, res, 0);
  PQclear (res);
  if (!issue_session (call, conn, session->user->id, NULL, client_name (call, req->client_name),
                      req->client_refreshes, session, &error))
    goto fail;
  if (!gn_service_commit (call, conn, &error))
    goto fail;
  gn_info ("registered user %s (%s)", session->user->username, session->user->id);
  *response = &session->base;
  return GRPC_STATUS_OK;

fail:
  gn_service_rollback (conn);
  if (g_error_matches (error, GN_PG_ERROR, GN_PG_ERROR_UNIQUE)) {
    if (strstr (error->message, "username") != NULL)
      return gn_rpc_call_fail (call, GRPC_STATUS_ALREADY_EXISTS, "username_taken",
                               "that username is taken");
    if (strstr (error->message, "email") != NULL)
      return gn_rpc_call_fail (call, GRPC_STATUS_ALREADY_EXISTS, "email_taken",
                               "an account with that e-mail address exists");
  }
  return gn_service_fail_internal (call, error);
}

static grpc_status_code
handle_login (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Auth__V1__LoginRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  char *identifier = gn_arena_strdup (arena, req->email_or_username);
  g_strstrip (identifier);
  if (identifier[0] == '\0' || strlen (identifier) > 254)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_request",
                             "email_or_username is required");
  if (req->password[0] == '\0' || strlen (req->password) > MAX_PASSWORD_BYTES)
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "wrong_password", "wrong password");

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  const char *params[] = { identifier };
  PGresult *res = strchr (identifier, '@') != NULL
                      ? gn_pg_exec (conn, &error,
                                    "SELECT " USER_COLUMNS ", password_hash FROM auth.users"
                                    " WHERE lower(email) = lower($1)",
                                    1, params)
                      : gn_pg_exec (conn, &error,
                                    "SELECT " USER_COLUMNS ", password_hash FROM auth.users"
                                    " WHERE username = lower($1)",
                                    1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "user_not_found",
                             "no account with that username or e-mail address");
  }
  Generia__Auth__V1__Session *session = session_new (arena);
  session->user = user_from_row (arena, res, 0);
  char *stored_hash = gn_arena_strdup (arena, PQgetvalue (res, 0, 7));
  PQclear (res);

  if ((code = hash_slot_take (call)) != GRPC_STATUS_OK)
    return code;
  int verified = crypto_pwhash_str_verify (stored_hash, req->password, strlen (req->password));
  char hash[crypto_pwhash_STRBYTES];
  int rehashed = -1;
  if (verified == 0
      && crypto_pwhash_str_needs_rehash (stored_hash, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                         crypto_pwhash_MEMLIMIT_INTERACTIVE)
             != 0)
    rehashed = crypto_pwhash_str (hash, req->password, strlen (req->password),
                                  crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                  crypto_pwhash_MEMLIMIT_INTERACTIVE);
  hash_slot_give (call);
  if (verified != 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "wrong_password", "wrong password");

  if (rehashed == 0) {
    const char *rehash_params[] = { hash, session->user->id };
    PGresult *updated = gn_pg_exec (conn, &error,
                                    "UPDATE auth.users SET password_hash = $1, updated_at = now()"
                                    " WHERE id = $2",
                                    2, rehash_params);
    if (updated == NULL) {
      gn_warn ("could not upgrade password hash: %s", error->message);
      g_clear_error (&error);
    }
    PQclear (updated);
  }

  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  if (!issue_session (call, conn, session->user->id, NULL, client_name (call, req->client_name),
                      req->client_refreshes, session, &error)
      || !gn_service_commit (call, conn, &error)) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  *response = &session->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_validate_token (gn_rpc_call *call, const ProtobufCMessage *message,
                       ProtobufCMessage **response)
{
  const Generia__Auth__V1__ValidateTokenRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  Generia__Auth__V1__ValidateTokenResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__auth__v1__validate_token_response__init (out);
  gn_token_claims claims;
  if (gn_token_verify (state_of (call)->key, req->token, g_get_real_time (), &claims)
      && !(claims.session_id[0] != '\0' && state_of (call)->revocations != NULL
           && gn_revocations_contains (state_of (call)->revocations, claims.session_id))) {
    out->valid = TRUE;
    out->user_id = gn_arena_strdup (arena, claims.user_id);
    out->expires_at_us = claims.expires_at_us;
  }
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_user_info (gn_rpc_call *call, const ProtobufCMessage *message,
                      ProtobufCMessage **response)
{
  const Generia__Auth__V1__GetUserInfoRequest *req = (const void *)message;
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  GN_RPC_REQUIRE_USER (call);
  const char *caller = gn_rpc_call_user_id (call);
  const char *user_id = req->user_id[0] != '\0' ? req->user_id : caller;
  if (strcmp (user_id, caller) != 0)
    return gn_rpc_call_fail (call, GRPC_STATUS_PERMISSION_DENIED, "forbidden",
                             "account details are visible to their owner only");
  if (!is_uuid (user_id))
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "user_not_found", "no such user");

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { user_id };
  PGresult *res = gn_pg_exec (conn, &error, "SELECT " USER_COLUMNS " FROM auth.users WHERE id = $1",
                              1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "user_not_found",
                             "this account no longer exists");
  }
  Generia__Auth__V1__User *user = user_from_row (gn_rpc_call_arena (call), res, 0);
  PQclear (res);
  *response = &user->base;
  return GRPC_STATUS_OK;
}

#define MAX_BATCH 500

static grpc_status_code
handle_get_users_by_ids (gn_rpc_call *call, const ProtobufCMessage *message,
                         ProtobufCMessage **response)
{
  const Generia__Auth__V1__GetUsersByIdsRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  if (req->n_user_ids > MAX_BATCH)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_ids",
                             "at most %d ids per call", MAX_BATCH);
  Generia__Auth__V1__GetUsersByIdsResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__auth__v1__get_users_by_ids_response__init (out);
  *response = &out->base;

  /* A PostgreSQL array literal of the well-formed ids; others cannot match anyway. */
  GString *array = g_string_new ("{");
  for (size_t i = 0; i < req->n_user_ids; i++)
    if (is_uuid (req->user_ids[i]))
      g_string_append_printf (array, "%s%s", array->len > 1 ? "," : "", req->user_ids[i]);
  g_string_append_c (array, '}');
  if (array->len == 2) {
    g_string_free (array, TRUE);
    return GRPC_STATUS_OK;
  }

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL) {
    g_string_free (array, TRUE);
    return code;
  }
  const char *params[] = { array->str };
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT id, username, display_name,"
                              " coalesce(avatar_media_id::text, '')"
                              " FROM auth.users WHERE id = ANY($1::uuid[])",
                              1, params);
  g_string_free (array, TRUE);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  int rows = PQntuples (res);
  out->users = gn_arena_alloc (arena, sizeof *out->users * (size_t)(rows > 0 ? rows : 1));
  for (int i = 0; i < rows; i++)
    out->users[i] = summary_from_row (arena, res, i);
  out->n_users = (size_t)rows;
  PQclear (res);
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_user_by_username (gn_rpc_call *call, const ProtobufCMessage *message,
                             ProtobufCMessage **response)
{
  const Generia__Auth__V1__GetUserByUsernameRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  char *username = normalize_username (arena, req->username);
  if (username == NULL)
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "user_not_found", "no such user");
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  const char *params[] = { username };
  PGresult *res = gn_pg_exec (conn, &error,
                              "SELECT id, username, display_name,"
                              " coalesce(avatar_media_id::text, '')"
                              " FROM auth.users WHERE username = $1",
                              1, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);
  if (PQntuples (res) == 0) {
    PQclear (res);
    return gn_rpc_call_fail (call, GRPC_STATUS_NOT_FOUND, "user_not_found", "no such user");
  }
  Generia__Auth__V1__UserSummary *user = summary_from_row (arena, res, 0);
  PQclear (res);
  *response = &user->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_refresh_token (gn_rpc_call *call, const ProtobufCMessage *message,
                      ProtobufCMessage **response)
{
  const Generia__Auth__V1__RefreshTokenRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  if (strlen (req->refresh_token) != GN_REFRESH_TOKEN_CHARS)
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "invalid_refresh_token",
                             "the refresh token is not valid");
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;

  char hash[65];
  gn_refresh_token_hash (req->refresh_token, hash);
  const char *hash_params[] = { hash };
  PGresult *res = NULL;
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);

  res = gn_pg_exec (conn, &error,
                    "SELECT t.family_id, f.user_id, t.used_at IS NOT NULL,"
                    " t.expires_at <= now(), f.revoked_at IS NOT NULL, f.client_refreshes"
                    " FROM auth.refresh_tokens t"
                    " JOIN auth.token_families f ON f.id = t.family_id"
                    " WHERE t.token_hash = $1 FOR UPDATE OF t, f",
                    1, hash_params);
  if (res == NULL)
    goto fail;
  if (PQntuples (res) == 0) {
    PQclear (res);
    gn_service_rollback (conn);
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "invalid_refresh_token",
                             "the refresh token is not valid");
  }
  char *family_id = gn_arena_strdup (arena, PQgetvalue (res, 0, 0));
  char *user_id = gn_arena_strdup (arena, PQgetvalue (res, 0, 1));
  gboolean used = PQgetvalue (res, 0, 2)[0] == 't';
  gboolean expired = PQgetvalue (res, 0, 3)[0] == 't';
  gboolean revoked = PQgetvalue (res, 0, 4)[0] == 't';
  gboolean client_refreshes = PQgetvalue (res, 0, 5)[0] == 't';
  PQclear (res);

  if (revoked) {
    gn_service_rollback (conn);
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "refresh_token_revoked",
                             "this session has ended; log in again");
  }
  if (used) {
    const char *family_params[] = { family_id };
    res = gn_pg_exec (conn, &error,
                      "UPDATE auth.token_families SET revoked_at = now(), revoked_reason = 'reuse',"
                      " revoked_xid = pg_current_xact_id()"
                      " WHERE id = $1",
                      1, family_params);
    if (res == NULL)
      goto fail;
    PQclear (res);
    if (!gn_service_commit (call, conn, &error))
      goto fail;
    gn_warn ("refresh token reused for user %s: session family %s revoked", user_id, family_id);
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "refresh_token_reused",
                             "this refresh token was already used; the session has been ended"
                             " for safety, log in again");
  }
  if (expired) {
    gn_service_rollback (conn);
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAUTHENTICATED, "refresh_token_expired",
                             "the session has expired; log in again");
  }

  res = gn_pg_exec (conn, &error,
                    "UPDATE auth.refresh_tokens SET used_at = now() WHERE token_hash = $1", 1,
                    hash_params);
  if (res == NULL)
    goto fail;
  PQclear (res);
  Generia__Auth__V1__Session *session = session_new (arena);
  if (!issue_session (call, conn, user_id, family_id, "", client_refreshes, session, &error))
    goto fail;
  const char *user_params[] = { user_id };
  res = gn_pg_exec (conn, &error, "SELECT " USER_COLUMNS " FROM auth.users WHERE id = $1", 1,
                    user_params);
  if (res == NULL)
    goto fail;
  if (PQntuples (res) == 1)
    session->user = user_from_row (arena, res, 0);
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    goto fail;
  *response = &session->base;
  return GRPC_STATUS_OK;

fail:
  gn_service_rollback (conn);
  return gn_service_fail_internal (call, error);
}

static grpc_status_code
handle_logout (gn_rpc_call *call, const ProtobufCMessage *message, ProtobufCMessage **response)
{
  const Generia__Auth__V1__LogoutRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  Generia__Auth__V1__LogoutResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__auth__v1__logout_response__init (out);
  *response = &out->base;
  if (strlen (req->refresh_token) != GN_REFRESH_TOKEN_CHARS)
    return GRPC_STATUS_OK;

  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  char hash[65];
  gn_refresh_token_hash (req->refresh_token, hash);
  const char *params[] = { hash };
  if (!gn_service_begin (call, conn, &error))
    return gn_service_fail_internal (call, error);
  PGresult *res = gn_pg_exec (conn, &error,
                              "UPDATE auth.token_families"
                              " SET revoked_at = now(), revoked_reason = 'logout',"
                              " revoked_xid = pg_current_xact_id()"
                              " WHERE id = (SELECT family_id FROM auth.refresh_tokens"
                              "             WHERE token_hash = $1)"
                              " AND revoked_at IS NULL",
                              1, params);
  if (res == NULL) {
    gn_service_rollback (conn);
    return gn_service_fail_internal (call, error);
  }
  out->revoked = atoi (PQcmdTuples (res)) > 0;
  PQclear (res);
  if (!gn_service_commit (call, conn, &error))
    return gn_service_fail_internal (call, error);
  return GRPC_STATUS_OK;
}

/* At most this many sessions per answer; the next call continues from the last one's
 * transaction (one transaction revokes one family, so that always makes progress). */
#define MAX_REVOKED_PER_CALL 10000

static gboolean
is_xid_cursor (const char *cursor)
{
  size_t len = strlen (cursor);
  if (len == 0 || len > 20)
    return FALSE;
  for (size_t i = 0; i < len; i++)
    if (!g_ascii_isdigit (cursor[i]))
      return FALSE;
  return TRUE;
}

/* The families revoked by transactions from the cursor on whose access tokens may still be
 * valid.  The next cursor is the xmin of the statement's snapshot: every transaction below it
 * has ended, so nothing can still commit behind the cursor.  Revocations by transactions at or
 * above xmin that are already visible are answered now and again next time (harmless). */
static grpc_status_code
handle_list_revoked_sessions (gn_rpc_call *call, const ProtobufCMessage *message,
                              ProtobufCMessage **response)
{
  const Generia__Auth__V1__ListRevokedSessionsRequest *req = (const void *)message;
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code = GRPC_STATUS_OK;
  g_autoptr (GError) error = NULL;

  if (req->cursor[0] != '\0' && !is_xid_cursor (req->cursor))
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_cursor",
                             "that is not a cursor of ListRevokedSessions");
  PGconn *conn = conn_or_fail (call, &code);
  if (conn == NULL)
    return code;
  char limit[16];
  g_snprintf (limit, sizeof limit, "%d", MAX_REVOKED_PER_CALL);
  const char *params[] = { req->cursor[0] != '\0' ? req->cursor : "0", limit };
  PGresult *res = gn_pg_exec (
      conn, &error,
      "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, f.id,"
      " (extract(epoch FROM f.access_expires_at) * 1000000)::int8, f.revoked_xid::text"
      " FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
      "   SELECT id, access_expires_at, revoked_xid FROM auth.token_families"
      "   WHERE revoked_xid IS NOT NULL AND access_expires_at > now()"
      "     AND revoked_xid >= $1::xid8"
      "   ORDER BY revoked_xid LIMIT $2::int) AS f ON true"
      " ORDER BY f.revoked_xid",
      2, params);
  if (res == NULL)
    return gn_service_fail_internal (call, error);

  Generia__Auth__V1__ListRevokedSessionsResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__auth__v1__list_revoked_sessions_response__init (out);
  int rows = PQntuples (res);
  out->sessions = gn_arena_alloc (arena, sizeof *out->sessions * (size_t)MAX (rows, 1));
  for (int i = 0; i < rows; i++) {
    if (PQgetisnull (res, i, 1))
      continue;
    Generia__Auth__V1__RevokedSession *session = gn_arena_alloc (arena, sizeof *session);
    generia__auth__v1__revoked_session__init (session);
    session->session_id = gn_arena_strdup (arena, PQgetvalue (res, i, 1));
    session->tokens_expire_at_us = g_ascii_strtoll (PQgetvalue (res, i, 2), NULL, 10);
    out->sessions[out->n_sessions++] = session;
  }
  out->next_cursor = gn_arena_strdup (arena, out->n_sessions == MAX_REVOKED_PER_CALL
                                                 ? PQgetvalue (res, rows - 1, 3)
                                                 : PQgetvalue (res, 0, 0));
  PQclear (res);
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_health_check (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  return gn_service_health (call, "auth", state_of (call)->database_url, NULL, NULL, response);
}

static const gn_rpc_method auth_methods[] = {
  { "Register", handle_register, GN_RPC_BLOCKING },
  { "Login", handle_login, GN_RPC_BLOCKING },
  { "ValidateToken", handle_validate_token, 0 },
  { "GetUserInfo", handle_get_user_info, GN_RPC_BLOCKING },
  { "GetUsersByIds", handle_get_users_by_ids, GN_RPC_BLOCKING },
  { "GetUserByUsername", handle_get_user_by_username, GN_RPC_BLOCKING },
  { "RefreshToken", handle_refresh_token, GN_RPC_BLOCKING },
  { "Logout", handle_logout, GN_RPC_BLOCKING },
  { "ListRevokedSessions", handle_list_revoked_sessions, GN_RPC_BLOCKING },
  { "HealthCheck", handle_health_check, GN_RPC_BLOCKING },
  { NULL, NULL, 0 },
};

static gboolean
auth_migrate (const gn_service_env *env, GError **error)
{
  return gn_service_migrate (env, "auth", error);
}

static gboolean
auth_init (const gn_service_env *env, gn_rpc_service *service, GError **error)
{
  if (sodium_init () < 0) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "libsodium failed to initialise");
    return FALSE;
  }
  auth_state *state = g_new0 (auth_state, 1);
  state->database_url = g_strdup (env->database_url);
  state->key = env->token_key;
  state->revocations = env->revocations;
  state->access_ttl_s = env->config->access_token_ttl_s;
  state->legacy_access_ttl_s = env->config->legacy_access_token_ttl_s;
  state->refresh_ttl_s = env->config->refresh_token_ttl_s;
  g_mutex_init (&state->hash_lock);
  g_cond_init (&state->hash_freed);
  state->hash_slots = env->config->max_concurrent_hashes;
  service->descriptor = &generia__auth__v1__auth_service__descriptor;
  service->methods = auth_methods;
  service->log_name = "auth";
  service->data = state;
  return TRUE;
}

static void
auth_fini (gn_rpc_service *service)
{
  auth_state *state = service->data;
  if (state == NULL)
    return;
  g_free (state->database_url);
  g_mutex_clear (&state->hash_lock);
  g_cond_clear (&state->hash_freed);
  g_free (state);
  service->data = NULL;
}

const gn_service_module gn_auth_module = {
  .id = GN_SERVICE_AUTH,
  .migrate = auth_migrate,
  .init = auth_init,
  .fini = auth_fini,
};
