/* Versioned migrations against a real, private PostgreSQL (started through embedded.c). */
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "embedded.h"
#include "pg.h"

static const char *database_url;

static PGconn *
connect_or_die (void)
{
  g_autoptr (GError) error = NULL;
  PGconn *conn = gn_pg_connect (database_url, &error);
  g_assert_no_error (error);
  return conn;
}

static long
count_rows (PGconn *conn, const char *sql)
{
  g_autoptr (GError) error = NULL;
  PGresult *res = gn_pg_exec (conn, &error, sql, 0, NULL);
  g_assert_no_error (error);
  long n = strtol (PQgetvalue (res, 0, 0), NULL, 10);
  PQclear (res);
  return n;
}

static const gn_migration good[] = {
  { 1, "0001_schema.sql", "CREATE SCHEMA mtest; CREATE TABLE mtest.items (id int PRIMARY KEY);" },
  { 2, "0002_column.sql", "ALTER TABLE mtest.items ADD COLUMN name text NOT NULL DEFAULT '';" },
};

static void
test_apply_once (void)
{
  PGconn *conn = connect_or_die ();
  g_autoptr (GError) error = NULL;
  int applied = -1;

  g_assert_true (gn_pg_migrate (conn, "mtest", good, G_N_ELEMENTS (good), &applied, &error));
  g_assert_no_error (error);
  g_assert_cmpint (applied, ==, 2);
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM public.schema_migrations"
                                     " WHERE service = 'mtest'"),
                   ==, 2);
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM information_schema.columns"
                                     " WHERE table_schema = 'mtest' AND column_name = 'name'"),
                   ==, 1);

  /* Running again applies nothing and fails on nothing. */
  g_assert_true (gn_pg_migrate (conn, "mtest", good, G_N_ELEMENTS (good), &applied, &error));
  g_assert_cmpint (applied, ==, 0);
  PQfinish (conn);
}

/* A failing file rolls back alone: its earlier statements leave no trace, it is not recorded,
 * and the migrations before it stay applied. */
static void
test_failure_rolls_back (void)
{
  static const gn_migration broken[] = {
    { 1, "0001_ok.sql", "CREATE SCHEMA mbroken; CREATE TABLE mbroken.a (id int);" },
    { 2, "0002_bad.sql", "CREATE TABLE mbroken.b (id int); SELECT no_such_function();" },
    { 3, "0003_never.sql", "CREATE TABLE mbroken.c (id int);" },
  };
  PGconn *conn = connect_or_die ();
  g_autoptr (GError) error = NULL;
  int applied = -1;

  g_assert_false (gn_pg_migrate (conn, "mbroken", broken, 3, &applied, &error));
  g_assert_error (error, GN_PG_ERROR, GN_PG_ERROR_MIGRATION);
  g_assert_nonnull (strstr (error->message, "mbroken/0002_bad.sql"));
  g_assert_nonnull (strstr (error->message, "no_such_function"));
  g_assert_cmpint (applied, ==, 1);
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM public.schema_migrations"
                                     " WHERE service = 'mbroken'"),
                   ==, 1);
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM information_schema.tables"
                                     " WHERE table_schema = 'mbroken'"),
                   ==, 1);
  /* The connection is usable afterwards (the transaction was closed). */
  g_assert_cmpint (count_rows (conn, "SELECT 1"), ==, 1);
  PQfinish (conn);
}

typedef struct {
  int applied;
  gboolean ok;
} race_result;

static const gn_migration race[] = {
  { 1, "0001_a.sql", "CREATE SCHEMA mrace; CREATE TABLE mrace.t (id int);" },
  { 2, "0002_b.sql", "INSERT INTO mrace.t VALUES (1);" },
  { 3, "0003_c.sql", "INSERT INTO mrace.t VALUES (2);" },
};

static gpointer
race_thread (gpointer data)
{
  race_result *result = data;
  g_autoptr (GError) error = NULL;
  PGconn *conn = gn_pg_connect (database_url, &error);
  result->ok
      = conn != NULL
        && gn_pg_migrate (conn, "mrace", race, G_N_ELEMENTS (race), &result->applied, &error);
  if (error != NULL)
    g_printerr ("# %s\n", error->message);
  PQfinish (conn);
  return NULL;
}

/* Two processes starting at once: every migration runs exactly once. */
static void
test_concurrent (void)
{
  race_result results[4] = { { 0 } };
  GThread *threads[4];
  for (int i = 0; i < 4; i++)
    threads[i] = g_thread_new ("migrate", race_thread, &results[i]);
  int total = 0;
  for (int i = 0; i < 4; i++) {
    g_thread_join (threads[i]);
    g_assert_true (results[i].ok);
    total += results[i].applied;
  }
  g_assert_cmpint (total, ==, 3);
  PGconn *conn = connect_or_die ();
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM mrace.t"), ==, 2);
  PQfinish (conn);
}

