/* test-embedded.c - the embedded PostgreSQL and Redis, for real: start, query, stop, start
 * again on the same folder, recover from crashed servers, report a server that cannot start.
 *
 * Data folders live under /tmp with mode 0755 so that, when the tests run as root, the
 * postgres system user can reach them. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "config.h"
#include "embedded.h"

typedef struct {
  char *base;     /* the temporary folder, removed afterwards */
  char *data_dir; /* the node's data folder inside it */
} fixture;

static void
fixture_set_up (fixture *f, gconstpointer suffix)
{
  GError *error = NULL;
  f->base = g_dir_make_tmp ("test-embedded-XXXXXX", &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_chmod (f->base, 0755), ==, 0);
  f->data_dir = g_build_filename (f->base, suffix ? suffix : "node", NULL);
}

static void
remove_tree (const char *path)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return;
  if (S_ISDIR (st.st_mode)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
    const char *name;
    while (dir != NULL && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  }
  g_assert_cmpint (g_remove (path), ==, 0);
}

static void
fixture_tear_down (fixture *f, gconstpointer suffix)
{
  g_autofree char *run_dir = gn_config_run_dir (f->data_dir);
  if (!g_str_has_prefix (run_dir, f->base))
    remove_tree (run_dir);
  remove_tree (f->base);
  g_free (f->base);
  g_free (f->data_dir);
}

static gn_embedded *
start_mode (fixture *f, bool ephemeral)
{
  GError *error = NULL;
  gn_embedded_options options
      = { .data_dir = f->data_dir, .postgres = true, .redis = true, .ephemeral = ephemeral };
  gn_embedded *embedded = gn_embedded_start (&options, &error);
  g_assert_no_error (error);
  g_assert_nonnull (embedded);
  return embedded;
}

static gn_embedded *
start (fixture *f)
{
  return start_mode (f, true);
}

static PGconn *
connect_pg (gn_embedded *embedded)
{
  const char *url = gn_embedded_database_url (embedded);
  g_assert_nonnull (url);
  g_assert_true (g_str_has_prefix (url, "host=/"));
  g_assert_nonnull (strstr (url, " port=5432 dbname=generia user=generia"));

  PGconn *conn = PQconnectdb (url);
  if (PQstatus (conn) != CONNECTION_OK)
    g_error ("connecting to %s: %s", url, PQerrorMessage (conn));
  return conn;
}

static char *
query_one (PGconn *conn, const char *sql)
{
  PGresult *result = PQexec (conn, sql);
  if (PQresultStatus (result) != PGRES_TUPLES_OK && PQresultStatus (result) != PGRES_COMMAND_OK)
    g_error ("%s: %s", sql, PQerrorMessage (conn));
  char *value = PQntuples (result) > 0 ? g_strdup (PQgetvalue (result, 0, 0)) : NULL;
  PQclear (result);
  return value;
}

static redisContext *
connect_redis (gn_embedded *embedded)
{
  const char *url = gn_embedded_redis_url (embedded);
  g_assert_nonnull (url);
  g_assert_true (g_str_has_prefix (url, "unix:/"));

  redisContext *ctx = redisConnectUnix (url + strlen ("unix:"));
  g_assert_nonnull (ctx);
  g_assert_cmpint (ctx->err, ==, 0);
  return ctx;
}

static void
assert_redis_pong (gn_embedded *embedded)
{
  redisContext *ctx = connect_redis (embedded);
  redisReply *reply = redisCommand (ctx, "PING");
  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_STATUS);
  g_assert_cmpstr (reply->str, ==, "PONG");
  freeReplyObject (reply);
  redisFree (ctx);
}

static void
create_table_with_row (gn_embedded *embedded)
{
  PGconn *conn = connect_pg (embedded);
  g_free (query_one (conn, "CREATE TABLE kept (id int PRIMARY KEY, note text)"));
  g_free (query_one (conn, "INSERT INTO kept VALUES (1, 'still here')"));
  PQfinish (conn);
}

