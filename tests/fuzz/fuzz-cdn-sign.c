/* fuzz-cdn-sign.c - the CDN's signed URL check (gn_cdn_verify) and the storage key check the
 * CDN applies to a URL's path (gn_storage_key_is_valid).
 *
 * Input: "storage key\nexpires\nsignature", the three values a media URL carries.  Checked:
 * only genuine signatures verify (VALID or EXPIRED means the MAC matches, so re-signing the
 * same key and expiry gives the same signature), and what we sign ourselves verifies. */
#include "fuzz.h"

#include "cdn/sign.h"
#include "storage.h"

#define FUZZ_NOW 1796083200 /* 2026-12-01T00:00:00Z */

static gn_cdn_key key;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  memset (key.secret, 0xa5, sizeof key.secret);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *fields[3];
  char *copy = fuzz_split_fields (data, size, fields, 3);
  const char *storage_key = fields[0], *expires = fields[1], *signature = fields[2];

  (void)gn_storage_key_is_valid (storage_key);
  gn_cdn_url_verdict verdict = gn_cdn_verify (&key, storage_key, expires, signature, FUZZ_NOW);
  if (verdict == GN_CDN_URL_VALID || verdict == GN_CDN_URL_EXPIRED) {
    char resigned[GN_CDN_SIGNATURE_CHARS + 1];
    gn_cdn_sign (&key, storage_key, g_ascii_strtoll (expires, NULL, 10), resigned);
    FUZZ_ASSERT (strcmp (resigned, signature) == 0);
  }

  /* Our own URL for this key verifies, and one character changed in it does not. */
  char own[GN_CDN_SIGNATURE_CHARS + 1];
  gn_cdn_sign (&key, storage_key, FUZZ_NOW + 60, own);
  FUZZ_ASSERT (gn_cdn_verify (&key, storage_key, "1796083260", own, FUZZ_NOW) == GN_CDN_URL_VALID);
  /* Not the last character: it carries two unused bits. */
  own[size % (GN_CDN_SIGNATURE_CHARS - 1)] ^= 1;
  FUZZ_ASSERT (gn_cdn_verify (&key, storage_key, "1796083260", own, FUZZ_NOW) == GN_CDN_URL_FORGED);

  g_free (copy);
  return 0;
}
