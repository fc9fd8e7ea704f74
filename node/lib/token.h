/* token.h - signed access tokens (JWT, HS256 via libjwt) and opaque refresh tokens.
 *
 * Access tokens carry sub (user id), sid (the session: the token family of the login that
 * issued them), iat, exp, jti and typ="access"; the gateway and every service verify them
 * locally with the shared secret, so checking one costs microseconds and no round trip.
 * Verification pins the algorithm to HS256 and checks exp with no leeway.  Whether the session
 * was revoked is the caller's second question (revocations.h), asked with claims.session_id.
 *
 * Refresh tokens are 256 random bits (libsodium), base64url without padding; only their
 * SHA-256 is stored. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define GN_TOKEN_SECRET_BYTES 32
#define GN_REFRESH_TOKEN_CHARS 43 /* base64url of 32 bytes, no padding */

typedef struct {
  unsigned char secret[GN_TOKEN_SECRET_BYTES];
} gn_token_key;

/* Reads the secret file, creating it (0600, random) if missing; its folder is created 0700. */
gboolean gn_token_key_load (gn_token_key *key, const char *path, GError **error);

typedef struct {
  char user_id[64];
  char session_id[64]; /* "" for a token signed outside any session */
  int64_t expires_at_us;
} gn_token_claims;

/* Returns a g_malloc'd JWT of the session session_id; *expires_at_us gets the expiry. */
char *gn_token_sign_session (const gn_token_key *key, const char *user_id, const char *session_id,
                             int ttl_s, int64_t now_us, int64_t *expires_at_us);
/* A token without a session, for a service that acts for a user by itself for a few seconds
 * (e.g. a retried clean-up); no logout can cut it off, so keep ttl_s short. */
char *gn_token_sign (const gn_token_key *key, const char *user_id, int ttl_s, int64_t now_us,
                     int64_t *expires_at_us);
/* Longer tokens are refused before any decoding (ours are about 250 characters). */
#define GN_TOKEN_MAX_CHARS 4096
/* true if the signature, algorithm, type and expiry hold at now_us; fills *claims. */
bool gn_token_verify (const gn_token_key *key, const char *token, int64_t now_us,
                      gn_token_claims *claims);

/* Writes GN_REFRESH_TOKEN_CHARS + 1 bytes. */
void gn_refresh_token_new (char out[GN_REFRESH_TOKEN_CHARS + 1]);
/* Hex SHA-256 of the token (65 bytes with NUL). */
void gn_refresh_token_hash (const char *token, char out[65]);
