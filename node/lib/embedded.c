/* embedded.c - a private PostgreSQL cluster and Redis inside the node's data folder.
 *
 * A node with no database or Redis URL configured runs its own servers, so that one command
 * gives a working node on a laptop and tests get throwaway servers:
 *
 *   <data-dir>/postgres/      the cluster: initdb on first start, in "postgres.init" renamed
 *                             when complete, so a crash during initdb never leaves half a
 *                             cluster behind
 *   <data-dir>/postgres.log   PostgreSQL's log (pg_ctl -l)
 *   <data-dir>/redis/         redis.conf (rewritten at every start), pid file, AOF
 *   <data-dir>/redis.log      Redis's log
 *   <run>/                    unix sockets: <data-dir>/run, or a short folder under /tmp when
 *                             the data folder's path is too long (gn_config_run_dir)
 *
 * Neither server listens on TCP: PostgreSQL gets `listen_addresses=''` and Redis `port 0`, and
 * the run folder is 0700, so only the node's user reaches them (the cluster trusts local
 * connections; host connections are rejected even if someone enables TCP).  The port number
 * 5432 only names PostgreSQL's socket file; private folders never conflict.
 *
 * As root, PostgreSQL runs as the "postgres" system user (initdb and pg_ctl refuse root): the
 * cluster, its log and the run folder are chowned to it, the data folder gets the o+x bit
 * (enter, not list) and every folder above it must let that user pass, which is checked first
 * for a clear message.  Redis runs as the
 * node's user.
 *
 * The servers are started in their own session (setsid), so a Ctrl-C in the node's terminal
 * reaches only the node, which then stops them in order.  If a node was killed and left its
 * servers running, the next start finds them answering on their sockets and uses them.  A
 * PostgreSQL that crashed leaves a stale postmaster.pid, which PostgreSQL itself replaces
 * when no process of that number is alive.
 *
 * Starting: Redis is launched first (it daemonizes at once), then pg_ctl start -w waits for
 * PostgreSQL, the database "generia" is created if missing, and Redis is polled with PING for
 * up to 10 s.  If anything fails, whatever was started is stopped again and the error carries
 * the end of that server's log.  Stopping: pg_ctl stop -m fast -w; Redis SHUTDOWN SAVE
 * (NOSAVE when ephemeral), then waiting until its pid file is gone.
 *
 * Ephemeral mode (tests) trades durability for speed: fsync, synchronous_commit and
 * full_page_writes off, initdb --no-sync, Redis without AOF or snapshots. */
#include "embedded.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "config.h"
#include "log.h"

#define PG_PORT "5432"
#define PG_SUPERUSER "generia"
#define PG_DATABASE "generia"
#define PG_SYSTEM_USER "postgres"
#define REDIS_START_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define REDIS_STOP_TIMEOUT_US (10 * G_USEC_PER_SEC)
#define POLL_INTERVAL_US (20 * 1000)
#define LOG_TAIL_LINES 15

struct gn_embedded {
  char *data_dir;
  char *run_dir;
  bool ephemeral;

  /* root: PostgreSQL runs as the postgres system user */
  bool as_system_user;
  uid_t pg_uid;
  gid_t pg_gid;

  char *pg_bindir;
  char *pg_data;
  char *pg_log;
  bool pg_running;
  char *database_url;

  char *redis_dir;
  char *redis_socket;
  char *redis_pidfile;
  char *redis_log;
  bool redis_running;
  char *redis_url;
};

/* ---- helpers ---- */

static char *
log_tail (const char *path)
{
  g_autofree char *contents = NULL;
  if (!g_file_get_contents (path, &contents, NULL, NULL) || *contents == '\0')
    return g_strdup_printf ("(%s is empty)", path);

  g_strchomp (contents);
  const char *start = contents + strlen (contents);
  for (int lines = 0; start > contents && lines < LOG_TAIL_LINES; lines++) {
    start--;
    while (start > contents && start[-1] != '\n')
      start--;
  }
  return g_strdup_printf ("last lines of %s:\n%s", path, start);
}

/* Adds the end of a server's log to an error about that server. */
static void
append_log_tail (GError **error, const char *log_path)
{
  if (error == NULL || *error == NULL)
    return;
  g_autofree char *tail = log_tail (log_path);
  char *message = g_strdup_printf ("%s\n%s", (*error)->message, tail);
  g_free ((*error)->message);
  (*error)->message = message;
}

static void
child_new_session (gpointer data)
{
  setsid ();
}

