/* Page cursors (node/services/post/cursor.c): the encoding round trip, strict refusal of
 * anything else, and the keyset order they stand for, checked against a real PostgreSQL
 * (started through embedded.c) holding the post schema from the embedded migrations. */
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "embedded.h"
#include "pg.h"
#include "post/cursor.h"

static const char *database_url;

static const char *const ids[] = {
  "00000000-0000-4000-8000-000000000000",
  "0f8fad5b-d9cb-469f-a165-70867728950e",
  "7c9e6679-7425-40de-944b-e07fc1f90ae7",
  "ffffffff-ffff-4fff-bfff-ffffffffffff",
};

static char *
encode_or_die (int64_t created_at_us, const char *id)
{
  gn_cursor key = { .created_at_us = created_at_us };
  g_strlcpy (key.id, id, sizeof key.id);
  char *out = g_malloc (GN_CURSOR_MAX_CHARS + 1);
  g_assert_true (gn_cursor_encode (&key, out, GN_CURSOR_MAX_CHARS + 1));
  return out;
}

/* base64url without padding of raw text, to build cursors by hand. */
static char *
base64url (const char *text)
{
  char *encoded = g_base64_encode ((const guchar *)text, strlen (text));
  char *w = encoded;
  for (char *r = encoded; *r != '\0'; r++) {
    if (*r == '=')
      continue;
    *w++ = *r == '+' ? '-' : *r == '/' ? '_' : *r;
  }
  *w = '\0';
  return encoded;
}

