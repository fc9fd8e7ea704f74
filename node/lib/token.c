/* token.c - access tokens (JWT HS256 through libjwt) and refresh tokens (see token.h).
 *
 * Why JWT for access tokens: the gateway and each service can check a token with one HMAC and
 * no database or network hop, which is what keeps GET /auth/me and every later authenticated
 * route cheap.  A token names its session ("sid", the token family of its login), so a logout
 * can cut it off before it expires: the processes that verify tokens keep the set of revoked
 * sessions in memory (revocations.c).  Refresh tokens live only as hashes in the auth schema.
 *
 * libjwt verifies the signature inside jwt_decode() but accepts whatever algorithm the header
 * names, so the algorithm is checked afterwards (pinning HS256 rules out "alg":"none"), as are
 * "typ" and "exp". */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jwt.h>
#include <sodium.h>

static gboolean
write_new_secret (const char *path, gn_token_key *key, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  if (g_mkdir_with_parents (dir, 0700) != 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s: %s", dir,
                 g_strerror (errno));
    return FALSE;
  }
  randombytes_buf (key->secret, sizeof key->secret);
  /* Written to a temporary name and renamed so a crash never leaves a short key behind. */
  g_autofree char *tmp = g_strdup_printf ("%s.XXXXXX", path);
  int fd = g_mkstemp_full (tmp, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s: %s", tmp,
                 g_strerror (errno));
    return FALSE;
  }
  ssize_t n = write (fd, key->secret, sizeof key->secret);
  int saved = errno;
  if (n != (ssize_t)sizeof key->secret || fsync (fd) != 0 || close (fd) != 0) {
    if (n >= 0)
      saved = errno;
    unlink (tmp);
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot write %s: %s", tmp,
                 g_strerror (saved));
    return FALSE;
  }
  if (rename (tmp, path) != 0) {
    saved = errno;
    unlink (tmp);
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved), "cannot rename %s: %s", tmp,
                 g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}

gboolean
gn_token_key_load (gn_token_key *key, const char *path, GError **error)
{
  if (sodium_init () < 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "libsodium failed to initialise");
    return FALSE;
  }
  g_autofree char *contents = NULL;
  gsize len = 0;
  g_autoptr (GError) read_error = NULL;
  if (!g_file_get_contents (path, &contents, &len, &read_error)) {
    if (g_error_matches (read_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      return write_new_secret (path, key, error);
    g_propagate_error (error, g_steal_pointer (&read_error));
    return FALSE;
  }
  if (len < sizeof key->secret) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
                 "%s holds %zu bytes; a token secret needs at least %zu", path, (size_t)len,
                 sizeof key->secret);
    return FALSE;
  }
  /* Longer files (e.g. a hex or base64 secret written by an admin) are hashed down to 32 bytes. */
  if (len == sizeof key->secret)
    memcpy (key->secret, contents, sizeof key->secret);
  else
    crypto_generichash (key->secret, sizeof key->secret, (const unsigned char *)contents, len, NULL,
                        0);
  sodium_memzero (contents, len);
  return TRUE;
}

char *
gn_token_sign_session (const gn_token_key *key, const char *user_id, const char *session_id,
                       int ttl_s, int64_t now_us, int64_t *expires_at_us)
{
  jwt_t *jwt = NULL;
  char *encoded = NULL;
  char *result = NULL;
  long now_s = (long)(now_us / G_USEC_PER_SEC);
  long exp_s = now_s + ttl_s;
  char jti[24];
  unsigned char jti_raw[12];

  randombytes_buf (jti_raw, sizeof jti_raw);
  sodium_bin2base64 (jti, sizeof jti, jti_raw, sizeof jti_raw,
                     sodium_base64_VARIANT_URLSAFE_NO_PADDING);

  if (jwt_new (&jwt) != 0)
    goto fail;
  if (jwt_add_grant (jwt, "sub", user_id) != 0 || jwt_add_grant (jwt, "typ", "access") != 0
      || jwt_add_grant (jwt, "jti", jti) != 0 || jwt_add_grant_int (jwt, "iat", now_s) != 0
      || jwt_add_grant_int (jwt, "exp", exp_s) != 0)
    goto fail;
  if (session_id != NULL && jwt_add_grant (jwt, "sid", session_id) != 0)
    goto fail;
  if (jwt_set_alg (jwt, JWT_ALG_HS256, key->secret, (int)sizeof key->secret) != 0)
    goto fail;
  encoded = jwt_encode_str (jwt);
  if (encoded == NULL)
    goto fail;
  result = g_strdup (encoded);
  if (expires_at_us != NULL)
    *expires_at_us = (int64_t)exp_s * G_USEC_PER_SEC;

fail:
  free (encoded);
  jwt_free (jwt);
  return result;
}

char *
gn_token_sign (const gn_token_key *key, const char *user_id, int ttl_s, int64_t now_us,
               int64_t *expires_at_us)
{
  return gn_token_sign_session (key, user_id, NULL, ttl_s, now_us, expires_at_us);
}

bool
gn_token_verify (const gn_token_key *key, const char *token, int64_t now_us,
                 gn_token_claims *claims)
{
  jwt_t *jwt = NULL;
  bool ok = false;

  if (token == NULL || strnlen (token, GN_TOKEN_MAX_CHARS + 1) > GN_TOKEN_MAX_CHARS)
    return false;
  if (jwt_decode (&jwt, token, key->secret, (int)sizeof key->secret) != 0 || jwt == NULL)
    goto done;
  if (jwt_get_alg (jwt) != JWT_ALG_HS256)
    goto done;
  const char *typ = jwt_get_grant (jwt, "typ");
  const char *sub = jwt_get_grant (jwt, "sub");
  const char *sid = jwt_get_grant (jwt, "sid");
  if (typ == NULL || strcmp (typ, "access") != 0 || sub == NULL || sub[0] == '\0'
      || strlen (sub) >= sizeof claims->user_id)
    goto done;
  if (sid != NULL && (sid[0] == '\0' || strlen (sid) >= sizeof claims->session_id))
    goto done;
  errno = 0;
  long exp_s = jwt_get_grant_int (jwt, "exp");
  if (errno != 0 || exp_s <= 0 || (int64_t)exp_s * G_USEC_PER_SEC <= now_us)
    goto done;
  strcpy (claims->user_id, sub);
  strcpy (claims->session_id, sid != NULL ? sid : "");
  claims->expires_at_us = (int64_t)exp_s * G_USEC_PER_SEC;
  ok = true;

done:
  jwt_free (jwt);
  return ok;
}

void
gn_refresh_token_new (char out[GN_REFRESH_TOKEN_CHARS + 1])
{
  unsigned char raw[32];
  randombytes_buf (raw, sizeof raw);
  sodium_bin2base64 (out, GN_REFRESH_TOKEN_CHARS + 1, raw, sizeof raw,
                     sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero (raw, sizeof raw);
}

void
gn_refresh_token_hash (const char *token, char out[65])
{
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256 (digest, (const unsigned char *)token, strlen (token));
  sodium_bin2hex (out, 65, digest, sizeof digest);
}
