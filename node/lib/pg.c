/* pg.c - PostgreSQL connections, statements and migrations (see pg.h).
 *
 * Thread connections.  Each thread keeps a small list of {dsn, PGconn, prepared statements}
 * in a GPrivate whose destructor closes them when the thread ends.  rpc worker threads are
 * long-lived, so in practice a worker connects once per DSN and keeps the connection; a broken
 * connection (server restart, network) is replaced on the next call.
 *
 * Statements.  gn_pg_exec() prepares each distinct SQL text once per connection (the name is
 * derived from a counter) and then runs it with PQexecPrepared, so hot queries skip parsing
 * and planning.  Connections not made here (gn_pg_connect) fall back to PQexecParams.
 *
 * Sessions are set to UTC with ISO dates so timestamps read back the same everywhere. */
#include "pg.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gio/gio.h>

#include "log.h"

G_DEFINE_QUARK (gn - pg - error - quark, gn_pg_error)

typedef struct {
  char *dsn;
  PGconn *conn;
  GHashTable *statements; /* sql text -> statement name */
  unsigned next_statement;
} thread_conn;

static void
thread_conn_clear (thread_conn *tc)
{
  g_clear_pointer (&tc->conn, PQfinish);
  g_hash_table_remove_all (tc->statements);
  tc->next_statement = 0;
}

static void
thread_conns_free (gpointer data)
{
  GPtrArray *conns = data;
  g_ptr_array_free (conns, TRUE);
}

static void
thread_conn_free (gpointer data)
{
  thread_conn *tc = data;
  thread_conn_clear (tc);
  g_hash_table_destroy (tc->statements);
  g_free (tc->dsn);
  g_free (tc);
}

static GPrivate thread_conns_key = G_PRIVATE_INIT (thread_conns_free);

/* Server notices ("relation already exists, skipping") go to the debug log, not stderr. */
static void
log_notice (void *data, const char *message)
{
  gn_debug ("PostgreSQL: %.*s", (int)strcspn (message, "\n"), message);
}

PGconn *
gn_pg_connect (const char *dsn, GError **error)
{
  /* dsn is expanded first; the settings after it apply on top. */
  const char *const keywords[]
      = { "dbname", "application_name", "options", "connect_timeout", NULL };
  const char *const values[]
      = { dsn, "generia-node", "-c TimeZone=UTC -c DateStyle=ISO,YMD", "10", NULL };
  PGconn *conn = PQconnectdbParams (keywords, values, 1);
  if (conn == NULL || PQstatus (conn) != CONNECTION_OK) {
    g_autofree char *message = g_strdup (conn != NULL ? PQerrorMessage (conn) : "out of memory");
    g_strchomp (message);
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_CONNECT, "PostgreSQL: %s", message);
    PQfinish (conn);
    return NULL;
  }
  PQsetNoticeProcessor (conn, log_notice, NULL);
  return conn;
}

/* An idle connection has nothing to read unless the server ended it (a restart sends a FATAL
 * notice and closes): one poll() finds that before a statement is lost on a dead socket.  A
 * connection that broke silently still fails its next statement (as UNAVAILABLE) and is
 * replaced on the lookup after; statements are never retried, since one that reached the
 * server before the break may have run. */
static gboolean
connection_alive (PGconn *conn)
{
  if (PQstatus (conn) != CONNECTION_OK)
    return FALSE;
  if (PQtransactionStatus (conn) != PQTRANS_IDLE)
    return TRUE;
  struct pollfd pfd = { .fd = PQsocket (conn), .events = POLLIN };
  if (poll (&pfd, 1, 0) <= 0)
    return TRUE;
  return PQconsumeInput (conn) == 1 && PQstatus (conn) == CONNECTION_OK
         && (pfd.revents & (POLLHUP | POLLERR)) == 0;
}

static thread_conn *
thread_conn_lookup (PGconn *conn)
{
  GPtrArray *conns = g_private_get (&thread_conns_key);
  if (conns == NULL)
    return NULL;
  for (guint i = 0; i < conns->len; i++) {
    thread_conn *tc = conns->pdata[i];
    if (tc->conn == conn)
      return tc;
  }
  return NULL;
}

PGconn *
gn_pg_thread_conn (const char *dsn, GError **error)
{
  GPtrArray *conns = g_private_get (&thread_conns_key);
  if (conns == NULL) {
    conns = g_ptr_array_new_with_free_func (thread_conn_free);
    g_private_set (&thread_conns_key, conns);
  }
  thread_conn *tc = NULL;
  for (guint i = 0; i < conns->len; i++) {
    thread_conn *candidate = conns->pdata[i];
    if (strcmp (candidate->dsn, dsn) == 0) {
      tc = candidate;
      break;
    }
  }
  if (tc == NULL) {
    tc = g_new0 (thread_conn, 1);
    tc->dsn = g_strdup (dsn);
    tc->statements = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
    g_ptr_array_add (conns, tc);
  }
  if (tc->conn != NULL && !connection_alive (tc->conn)) {
    gn_warn ("PostgreSQL connection lost; reconnecting");
    thread_conn_clear (tc);
  }
  if (tc->conn == NULL)
    tc->conn = gn_pg_connect (dsn, error);
  return tc->conn;
}

