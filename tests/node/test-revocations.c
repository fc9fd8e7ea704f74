/* The in-memory set of revoked sessions and the bearer check built on it (lib/revocations.c).
 * Polling a real auth service is covered by tests/integration/sessions.test.mjs. */
#include <string.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "revocations.h"
#include "rpc.h"

#define SESSION_A "0c6f3b9a-2222-4333-8444-955566667777"
#define SESSION_B "7d1e4c2b-3333-4444-8555-a66677778888"

static void
test_add_contains_prune (void)
{
  gn_revocations *set = gn_revocations_new ();
  int64_t now = g_get_real_time ();
  g_assert_false (gn_revocations_contains (set, SESSION_A));

  gn_revocations_add (set, SESSION_A, now + 10 * G_USEC_PER_SEC);
  gn_revocations_add (set, SESSION_B, now + 100 * G_USEC_PER_SEC);
  g_assert_true (gn_revocations_contains (set, SESSION_A));
  g_assert_true (gn_revocations_contains (set, SESSION_B));
  g_assert_cmpuint (gn_revocations_count (set), ==, 2);

  /* An entry stays as long as any answer said its tokens may live. */
  gn_revocations_add (set, SESSION_A, now + 50 * G_USEC_PER_SEC);
  gn_revocations_add (set, SESSION_A, now + 20 * G_USEC_PER_SEC);
  g_assert_cmpuint (gn_revocations_prune (set, now + 49 * G_USEC_PER_SEC), ==, 0);
  g_assert_true (gn_revocations_contains (set, SESSION_A));

  /* Once every token of a session has expired, the entry is no longer needed. */
  g_assert_cmpuint (gn_revocations_prune (set, now + 50 * G_USEC_PER_SEC), ==, 1);
  g_assert_false (gn_revocations_contains (set, SESSION_A));
  g_assert_true (gn_revocations_contains (set, SESSION_B));
  g_assert_cmpuint (gn_revocations_prune (set, now + 100 * G_USEC_PER_SEC), ==, 1);
  g_assert_cmpuint (gn_revocations_count (set), ==, 0);
  gn_revocations_free (set);
}

static void
make_key (gn_token_key *key)
{
  memset (key->secret, 7, sizeof key->secret);
}

/* The authenticator of the gateway and the rpc layer: a valid token of a revoked session is
 * refused; other sessions and sessionless service tokens are not affected. */
static void
test_verifier (void)
{
  gn_token_key key;
  make_key (&key);
  gn_revocations *set = gn_revocations_new ();
  gn_token_verifier verifier = { .key = &key, .revocations = set };
  int64_t now = g_get_real_time ();
  g_autofree char *token_a = gn_token_sign_session (&key, "alice", SESSION_A, 86400, now, NULL);
  g_autofree char *token_b = gn_token_sign_session (&key, "alice", SESSION_B, 86400, now, NULL);
  g_autofree char *service = gn_token_sign (&key, "alice", 60, now, NULL);
  char user[64];

  g_assert_true (gn_token_verifier_check (&verifier, token_a, user));
  g_assert_cmpstr (user, ==, "alice");

  gn_revocations_add (set, SESSION_A, now + (int64_t)86400 * G_USEC_PER_SEC);
  g_assert_false (gn_token_verifier_check (&verifier, token_a, user));
  g_assert_true (gn_token_verifier_check (&verifier, token_b, user));
  g_assert_true (gn_token_verifier_check (&verifier, service, user));

  /* A revoked set does not make a bad token good, nor does an empty one. */
  g_assert_false (gn_token_verifier_check (&verifier, "not.a.jwt", user));
  gn_token_key other;
  memset (other.secret, 8, sizeof other.secret);
  gn_token_verifier wrong_key = { .key = &other, .revocations = set };
  g_assert_false (gn_token_verifier_check (&wrong_key, token_b, user));
  gn_revocations_free (set);
}

/* With the auth service unreachable a poll fails, and the set keeps what it knew. */
static void
test_poll_unreachable_keeps_set (void)
{
  g_autofree char *dir = g_dir_make_tmp ("generia-revocations-XXXXXX", NULL);
  g_autofree char *address = g_strdup_printf ("unix:%s/absent.sock", dir);
  gn_revocations *set = gn_revocations_new ();
  gn_revocations_add (set, SESSION_A, g_get_real_time () + (int64_t)3600 * G_USEC_PER_SEC);
  g_autoptr (GError) error = NULL;
  g_assert_false (gn_revocations_poll (set, address, 300, &error));
  g_assert_nonnull (error);
  g_assert_true (gn_revocations_contains (set, SESSION_A));

  /* The poller thread starts anyway and retries; stopping it joins quickly. */
  gn_revocations_start_polling (set, address, 50);
  g_usleep (200 * 1000);
  g_assert_true (gn_revocations_contains (set, SESSION_A));
  gn_revocations_free (set);
  gn_rpc_clients_shutdown ();
  g_rmdir (dir);
}

/* Readers never see a torn table while the poller writes. */
static gpointer
reader (gpointer data)
{
  gn_revocations *set = data;
  for (int i = 0; i < 20000; i++)
    g_assert_true (gn_revocations_contains (set, SESSION_B));
  return NULL;
}

static void
test_concurrent_readers (void)
{
  gn_revocations *set = gn_revocations_new ();
  int64_t now = g_get_real_time ();
  gn_revocations_add (set, SESSION_B, now + (int64_t)3600 * G_USEC_PER_SEC);
  GThread *threads[4];
  for (size_t i = 0; i < G_N_ELEMENTS (threads); i++)
    threads[i] = g_thread_new ("reader", reader, set);
  for (int i = 0; i < 5000; i++) {
    char id[40];
    g_snprintf (id, sizeof id, "session-%d", i);
    gn_revocations_add (set, id, now + (int64_t)(i % 2 == 0 ? -1 : 3600) * G_USEC_PER_SEC);
    if (i % 100 == 0)
      gn_revocations_prune (set, now);
  }
  for (size_t i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  gn_revocations_prune (set, now);
  g_assert_cmpuint (gn_revocations_count (set), ==, 2500 + 1);
  gn_revocations_free (set);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/revocations/add-contains-prune", test_add_contains_prune);
  g_test_add_func ("/revocations/verifier", test_verifier);
  g_test_add_func ("/revocations/poll-unreachable-keeps-set", test_poll_unreachable_keeps_set);
  g_test_add_func ("/revocations/concurrent-readers", test_concurrent_readers);
  return g_test_run ();
}