static void
assert_row_kept (gn_embedded *embedded)
{
  PGconn *conn = connect_pg (embedded);
  g_autofree char *note = query_one (conn, "SELECT note FROM kept WHERE id = 1");
  g_assert_cmpstr (note, ==, "still here");
  PQfinish (conn);
}

static void
test_start_stop_restart (fixture *f, gconstpointer data)
{
  gn_embedded *embedded = start (f);

  PGconn *conn = connect_pg (embedded);
  g_autofree char *answer = query_one (conn, "SELECT 6 * 7");
  g_assert_cmpstr (answer, ==, "42");
  g_autofree char *encoding = query_one (conn, "SHOW server_encoding");
  g_assert_cmpstr (encoding, ==, "UTF8");
  g_autofree char *tcp = query_one (conn, "SHOW listen_addresses");
  g_assert_cmpstr (tcp, ==, "");
  PQfinish (conn);
  create_table_with_row (embedded);

  assert_redis_pong (embedded);
  g_autofree char *redis_socket = g_strdup (gn_embedded_redis_url (embedded) + strlen ("unix:"));
  gn_embedded_stop (embedded);

  /* Both servers are gone: their sockets are removed. */
  g_autofree char *run_dir = gn_config_run_dir (f->data_dir);
  g_autofree char *pg_socket = g_build_filename (run_dir, ".s.PGSQL.5432", NULL);
  g_assert_false (g_file_test (pg_socket, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (redis_socket, G_FILE_TEST_EXISTS));

  embedded = start (f);
  assert_row_kept (embedded);
  assert_redis_pong (embedded);

  /* A node killed without stopping leaves its servers running: the next start uses them. */
  gn_embedded *next = start (f);
  assert_row_kept (next);
  assert_redis_pong (next);
  gn_embedded_stop (next);
  g_assert_false (g_file_test (pg_socket, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (redis_socket, G_FILE_TEST_EXISTS));
  gn_embedded_stop (embedded);
}

static pid_t
read_pid (const char *path)
{
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  return (pid_t)g_ascii_strtoll (contents, NULL, 10);
}

static void
kill_and_wait (pid_t pid)
{
  g_assert_cmpint (pid, >, 1);
  g_assert_cmpint (kill (pid, SIGKILL), ==, 0);
  /* Orphaned servers are reaped by init, which may take a moment. */
  for (int i = 0; i < 3000 && (kill (pid, 0) == 0 || errno != ESRCH); i++)
    g_usleep (10 * 1000);
  g_assert_cmpint (kill (pid, 0), ==, -1);
}

static void
redis_command (gn_embedded *embedded, const char *command, const char *expected)
{
  redisContext *ctx = connect_redis (embedded);
  redisReply *reply = redisCommand (ctx, command);
  g_assert_nonnull (reply);
  g_assert_cmpstr (reply->str, ==, expected);
  freeReplyObject (reply);
  redisFree (ctx);
}

/* The servers of a user's (durable) node die - the OOM killer, a power cut: the next start
 * must cope with a stale postmaster.pid and a stale Redis socket and pid file, and keep what
 * was committed.  The long data folder also puts the sockets in the short folder under /tmp. */
static void
test_crashed_servers (fixture *f, gconstpointer data)
{
  gn_embedded *embedded = start_mode (f, false);
  create_table_with_row (embedded);

  g_autofree char *postmaster_pid
      = g_build_filename (f->data_dir, "postgres", "postmaster.pid", NULL);
  g_autofree char *redis_pid = g_build_filename (f->data_dir, "redis", "redis.pid", NULL);
  g_autofree char *run_dir = gn_config_run_dir (f->data_dir);
  g_assert_true (g_str_has_prefix (run_dir, "/tmp/generia-"));
  g_assert_true (g_str_has_prefix (gn_embedded_redis_url (embedded), "unix:/tmp/generia-"));

  kill_and_wait (read_pid (postmaster_pid));
  kill_and_wait (read_pid (redis_pid));
  g_assert_true (g_file_test (postmaster_pid, G_FILE_TEST_EXISTS));
  /* Stopping dead servers only logs that they were not running. */
  gn_embedded_stop (embedded);

  embedded = start_mode (f, false);
  assert_row_kept (embedded);
  redis_command (embedded, "SET greeting hello", "OK");
  gn_embedded_stop (embedded);

  /* A durable Redis keeps its data over a clean restart. */
  embedded = start_mode (f, false);
  redis_command (embedded, "GET greeting", "hello");
  gn_embedded_stop (embedded);
}

/* PostgreSQL refuses its configuration: the start fails with the server's own words, and the
 * Redis started before it is stopped again. */
static void
test_failed_start_cleans_up (fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  gn_embedded *embedded = start (f);
  g_autofree char *redis_socket = g_strdup (gn_embedded_redis_url (embedded) + strlen ("unix:"));
  gn_embedded_stop (embedded);

  g_autofree char *auto_conf
      = g_build_filename (f->data_dir, "postgres", "postgresql.auto.conf", NULL);
  g_autofree char *good_conf = NULL;
  g_assert_true (g_file_get_contents (auto_conf, &good_conf, NULL, NULL));
  g_autofree char *bad_conf = g_strconcat (good_conf, "shared_buffers = 'plenty'\n", NULL);
  g_assert_true (g_file_set_contents (auto_conf, bad_conf, -1, NULL));

  gn_embedded_options options
      = { .data_dir = f->data_dir, .postgres = true, .redis = true, .ephemeral = true };
  embedded = gn_embedded_start (&options, &error);
  g_assert_null (embedded);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "PostgreSQL did not start"));
  g_assert_nonnull (strstr (error->message, "postgres.log"));
  g_assert_nonnull (strstr (error->message, "shared_buffers"));
  g_assert_false (g_file_test (redis_socket, G_FILE_TEST_EXISTS));

  g_assert_true (g_file_set_contents (auto_conf, good_conf, -1, NULL));
  embedded = start (f);
  assert_redis_pong (embedded);
  gn_embedded_stop (embedded);
}

