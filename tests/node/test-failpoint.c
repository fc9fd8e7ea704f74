/* Fail points: the GENERIA_FAILPOINTS syntax, counted hits, and each action. */
#include <glib.h>

#include "failpoint.h"

static void
test_malformed (void)
{
  const char *bad[] = {
    "noequals",   "=error",       "a=explode", "a=0*error",      "a=x*error",
    "a=sleep(",   "a=sleep(abc)", "a=sleep()", "a=sleep(60001)", "a=error,b",
    "a=-1*error", "a=sleep(10)x", "a=",        "a=1*",
  };
  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_autoptr (GError) error = NULL;
    g_assert_false (gn_failpoints_init (bad[i], &error));
    g_assert_nonnull (error);
  }
  /* Nothing malformed switched anything on. */
  g_assert_false (gn_failpoints_enabled);
  g_assert_true (gn_failpoints_init (NULL, NULL));
  g_assert_true (gn_failpoints_init ("", NULL));
  g_assert_false (gn_failpoints_enabled);
  g_assert_false (GN_FAILPOINT ("a"));
}

static void
test_actions (void)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (
      gn_failpoints_init ("test.always=error,test.twice=2*error,test.nap=1*sleep(50)", &error));
  g_assert_no_error (error);
  g_assert_true (gn_failpoints_enabled);

  for (int i = 0; i < 5; i++)
    g_assert_true (GN_FAILPOINT ("test.always"));
  g_assert_true (GN_FAILPOINT ("test.twice"));
  g_assert_true (GN_FAILPOINT ("test.twice"));
  g_assert_false (GN_FAILPOINT ("test.twice"));
  g_assert_false (GN_FAILPOINT ("test.unknown"));

  gint64 start = g_get_monotonic_time ();
  g_assert_false (GN_FAILPOINT ("test.nap"));
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 50 * 1000);
  start = g_get_monotonic_time ();
  g_assert_false (GN_FAILPOINT ("test.nap")); /* used up: no second sleep */
  g_assert_cmpint (g_get_monotonic_time () - start, <, 50 * 1000);
}

static void
test_crash (void)
{
  if (g_test_subprocess ()) {
    g_assert_true (gn_failpoints_init ("test.crash=crash", NULL));
    (void)GN_FAILPOINT ("test.crash");
    g_assert_not_reached ();
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*fail point test.crash: crashing*");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/failpoint/malformed", test_malformed);
  g_test_add_func ("/failpoint/actions", test_actions);
  g_test_add_func ("/failpoint/crash", test_crash);
  return g_test_run ();
}
