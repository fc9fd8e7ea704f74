/* router.c - method + path routing (see router.h for the rules).
 *
 * The gateway has a few dozen routes, so the table is a plain array scanned linearly: each
 * pattern is split into segments once, when it is added, and a lookup walks the request path
 * segment by segment against every entry without allocating.  Only the winner's parameter
 * values are percent-decoded, into the request's arena.
 *
 * Precedence: of all routes whose pattern matches the path, the one with a literal segment at
 * the first position where the candidates differ wins.  Each entry carries a "literal mask"
 * (bit 63 - i set when segment i is literal), so "more literal at an earlier position" is a
 * plain integer comparison.  Patterns are limited to 64 segments for that reason.
 *
 * A parameter matches one non-empty segment whose percent-decoded value is neither "." nor
 * ".." and contains no '/' and no NUL, with well-formed %XX escapes, is valid UTF-8 and at
 * most GN_ROUTE_PARAM_MAX bytes long; anything else does not match (404, like an id that names
 * nothing), so a handler never sees a value that could walk a file path or cut a string.
 * Paths longer than GN_ROUTE_PATH_MAX bytes match nothing either. */
#include "router.h"

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <glib.h>

#define MAX_SEGMENTS 64

typedef struct {
  char *text; /* literal text, or the parameter's name */
  size_t len;
  bool is_param;
} pattern_segment;

typedef struct {
  gn_route route; /* first: gn_router_add hands out &entry->route */
  pattern_segment *segments;
  size_t n_segments;
  uint64_t literal_mask;
} route_entry;

struct gn_router {
  GPtrArray *entries; /* of route_entry *, pointers stay valid as the table grows */
};

typedef struct {
  const char *start;
  size_t len;
} path_segment;

static void
route_entry_free (gpointer data)
{
  route_entry *entry = data;

  for (size_t i = 0; i < entry->n_segments; i++)
    g_free (entry->segments[i].text);
  g_free (entry->segments);
  g_free ((char *)entry->route.method);
  g_free ((char *)entry->route.pattern);
  g_free (entry);
}

gn_router *
gn_router_new (void)
{
  gn_router *router = g_new0 (gn_router, 1);

  router->entries = g_ptr_array_new_with_free_func (route_entry_free);
  return router;
}

void
gn_router_free (gn_router *router)
{
  if (router == NULL)
    return;
  g_ptr_array_unref (router->entries);
  g_free (router);
}

/* Splits "/a/b/" into "a", "b": one trailing slash is dropped, the leading one required.
 * Returns the number of segments, or -1 if the path is malformed or has too many. */
static int
split_path (const char *path, path_segment segments[MAX_SEGMENTS])
{
  size_t len;
  const char *p, *end;
  int n = 0;

  if (path == NULL || path[0] != '/')
    return -1;
  len = strnlen (path, GN_ROUTE_PATH_MAX + 1);
  if (len > GN_ROUTE_PATH_MAX)
    return -1;
  if (len > 1 && path[len - 1] == '/')
    len--;
  if (len == 1)
    return 0;

  p = path + 1;
  end = path + len;
  for (;;) {
    const char *slash = memchr (p, '/', end - p);
    const char *seg_end = slash ? slash : end;

    if (n == MAX_SEGMENTS)
      return -1;
    segments[n].start = p;
    segments[n].len = seg_end - p;
    n++;
    if (slash == NULL)
      return n;
    p = slash + 1;
  }
}

static bool
is_param_segment (const path_segment *part)
{
  return part->len >= 2 && part->start[0] == '{' && part->start[part->len - 1] == '}';
}

static int
count_params (const path_segment *parts, int n)
{
  int count = 0;

  for (int i = 0; i < n; i++)
    count += is_param_segment (&parts[i]);
  return count;
}

gn_route *
gn_router_add (gn_router *router, const char *method, const char *pattern, gn_http_handler handler,
               void *data, unsigned flags)
{
  path_segment parts[MAX_SEGMENTS];
  route_entry *entry;
  int n;

  g_return_val_if_fail (router != NULL, NULL);
  g_return_val_if_fail (method != NULL && pattern != NULL && handler != NULL, NULL);
  n = split_path (pattern, parts);
  g_return_val_if_fail (n >= 0, NULL);
  g_return_val_if_fail (count_params (parts, n) <= GN_ROUTE_MAX_PARAMS, NULL);

  entry = g_new0 (route_entry, 1);
  entry->route.method = g_strdup (method);
  entry->route.pattern = g_strdup (pattern);
  entry->route.name = entry->route.pattern;
  entry->route.handler = handler;
  entry->route.data = data;
  entry->route.flags = flags;
  entry->segments = g_new0 (pattern_segment, n > 0 ? n : 1);
  entry->n_segments = n;

  for (int i = 0; i < n; i++) {
    const char *s = parts[i].start;
    size_t len = parts[i].len;
    pattern_segment *seg = &entry->segments[i];

    if (is_param_segment (&parts[i])) {
      seg->is_param = true;
      seg->text = g_strndup (s + 1, len - 2);
    } else {
      seg->text = g_strndup (s, len);
      entry->literal_mask |= UINT64_C (1) << (MAX_SEGMENTS - 1 - i);
    }
    seg->len = strlen (seg->text);
  }

  g_ptr_array_add (router->entries, entry);
  return &entry->route;
}

/* Decodes seg into out (which has room for MIN (len, GN_ROUTE_PARAM_MAX) + 1 bytes), or only
 * checks it if out is NULL; returns the decoded length, or -1 if the segment is not
 * acceptable as a parameter value. */
