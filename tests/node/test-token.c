/* Access-token signing and verification, refresh tokens, and the secret file. */
#include <string.h>
#include <sys/stat.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <jwt.h>

#include "token.h"

#define NOW_US ((int64_t)1795000000 * G_USEC_PER_SEC)

static void
make_key (gn_token_key *key, unsigned char fill)
{
  memset (key->secret, fill, sizeof key->secret);
}

static void
test_sign_verify (void)
{
  gn_token_key key;
  make_key (&key, 7);
  int64_t expires = 0;
  g_autofree char *token
      = gn_token_sign_session (&key, "3f2b8c1e-1111-4222-8333-944455556666",
                               "0c6f3b9a-2222-4333-8444-955566667777", 900, NOW_US, &expires);
  g_assert_nonnull (token);
  g_assert_cmpint (expires, ==, NOW_US + 900 * G_USEC_PER_SEC);

  gn_token_claims claims;
  g_assert_true (gn_token_verify (&key, token, NOW_US + G_USEC_PER_SEC, &claims));
  g_assert_cmpstr (claims.user_id, ==, "3f2b8c1e-1111-4222-8333-944455556666");
  g_assert_cmpstr (claims.session_id, ==, "0c6f3b9a-2222-4333-8444-955566667777");
  g_assert_cmpint (claims.expires_at_us, ==, expires);
}

/* A token signed outside any session carries no sid, and says so. */
static void
test_sessionless (void)
{
  gn_token_key key;
  make_key (&key, 7);
  g_autofree char *token = gn_token_sign (&key, "u1", 60, NOW_US, NULL);
  gn_token_claims claims;
  g_assert_true (gn_token_verify (&key, token, NOW_US, &claims));
  g_assert_cmpstr (claims.user_id, ==, "u1");
  g_assert_cmpstr (claims.session_id, ==, "");
}

/* The sid claim is read from the signed payload: an empty or overlong one is refused, since
 * the revocation check could not be asked about it. */
static void
test_session_claim_checked (void)
{
  gn_token_key key;
  make_key (&key, 7);
  gn_token_claims claims;
  char long_sid[80];
  memset (long_sid, 'a', sizeof long_sid - 1);
  long_sid[sizeof long_sid - 1] = '\0';
  const char *bad[] = { "", long_sid };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    jwt_t *jwt = NULL;
    g_assert_cmpint (jwt_new (&jwt), ==, 0);
    jwt_add_grant (jwt, "sub", "bob");
    jwt_add_grant (jwt, "typ", "access");
    jwt_add_grant (jwt, "sid", bad[i]);
    jwt_add_grant_int (jwt, "exp", (long)(NOW_US / G_USEC_PER_SEC) + 600);
    jwt_set_alg (jwt, JWT_ALG_HS256, key.secret, sizeof key.secret);
    char *token = jwt_encode_str (jwt);
    g_assert_false (gn_token_verify (&key, token, NOW_US, &claims));
    free (token);
    jwt_free (jwt);
  }
}

static void
test_expiry (void)
{
  gn_token_key key;
  make_key (&key, 7);
  g_autofree char *token = gn_token_sign (&key, "u1", 60, NOW_US, NULL);
  gn_token_claims claims;
  g_assert_true (gn_token_verify (&key, token, NOW_US + 59 * G_USEC_PER_SEC, &claims));
  g_assert_false (gn_token_verify (&key, token, NOW_US + 60 * G_USEC_PER_SEC, &claims));
  g_assert_false (gn_token_verify (&key, token, NOW_US + (int64_t)3600 * G_USEC_PER_SEC, &claims));
}

static void
test_wrong_key_and_tampering (void)
{
  gn_token_key key, other;
  make_key (&key, 7);
  make_key (&other, 8);
  g_autofree char *token = gn_token_sign (&key, "alice-id", 900, NOW_US, NULL);
  gn_token_claims claims;
  g_assert_false (gn_token_verify (&other, token, NOW_US, &claims));

  /* Flip one character of the payload: the signature no longer matches. */
  g_autofree char *tampered = g_strdup (token);
  char *payload = strchr (tampered, '.') + 1;
  payload[3] = payload[3] == 'A' ? 'B' : 'A';
  g_assert_false (gn_token_verify (&key, tampered, NOW_US, &claims));

  g_assert_false (gn_token_verify (&key, "", NOW_US, &claims));
  g_assert_false (gn_token_verify (&key, "not.a.jwt", NOW_US, &claims));
  g_assert_false (gn_token_verify (&key, NULL, NOW_US, &claims));
}

/* A token that names "alg":"none" (or another algorithm) must never verify. */
static void
test_algorithm_pinned (void)
{
  gn_token_key key;
  make_key (&key, 7);
  gn_token_claims claims;

  jwt_t *jwt = NULL;
  g_assert_cmpint (jwt_new (&jwt), ==, 0);
  jwt_add_grant (jwt, "sub", "mallory");
  jwt_add_grant (jwt, "typ", "access");
  jwt_add_grant_int (jwt, "exp", (long)(NOW_US / G_USEC_PER_SEC) + 600);
  char *unsigned_token = jwt_encode_str (jwt);
  g_assert_nonnull (unsigned_token);
  g_assert_false (gn_token_verify (&key, unsigned_token, NOW_US, &claims));
  free (unsigned_token);

  jwt_set_alg (jwt, JWT_ALG_HS512, key.secret, sizeof key.secret);
  char *hs512 = jwt_encode_str (jwt);
  g_assert_false (gn_token_verify (&key, hs512, NOW_US, &claims));
  free (hs512);
  jwt_free (jwt);
}