/* Runs a server tool to completion in a session of its own, as the postgres user when
 * `as_pg_user` and the node is root.  Returns the exit code (or -1 if it could not run) and
 * its output; the output pipes close because the servers redirect theirs to log files. */
static int
run_tool (gn_embedded *e, const char *const *argv, bool as_pg_user, char **output, GError **error)
{
  g_autoptr (GPtrArray) args = g_ptr_array_new ();
  g_autofree char *runuser = NULL;

  if (as_pg_user && e->as_system_user) {
    runuser = g_find_program_in_path ("runuser");
    g_ptr_array_add (args, runuser ? runuser : (char *)"/usr/sbin/runuser");
    g_ptr_array_add (args, (char *)"-u");
    g_ptr_array_add (args, (char *)PG_SYSTEM_USER);
    g_ptr_array_add (args, (char *)"--");
  }
  for (const char *const *arg = argv; *arg != NULL; arg++)
    g_ptr_array_add (args, (char *)*arg);
  g_ptr_array_add (args, NULL);

  /* English messages in a locale that always exists, for logs and errors alike. */
  g_auto (GStrv) env = g_environ_setenv (g_get_environ (), "LC_ALL", "C.UTF-8", TRUE);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int wait_status;

  if (!g_spawn_sync ("/", (char **)args->pdata, env, G_SPAWN_STDIN_FROM_DEV_NULL, child_new_session,
                     NULL, &out, &err, &wait_status, error))
    return -1;

  if (output != NULL)
    *output = g_strstrip (g_strconcat (out, err, NULL));
  if (WIFEXITED (wait_status))
    return WEXITSTATUS (wait_status);
  return 128 + (WIFSIGNALED (wait_status) ? WTERMSIG (wait_status) : 0);
}

static gboolean
run_tool_checked (gn_embedded *e, const char *const *argv, bool as_pg_user, GError **error)
{
  g_autofree char *output = NULL;
  int status = run_tool (e, argv, as_pg_user, &output, error);

  if (status == 0)
    return TRUE;
  if (status > 0) {
    g_autofree char *name = g_path_get_basename (argv[0]);
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED, "%s exited with status %d: %s", name,
                 status, output);
  }
  return FALSE;
}

static gboolean
chown_to_pg_user (gn_embedded *e, const char *path, GError **error)
{
  if (!e->as_system_user || lchown (path, e->pg_uid, e->pg_gid) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
               "cannot give %s to user " PG_SYSTEM_USER ": %s", path, g_strerror (saved_errno));
  return FALSE;
}

static gboolean
make_dir (const char *path, int mode, GError **error)
{
  if (g_mkdir_with_parents (path, mode) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot create %s: %s",
               path, g_strerror (saved_errno));
  return FALSE;
}

/* Removes a folder left by an interrupted initdb; symbolic links are removed, not followed. */
static gboolean
remove_tree (const char *path, GError **error)
{
  struct stat st;
  if (lstat (path, &st) != 0)
    return TRUE;

  if (S_ISDIR (st.st_mode)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, error);
    const char *name;
    if (dir == NULL)
      return FALSE;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      if (!remove_tree (child, error))
        return FALSE;
    }
  }
  if (g_remove (path) == 0)
    return TRUE;
  int saved_errno = errno;
  g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot remove %s: %s",
               path, g_strerror (saved_errno));
  return FALSE;
}

/* As root: can the postgres user pass through `path` and every folder above it? */
static gboolean
check_pg_user_can_enter (gn_embedded *e, const char *path, GError **error)
{
  g_autofree char *dir = g_strdup (path);

  for (;;) {
    struct stat st;
    if (stat (dir, &st) == 0) {
      mode_t needed = st.st_uid == e->pg_uid ? S_IXUSR : st.st_gid == e->pg_gid ? S_IXGRP : S_IXOTH;
      if ((st.st_mode & needed) == 0) {
        g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_ACCES,
                     "PostgreSQL runs as user " PG_SYSTEM_USER " and cannot enter %s: "
                     "choose a data dir under /var/lib or /tmp",
                     dir);
        return FALSE;
      }
    }
    if (strcmp (dir, "/") == 0)
      return TRUE;
    char *parent = g_path_get_dirname (dir);
    g_free (dir);
    dir = parent;
  }
}

