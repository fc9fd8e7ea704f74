/* Signed media URLs: signing against an independent HMAC (Python's hmac module), the expiry
 * boundary, every kind of tampering, strict parsing, the secret file, expiry rounding, and
 * that the decision is taken by the constant-time compare.
 *
 * The last point is checked through the linker: this program is linked with
 * -Wl,--wrap=sodium_memcmp, so sign.c's calls to sodium_memcmp land in
 * __wrap_sodium_memcmp below, which counts them and forwards to the real one. */
#include <string.h>
#include <sys/stat.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sodium.h>

#include "cdn/sign.h"

#define NOW 1795000000
#define KEY_NAME                                                                                   \
  "media/0b7e9a52-6a7e-4c59-a3a1-2f0f4d9e8c11/"                                                    \
  "medium-abababababababababababababababababababababababababababababababab.jpg"
/* base64url(HMAC-SHA256(32 x 0x07, KEY_NAME "\n1795000000")), computed with Python's hmac. */
#define KNOWN_SIGNATURE "Gm-ITGn9WRxfM5-u9LXGMbElKzFBSGViw_PkfSgQpNk"

int __real_sodium_memcmp (const void *a, const void *b, size_t len);
int __wrap_sodium_memcmp (const void *a, const void *b, size_t len);

static unsigned memcmp_calls;

int
__wrap_sodium_memcmp (const void *a, const void *b, size_t len)
{
  memcmp_calls++;
  return __real_sodium_memcmp (a, b, len);
}

static void
make_key (gn_cdn_key *key, unsigned char fill)
{
  memset (key->secret, fill, sizeof key->secret);
}

static void
test_known_answer (void)
{
  gn_cdn_key key;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];

  make_key (&key, 7);
  gn_cdn_sign (&key, KEY_NAME, NOW, signature);
  g_assert_cmpstr (signature, ==, KNOWN_SIGNATURE);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", KNOWN_SIGNATURE, NOW - 10), ==,
                   GN_CDN_URL_VALID);
}

static void
test_signed_url (void)
{
  gn_cdn_key key;
  gn_arena *arena = gn_arena_new ();
  char *url;

  make_key (&key, 7);
  url = gn_cdn_signed_url (arena, &key, "https://cdn.example/generia", KEY_NAME, NOW);
  g_assert_cmpstr (url, ==,
                   "https://cdn.example/generia/" KEY_NAME
                   "?expires=1795000000&signature=" KNOWN_SIGNATURE);
  gn_arena_free (arena);
}

static void
test_expiry_boundary (void)
{
  gn_cdn_key key;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];

  make_key (&key, 3);
  gn_cdn_sign (&key, "media/a/b.jpg", NOW, signature);
  g_assert_cmpint (gn_cdn_verify (&key, "media/a/b.jpg", "1795000000", signature, NOW - 3600), ==,
                   GN_CDN_URL_VALID);
  /* Valid through the second it names, refused from the next one on. */
  g_assert_cmpint (gn_cdn_verify (&key, "media/a/b.jpg", "1795000000", signature, NOW), ==,
                   GN_CDN_URL_VALID);
  g_assert_cmpint (gn_cdn_verify (&key, "media/a/b.jpg", "1795000000", signature, NOW + 1), ==,
                   GN_CDN_URL_EXPIRED);
  g_assert_cmpint (gn_cdn_verify (&key, "media/a/b.jpg", "1795000000", signature, NOW + 86400), ==,
                   GN_CDN_URL_EXPIRED);
}

