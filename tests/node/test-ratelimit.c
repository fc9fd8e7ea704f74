/* Token buckets (node/lib/ratelimit.c): the burst, the refill rate and Retry-After arithmetic
 * on a clock the test drives, independence of keys, and the bound on remembered keys (least
 * recently used evicted, memory flat however many keys come by). */
#include <glib.h>

#include "ratelimit.h"

#define SECOND G_USEC_PER_SEC

static void
test_burst_then_refill (void)
{
  gn_ratelimit_options options = { .burst = 10, .per_second = 0.5 }; /* 30 per minute */
  gn_ratelimit *limiter = gn_ratelimit_new (&options);
  int64_t now = (int64_t)1000 * SECOND, retry = 0;

  for (int i = 0; i < 10; i++)
    g_assert_true (gn_ratelimit_take (limiter, "10.0.0.1", now, &retry));
  g_assert_false (gn_ratelimit_take (limiter, "10.0.0.1", now, &retry));
  /* One token comes back every two seconds. */
  g_assert_cmpint (retry, ==, 2 * SECOND);
  g_assert_false (gn_ratelimit_take (limiter, "10.0.0.1", now + SECOND, &retry));
  g_assert_cmpint (retry, ==, SECOND);
  g_assert_true (gn_ratelimit_take (limiter, "10.0.0.1", now + 2 * SECOND, &retry));
  g_assert_false (gn_ratelimit_take (limiter, "10.0.0.1", now + 2 * SECOND, &retry));

  /* A long pause refills to the burst, never beyond. */
  now += (int64_t)3600 * SECOND;
  for (int i = 0; i < 10; i++)
    g_assert_true (gn_ratelimit_take (limiter, "10.0.0.1", now, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "10.0.0.1", now, NULL));
  gn_ratelimit_free (limiter);
}

static void
test_sustained_rate (void)
{
  gn_ratelimit_options options = { .burst = 5, .per_second = 5 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);
  int64_t start = 50 * SECOND;
  int allowed = 0;

  /* 100 tries per second for 10 s: the burst plus 5 per second get through. */
  for (int i = 0; i < 1000; i++)
    allowed += gn_ratelimit_take (limiter, "u", start + i * (SECOND / 100), NULL);
  g_assert_cmpint (allowed, >=, 5 + 49);
  g_assert_cmpint (allowed, <=, 5 + 50);
  gn_ratelimit_free (limiter);
}

static void
test_keys_are_independent (void)
{
  gn_ratelimit_options options = { .burst = 1, .per_second = 0.01 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);

  g_assert_true (gn_ratelimit_take (limiter, "a", 0, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "a", 0, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "b", 0, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "c", 0, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "b", 0, NULL));
  gn_ratelimit_free (limiter);
}

/* A clock that goes back (it must not, but) never adds tokens. */
static void
test_clock_going_back (void)
{
  gn_ratelimit_options options = { .burst = 1, .per_second = 1 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);

  g_assert_true (gn_ratelimit_take (limiter, "k", 10 * SECOND, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "k", 5 * SECOND, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "k", 10 * SECOND, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "k", 11 * SECOND, NULL));
  gn_ratelimit_free (limiter);
}

static void
test_lru_eviction (void)
{
  gn_ratelimit_options options = { .burst = 1, .per_second = 0.001, .max_keys = 3 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);

  g_assert_true (gn_ratelimit_take (limiter, "a", 0, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "b", 0, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "c", 0, NULL));
  /* "a" is used again (refused), so "b" is now the least recently used. */
  g_assert_false (gn_ratelimit_take (limiter, "a", 1, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "d", 2, NULL));
  g_assert_cmpuint (gn_ratelimit_size (limiter), ==, 3);
  /* "a" and "c" are still throttled; "b" was forgotten and starts full again. */
  g_assert_false (gn_ratelimit_take (limiter, "a", 3, NULL));
  g_assert_false (gn_ratelimit_take (limiter, "c", 3, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "b", 3, NULL));
  gn_ratelimit_free (limiter);
}

/* Someone cycling through a million keys: the table stays at its bound, and a throttled key
 * that keeps being used is never the one evicted. */
static void
test_bounded_under_key_cycling (void)
{
  gn_ratelimit_options options = { .burst = 2, .per_second = 0.001, .max_keys = 4096 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);

  g_assert_true (gn_ratelimit_take (limiter, "victim", 0, NULL));
  g_assert_true (gn_ratelimit_take (limiter, "victim", 0, NULL));
  for (int i = 0; i < 1000 * 1000; i++) {
    char key[32];

    g_snprintf (key, sizeof key, "cycling-%d", i);
    gn_ratelimit_take (limiter, key, i, NULL);
    g_assert_cmpuint (gn_ratelimit_size (limiter), <=, 4096);
    if (i % 100 == 0)
      g_assert_false (gn_ratelimit_take (limiter, "victim", i, NULL));
  }
  gn_ratelimit_free (limiter);
}

static void
test_long_keys (void)
{
  gn_ratelimit_options options = { .burst = 1, .per_second = 0.001 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);
  g_autofree char *long_key = g_strnfill (10000, 'x');

  g_assert_true (gn_ratelimit_take (limiter, long_key, 0, NULL));
  g_assert_false (gn_ratelimit_take (limiter, long_key, 0, NULL));
  g_assert_cmpuint (gn_ratelimit_size (limiter), ==, 1);
  gn_ratelimit_free (limiter);
}

typedef struct {
  gn_ratelimit *limiter;
  int thread;
  int allowed;
} worker;

static gpointer
hammer (gpointer data)
{
  worker *w = data;

  for (int i = 0; i < 20000; i++) {
    char key[32];

    g_snprintf (key, sizeof key, "%d", i % 64);
    w->allowed += gn_ratelimit_take (w->limiter, key, 0, NULL);
  }
  return NULL;
}

/* Four threads on 64 keys at one instant: exactly burst tokens per key in all. */
static void
test_threads (void)
{
  gn_ratelimit_options options = { .burst = 10, .per_second = 1, .max_keys = 100000 };
  gn_ratelimit *limiter = gn_ratelimit_new (&options);
  worker workers[4];
  GThread *threads[4];
  int total = 0;

  for (int i = 0; i < 4; i++) {
    workers[i] = (worker){ .limiter = limiter, .thread = i };
    threads[i] = g_thread_new ("hammer", hammer, &workers[i]);
  }
  for (int i = 0; i < 4; i++) {
    g_thread_join (threads[i]);
    total += workers[i].allowed;
  }
  g_assert_cmpint (total, ==, 64 * 10);
  gn_ratelimit_free (limiter);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ratelimit/burst-then-refill", test_burst_then_refill);
  g_test_add_func ("/ratelimit/sustained-rate", test_sustained_rate);
  g_test_add_func ("/ratelimit/keys-are-independent", test_keys_are_independent);
  g_test_add_func ("/ratelimit/clock-going-back", test_clock_going_back);
  g_test_add_func ("/ratelimit/lru-eviction", test_lru_eviction);
  g_test_add_func ("/ratelimit/bounded-under-key-cycling", test_bounded_under_key_cycling);
  g_test_add_func ("/ratelimit/long-keys", test_long_keys);
  g_test_add_func ("/ratelimit/threads", test_threads);
  return g_test_run ();
}