static ssize_t
decode_param (const char *seg, size_t len, char *out)
{
  char scratch[GN_ROUTE_PARAM_MAX + 1];
  size_t n = 0;
  bool dots_only = true;

  /* A value is never longer than its encoded segment: a segment of up to three times the cap
   * may still decode to a value within it. */
  if (len == 0 || len > 3 * GN_ROUTE_PARAM_MAX)
    return -1;
  if (out == NULL)
    out = scratch;
  for (size_t i = 0; i < len; i++) {
    char c = seg[i];

    if (c == '%') {
      int hi, lo;

      if (i + 2 >= len)
        return -1;
      hi = g_ascii_xdigit_value (seg[i + 1]);
      lo = g_ascii_xdigit_value (seg[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = (char)(hi << 4 | lo);
      i += 2;
    }
    if (c == '/' || c == '\0')
      return -1;
    if (c != '.')
      dots_only = false;
    if (n == GN_ROUTE_PARAM_MAX)
      return -1;
    out[n++] = c;
  }
  if (dots_only && n <= 2)
    return -1;
  if (!g_utf8_validate (out, (gssize)n, NULL))
    return -1;
  out[n] = '\0';
  return (ssize_t)n;
}

static bool
entry_matches_path (const route_entry *entry, const path_segment *parts, int n_parts)
{
  if ((size_t)n_parts != entry->n_segments)
    return false;
  for (int i = 0; i < n_parts; i++) {
    const pattern_segment *seg = &entry->segments[i];

    if (seg->is_param) {
      if (decode_param (parts[i].start, parts[i].len, NULL) < 0)
        return false;
    } else if (seg->len != parts[i].len || memcmp (seg->text, parts[i].start, seg->len) != 0) {
      return false;
    }
  }
  return true;
}

static bool
method_matches (const char *route_method, const char *method)
{
  return strcmp (route_method, method) == 0
         || (strcmp (method, "HEAD") == 0 && strcmp (route_method, "GET") == 0);
}

/* Appends method to the comma-separated list in allow unless it is there already; a method
 * that does not fit is left out rather than cut in half. */
static void
allow_append (char *allow, size_t allow_size, const char *method)
{
  size_t used = strlen (allow), mlen = strlen (method);
  const char *p = allow;

  while (*p != '\0') {
    const char *comma = strchr (p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen (p);

    if (len == mlen && memcmp (p, method, mlen) == 0)
      return;
    p = comma ? comma + 2 : p + len;
  }
  if (used + (used ? 2 : 0) + mlen + 1 > allow_size)
    return;
  if (used > 0) {
    memcpy (allow + used, ", ", 2);
    used += 2;
  }
  memcpy (allow + used, method, mlen + 1);
}

/* Scans the table: returns the best entry for method (NULL if none) and, if allow is
 * non-NULL, fills it with every method any entry matching the path accepts. */
static const route_entry *
find_entry (const gn_router *router, const char *method, const path_segment *parts, int n_parts,
            bool *path_known, char *allow, size_t allow_size)
{
  const route_entry *best = NULL;

  *path_known = false;
  if (allow != NULL && allow_size > 0)
    allow[0] = '\0';

  for (guint i = 0; i < router->entries->len; i++) {
    const route_entry *entry = g_ptr_array_index (router->entries, i);

    if (!entry_matches_path (entry, parts, n_parts))
      continue;
    *path_known = true;
    if (allow != NULL && allow_size > 0) {
      allow_append (allow, allow_size, entry->route.method);
      if (strcmp (entry->route.method, "GET") == 0)
        allow_append (allow, allow_size, "HEAD");
    }
    if (method != NULL && method_matches (entry->route.method, method)
        && (best == NULL || entry->literal_mask > best->literal_mask
            || (entry->literal_mask == best->literal_mask
                && strcmp (entry->route.method, method) == 0)))
      best = entry;
  }
  return best;
}

gn_route_result
gn_router_match (const gn_router *router, const char *method, const char *path, gn_arena *arena,
                 const gn_route **route, gn_route_param params[GN_ROUTE_MAX_PARAMS],
                 size_t *n_params, char *allow, size_t allow_size)
{
  path_segment parts[MAX_SEGMENTS];
  const route_entry *best;
  bool path_known;
  int n_parts;

  *route = NULL;
  *n_params = 0;
  if (allow != NULL && allow_size > 0)
    allow[0] = '\0';

  n_parts = split_path (path, parts);
  if (n_parts < 0)
    return GN_ROUTE_NOT_FOUND;

  /* The Allow list is only worth building when the answer will be 405: a second scan on that
   * rare path keeps the common one free of string work. */
  best = find_entry (router, method, parts, n_parts, &path_known, NULL, 0);
  if (best == NULL) {
    if (!path_known)
      return GN_ROUTE_NOT_FOUND;
    find_entry (router, NULL, parts, n_parts, &path_known, allow, allow_size);
    return GN_ROUTE_METHOD_NOT_ALLOWED;
  }

  for (size_t i = 0; i < best->n_segments; i++) {
    const pattern_segment *seg = &best->segments[i];
    char *value;

    if (!seg->is_param)
      continue;
    value = gn_arena_alloc (arena, parts[i].len + 1);
    decode_param (parts[i].start, parts[i].len, value);
    params[*n_params].name = seg->text;
    params[*n_params].value = value;
    (*n_params)++;
  }
  *route = &best->route;
  return GN_ROUTE_MATCH;
}

bool
gn_router_allowed_methods (const gn_router *router, const char *path, char *allow,
                           size_t allow_size)
{
  path_segment parts[MAX_SEGMENTS];
  bool path_known;
  int n_parts = split_path (path, parts);

  if (allow != NULL && allow_size > 0)
    allow[0] = '\0';
  if (n_parts < 0)
    return false;
  find_entry (router, NULL, parts, n_parts, &path_known, allow, allow_size);
  return path_known;
}