/* The auth service's own files, as compiled into the binary. */
static void
test_embedded_resources (void)
{
  g_autoptr (GError) error = NULL;
  size_t n = 0;
  g_autofree gn_migration *migrations = gn_pg_migrations_from_resource ("auth", &n, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (n, >=, 1);
  for (size_t i = 1; i < n; i++)
    g_assert_cmpint (migrations[i - 1].version, <, migrations[i].version);
  g_assert_cmpint (migrations[0].version, ==, 1);

  PGconn *conn = connect_or_die ();
  int applied = 0;
  g_assert_true (gn_pg_migrate (conn, "auth", migrations, n, &applied, &error));
  g_assert_no_error (error);
  g_assert_cmpint (applied, ==, (int)n);
  g_assert_cmpint (count_rows (conn, "SELECT count(*) FROM information_schema.tables"
                                     " WHERE table_schema = 'auth' AND table_name = 'users'"),
                   ==, 1);

  /* The unique index is case-insensitive on e-mail and reported by constraint name. */
  const char *a[] = { "alice", "Alice@Example.org" };
  const char *b[] = { "alice2", "alice@example.ORG" };
  PGresult *res = gn_pg_exec (conn, &error,
                              "INSERT INTO auth.users (username, email, password_hash)"
                              " VALUES ($1, $2, 'x')",
                              2, a);
  g_assert_no_error (error);
  PQclear (res);
  res = gn_pg_exec (conn, &error,
                    "INSERT INTO auth.users (username, email, password_hash) VALUES ($1, $2, 'x')",
                    2, b);
  g_assert_null (res);
  g_assert_error (error, GN_PG_ERROR, GN_PG_ERROR_UNIQUE);
  g_assert_nonnull (strstr (error->message, "users_email_key"));
  g_clear_error (&error);

  /* The username format is enforced by the schema too, not only by the service. */
  const char *bad[] = { "Bad Name", "bad@example.org" };
  res = gn_pg_exec (conn, &error,
                    "INSERT INTO auth.users (username, email, password_hash) VALUES ($1, $2, 'x')",
                    2, bad);
  g_assert_null (res);
  g_assert_error (error, GN_PG_ERROR, GN_PG_ERROR_QUERY);
  PQfinish (conn);
}

static void
test_thread_conn_prepared (void)
{
  g_autoptr (GError) error = NULL;
  PGconn *conn = gn_pg_thread_conn (database_url, &error);
  g_assert_no_error (error);
  g_assert_true (conn == gn_pg_thread_conn (database_url, &error));
  for (int i = 0; i < 3; i++) {
    char n[8];
    g_snprintf (n, sizeof n, "%d", i);
    const char *params[] = { n };
    PGresult *res = gn_pg_exec (conn, &error, "SELECT $1::int + 1", 1, params);
    g_assert_no_error (error);
    g_assert_cmpint (atoi (PQgetvalue (res, 0, 0)), ==, i + 1);
    PQclear (res);
  }
  /* The server ends the session (restart, admin): the next lookup reconnects. */
  PGresult *pid = gn_pg_exec (conn, &error, "SELECT pg_backend_pid()", 0, NULL);
  g_assert_no_error (error);
  const char *params[] = { PQgetvalue (pid, 0, 0) };
  PGconn *admin = connect_or_die ();
  PGresult *killed = gn_pg_exec (admin, &error, "SELECT pg_terminate_backend($1::int)", 1, params);
  g_assert_no_error (error);
  PQclear (killed);
  PQclear (pid);
  PQfinish (admin);
  PGresult *failed = gn_pg_exec (conn, &error, "SELECT 1", 0, NULL);
  g_assert_null (failed);
  g_clear_error (&error);
  PGconn *again = gn_pg_thread_conn (database_url, &error);
  g_assert_no_error (error);
  PGresult *res = gn_pg_exec (again, &error, "SELECT 41 + 1", 0, NULL);
  g_assert_no_error (error);
  g_assert_cmpstr (PQgetvalue (res, 0, 0), ==, "42");
  PQclear (res);
}

static void
test_timestamps (void)
{
  g_assert_cmpint (gn_pg_timestamp_us ("2026-11-26 14:00:00+00"), ==,
                   (int64_t)1795701600 * G_USEC_PER_SEC);
  g_assert_cmpint (gn_pg_timestamp_us ("2026-11-26 14:00:00.25+00"), ==,
                   (int64_t)1795701600 * G_USEC_PER_SEC + 250000);
  g_assert_cmpint (gn_pg_timestamp_us (""), ==, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_autofree char *dir = g_dir_make_tmp ("generia-migrations-XXXXXX", NULL);
  g_chmod (dir, 0755);
  g_autoptr (GError) error = NULL;
  gn_embedded_options options = { .data_dir = dir, .postgres = true, .ephemeral = true };
  gn_embedded *embedded = gn_embedded_start (&options, &error);
  if (embedded == NULL)
    g_error ("cannot start PostgreSQL for the test: %s", error->message);
  database_url = gn_embedded_database_url (embedded);

  g_test_add_func ("/migrations/apply-once", test_apply_once);
  g_test_add_func ("/migrations/failure-rolls-back", test_failure_rolls_back);
  g_test_add_func ("/migrations/concurrent", test_concurrent);
  g_test_add_func ("/migrations/embedded-resources", test_embedded_resources);
  g_test_add_func ("/pg/thread-conn-prepared", test_thread_conn_prepared);
  g_test_add_func ("/pg/timestamps", test_timestamps);
  int status = g_test_run ();

  gn_embedded_stop (embedded);
  g_autofree char *rm = g_strdup_printf ("rm -rf '%s'", dir);
  if (system (rm) != 0)
    g_printerr ("# could not remove %s\n", dir);
  return status;
}
