/* fuzz-token.c - gn_token_verify (JWT through libjwt) with a fixed key at a fixed time.
 *
 * Input: the bearer token as the gateway passes it.  Checked: a token accepted is HS256 under
 * the key, of type access, unexpired at the fixed time, with a subject that fits; then signing
 * that subject again must verify too. */
#include "fuzz.h"

#include "token.h"

/* 2026-12-01T00:00:00Z: the seeds' tokens were signed around this time. */
#define FUZZ_NOW_US G_GINT64_CONSTANT (1796083200000000)

static gn_token_key key;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  memset (key.secret, 0x5a, sizeof key.secret);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *token = fuzz_string (data, size);
  gn_token_claims claims;

  if (gn_token_verify (&key, token, FUZZ_NOW_US, &claims)) {
    FUZZ_ASSERT (claims.user_id[0] != '\0' && strlen (claims.user_id) < 64);
    FUZZ_ASSERT (strlen (claims.session_id) < 64);
    FUZZ_ASSERT (claims.expires_at_us > FUZZ_NOW_US);
    /* A token without a session is signed without one: an empty sid claim is refused. */
    char *again = claims.session_id[0] != '\0'
                      ? gn_token_sign_session (&key, claims.user_id, claims.session_id, 60,
                                               FUZZ_NOW_US, NULL)
                      : gn_token_sign (&key, claims.user_id, 60, FUZZ_NOW_US, NULL);
    gn_token_claims again_claims;
    FUZZ_ASSERT (again != NULL && gn_token_verify (&key, again, FUZZ_NOW_US, &again_claims));
    FUZZ_ASSERT (strcmp (again_claims.user_id, claims.user_id) == 0);
    FUZZ_ASSERT (strcmp (again_claims.session_id, claims.session_id) == 0);
    g_free (again);
  }
  g_free (token);
  return 0;
}