static void
test_tampering (void)
{
  gn_cdn_key key, other;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];
  const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

  make_key (&key, 7);
  make_key (&other, 8);
  gn_cdn_sign (&key, KEY_NAME, NOW, signature);

  /* Another secret. */
  g_assert_cmpint (gn_cdn_verify (&other, KEY_NAME, "1795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);

  /* Every character of the storage key, changed. */
  for (size_t i = 0; i < strlen (KEY_NAME); i++) {
    g_autofree char *tampered = g_strdup (KEY_NAME);

    tampered[i] = tampered[i] == 'a' ? 'b' : 'a';
    g_assert_cmpint (gn_cdn_verify (&key, tampered, "1795000000", signature, NOW), ==,
                     GN_CDN_URL_FORGED);
  }
  /* A longer or shorter key. */
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME "x", "1795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, "media/0b7e9a52-6a7e-4c59-a3a1-2f0f4d9e8c11", "1795000000",
                                  signature, NOW),
                   ==, GN_CDN_URL_FORGED);

  /* The expiry: a later one (the obvious attack), an earlier one, other spellings of the same
   * number. */
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000001", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "9795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1794999999", signature, NOW - 100), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "01795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "+1795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, " 1795000000", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000 ", signature, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "-1", signature, NOW), ==, GN_CDN_URL_FORGED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1234567890123", signature, NOW), ==,
                   GN_CDN_URL_FORGED);

  /* Every character of the signature, replaced by every other character of the alphabet. */
  for (size_t i = 0; i < GN_CDN_SIGNATURE_CHARS; i++)
    for (const char *c = alphabet; *c != '\0'; c++) {
      char tampered[GN_CDN_SIGNATURE_CHARS + 1];

      if (*c == signature[i])
        continue;
      memcpy (tampered, signature, sizeof tampered);
      tampered[i] = *c;
      g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", tampered, NOW), ==,
                       GN_CDN_URL_FORGED);
    }

  /* Wrong lengths, padding, the standard alphabet, garbage. */
  {
    g_autofree char *longer = g_strconcat (signature, "A", NULL);
    g_autofree char *padded = g_strconcat (signature, "=", NULL);
    g_autofree char *shorter = g_strndup (signature, GN_CDN_SIGNATURE_CHARS - 1);
    g_autofree char *standard = g_strdup (KNOWN_SIGNATURE);

    g_strdelimit (standard, "-", '+');
    g_strdelimit (standard, "_", '/');
    g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", longer, NOW), ==,
                     GN_CDN_URL_FORGED);
    g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", padded, NOW), ==,
                     GN_CDN_URL_FORGED);
    g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", shorter, NOW), ==,
                     GN_CDN_URL_FORGED);
    g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", standard, NOW), ==,
                     GN_CDN_URL_FORGED);
    g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000",
                                    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", NOW),
                     ==, GN_CDN_URL_FORGED);
  }
}

/* Bytes outside ASCII in place of any character of a genuine signature are no alias of it
 * (libsodium 1.0.18 decodes some of them, 0xa4 and 0xdf among them, as '_'; found by
 * tests/fuzz/fuzz-cdn-sign). */
static void
test_non_ascii_signature (void)
{
  gn_cdn_key key;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];

  make_key (&key, 7);
  gn_cdn_sign (&key, KEY_NAME, NOW, signature);
  for (size_t i = 0; i < GN_CDN_SIGNATURE_CHARS; i++) {
    for (int byte = 0x80; byte <= 0xff; byte++) {
      char tampered[GN_CDN_SIGNATURE_CHARS + 1];

      memcpy (tampered, signature, sizeof tampered);
      tampered[i] = (char)byte;
      g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", tampered, NOW), ==,
                       GN_CDN_URL_FORGED);
    }
  }
}

static void
test_missing_parts (void)
{
  gn_cdn_key key;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];

  make_key (&key, 7);
  gn_cdn_sign (&key, KEY_NAME, NOW, signature);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, NULL, signature, NOW), ==, GN_CDN_URL_UNSIGNED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", NULL, NOW), ==,
                   GN_CDN_URL_UNSIGNED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "", signature, NOW), ==, GN_CDN_URL_UNSIGNED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", "", NOW), ==, GN_CDN_URL_UNSIGNED);
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, NULL, NULL, NOW), ==, GN_CDN_URL_UNSIGNED);
}

/* Valid and forged signatures of the right shape are both decided by sodium_memcmp; only
 * malformed input (whose shape is no secret) is refused before it. */