/* The run folder holds the sockets, so it must be ours (it may be a shared /tmp path). */
static gboolean
prepare_run_dir (gn_embedded *e, GError **error)
{
  if (!make_dir (e->run_dir, 0700, error))
    return FALSE;

  struct stat st;
  if (lstat (e->run_dir, &st) != 0 || !S_ISDIR (st.st_mode)
      || (st.st_uid != getuid () && !(e->as_system_user && st.st_uid == e->pg_uid))
      || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                 "%s is not a private folder of this user: remove it or choose another data "
                 "dir",
                 e->run_dir);
    return FALSE;
  }
  return chown_to_pg_user (e, e->run_dir, error);
}

/* ---- PostgreSQL ---- */

/* The server programs: those of the cluster's own major version if it exists already (a newer
 * PostgreSQL installed later cannot open it), else the newest of /usr/lib/postgresql/N/bin,
 * else pg_ctl's folder on PATH. */
static char *
find_pg_bindir (const char *pg_data)
{
  g_autofree char *version_file = g_build_filename (pg_data, "PG_VERSION", NULL);
  g_autofree char *cluster_version = NULL;
  if (g_file_get_contents (version_file, &cluster_version, NULL, NULL)) {
    g_strstrip (cluster_version);
    g_autofree char *pg_ctl
        = g_build_filename ("/usr/lib/postgresql", cluster_version, "bin", "pg_ctl", NULL);
    if (g_file_test (pg_ctl, G_FILE_TEST_IS_EXECUTABLE))
      return g_path_get_dirname (pg_ctl);
  }

  g_autoptr (GDir) versions = g_dir_open ("/usr/lib/postgresql", 0, NULL);
  g_autofree char *best = NULL;
  gint64 best_version = -1;
  const char *name;

  while (versions != NULL && (name = g_dir_read_name (versions)) != NULL) {
    gint64 version;
    g_autofree char *pg_ctl = g_build_filename ("/usr/lib/postgresql", name, "bin", "pg_ctl", NULL);
    if (g_ascii_string_to_signed (name, 10, 0, G_MAXINT, &version, NULL) && version > best_version
        && g_file_test (pg_ctl, G_FILE_TEST_IS_EXECUTABLE)) {
      best_version = version;
      g_free (best);
      best = g_path_get_dirname (pg_ctl);
    }
  }
  if (best != NULL)
    return g_steal_pointer (&best);

  g_autofree char *on_path = g_find_program_in_path ("pg_ctl");
  return on_path ? g_path_get_dirname (on_path) : NULL;
}

static char *
pg_tool (gn_embedded *e, const char *name)
{
  return g_build_filename (e->pg_bindir, name, NULL);
}

/* libpq quoting for one keyword value. */
static char *
pq_quote (const char *value)
{
  if (*value != '\0' && strpbrk (value, " \t\n'\\") == NULL)
    return g_strdup (value);

  GString *quoted = g_string_new ("'");
  for (const char *c = value; *c != '\0'; c++) {
    if (*c == '\'' || *c == '\\')
      g_string_append_c (quoted, '\\');
    g_string_append_c (quoted, *c);
  }
  g_string_append_c (quoted, '\'');
  return g_string_free (quoted, FALSE);
}

static gboolean
pg_init_cluster (gn_embedded *e, GError **error)
{
  g_autofree char *version_file = g_build_filename (e->pg_data, "PG_VERSION", NULL);
  if (g_file_test (version_file, G_FILE_TEST_EXISTS))
    return TRUE;

  if (g_file_test (e->pg_data, G_FILE_TEST_EXISTS) && g_rmdir (e->pg_data) != 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_EXIST,
                 "%s exists but is not a PostgreSQL cluster: move it away", e->pg_data);
    return FALSE;
  }

  g_autofree char *init_dir = g_strconcat (e->pg_data, ".init", NULL);
  if (!remove_tree (init_dir, error) || !make_dir (init_dir, 0700, error)
      || !chown_to_pg_user (e, init_dir, error))
    return FALSE;

  gn_info ("creating the PostgreSQL cluster in %s (first start)", e->pg_data);
  g_autofree char *initdb = pg_tool (e, "initdb");
  const char *argv[] = {
    initdb,
    "-D",
    init_dir,
    "-U",
    PG_SUPERUSER,
    "--auth-local=trust",
    "--auth-host=reject",
    "-E",
    "UTF8",
    "--locale=C.UTF-8",
    e->ephemeral ? "--no-sync" : NULL,
    NULL,
  };
  if (!run_tool_checked (e, argv, true, error)) {
    g_prefix_error (error, "initdb %s: ", init_dir);
    return FALSE;
  }

  if (g_rename (init_dir, e->pg_data) != 0) {
    int saved_errno = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                 "cannot rename %s to %s: %s", init_dir, e->pg_data, g_strerror (saved_errno));
    return FALSE;
  }
  return TRUE;
}