static void
test_round_trip (void)
{
  const int64_t times[]
      = { 0, 1, 999999, 1000000, 1795701600250001, G_GINT64_CONSTANT (253402300799999999) };
  for (size_t t = 0; t < G_N_ELEMENTS (times); t++)
    for (size_t i = 0; i < G_N_ELEMENTS (ids); i++) {
      g_autofree char *text = encode_or_die (times[t], ids[i]);
      g_assert_cmpuint (strlen (text), <=, GN_CURSOR_MAX_CHARS);
      for (const char *p = text; *p != '\0'; p++)
        g_assert_true (g_ascii_isalnum (*p) || *p == '-' || *p == '_');
      gn_cursor back;
      g_assert_true (gn_cursor_decode (text, &back));
      g_assert_cmpint (back.created_at_us, ==, times[t]);
      g_assert_cmpstr (back.id, ==, ids[i]);
    }

  /* The format is the documented one: base64url of "1:<us>:<id>". */
  g_autofree char *text = encode_or_die (1795701600250001, ids[2]);
  g_autofree char *expected = base64url ("1:1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  g_assert_cmpstr (text, ==, expected);
}

static void
test_encode_refuses_bad_keys (void)
{
  char out[GN_CURSOR_MAX_CHARS + 1];
  gn_cursor key = { .created_at_us = -1 };
  g_strlcpy (key.id, ids[1], sizeof key.id);
  g_assert_false (gn_cursor_encode (&key, out, sizeof out));
  key.created_at_us = G_GINT64_CONSTANT (253402300800000000);
  g_assert_false (gn_cursor_encode (&key, out, sizeof out));
  key.created_at_us = 5;
  g_strlcpy (key.id, "0F8FAD5B-D9CB-469F-A165-70867728950E", sizeof key.id);
  g_assert_false (gn_cursor_encode (&key, out, sizeof out));
  g_strlcpy (key.id, "not-a-uuid", sizeof key.id);
  g_assert_false (gn_cursor_encode (&key, out, sizeof out));
  g_strlcpy (key.id, ids[1], sizeof key.id);
  g_assert_false (gn_cursor_encode (&key, out, 10));
}

static void
assert_refused (const char *text)
{
  gn_cursor key = { .created_at_us = 42, .id = "untouched" };
  if (gn_cursor_decode (text, &key))
    g_error ("cursor \"%s\" was accepted as (%" G_GINT64_FORMAT ", %s)", text, key.created_at_us,
             key.id);
  g_assert_cmpint (key.created_at_us, ==, 42);
  g_assert_cmpstr (key.id, ==, "untouched");
}

static void
assert_text_refused (const char *raw)
{
  g_autofree char *text = base64url (raw);
  assert_refused (text);
}

static void
test_garbage_refused (void)
{
  assert_refused ("");
  assert_refused ("x");
  assert_refused ("====");
  assert_refused ("not a cursor");
  assert_refused ("ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ");
  assert_refused ("MTox");
  assert_refused ("' OR 1=1 --");
  g_autofree char *huge = g_strnfill (10000, 'A');
  assert_refused (huge);

  /* Well-formed base64url of texts that are not cursors. */
  assert_text_refused ("2:1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:01795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:+1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:-1:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1::7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:99999999999999999999:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:9223372036854775807:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:1795701600250001:7C9E6679-7425-40DE-944B-E07FC1F90AE7");
  assert_text_refused ("1:1795701600250001:7c9e6679742540de944be07fc1f90ae7");
  assert_text_refused ("1:1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae");
  assert_text_refused ("1:1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7x");
  assert_text_refused ("1:1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7:");
  assert_text_refused ("1:1795701600250001:zc9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1 :1795701600250001:7c9e6679-7425-40de-944b-e07fc1f90ae7");
  assert_text_refused ("1:1795701600250001");
}

static void
test_tampered_refused (void)
{
  g_autofree char *good = encode_or_die (1795701600250001, ids[2]);
  size_t len = strlen (good);
  gn_cursor key;
  g_assert_true (gn_cursor_decode (good, &key));

  /* Padding, the standard alphabet, whitespace and truncation are all refused. */
  g_autofree char *padded = g_strdup_printf ("%s=", good);
  assert_refused (padded);
  g_autofree char *spaced = g_strdup_printf (" %s", good);
  assert_refused (spaced);
  g_autofree char *newline = g_strdup_printf ("%s\n", good);
  assert_refused (newline);
  g_autofree char *shorter = g_strndup (good, len - 1);
  assert_refused (shorter);
  g_autofree char *longer = g_strdup_printf ("%sA", good);
  assert_refused (longer);
  for (size_t i = 0; i < len; i += 7) {
    g_autofree char *changed = g_strdup (good);
    changed[i] = '+';
    assert_refused (changed);
    changed[i] = '/';
    assert_refused (changed);
  }

  /* Flipping one character either breaks the text (refused) or names another valid
   * position, which is then exactly what it decodes to: never anything in between. */
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int refused = 0;
  for (size_t i = 0; i < len; i++)
    for (const char *c = alphabet; *c != '\0'; c++) {
      if (*c == good[i])
        continue;
      g_autofree char *changed = g_strdup (good);
      changed[i] = *c;
      gn_cursor other;
      if (!gn_cursor_decode (changed, &other)) {
        refused++;
        continue;
      }
      g_autofree char *again = encode_or_die (other.created_at_us, other.id);
      g_assert_cmpstr (again, ==, changed);
    }
  g_assert_cmpint (refused, >, 0);

  /* Unused low bits of the last character must be zero: one position, one spelling. */
  g_autofree char *raw = base64url ("1:5:0f8fad5b-d9cb-469f-a165-70867728950e");
  size_t raw_len = strlen (raw);
  g_assert_cmpuint (raw_len % 4, !=, 0);
  g_assert_true (gn_cursor_decode (raw, &key));
  const char *pos = strchr (alphabet, raw[raw_len - 1]);
  g_autofree char *low_bits = g_strdup (raw);
  low_bits[raw_len - 1] = pos[1];
  assert_refused (low_bits);
}

static void
test_timestamp_literal (void)
{
  char text[GN_CURSOR_TIMESTAMP_CHARS];
  gn_cursor key = { .created_at_us = 0 };
  gn_cursor_timestamp (&key, text);
  g_assert_cmpstr (text, ==, "1970-01-01 00:00:00.000000+00");
  key.created_at_us = 1795701600250001;
  gn_cursor_timestamp (&key, text);
  g_assert_cmpstr (text, ==, "2026-11-26 14:00:00.250001+00");
  key.created_at_us = 1795701599999999;
  gn_cursor_timestamp (&key, text);
  g_assert_cmpstr (text, ==, "2026-11-26 13:59:59.999999+00");
  g_assert_cmpint (gn_pg_timestamp_us (text), ==, key.created_at_us);
}

static PGconn *
connect_or_die (void)
{
  g_autoptr (GError) error = NULL;
  PGconn *conn = gn_pg_connect (database_url, &error);
  g_assert_no_error (error);
  return conn;
}

static PGresult *
exec_or_die (PGconn *conn, const char *sql, int n, const char *const *params)
{
  g_autoptr (GError) error = NULL;
  PGresult *res = gn_pg_exec (conn, &error, sql, n, params);
  g_assert_no_error (error);
  return res;
}

/* Pages through post.posts the way post.c does: first page by LIMIT, then
 * "(created_at, id) < (cursor)" with the cursor of the previous page's last row.  Between
 * pages, `between` runs (concurrent writers).  Returns the ids seen, in order. */
static GPtrArray *
page_through (PGconn *conn, int limit, void (*between) (PGconn *conn, int page))
{
  GPtrArray *seen = g_ptr_array_new_with_free_func (g_free);
  char fetch[16];
  g_snprintf (fetch, sizeof fetch, "%d", limit + 1);
  g_autofree char *cursor = NULL;
  for (int page = 0;; page++) {
    PGresult *res;
    if (cursor == NULL) {
      const char *params[] = { fetch };
      res = exec_or_die (conn,
                         "SELECT p.id, (extract(epoch FROM p.created_at) * 1000000)::int8"
                         " FROM post.posts p ORDER BY p.created_at DESC, p.id DESC LIMIT $1",
                         1, params);
    } else {
      gn_cursor after;
      g_assert_true (gn_cursor_decode (cursor, &after));
      char after_time[GN_CURSOR_TIMESTAMP_CHARS];
      gn_cursor_timestamp (&after, after_time);
      const char *params[] = { after_time, after.id, fetch };
      res = exec_or_die (
          conn,
          "SELECT p.id, (extract(epoch FROM p.created_at) * 1000000)::int8"
          " FROM post.posts p"
          " WHERE p.state = 'published' AND (p.created_at, p.id) < ($1::timestamptz, $2::uuid)"
          " ORDER BY p.created_at DESC, p.id DESC LIMIT $3",
          3, params);
    }
    int rows = PQntuples (res);
    int n = MIN (rows, limit);
    for (int i = 0; i < n; i++)
      g_ptr_array_add (seen, g_strdup (PQgetvalue (res, i, 0)));
    g_clear_pointer (&cursor, g_free);
    if (rows > limit)
      cursor = encode_or_die (g_ascii_strtoll (PQgetvalue (res, n - 1, 1), NULL, 10),
                              PQgetvalue (res, n - 1, 0));
    PQclear (res);
    if (cursor == NULL)
      return seen;
    if (between != NULL)
      between (conn, page);
  }
}

static void
insert_newer_posts (PGconn *conn, int page)
{
  /* Posts created while paging: newer ones, and (as a slow transaction would) ones stamped
   * at the very same microsecond as an existing post. */
  PQclear (exec_or_die (conn,
                        "INSERT INTO post.posts (user_id, caption)"
                        " SELECT gen_random_uuid(), 'new' FROM generate_series(1, 3)",
                        0, NULL));
  if (page % 2 == 0)
    PQclear (exec_or_die (conn,
                          "INSERT INTO post.posts (user_id, caption, created_at)"
                          " SELECT gen_random_uuid(), 'tie', created_at FROM post.posts"
                          " WHERE caption = 'old' ORDER BY random() LIMIT 1",
                          0, NULL));
}

static void
assert_index_range (PGconn *conn, const char *explain, const char *index)
{
  PGresult *plan = exec_or_die (conn, explain, 0, NULL);
  GString *text = g_string_new (NULL);
  for (int i = 0; i < PQntuples (plan); i++)
    g_string_append_printf (text, "%s\n", PQgetvalue (plan, i, 0));
  PQclear (plan);
  if (strstr (text->str, index) == NULL || strstr (text->str, "Index Cond") == NULL
      || strstr (text->str, "ROW(") == NULL || strstr (text->str, "Sort") != NULL)
    g_error ("keyset query does not use %s as an ordered range:\n%s", index, text->str);
  g_test_message ("%s", text->str);
  g_string_free (text, TRUE);
}

static void
test_keyset_order (void)
{
  PGconn *conn = connect_or_die ();
  g_autoptr (GError) error = NULL;
  size_t n = 0;
  g_autofree gn_migration *migrations = gn_pg_migrations_from_resource ("post", &n, &error);
  g_assert_no_error (error);
  g_assert_true (gn_pg_migrate (conn, "post", migrations, n, NULL, &error));
  g_assert_no_error (error);

  /* 60 posts: groups of five sharing one microsecond, groups one microsecond apart, and a
   * group straddling a second boundary. */
  PQclear (exec_or_die (conn,
                        "INSERT INTO post.posts (user_id, caption, created_at)"
                        " SELECT gen_random_uuid(), 'old',"
                        "  timestamptz '2026-11-26 13:59:59.999995+00'"
                        "  + (g / 5) * interval '1 microsecond'"
                        " FROM generate_series(0, 59) g",
                        0, NULL));

  /* Without writers: every post once, in exactly the order of ORDER BY. */
  PGresult *all = exec_or_die (conn,
                               "SELECT p.id FROM post.posts p"
                               " ORDER BY p.created_at DESC, p.id DESC",
                               0, NULL);
  g_assert_cmpint (PQntuples (all), ==, 60);
  for (int limit = 1; limit <= 7; limit += 2) {
    g_autoptr (GPtrArray) seen = page_through (conn, limit, NULL);
    g_assert_cmpuint (seen->len, ==, 60);
    for (int i = 0; i < 60; i++)
      g_assert_cmpstr (g_ptr_array_index (seen, i), ==, PQgetvalue (all, i, 0));
  }
  PQclear (all);

  /* With writers between pages: no id twice, every post that existed at the start seen. */
  PGresult *before = exec_or_die (conn, "SELECT id FROM post.posts", 0, NULL);
  g_autoptr (GPtrArray) seen = page_through (conn, 4, insert_newer_posts);
  g_autoptr (GHashTable) unique = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < seen->len; i++)
    g_assert_true (g_hash_table_add (unique, g_ptr_array_index (seen, i)));
  for (int i = 0; i < PQntuples (before); i++)
    g_assert_true (g_hash_table_contains (unique, PQgetvalue (before, i, 0)));
  PQclear (before);

  /* The cursor conditions are index range scans, not filters over the whole table. */
  PQclear (exec_or_die (conn,
                        "INSERT INTO post.posts (user_id, caption)"
                        " SELECT CASE WHEN g % 20 <> 0 THEN gen_random_uuid()"
                        "  ELSE '0f8fad5b-d9cb-469f-a165-70867728950e' END, 'plan'"
                        " FROM generate_series(1, 2000) g",
                        0, NULL));
  PQclear (exec_or_die (conn, "ANALYZE post.posts", 0, NULL));
  PQclear (exec_or_die (conn, "SET enable_seqscan = off", 0, NULL));
  assert_index_range (conn,
                      "EXPLAIN SELECT id FROM post.posts p"
                      " WHERE p.state = 'published' AND (p.created_at, p.id)"
                      "   < ('2026-11-26 14:00:00+00',"
                      "   '7c9e6679-7425-40de-944b-e07fc1f90ae7')"
                      " ORDER BY p.created_at DESC, p.id DESC LIMIT 5",
                      "posts_feed_idx");
  assert_index_range (conn,
                      "EXPLAIN SELECT id FROM post.posts p"
                      " WHERE p.user_id = '0f8fad5b-d9cb-469f-a165-70867728950e'"
                      " AND p.state = 'published'"
                      " AND (p.created_at, p.id) < ('9999-01-01 00:00:00+00',"
                      "   '7c9e6679-7425-40de-944b-e07fc1f90ae7')"
                      " ORDER BY p.created_at DESC, p.id DESC LIMIT 5",
                      "posts_user_feed_idx");
  PQfinish (conn);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/post/cursor/round-trip", test_round_trip);
  g_test_add_func ("/post/cursor/encode-refuses-bad-keys", test_encode_refuses_bad_keys);
  g_test_add_func ("/post/cursor/garbage-refused", test_garbage_refused);
  g_test_add_func ("/post/cursor/tampered-refused", test_tampered_refused);
  g_test_add_func ("/post/cursor/timestamp-literal", test_timestamp_literal);
  g_test_add_func ("/post/cursor/keyset-order", test_keyset_order);

  g_autofree char *dir = g_dir_make_tmp ("generia-cursor-XXXXXX", NULL);
  g_chmod (dir, 0755);
  g_autoptr (GError) error = NULL;
  gn_embedded_options options = { .data_dir = dir, .postgres = true, .ephemeral = true };
  gn_embedded *embedded = gn_embedded_start (&options, &error);
  if (embedded == NULL)
    g_error ("cannot start PostgreSQL for the test: %s", error->message);
  database_url = gn_embedded_database_url (embedded);
  int status = g_test_run ();

  gn_embedded_stop (embedded);
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", dir);
  if (system (rm) != 0)
    g_printerr ("# could not remove %s\n", dir);
  return status;
}