static PGresult *
check_result (PGconn *conn, PGresult *result, GError **error)
{
  ExecStatusType status = result != NULL ? PQresultStatus (result) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
    return result;

  const char *sqlstate = result != NULL ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
  const char *constraint
      = result != NULL ? PQresultErrorField (result, PG_DIAG_CONSTRAINT_NAME) : NULL;
  g_autofree char *message
      = g_strdup (result != NULL ? PQresultErrorMessage (result) : PQerrorMessage (conn));
  g_strchomp (message);
  if (sqlstate != NULL && strcmp (sqlstate, "23505") == 0)
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_UNIQUE, "%s", constraint ? constraint : message);
  else if (sqlstate != NULL && strcmp (sqlstate, "57014") == 0)
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_DEADLINE, "PostgreSQL: %s", message);
  else if (PQstatus (conn) != CONNECTION_OK)
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_CONNECT, "PostgreSQL: %s", message);
  else
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_QUERY, "PostgreSQL: %s", message);
  PQclear (result);
  return NULL;
}

PGresult *
gn_pg_exec (PGconn *conn, GError **error, const char *sql, int n_params, const char *const *params)
{
  thread_conn *tc = thread_conn_lookup (conn);
  if (tc == NULL)
    return check_result (conn, PQexecParams (conn, sql, n_params, NULL, params, NULL, NULL, 0),
                         error);

  const char *name = g_hash_table_lookup (tc->statements, sql);
  if (name == NULL) {
    char *new_name = g_strdup_printf ("gn_%u", tc->next_statement++);
    PGresult *prepared = PQprepare (conn, new_name, sql, n_params, NULL);
    if (check_result (conn, prepared, error) == NULL) {
      g_free (new_name);
      return NULL;
    }
    PQclear (prepared);
    g_hash_table_insert (tc->statements, g_strdup (sql), new_name);
    name = new_name;
  }
  return check_result (conn, PQexecPrepared (conn, name, n_params, params, NULL, NULL, 0), error);
}

gboolean
gn_pg_command (PGconn *conn, GError **error, const char *sql, int n_params,
               const char *const *params)
{
  PGresult *res = gn_pg_exec (conn, error, sql, n_params, params);
  PQclear (res);
  return res != NULL;
}

gboolean
gn_pg_begin (PGconn *conn, int64_t remaining_ms, GError **error)
{
  if (remaining_ms <= 0) {
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_DEADLINE,
                 "the caller's deadline passed before the transaction began");
    return FALSE;
  }
  if (!gn_pg_command (conn, error, "BEGIN", 0, NULL))
    return FALSE;
  /* statement_timeout holds 32-bit milliseconds; 0 would mean no timeout at all. */
  if (remaining_ms >= G_MAXINT32)
    return TRUE;
  char timeout[16];
  g_snprintf (timeout, sizeof timeout, "%" G_GINT64_FORMAT, remaining_ms);
  const char *params[] = { timeout };
  if (!gn_pg_command (conn, error, "SELECT set_config('statement_timeout', $1, true)", 1, params)) {
    PQclear (PQexec (conn, "ROLLBACK"));
    return FALSE;
  }
  return TRUE;
}

gboolean
gn_pg_commit (PGconn *conn, int64_t remaining_ms, GError **error)
{
  if (remaining_ms <= 0) {
    PQclear (PQexec (conn, "ROLLBACK"));
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_DEADLINE,
                 "the caller's deadline passed before the commit: rolled back");
    return FALSE;
  }
  if (gn_pg_command (conn, error, "COMMIT", 0, NULL))
    return TRUE;
  PQclear (PQexec (conn, "ROLLBACK"));
  return FALSE;
}

static gboolean
exec_simple (PGconn *conn, const char *sql, GError **error)
{
  PGresult *result = check_result (conn, PQexec (conn, sql), error);
  if (result == NULL)
    return FALSE;
  PQclear (result);
  return TRUE;
}

static void
rollback (PGconn *conn)
{
  PQclear (PQexec (conn, "ROLLBACK"));
}

/* Every process that migrates takes this lock first, so two nodes starting together queue. */
#define MIGRATION_LOCK "SELECT pg_advisory_xact_lock(7233304817215490)"