static bool
pg_is_running (gn_embedded *e)
{
  g_autofree char *pg_ctl = pg_tool (e, "pg_ctl");
  const char *argv[] = { pg_ctl, "status", "-D", e->pg_data, NULL };
  return run_tool (e, argv, true, NULL, NULL) == 0;
}

static gboolean
pg_create_database (gn_embedded *e, GError **error)
{
  const char *keys[] = { "host", "port", "dbname", "user", "connect_timeout", NULL };
  const char *values[] = { e->run_dir, PG_PORT, "postgres", PG_SUPERUSER, "10", NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 0);
  PGresult *result = NULL;
  const char *params[] = { PG_DATABASE };
  gboolean ok = FALSE;

  if (PQstatus (conn) != CONNECTION_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                 "cannot connect to the embedded PostgreSQL: %s", PQerrorMessage (conn));
    goto fail;
  }

  result = PQexecParams (conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params,
                         NULL, NULL, 0);
  if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 0) {
    PQclear (result);
    result = PQexec (conn, "CREATE DATABASE " PG_DATABASE);
    if (PQresultStatus (result) == PGRES_COMMAND_OK)
      gn_info ("created database " PG_DATABASE);
  }
  if (PQresultStatus (result) != PGRES_TUPLES_OK && PQresultStatus (result) != PGRES_COMMAND_OK) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "creating database " PG_DATABASE ": %s",
                 PQerrorMessage (conn));
    goto fail;
  }
  ok = TRUE;

fail:
  PQclear (result);
  PQfinish (conn);
  return ok;
}

static gboolean
pg_start (gn_embedded *e, GError **error)
{
  e->pg_bindir = find_pg_bindir (e->pg_data);
  if (e->pg_bindir == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "PostgreSQL's server programs (initdb, pg_ctl) were not found in "
                 "/usr/lib/postgresql/*/bin or on PATH: install the package postgresql");
    return FALSE;
  }
  if (!pg_init_cluster (e, error))
    return FALSE;

  /* pg_ctl appends to the log as the postgres user, so the file must exist and be its. */
  int fd = g_open (e->pg_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    int saved_errno = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno), "cannot open %s: %s",
                 e->pg_log, g_strerror (saved_errno));
    return FALSE;
  }
  close (fd);
  if (!chown_to_pg_user (e, e->pg_log, error))
    return FALSE;

  if (pg_is_running (e))
    gn_warn ("PostgreSQL is already running in %s (left by an earlier node?): using it",
             e->pg_data);
  else {
    /* pg_ctl passes -o through /bin/sh, hence the shell quoting. */
    g_autofree char *socket_dir = g_shell_quote (e->run_dir);
    g_autofree char *server_options = g_strdup_printf (
        "-k %s -p " PG_PORT " -c listen_addresses=%s", socket_dir,
        e->ephemeral ? " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" : "");
    g_autofree char *pg_ctl = pg_tool (e, "pg_ctl");
    const char *argv[] = { pg_ctl,     "start", "-w",      "-t", "60",           "-D",
                           e->pg_data, "-l",    e->pg_log, "-o", server_options, NULL };

    if (!run_tool_checked (e, argv, true, error)) {
      g_prefix_error (error, "PostgreSQL did not start: ");
      append_log_tail (error, e->pg_log);
      return FALSE;
    }
  }
  e->pg_running = true;

  if (!pg_create_database (e, error))
    return FALSE;

  g_autofree char *host = pq_quote (e->run_dir);
  e->database_url = g_strdup_printf (
      "host=%s port=" PG_PORT " dbname=" PG_DATABASE " user=" PG_SUPERUSER, host);
  return TRUE;
}

static void
pg_stop (gn_embedded *e)
{
  if (!e->pg_running)
    return;
  g_autoptr (GError) error = NULL;
  g_autofree char *pg_ctl = pg_tool (e, "pg_ctl");
  const char *argv[] = { pg_ctl, "stop", "-D", e->pg_data, "-m", "fast", "-w", "-t", "60", NULL };

  if (!run_tool_checked (e, argv, true, &error))
    gn_error ("stopping PostgreSQL: %s", error->message);
  e->pg_running = false;
}

/* ---- Redis ---- */