static void
test_constant_time_compare (void)
{
  gn_cdn_key key;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];
  char forged[GN_CDN_SIGNATURE_CHARS + 1];
  unsigned before;

  make_key (&key, 7);
  gn_cdn_sign (&key, KEY_NAME, NOW, signature);
  memcpy (forged, signature, sizeof forged);
  forged[0] = forged[0] == 'A' ? 'B' : 'A';

  before = memcmp_calls;
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", signature, NOW), ==,
                   GN_CDN_URL_VALID);
  g_assert_cmpuint (memcmp_calls, ==, before + 1);

  before = memcmp_calls;
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", forged, NOW), ==,
                   GN_CDN_URL_FORGED);
  g_assert_cmpuint (memcmp_calls, ==, before + 1);

  before = memcmp_calls;
  g_assert_cmpint (gn_cdn_verify (&key, KEY_NAME, "1795000000", signature, NOW + 1), ==,
                   GN_CDN_URL_EXPIRED);
  g_assert_cmpuint (memcmp_calls, ==, before + 1);
}

static void
test_expiry_rounding (void)
{
  /* An hour: steps of 450 s, so the URL lives 3600 to 4049 s. */
  for (int64_t now = NOW; now < NOW + 2000; now += 7) {
    int64_t expires = gn_cdn_expiry (now, 3600);

    g_assert_cmpint (expires % 450, ==, 0);
    g_assert_cmpint (expires - now, >=, 3600);
    g_assert_cmpint (expires - now, <, 3600 + 450);
  }
  /* Requests close together share a URL. */
  g_assert_cmpint (gn_cdn_expiry (1795000051, 3600), ==, gn_cdn_expiry (1795000400, 3600));
  /* Short lifetimes still round to whole seconds and never shrink. */
  g_assert_cmpint (gn_cdn_expiry (NOW, 1), ==, NOW + 1);
  g_assert_cmpint (gn_cdn_expiry (NOW, 7), ==, NOW + 7);
  /* Long ones step by an hour at most. */
  g_assert_cmpint (gn_cdn_expiry (NOW + 1, 7 * 24 * 3600) % 3600, ==, 0);
  g_assert_cmpint (gn_cdn_expiry (NOW + 1, 7 * 24 * 3600) - (NOW + 1), <, 7 * 24 * 3600 + 3600);
}

static void
test_secret_file (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("test-cdn-sign-XXXXXX", &error);
  g_autofree char *secrets = g_build_filename (dir, "secrets", NULL);
  g_autofree char *path = g_build_filename (secrets, "cdn.key", NULL);
  gn_cdn_key first, second;
  char signature[GN_CDN_SIGNATURE_CHARS + 1];
  GStatBuf st;

  g_assert_no_error (error);
  g_assert_true (gn_cdn_key_load (&first, path, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, GN_CDN_KEY_BYTES);
  g_assert_cmpint (g_stat (secrets, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);

  /* A second process (or a restart) reads the same secret: its URLs verify. */
  g_assert_true (gn_cdn_key_load (&second, path, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (first.secret, sizeof first.secret, second.secret, sizeof second.secret);
  gn_cdn_sign (&first, KEY_NAME, NOW, signature);
  g_assert_cmpint (gn_cdn_verify (&second, KEY_NAME, "1795000000", signature, NOW), ==,
                   GN_CDN_URL_VALID);

  /* A truncated secret is an error, not a weak key. */
  g_assert_true (g_file_set_contents (path, "short", 5, NULL));
  g_assert_false (gn_cdn_key_load (&second, path, &error));
  g_assert_nonnull (error);

  g_unlink (path);
  g_rmdir (secrets);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_assert_cmpint (sodium_init (), >=, 0);
  g_test_add_func ("/cdn/sign/known-answer", test_known_answer);
  g_test_add_func ("/cdn/sign/url", test_signed_url);
  g_test_add_func ("/cdn/sign/expiry-boundary", test_expiry_boundary);
  g_test_add_func ("/cdn/sign/tampering", test_tampering);
  g_test_add_func ("/cdn/sign/non-ascii-signature", test_non_ascii_signature);
  g_test_add_func ("/cdn/sign/missing-parts", test_missing_parts);
  g_test_add_func ("/cdn/sign/constant-time-compare", test_constant_time_compare);
  g_test_add_func ("/cdn/sign/expiry-rounding", test_expiry_rounding);
  g_test_add_func ("/cdn/sign/secret-file", test_secret_file);
  return g_test_run ();
}
