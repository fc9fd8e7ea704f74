/* test-embedded.c - the embedded PostgreSQL and Redis, for real: start, query, stop, start
 * again on the same folder, restart servers that die, leave nothing behind when the node is
 * killed, clear what an earlier run left, report a server that cannot start.
 *
 * Data folders live under /tmp with mode 0755 so that, when the tests run as root, the
 * postgres system user can reach them. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
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

  /* A second node on the same folder is refused by name, and the first one keeps serving. */
  g_autoptr (GError) error = NULL;
  gn_embedded_options options
      = { .data_dir = f->data_dir, .postgres = true, .redis = true, .ephemeral = true };
  g_assert_null (gn_embedded_start (&options, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BUSY);
  g_assert_nonnull (strstr (error->message, "another generia-node runs the embedded servers"));
  assert_row_kept (embedded);
  assert_redis_pong (embedded);
  gn_embedded_stop (embedded);
  g_assert_false (g_file_test (pg_socket, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (redis_socket, G_FILE_TEST_EXISTS));
}

static pid_t
read_pid (const char *path)
{
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (path, &contents, NULL, NULL));
  return (pid_t)g_ascii_strtoll (contents, NULL, 10);
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

static bool
process_alive (pid_t pid)
{
  return kill (pid, 0) == 0 || errno != ESRCH;
}

/* A process that ended is gone once its parent (init, for a daemon) reaped it. */
static bool
gone_soon (pid_t pid)
{
  for (int i = 0; i < 250 && process_alive (pid); i++)
    g_usleep (20 * 1000);
  return !process_alive (pid);
}

/* Waits up to `seconds` for a server of the folder to run under a new pid and answer. */
static pid_t
wait_for_new_pid (const char *pid_file, pid_t old_pid, bool (*answers) (gn_embedded *),
                  gn_embedded *embedded, int seconds)
{
  for (int i = 0; i < seconds * 50; i++) {
    g_autofree char *contents = NULL;
    if (g_file_get_contents (pid_file, &contents, NULL, NULL)) {
      pid_t pid = (pid_t)g_ascii_strtoll (contents, NULL, 10);
      if (pid > 1 && pid != old_pid && answers (embedded))
        return pid;
    }
    g_usleep (20 * 1000);
  }
  g_error ("no new server behind %s within %d s", pid_file, seconds);
}

static bool
pg_answers (gn_embedded *embedded)
{
  return PQping (gn_embedded_database_url (embedded)) == PQPING_OK;
}

static bool
redis_answers (gn_embedded *embedded)
{
  redisContext *ctx = redisConnectUnix (gn_embedded_redis_url (embedded) + strlen ("unix:"));
  redisReply *reply = ctx != NULL && ctx->err == 0 ? redisCommand (ctx, "PING") : NULL;
  bool pong = reply != NULL && reply->type == REDIS_REPLY_STATUS;
  if (reply != NULL)
    freeReplyObject (reply);
  if (ctx != NULL)
    redisFree (ctx);
  return pong;
}

/* The servers of a running (durable) node die - the OOM killer, a kill -9: the node restarts
 * them by itself, PostgreSQL recovers what was committed, and a restart right after a restart
 * still works (the back-off waits out the old backends).  The long data folder also puts the
 * sockets in the short folder under /tmp. */
static void
test_dead_servers_restarted (fixture *f, gconstpointer data)
{
  gn_embedded *embedded = start_mode (f, false);
  create_table_with_row (embedded);
  redis_command (embedded, "SET greeting hello", "OK");

  g_autofree char *postmaster_pid
      = g_build_filename (f->data_dir, "postgres", "postmaster.pid", NULL);
  g_autofree char *redis_pid = g_build_filename (f->data_dir, "redis", "redis.pid", NULL);
  g_autofree char *run_dir = gn_config_run_dir (f->data_dir);
  g_assert_true (g_str_has_prefix (run_dir, "/tmp/generia-"));
  g_assert_true (g_str_has_prefix (gn_embedded_redis_url (embedded), "unix:/tmp/generia-"));

  for (int round = 0; round < 2; round++) {
    pid_t pg = read_pid (postmaster_pid);
    g_assert_cmpint (kill (pg, SIGKILL), ==, 0);
    pid_t new_pg = wait_for_new_pid (postmaster_pid, pg, pg_answers, embedded, 30);
    g_assert_true (gone_soon (pg));
    g_test_message ("PostgreSQL %d replaced by %d", pg, new_pg);
    assert_row_kept (embedded);
  }

  pid_t redis = read_pid (redis_pid);
  g_assert_cmpint (kill (redis, SIGKILL), ==, 0);
  wait_for_new_pid (redis_pid, redis, redis_answers, embedded, 30);
  redis_command (embedded, "SET greeting again", "OK");
  gn_embedded_stop (embedded);

  /* A durable Redis keeps its data over a clean restart. */
  embedded = start_mode (f, false);
  assert_row_kept (embedded);
  redis_command (embedded, "GET greeting", "again");
  gn_embedded_stop (embedded);
}

/* A node killed with SIGKILL takes its servers down with it (parent-death signal), and the next
 * start on the folder finds everything that was committed. */
static void
test_killed_node_leaves_nothing (fixture *f, gconstpointer data)
{
  int ready[2];
  g_assert_cmpint (pipe (ready), ==, 0);
  pid_t node = fork ();
  g_assert_cmpint (node, >=, 0);
  if (node == 0) {
    gn_embedded *embedded = start_mode (f, false);
    create_table_with_row (embedded);
    g_assert_cmpint (write (ready[1], "1", 1), ==, 1);
    for (;;)
      pause ();
  }
  close (ready[1]);
  char byte;
  g_assert_cmpint (read (ready[0], &byte, 1), ==, 1);
  close (ready[0]);

  g_autofree char *postmaster_pid
      = g_build_filename (f->data_dir, "postgres", "postmaster.pid", NULL);
  g_autofree char *redis_pid = g_build_filename (f->data_dir, "redis", "redis.pid", NULL);
  pid_t pg = read_pid (postmaster_pid);
  pid_t redis = read_pid (redis_pid);
  g_assert_true (process_alive (pg));
  g_assert_true (process_alive (redis));

  g_assert_cmpint (kill (node, SIGKILL), ==, 0);
  g_assert_cmpint (waitpid (node, NULL, 0), ==, node);
  g_assert_true (gone_soon (pg));
  g_assert_true (gone_soon (redis));
  /* Both shut down cleanly: their pid files are gone. */
  g_assert_false (g_file_test (postmaster_pid, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (redis_pid, G_FILE_TEST_EXISTS));

  gn_embedded *embedded = start_mode (f, false);
  assert_row_kept (embedded);
  assert_redis_pong (embedded);
  gn_embedded_stop (embedded);
}

/* pg_ctl of the newest installed PostgreSQL. */
static char *
find_pg_ctl (void)
{
  g_autoptr (GDir) versions = g_dir_open ("/usr/lib/postgresql", 0, NULL);
  const char *name;
  gint64 best = -1;
  while (versions != NULL && (name = g_dir_read_name (versions)) != NULL) {
    gint64 version;
    if (g_ascii_string_to_signed (name, 10, 0, G_MAXINT, &version, NULL) && version > best)
      best = version;
  }
  g_assert_cmpint (best, >, 0);
  g_autofree char *version = g_strdup_printf ("%" G_GINT64_FORMAT, best);
  return g_build_filename ("/usr/lib/postgresql", version, "bin", "pg_ctl", NULL);
}

/* Servers of an earlier run still running (an older node daemonised them, or they are still
 * shutting down) are stopped before the new ones start; a pid file naming an unrelated
 * process does not keep PostgreSQL from starting. */
static void
test_leftovers_cleared (fixture *f, gconstpointer data)
{
  gn_embedded *embedded = start_mode (f, false);
  create_table_with_row (embedded);
  g_autofree char *redis_conf = g_build_filename (f->data_dir, "redis", "redis.conf", NULL);
  gn_embedded_stop (embedded);

  g_autofree char *pg_data = g_build_filename (f->data_dir, "postgres", NULL);
  g_autofree char *run_dir = gn_config_run_dir (f->data_dir);
  g_autofree char *pg_ctl = find_pg_ctl ();
  g_autofree char *options = g_strdup_printf ("-k %s -c listen_addresses=", run_dir);
  const char *as_postgres[] = { "runuser", "-u", "postgres", "--" };
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  for (size_t i = 0; getuid () == 0 && i < G_N_ELEMENTS (as_postgres); i++)
    g_ptr_array_add (argv, (char *)as_postgres[i]);
  const char *start_pg[]
      = { pg_ctl, "start", "-w", "-D", pg_data, "-o", options, "-l", "/dev/null" };
  for (size_t i = 0; i < G_N_ELEMENTS (start_pg); i++)
    g_ptr_array_add (argv, (char *)start_pg[i]);
  g_ptr_array_add (argv, NULL);
  int status = -1;
  GError *error = NULL;
  g_assert_true (g_spawn_sync (NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                               NULL, NULL, &status, &error));
  g_assert_no_error (error);
  g_assert_cmpint (status, ==, 0);
  const char *start_redis[] = { "redis-server", redis_conf, "--daemonize", "yes", NULL };
  g_assert_true (g_spawn_sync (NULL, (char **)start_redis, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                               NULL, NULL, &status, &error));
  g_assert_no_error (error);

  g_autofree char *postmaster_pid = g_build_filename (pg_data, "postmaster.pid", NULL);
  g_autofree char *redis_pid = g_build_filename (f->data_dir, "redis", "redis.pid", NULL);
  for (int i = 0; i < 500 && !g_file_test (redis_pid, G_FILE_TEST_EXISTS); i++)
    g_usleep (20 * 1000);
  pid_t old_pg = read_pid (postmaster_pid);
  pid_t old_redis = read_pid (redis_pid);
  g_assert_true (process_alive (old_pg));
  g_assert_true (process_alive (old_redis));

  embedded = start_mode (f, false);
  g_assert_true (gone_soon (old_pg));
  g_assert_true (gone_soon (old_redis));
  g_assert_cmpint (read_pid (postmaster_pid), !=, old_pg);
  assert_row_kept (embedded);
  assert_redis_pong (embedded);

  /* A pid file left by a crash whose number now belongs to an unrelated live process. */
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (postmaster_pid, &contents, NULL, NULL));
  gn_embedded_stop (embedded);
  pid_t unrelated = fork ();
  if (unrelated == 0) {
    for (;;)
      pause ();
  }
  g_autofree char *fake = g_strdup_printf ("%d%s", unrelated, strchr (contents, '\n'));
  g_assert_true (g_file_set_contents (postmaster_pid, fake, -1, NULL));

  embedded = start_mode (f, false);
  assert_row_kept (embedded);
  gn_embedded_stop (embedded);
  kill (unrelated, SIGKILL);
  waitpid (unrelated, NULL, 0);
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
  g_test_add ("/embedded/dead-servers-restarted", fixture, LONG_FOLDER, fixture_set_up,
              test_dead_servers_restarted, fixture_tear_down);
  g_test_add ("/embedded/killed-node-leaves-nothing", fixture, NULL, fixture_set_up,
              test_killed_node_leaves_nothing, fixture_tear_down);
  g_test_add ("/embedded/leftovers-cleared", fixture, NULL, fixture_set_up, test_leftovers_cleared,
              fixture_tear_down);
  g_test_add ("/embedded/failed-start-cleans-up", fixture, NULL, fixture_set_up,
              test_failed_start_cleans_up, fixture_tear_down);
  g_test_add ("/embedded/root-needs-reachable-folder", fixture, NULL, fixture_set_up,
              test_root_needs_reachable_folder, fixture_tear_down);
  return g_test_run ();
}