static bool
redis_answers (const char *socket_path)
{
  struct timeval timeout = { .tv_sec = 1 };
  redisContext *ctx = redisConnectUnixWithTimeout (socket_path, timeout);
  bool pong = false;

  if (ctx != NULL && ctx->err == 0) {
    redisReply *reply = redisCommand (ctx, "PING");
    pong = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp (reply->str, "PONG") == 0;
    if (reply != NULL)
      freeReplyObject (reply);
  }
  if (ctx != NULL)
    redisFree (ctx);
  return pong;
}

/* A value in redis.conf: double-quoted, so paths may hold spaces. */
static char *
redis_quote (const char *value)
{
  GString *quoted = g_string_new ("\"");
  for (const char *c = value; *c != '\0'; c++) {
    if (*c == '"' || *c == '\\')
      g_string_append_c (quoted, '\\');
    g_string_append_c (quoted, *c);
  }
  g_string_append_c (quoted, '"');
  return g_string_free (quoted, FALSE);
}

static gboolean
redis_write_conf (gn_embedded *e, const char *conf_path, GError **error)
{
  g_autofree char *socket_path = redis_quote (e->redis_socket);
  g_autofree char *pidfile = redis_quote (e->redis_pidfile);
  g_autofree char *dir = redis_quote (e->redis_dir);
  g_autofree char *logfile = redis_quote (e->redis_log);
  g_autofree char *conf = g_strdup_printf (
      "# Written by generia-node at every start: changes here are overwritten.\n"
      "port 0\n"
      "unixsocket %s\n"
      "unixsocketperm 700\n"
      "daemonize yes\n"
      "pidfile %s\n"
      "dir %s\n"
      "logfile %s\n"
      "%s",
      socket_path, pidfile, dir, logfile,
      e->ephemeral ? "save \"\"\nappendonly no\n" : "appendonly yes\nappendfsync everysec\n");

  return g_file_set_contents_full (conf_path, conf, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                   error);
}

/* Launches redis-server, which daemonizes at once; redis_wait() then waits for its PING. */
static gboolean
redis_launch (gn_embedded *e, GError **error)
{
  if (redis_answers (e->redis_socket)) {
    gn_warn ("Redis is already running on %s (left by an earlier node?): using it",
             e->redis_socket);
    e->redis_running = true;
    return TRUE;
  }

  g_autofree char *server = g_find_program_in_path ("redis-server");
  if (server == NULL) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                 "redis-server was not found on PATH: install the package redis-server");
    return FALSE;
  }

  g_autofree char *conf_path = g_build_filename (e->redis_dir, "redis.conf", NULL);
  if (!make_dir (e->redis_dir, 0700, error) || !redis_write_conf (e, conf_path, error))
    return FALSE;

  const char *argv[] = { server, conf_path, NULL };
  if (!run_tool_checked (e, argv, false, error)) {
    g_prefix_error (error, "Redis did not start: ");
    append_log_tail (error, e->redis_log);
    return FALSE;
  }
  e->redis_running = true;
  return TRUE;
}

static gboolean
redis_wait (gn_embedded *e, GError **error)
{
  gint64 deadline = g_get_monotonic_time () + REDIS_START_TIMEOUT_US;

  while (!redis_answers (e->redis_socket)) {
    if (g_get_monotonic_time () > deadline) {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "Redis did not answer PING on %s within 10 s", e->redis_socket);
      append_log_tail (error, e->redis_log);
      return FALSE;
    }
    g_usleep (POLL_INTERVAL_US);
  }
  e->redis_url = g_strconcat ("unix:", e->redis_socket, NULL);
  return TRUE;
}

static void
redis_stop (gn_embedded *e)
{
  if (!e->redis_running)
    return;
  e->redis_running = false;

  struct timeval timeout = { .tv_sec = 5 };
  redisContext *ctx = redisConnectUnixWithTimeout (e->redis_socket, timeout);
  if (ctx == NULL || ctx->err != 0) {
    gn_error ("stopping Redis: cannot connect to %s: %s", e->redis_socket,
              ctx ? ctx->errstr : "out of memory");
    if (ctx != NULL)
      redisFree (ctx);
    return;
  }

  /* On success Redis closes the connection without a reply. */
  redisReply *reply = redisCommand (ctx, e->ephemeral ? "SHUTDOWN NOSAVE" : "SHUTDOWN SAVE");
  if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
    gn_error ("Redis could not save before stopping (%s): stopping without saving", reply->str);
    freeReplyObject (reply);
    reply = redisCommand (ctx, "SHUTDOWN NOSAVE");
  }
  if (reply != NULL)
    freeReplyObject (reply);
  redisFree (ctx);

  /* Redis removes its pid file last thing before it exits. */
  gint64 deadline = g_get_monotonic_time () + REDIS_STOP_TIMEOUT_US;
  while (g_file_test (e->redis_pidfile, G_FILE_TEST_EXISTS)) {
    if (g_get_monotonic_time () > deadline) {
      gn_error ("Redis did not stop within 10 s (pid file %s)", e->redis_pidfile);
      return;
    }
    g_usleep (POLL_INTERVAL_US);
  }
}

