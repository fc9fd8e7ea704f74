/* pg.h - PostgreSQL access: per-thread connections and versioned migrations.
 *
 * Connections.  gn_pg_thread_conn(dsn) returns the calling thread's connection for that DSN,
 * connecting on first use and reconnecting when the previous one broke; it is closed when the
 * thread exits.  rpc worker threads therefore hold one connection each, as intended.
 *
 * Migrations.  Each service owns a schema and an ordered list of SQL files (embedded in the
 * binary as GResources under /org/generia/node/migrations/<service>/NNNN_name.sql).
 * gn_pg_migrate() takes a transaction-scoped advisory lock (so concurrent processes queue),
 * creates public.schema_migrations if needed, and applies each file whose version is not
 * recorded yet in its own transaction together with its record.  A failing file rolls back
 * alone and stops the run with the server's message.
 *
 * Deadlines.  Work whose caller gave up must neither run on nor commit.  gn_pg_begin() opens a
 * transaction whose statements PostgreSQL itself cancels when the caller's remaining time is
 * up (SET LOCAL statement_timeout, so it ends with the transaction and the connection goes back
 * to the worker unchanged); gn_pg_commit() refuses to COMMIT, and rolls back instead, when
 * that time has passed by then.  Both fail with GN_PG_ERROR_DEADLINE, as does any statement
 * PostgreSQL cancelled (SQLSTATE 57014).  The timeout applies per statement from the time left
 * at BEGIN, so a transaction of several slow statements can run past the deadline by what its
 * earlier ones took; the check at commit still keeps it from committing.  What remains is the
 * moment of the COMMIT itself: a deadline that passes while the server commits cannot be told
 * from an answer lost on the way back. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>
#include <glib.h>

#define GN_PG_ERROR (gn_pg_error_quark ())
GQuark gn_pg_error_quark (void);

typedef enum {
  GN_PG_ERROR_CONNECT, /* cannot connect, or the connection broke during the statement */
  GN_PG_ERROR_QUERY,
  GN_PG_ERROR_MIGRATION,
  GN_PG_ERROR_UNIQUE,   /* SQLSTATE 23505 */
  GN_PG_ERROR_DEADLINE, /* the caller's time ran out: statement cancelled or commit refused */
} gn_pg_error_code;

/* NULL with error set if the server cannot be reached. */
PGconn *gn_pg_thread_conn (const char *dsn, GError **error);
PGconn *gn_pg_connect (const char *dsn, GError **error);

/* PQexecParams with text parameters; returns the result if its status is COMMAND_OK or
 * TUPLES_OK, else NULL with error set (GN_PG_ERROR_UNIQUE for unique violations; the
 * constraint name in the message).  Caller PQclear()s. */
PGresult *gn_pg_exec (PGconn *conn, GError **error, const char *sql, int n_params,
                      const char *const *params);

/* gn_pg_exec for statements whose result is not needed (BEGIN, UPDATE, ...). */
gboolean gn_pg_command (PGconn *conn, GError **error, const char *sql, int n_params,
                        const char *const *params);

/* BEGIN, with `remaining_ms` (the caller's time left; INT64_MAX = none) as the statement
 * timeout of the transaction.  remaining_ms <= 0 fails at once without starting. */
gboolean gn_pg_begin (PGconn *conn, int64_t remaining_ms, GError **error);
/* COMMIT if remaining_ms > 0, else ROLLBACK and fail with GN_PG_ERROR_DEADLINE.  A failed
 * COMMIT leaves no transaction open either. */
gboolean gn_pg_commit (PGconn *conn, int64_t remaining_ms, GError **error);

typedef struct {
  int version;      /* from the file name: 0001_users.sql -> 1 */
  const char *name; /* "0001_users.sql" */
  const char *sql;
} gn_migration;

/* Applies pending migrations of `service`; *applied (optional) counts those run now. */
gboolean gn_pg_migrate (PGconn *conn, const char *service, const gn_migration *migrations,
                        size_t n_migrations, int *applied, GError **error);
/* Loads a service's migrations from the embedded resources, sorted by version.  Free the
 * array with g_free (strings point into the resource). */
gn_migration *gn_pg_migrations_from_resource (const char *service, size_t *n, GError **error);

/* Microseconds since the epoch from a timestamptz column printed by the server in the
 * "ISO, YMD" style with UTC zone (connections set TimeZone=UTC, DateStyle=ISO). */
int64_t gn_pg_timestamp_us (const char *text);