/* As root, a data folder the postgres user cannot reach is refused up front, by name. */
static void
test_root_needs_reachable_folder (fixture *f, gconstpointer data)
{
  if (getuid () != 0) {
    g_test_skip ("only root runs PostgreSQL as another user");
    return;
  }
  g_autoptr (GError) error = NULL;
  g_autofree char *closed = g_build_filename (f->base, "closed", NULL);
  g_autofree char *data_dir = g_build_filename (closed, "node", NULL);
  g_assert_cmpint (g_mkdir (closed, 0700), ==, 0);

  gn_embedded_options options = { .data_dir = data_dir, .postgres = true, .ephemeral = true };
  gn_embedded *embedded = gn_embedded_start (&options, &error);
  g_assert_null (embedded);
  g_autofree char *expected = g_strdup_printf (
      "PostgreSQL runs as user postgres and cannot enter %s: choose a data dir under /var/lib "
      "or /tmp",
      closed);
  g_assert_cmpstr (error->message, ==, expected);
}

#define LONG_FOLDER                                                                                \
  "a-data-folder-with-a-name-long-enough-that-unix-socket-paths-inside-it-would-not-fit"

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/embedded/start-stop-restart", fixture, NULL, fixture_set_up,
              test_start_stop_restart, fixture_tear_down);
  g_test_add ("/embedded/crashed-servers", fixture, LONG_FOLDER, fixture_set_up,
              test_crashed_servers, fixture_tear_down);
  g_test_add ("/embedded/failed-start-cleans-up", fixture, NULL, fixture_set_up,
              test_failed_start_cleans_up, fixture_tear_down);
  g_test_add ("/embedded/root-needs-reachable-folder", fixture, NULL, fixture_set_up,
              test_root_needs_reachable_folder, fixture_tear_down);
  return g_test_run ();
}
