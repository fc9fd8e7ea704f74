/* failpoint.h - named points where a test can make the node fail on purpose.
 *
 * Code that must survive a failure between two steps names the place between them:
 *
 *   if (GN_FAILPOINT ("post.create.after_attach"))
 *     return fail_as_if_the_commit_failed (...);
 *
 * and a test starts the node with GENERIA_FAILPOINTS set to a comma-separated list of
 * "name=action", where action is
 *
 *   error       GN_FAILPOINT() is true: the code takes its failure path
 *   crash       the process ends at once (_exit 70): no cleanup, no log flush, like a kill -9
 *   sleep(MS)   the thread sleeps MS milliseconds (at most a minute), then goes on normally
 *
 * optionally prefixed by a count, "N*action", after which the point turns itself off
 * ("post.create.after_attach=1*error" fails the first post only).  A malformed list stops the
 * node at start (gn_failpoints_init), never silently ignored.
 *
 * Zero cost when unset: GN_FAILPOINT() tests one global flag first, which stays false unless
 * the variable named at least one point; the table is then read without locks (it is written
 * once, before any thread starts) and only the counters are atomic.  Failpoints are for tests:
 * nothing in a real deployment sets the variable. */
#pragma once

#include <stdbool.h>
#include <glib.h>

extern bool gn_failpoints_enabled;

/* Parses `spec` (GENERIA_FAILPOINTS; NULL or "" = none).  Call once, before threads start. */
gboolean gn_failpoints_init (const char *spec, GError **error);

/* Runs the action of `name`, if one is set: TRUE for "error"; sleeps or exits otherwise. */
bool gn_failpoint_hit (const char *name);

#define GN_FAILPOINT(name) (__builtin_expect (gn_failpoints_enabled, 0) && gn_failpoint_hit (name))