/* Correctly signed, but not an access token (no typ) or without a subject. */
static void
test_claims_required (void)
{
  gn_token_key key;
  make_key (&key, 7);
  gn_token_claims claims;
  jwt_t *jwt = NULL;
  g_assert_cmpint (jwt_new (&jwt), ==, 0);
  jwt_add_grant (jwt, "sub", "bob");
  jwt_add_grant_int (jwt, "exp", (long)(NOW_US / G_USEC_PER_SEC) + 600);
  jwt_set_alg (jwt, JWT_ALG_HS256, key.secret, sizeof key.secret);
  char *no_typ = jwt_encode_str (jwt);
  g_assert_false (gn_token_verify (&key, no_typ, NOW_US, &claims));
  free (no_typ);
  jwt_add_grant (jwt, "typ", "access");
  char *good = jwt_encode_str (jwt);
  g_assert_true (gn_token_verify (&key, good, NOW_US, &claims));
  g_assert_cmpstr (claims.user_id, ==, "bob");
  g_assert_cmpstr (claims.session_id, ==, "");
  free (good);
  jwt_del_grants (jwt, "exp");
  char *no_exp = jwt_encode_str (jwt);
  g_assert_false (gn_token_verify (&key, no_exp, NOW_US, &claims));
  free (no_exp);
  jwt_free (jwt);
}

/* A correctly signed token padded with a claim past GN_TOKEN_MAX_CHARS is refused unread; one
 * just under the cap still verifies. */
static void
test_length_cap (void)
{
  gn_token_key key;
  make_key (&key, 7);
  gn_token_claims claims;
  size_t paddings[] = { 2500, GN_TOKEN_MAX_CHARS };
  for (size_t i = 0; i < G_N_ELEMENTS (paddings); i++) {
    jwt_t *jwt = NULL;
    g_assert_cmpint (jwt_new (&jwt), ==, 0);
    jwt_add_grant (jwt, "sub", "carol");
    jwt_add_grant (jwt, "typ", "access");
    jwt_add_grant_int (jwt, "exp", (long)(NOW_US / G_USEC_PER_SEC) + 600);
    g_autofree char *padding = g_strnfill (paddings[i], 'p');
    jwt_add_grant (jwt, "pad", padding);
    jwt_set_alg (jwt, JWT_ALG_HS256, key.secret, sizeof key.secret);
    char *token = jwt_encode_str (jwt);
    g_assert_cmpint (strlen (token) > GN_TOKEN_MAX_CHARS, ==, i == 1);
    g_assert_cmpint (gn_token_verify (&key, token, NOW_US, &claims), ==, i == 0);
    free (token);
    jwt_free (jwt);
  }
}

static void
test_refresh_tokens (void)
{
  char a[GN_REFRESH_TOKEN_CHARS + 1], b[GN_REFRESH_TOKEN_CHARS + 1];
  gn_refresh_token_new (a);
  gn_refresh_token_new (b);
  g_assert_cmpuint (strlen (a), ==, GN_REFRESH_TOKEN_CHARS);
  g_assert_cmpstr (a, !=, b);
  for (const char *p = a; *p; p++)
    g_assert_true (g_ascii_isalnum (*p) || *p == '-' || *p == '_');

  char ha[65], ha2[65], hb[65];
  gn_refresh_token_hash (a, ha);
  gn_refresh_token_hash (a, ha2);
  gn_refresh_token_hash (b, hb);
  g_assert_cmpstr (ha, ==, ha2);
  g_assert_cmpstr (ha, !=, hb);
  g_assert_cmpuint (strlen (ha), ==, 64);
  /* SHA-256 of "abc", a published test vector. */
  gn_refresh_token_hash ("abc", ha);
  g_assert_cmpstr (ha, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_key_file (void)
{
  g_autofree char *dir = g_dir_make_tmp ("generia-token-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "secrets", "token.key", NULL);
  gn_token_key first, second;
  g_autoptr (GError) error = NULL;

  g_assert_true (gn_token_key_load (&first, path, &error));
  g_assert_no_error (error);
  GStatBuf st;
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (st.st_size, ==, GN_TOKEN_SECRET_BYTES);

  /* Loading again reads the same secret: tokens survive a restart. */
  g_assert_true (gn_token_key_load (&second, path, &error));
  g_assert_cmpmem (first.secret, sizeof first.secret, second.secret, sizeof second.secret);

  /* A file too short to be a secret is refused, not padded. */
  g_assert_true (g_file_set_contents (path, "short", -1, NULL));
  g_assert_false (gn_token_key_load (&second, path, &error));
  g_assert_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL);

  g_unlink (path);
  g_autofree char *secrets = g_path_get_dirname (path);
  g_rmdir (secrets);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/token/sign-verify", test_sign_verify);
  g_test_add_func ("/token/sessionless", test_sessionless);
  g_test_add_func ("/token/session-claim-checked", test_session_claim_checked);
  g_test_add_func ("/token/expiry", test_expiry);
  g_test_add_func ("/token/wrong-key-and-tampering", test_wrong_key_and_tampering);
  g_test_add_func ("/token/algorithm-pinned", test_algorithm_pinned);
  g_test_add_func ("/token/claims-required", test_claims_required);
  g_test_add_func ("/token/length-cap", test_length_cap);
  g_test_add_func ("/token/refresh-tokens", test_refresh_tokens);
  g_test_add_func ("/token/key-file", test_key_file);
  return g_test_run ();
}