/* ---- start and stop ---- */

static gboolean
prepare (gn_embedded *e, const gn_embedded_options *options, GError **error)
{
  e->as_system_user = getuid () == 0;
  if (e->as_system_user && options->postgres) {
    struct passwd *pw = getpwnam (PG_SYSTEM_USER);
    if (pw == NULL) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                   "as root, PostgreSQL runs as the system user " PG_SYSTEM_USER
                   ", which does not exist: install the package postgresql");
      return FALSE;
    }
    e->pg_uid = pw->pw_uid;
    e->pg_gid = pw->pw_gid;
  }

  if (!make_dir (e->data_dir, 0700, error) || !prepare_run_dir (e, error))
    return FALSE;
  if (e->as_system_user && options->postgres) {
    /* Root's own data folder lets the postgres user pass (not list); the folders above it
     * are someone else's business and are only checked. */
    struct stat st;
    if (stat (e->data_dir, &st) == 0 && st.st_uid == 0 && (st.st_mode & S_IXOTH) == 0
        && chmod (e->data_dir, (st.st_mode & 07777) | S_IXOTH) != 0) {
      int saved_errno = errno;
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved_errno),
                   "cannot open %s to user " PG_SYSTEM_USER ": %s", e->data_dir,
                   g_strerror (saved_errno));
      return FALSE;
    }
    if (!check_pg_user_can_enter (e, e->data_dir, error)
        || !check_pg_user_can_enter (e, e->run_dir, error))
      return FALSE;
  }
  return TRUE;
}

gn_embedded *
gn_embedded_start (const gn_embedded_options *options, GError **error)
{
  g_return_val_if_fail (options != NULL && options->data_dir != NULL, NULL);
  g_return_val_if_fail (g_path_is_absolute (options->data_dir), NULL);

  gn_embedded *e = g_new0 (gn_embedded, 1);
  e->data_dir = g_strdup (options->data_dir);
  e->run_dir = gn_config_run_dir (options->data_dir);
  e->ephemeral = options->ephemeral;
  e->pg_data = g_build_filename (e->data_dir, "postgres", NULL);
  e->pg_log = g_build_filename (e->data_dir, "postgres.log", NULL);
  e->redis_dir = g_build_filename (e->data_dir, "redis", NULL);
  e->redis_socket = g_build_filename (e->run_dir, "redis.sock", NULL);
  e->redis_pidfile = g_build_filename (e->redis_dir, "redis.pid", NULL);
  e->redis_log = g_build_filename (e->data_dir, "redis.log", NULL);

  if (!prepare (e, options, error))
    goto fail;
  if (options->redis && !redis_launch (e, error))
    goto fail;
  if (options->postgres && !pg_start (e, error))
    goto fail;
  if (options->redis && !redis_wait (e, error))
    goto fail;
  return e;

fail:
  gn_embedded_stop (e);
  return NULL;
}

const char *
gn_embedded_database_url (gn_embedded *embedded)
{
  return embedded ? embedded->database_url : NULL;
}

const char *
gn_embedded_redis_url (gn_embedded *embedded)
{
  return embedded ? embedded->redis_url : NULL;
}

void
gn_embedded_stop (gn_embedded *embedded)
{
  if (embedded == NULL)
    return;
  redis_stop (embedded);
  pg_stop (embedded);

  g_free (embedded->data_dir);
  g_free (embedded->run_dir);
  g_free (embedded->pg_bindir);
  g_free (embedded->pg_data);
  g_free (embedded->pg_log);
  g_free (embedded->database_url);
  g_free (embedded->redis_dir);
  g_free (embedded->redis_socket);
  g_free (embedded->redis_pidfile);
  g_free (embedded->redis_log);
  g_free (embedded->redis_url);
  g_free (embedded);
}