gboolean
gn_pg_migrate (PGconn *conn, const char *service, const gn_migration *migrations,
               size_t n_migrations, int *applied, GError **error)
{
  int count = 0;
  if (applied != NULL)
    *applied = 0;

  if (!exec_simple (conn, "BEGIN", error))
    return FALSE;
  if (!exec_simple (conn, MIGRATION_LOCK, error)
      || !exec_simple (conn,
                       "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
                       " service text NOT NULL,"
                       " version integer NOT NULL,"
                       " name text NOT NULL,"
                       " applied_at timestamptz NOT NULL DEFAULT now(),"
                       " PRIMARY KEY (service, version))",
                       error)
      || !exec_simple (conn, "COMMIT", error)) {
    rollback (conn);
    return FALSE;
  }

  for (size_t i = 0; i < n_migrations; i++) {
    const gn_migration *m = &migrations[i];
    char version[16];
    g_snprintf (version, sizeof version, "%d", m->version);
    const char *params[] = { service, version, m->name };
    PGresult *found = NULL;
    g_autoptr (GError) local_error = NULL;

    if (!exec_simple (conn, "BEGIN", error))
      return FALSE;
    if (!exec_simple (conn, MIGRATION_LOCK, &local_error))
      goto fail;
    found = check_result (conn,
                          PQexecParams (conn,
                                        "SELECT 1 FROM public.schema_migrations"
                                        " WHERE service = $1 AND version = $2",
                                        2, NULL, params, NULL, NULL, 0),
                          &local_error);
    if (found == NULL)
      goto fail;
    gboolean done = PQntuples (found) > 0;
    PQclear (found);
    if (done) {
      if (!exec_simple (conn, "COMMIT", &local_error))
        goto fail;
      continue;
    }
    if (!exec_simple (conn, m->sql, &local_error))
      goto fail;
    PGresult *recorded = check_result (conn,
                                       PQexecParams (conn,
                                                     "INSERT INTO public.schema_migrations"
                                                     " (service, version, name)"
                                                     " VALUES ($1, $2, $3)",
                                                     3, NULL, params, NULL, NULL, 0),
                                       &local_error);
    if (recorded == NULL)
      goto fail;
    PQclear (recorded);
    if (!exec_simple (conn, "COMMIT", &local_error))
      goto fail;
    count++;
    gn_info ("applied migration %s/%s", service, m->name);
    continue;

  fail:
    rollback (conn);
    g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_MIGRATION, "migration %s/%s failed: %s", service,
                 m->name, local_error->message);
    if (applied != NULL)
      *applied = count;
    return FALSE;
  }
  if (applied != NULL)
    *applied = count;
  return TRUE;
}

static int
compare_migrations (const void *a, const void *b)
{
  const gn_migration *ma = a, *mb = b;
  return (ma->version > mb->version) - (ma->version < mb->version);
}

gn_migration *
gn_pg_migrations_from_resource (const char *service, size_t *n, GError **error)
{
  g_autofree char *dir = g_strdup_printf ("/org/generia/node/migrations/%s/", service);
  g_auto (GStrv) names = g_resources_enumerate_children (dir, G_RESOURCE_LOOKUP_FLAGS_NONE, error);
  *n = 0;
  if (names == NULL)
    return NULL;

  guint count = g_strv_length (names);
  gn_migration *migrations = g_new0 (gn_migration, count + 1);
  for (guint i = 0; i < count; i++) {
    char *end = NULL;
    long version = strtol (names[i], &end, 10);
    if (end == names[i] || *end != '_' || version <= 0 || !g_str_has_suffix (names[i], ".sql")) {
      g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_MIGRATION,
                   "migration file %s%s is not named NNNN_name.sql", dir, names[i]);
      g_free (migrations);
      return NULL;
    }
    g_autofree char *path = g_strconcat (dir, names[i], NULL);
    g_autoptr (GBytes) bytes = g_resources_lookup_data (path, G_RESOURCE_LOOKUP_FLAGS_NONE, error);
    if (bytes == NULL) {
      g_free (migrations);
      return NULL;
    }
    /* Compiled-in resources are static and NUL-terminated by glib-compile-resources, so the
     * pointers stay valid after the GBytes is released. */
    migrations[i].version = (int)version;
    migrations[i].name = g_intern_string (names[i]);
    migrations[i].sql = g_bytes_get_data (bytes, NULL);
  }
  qsort (migrations, count, sizeof *migrations, compare_migrations);
  for (guint i = 1; i < count; i++)
    if (migrations[i].version == migrations[i - 1].version) {
      g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_MIGRATION,
                   "migrations %s and %s of %s share version %d", migrations[i - 1].name,
                   migrations[i].name, service, migrations[i].version);
      g_free (migrations);
      return NULL;
    }
  *n = count;
  return migrations;
}

static int64_t
date_time_us (GDateTime *dt)
{
  if (dt == NULL)
    return 0;
  return g_date_time_to_unix (dt) * G_USEC_PER_SEC + g_date_time_get_microsecond (dt);
}

int64_t
gn_pg_timestamp_us (const char *text)
{
  if (text == NULL || text[0] == '\0')
    return 0;
  /* "2026-11-26 15:00:00.123456+00" -> ISO 8601 for GDateTime. */
  g_autofree char *iso = g_strdup (text);
  if (strlen (iso) > 10 && iso[10] == ' ')
    iso[10] = 'T';
  size_t len = strlen (iso);
  if (len >= 3 && (iso[len - 3] == '+' || iso[len - 3] == '-')) {
    g_autofree char *padded = g_strconcat (iso, ":00", NULL);
    g_autoptr (GDateTime) dt = g_date_time_new_from_iso8601 (padded, NULL);
    return date_time_us (dt);
  }
  g_autoptr (GDateTime) dt = g_date_time_new_from_iso8601 (iso, NULL);
  return date_time_us (dt);
}
