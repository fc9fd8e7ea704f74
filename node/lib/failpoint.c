/* failpoint.c - fail points set from GENERIA_FAILPOINTS (see failpoint.h). */
#include "failpoint.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define MAX_FAILPOINTS 16
#define MAX_SLEEP_MS 60000
/* Distinct from every exit status the node uses itself (EX_SOFTWARE). */
#define CRASH_STATUS 70

typedef enum { ACTION_ERROR, ACTION_CRASH, ACTION_SLEEP } action_kind;

typedef struct {
  char *name;
  action_kind action;
  int sleep_ms;
  gint remaining; /* hits left; -1 = unlimited */
} failpoint;

bool gn_failpoints_enabled;
static failpoint failpoints[MAX_FAILPOINTS];
static int n_failpoints;

static gboolean
parse_action (failpoint *point, const char *text, GError **error)
{
  guint64 number;
  point->remaining = -1;
  const char *star = strchr (text, '*');
  if (star != NULL) {
    g_autofree char *count = g_strndup (text, (size_t)(star - text));
    if (!g_ascii_string_to_unsigned (count, 10, 1, G_MAXINT, &number, NULL))
      goto bad;
    point->remaining = (gint)number;
    text = star + 1;
  }
  if (strcmp (text, "error") == 0) {
    point->action = ACTION_ERROR;
    return TRUE;
  }
  if (strcmp (text, "crash") == 0) {
    point->action = ACTION_CRASH;
    return TRUE;
  }
  size_t length = strlen (text);
  if (g_str_has_prefix (text, "sleep(") && length > 7 && text[length - 1] == ')') {
    g_autofree char *ms = g_strndup (text + 6, length - 7);
    if (!g_ascii_string_to_unsigned (ms, 10, 0, MAX_SLEEP_MS, &number, NULL))
      goto bad;
    point->action = ACTION_SLEEP;
    point->sleep_ms = (int)number;
    return TRUE;
  }
bad:
  g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
               "\"%s\" of %s is not [N*]error, [N*]crash or [N*]sleep(MS), MS <= %d", text,
               point->name, MAX_SLEEP_MS);
  return FALSE;
}

gboolean
gn_failpoints_init (const char *spec, GError **error)
{
  if (spec == NULL || spec[0] == '\0')
    return TRUE;
  int first = n_failpoints;
  g_auto (GStrv) items = g_strsplit (spec, ",", -1);
  for (char **item = items; *item != NULL; item++) {
    char *equals = strchr (*item, '=');
    if (equals == NULL || equals == *item) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "\"%s\" is not name=action",
                   *item);
      goto fail;
    }
    if (n_failpoints == MAX_FAILPOINTS) {
      g_set_error (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "more than %d fail points",
                   MAX_FAILPOINTS);
      goto fail;
    }
    failpoint *point = &failpoints[n_failpoints++];
    point->name = g_strndup (*item, (size_t)(equals - *item));
    if (!parse_action (point, equals + 1, error))
      goto fail;
  }
  gn_failpoints_enabled = n_failpoints > 0;
  return TRUE;

fail:
  /* All or nothing: a list that is partly wrong sets none of its points. */
  while (n_failpoints > first)
    g_clear_pointer (&failpoints[--n_failpoints].name, g_free);
  return FALSE;
}

/* Takes one hit of a counted point; FALSE once it is used up. */
static bool
take_hit (failpoint *point)
{
  for (;;) {
    gint left = g_atomic_int_get (&point->remaining);
    if (left < 0)
      return true;
    if (left == 0)
      return false;
    if (g_atomic_int_compare_and_exchange (&point->remaining, left, left - 1))
      return true;
  }
}

bool
gn_failpoint_hit (const char *name)
{
  for (int i = 0; i < n_failpoints; i++) {
    failpoint *point = &failpoints[i];
    if (strcmp (point->name, name) != 0 || !take_hit (point))
      continue;
    switch (point->action) {
      case ACTION_ERROR:
        gn_warn ("fail point %s: error", name);
        return true;
      case ACTION_SLEEP:
        gn_warn ("fail point %s: sleeping %d ms", name, point->sleep_ms);
        g_usleep ((gulong)point->sleep_ms * 1000);
        return false;
      case ACTION_CRASH:
        gn_warn ("fail point %s: crashing", name);
        _exit (CRASH_STATUS);
    }
  }
  return false;
}
