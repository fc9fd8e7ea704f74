/* sign.h - signed, expiring media URLs of the CDN.
 *
 * A media URL is <public base URL>/<storage key>?expires=<unix seconds>&signature=<sig>, where
 * sig is the unpadded base64url HMAC-SHA256, under the CDN's secret, of "<storage key>\n<expires>"
 * with expires in canonical decimal.  The key in the signed text is the storage key itself, not
 * the URL's path, so a host may put the listener behind any base URL (a reverse proxy that
 * strips a prefix, a commercial CDN) without invalidating URLs.
 *
 * A URL is valid up to and including the second `expires`.  Verification recomputes the MAC
 * and compares it with sodium_memcmp (constant time), so a forger learns nothing from how long
 * a refusal takes.
 *
 * The secret is 32 random bytes in cdn.secret_file, created 0600 on first start (the same
 * loader as the token secret: gn_token_key_load).  Every CDN process of a host must share it. */
#pragma once

#include <stdint.h>
#include <glib.h>

#include "arena.h"

#define GN_CDN_KEY_BYTES 32
#define GN_CDN_SIGNATURE_CHARS 43 /* base64url of 32 bytes, no padding */
/* Longest accepted `expires`: 12 digits is past the year 33000, and bounds the parse. */
#define GN_CDN_EXPIRES_MAX_DIGITS 12

typedef struct {
  unsigned char secret[GN_CDN_KEY_BYTES];
} gn_cdn_key;

typedef enum {
  GN_CDN_URL_VALID,
  GN_CDN_URL_UNSIGNED, /* expires or signature missing */
  GN_CDN_URL_FORGED,   /* malformed, or the signature does not match key and expiry */
  GN_CDN_URL_EXPIRED,  /* correctly signed, but its time is past */
} gn_cdn_url_verdict;

/* Reads the secret file, creating it (0600, random; folder 0700) if missing. */
gboolean gn_cdn_key_load (gn_cdn_key *key, const char *path, GError **error);

/* Writes the signature (GN_CDN_SIGNATURE_CHARS characters and a NUL). */
void gn_cdn_sign (const gn_cdn_key *key, const char *storage_key, int64_t expires,
                  char signature[GN_CDN_SIGNATURE_CHARS + 1]);

/* Checks the query values of a request (NULL when absent) at time now (unix seconds).  The
 * signature is checked before the expiry, so EXPIRED is only said of genuine URLs. */
gn_cdn_url_verdict gn_cdn_verify (const gn_cdn_key *key, const char *storage_key,
                                  const char *expires, const char *signature, int64_t now);

/* The expiry to sign for a URL that must live at least ttl_s seconds from now: now + ttl_s
 * rounded up to a step of ttl_s / 8 (at least 1 s, at most an hour).  Every request for the
 * same object within one step gets the same URL, so browsers and caches in front of the node
 * can reuse what they fetched instead of seeing a new URL on every page load. */
int64_t gn_cdn_expiry (int64_t now, int ttl_s);

/* "<base_url>/<storage_key>?expires=...&signature=..." in arena.  base_url without a
 * trailing slash; storage_key must satisfy gn_storage_key_is_valid (nothing in it needs
 * escaping). */
char *gn_cdn_signed_url (gn_arena *arena, const gn_cdn_key *key, const char *base_url,
                         const char *storage_key, int64_t expires);
