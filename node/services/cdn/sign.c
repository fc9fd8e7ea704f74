/* sign.c - signed, expiring media URLs (see sign.h).
 *
 * HMAC-SHA256 through libsodium (crypto_auth_hmacsha256); the signature travels as unpadded
 * base64url, decoded strictly, so each MAC has exactly one spelling and a URL cannot be varied
 * while keeping its signature: the alphabet is checked here first, then sodium_base642bin
 * refuses non-zero trailing bits.  (libsodium 1.0.18 decodes some bytes >= 0x80 as if they
 * were base64 characters, e.g. 0xa4 and 0xdf like '_'; tests/fuzz/fuzz-cdn-sign found it.) */
#include "sign.h"

#include <string.h>
#include <sodium.h>

#include "token.h"

G_STATIC_ASSERT (GN_CDN_KEY_BYTES == GN_TOKEN_SECRET_BYTES);
G_STATIC_ASSERT (GN_CDN_KEY_BYTES == crypto_auth_hmacsha256_KEYBYTES);

#define EXPIRY_STEP_MAX_S 3600

gboolean
gn_cdn_key_load (gn_cdn_key *key, const char *path, GError **error)
{
  gn_token_key loaded;

  if (!gn_token_key_load (&loaded, path, error))
    return FALSE;
  memcpy (key->secret, loaded.secret, sizeof key->secret);
  sodium_memzero (&loaded, sizeof loaded);
  return TRUE;
}

static void
mac (const gn_cdn_key *key, const char *storage_key, int64_t expires,
     unsigned char out[crypto_auth_hmacsha256_BYTES])
{
  crypto_auth_hmacsha256_state state;
  char expires_text[24];
  int len = g_snprintf (expires_text, sizeof expires_text, "%" G_GINT64_FORMAT, expires);

  crypto_auth_hmacsha256_init (&state, key->secret, sizeof key->secret);
  crypto_auth_hmacsha256_update (&state, (const unsigned char *)storage_key, strlen (storage_key));
  crypto_auth_hmacsha256_update (&state, (const unsigned char *)"\n", 1);
  crypto_auth_hmacsha256_update (&state, (const unsigned char *)expires_text, (size_t)len);
  crypto_auth_hmacsha256_final (&state, out);
  sodium_memzero (&state, sizeof state);
}

void
gn_cdn_sign (const gn_cdn_key *key, const char *storage_key, int64_t expires,
             char signature[GN_CDN_SIGNATURE_CHARS + 1])
{
  unsigned char digest[crypto_auth_hmacsha256_BYTES];

  mac (key, storage_key, expires, digest);
  sodium_bin2base64 (signature, GN_CDN_SIGNATURE_CHARS + 1, digest, sizeof digest,
                     sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static gboolean
is_base64url (const char *text, size_t len)
{
  for (size_t i = 0; i < len; i++)
    if (!g_ascii_isalnum (text[i]) && text[i] != '-' && text[i] != '_')
      return FALSE;
  return TRUE;
}

/* Canonical decimal only: no sign, no leading zero, no spaces, so one expiry has one
 * spelling. */
static gboolean
parse_expires (const char *text, int64_t *expires)
{
  size_t len = strnlen (text, GN_CDN_EXPIRES_MAX_DIGITS + 1);
  int64_t value = 0;

  if (len == 0 || len > GN_CDN_EXPIRES_MAX_DIGITS || (text[0] == '0' && len > 1))
    return FALSE;
  for (size_t i = 0; i < len; i++) {
    if (!g_ascii_isdigit (text[i]))
      return FALSE;
    value = value * 10 + (text[i] - '0');
  }
  *expires = value;
  return TRUE;
}

gn_cdn_url_verdict
gn_cdn_verify (const gn_cdn_key *key, const char *storage_key, const char *expires,
               const char *signature, int64_t now)
{
  unsigned char given[crypto_auth_hmacsha256_BYTES];
  unsigned char expected[crypto_auth_hmacsha256_BYTES];
  size_t given_len = 0;
  const char *end = NULL;
  int64_t expires_at;
  gboolean match;

  if (expires == NULL || signature == NULL || expires[0] == '\0' || signature[0] == '\0')
    return GN_CDN_URL_UNSIGNED;
  if (!parse_expires (expires, &expires_at)
      || strnlen (signature, GN_CDN_SIGNATURE_CHARS + 1) != GN_CDN_SIGNATURE_CHARS
      || !is_base64url (signature, GN_CDN_SIGNATURE_CHARS))
    return GN_CDN_URL_FORGED;
  if (sodium_base642bin (given, sizeof given, signature, GN_CDN_SIGNATURE_CHARS, NULL, &given_len,
                         &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
          != 0
      || given_len != sizeof given || end != signature + GN_CDN_SIGNATURE_CHARS)
    return GN_CDN_URL_FORGED;

  mac (key, storage_key, expires_at, expected);
  match = sodium_memcmp (given, expected, sizeof expected) == 0;
  sodium_memzero (expected, sizeof expected);
  if (!match)
    return GN_CDN_URL_FORGED;
  return now <= expires_at ? GN_CDN_URL_VALID : GN_CDN_URL_EXPIRED;
}

int64_t
gn_cdn_expiry (int64_t now, int ttl_s)
{
  int64_t step = CLAMP (ttl_s / 8, 1, EXPIRY_STEP_MAX_S);
  int64_t earliest = now + ttl_s;

  return (earliest + step - 1) / step * step;
}

char *
gn_cdn_signed_url (gn_arena *arena, const gn_cdn_key *key, const char *base_url,
                   const char *storage_key, int64_t expires)
{
  char signature[GN_CDN_SIGNATURE_CHARS + 1];

  gn_cdn_sign (key, storage_key, expires, signature);
  return gn_arena_printf (arena, "%s/%s?expires=%" G_GINT64_FORMAT "&signature=%s", base_url,
                          storage_key, expires, signature);
}
