/* service.c - helpers shared by the service modules (see service.h): migrations, the
 * database side of handlers, HealthCheck, and periodic background jobs. */
#include "service.h"

#include "common.pb-c.h"
#include "failpoint.h"
#include "log.h"
#include "pg.h"

gboolean
gn_service_migrate (const gn_service_env *env, const char *service, GError **error)
{
  size_t n = 0;
  g_autofree gn_migration *migrations = gn_pg_migrations_from_resource (service, &n, error);
  if (migrations == NULL)
    return FALSE;
  PGconn *conn = gn_pg_connect (env->database_url, error);
  if (conn == NULL)
    return FALSE;
  int applied = 0;
  gboolean ok = gn_pg_migrate (conn, service, migrations, n, &applied, error);
  PQfinish (conn);
  if (ok)
    gn_info ("%s schema up to date (%d of %zu migrations applied now)", service, applied, n);
  return ok;
}

PGconn *
gn_service_db (gn_rpc_call *call, const char *database_url, grpc_status_code *code)
{
  g_autoptr (GError) error = NULL;
  PGconn *conn = gn_pg_thread_conn (database_url, &error);
  if (conn == NULL) {
    gn_error ("%s", error->message);
    *code = gn_rpc_call_fail (call, GRPC_STATUS_UNAVAILABLE, "database_unavailable",
                              "the database is unavailable");
  }
  return conn;
}

grpc_status_code
gn_service_fail_internal (gn_rpc_call *call, const GError *error)
{
  if (g_error_matches (error, GN_PG_ERROR, GN_PG_ERROR_DEADLINE)) {
    gn_warn ("%s", error->message);
    return gn_rpc_call_fail (call, GRPC_STATUS_DEADLINE_EXCEEDED, "timeout",
                             "the deadline passed before the work was done; nothing was saved");
  }
  gn_error ("%s", error->message);
  if (g_error_matches (error, GN_PG_ERROR, GN_PG_ERROR_CONNECT))
    return gn_rpc_call_fail (call, GRPC_STATUS_UNAVAILABLE, "database_unavailable",
                             "the database is unavailable");
  return gn_rpc_call_fail (call, GRPC_STATUS_INTERNAL, "internal", "internal error");
}

void
gn_service_rollback (PGconn *conn)
{
  PQclear (PQexec (conn, "ROLLBACK"));
}

gboolean
gn_service_begin (gn_rpc_call *call, PGconn *conn, GError **error)
{
  return gn_pg_begin (conn, gn_rpc_call_remaining_ms (call), error);
}

gboolean
gn_service_commit (gn_rpc_call *call, PGconn *conn, GError **error)
{
  if (G_UNLIKELY (gn_failpoints_enabled)) {
    g_autofree char *name = g_strconcat ("commit.", gn_rpc_call_method (call), NULL);
    if (gn_failpoint_hit (name)) {
      gn_service_rollback (conn);
      g_set_error (error, GN_PG_ERROR, GN_PG_ERROR_QUERY, "fail point %s", name);
      return FALSE;
    }
  }
  return gn_pg_commit (conn, gn_rpc_call_remaining_ms (call), error);
}

grpc_status_code
gn_service_health (gn_rpc_call *call, const char *service, const char *database_url,
                   gboolean (*check) (void *data, GError **error), void *check_data,
                   ProtobufCMessage **response)
{
  gn_arena *arena = gn_rpc_call_arena (call);
  g_autoptr (GError) error = NULL;
  Generia__Common__V1__HealthCheckResponse *out = gn_arena_alloc (arena, sizeof *out);
  generia__common__v1__health_check_response__init (out);
  out->service = (char *)service;
  out->version = PACKAGE_VERSION;
  out->status = GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;

  PGconn *conn = gn_pg_thread_conn (database_url, &error);
  gboolean ok = conn != NULL && gn_pg_command (conn, &error, "SELECT 1", 0, NULL)
                && (check == NULL || check (check_data, &error));
  if (!ok) {
    out->status = GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    out->detail = gn_arena_strdup (arena, error->message);
  }
  *response = &out->base;
  return GRPC_STATUS_OK;
}

struct gn_periodic {
  GThread *thread;
  GMutex lock;
  GCond wake;
  gboolean stopping;
  int interval_s;
  char *log_service;
  void (*run) (void *data);
  void *data;
};

static gpointer
periodic_main (gpointer data)
{
  gn_periodic *periodic = data;
  gn_log_set_service (periodic->log_service);
  g_mutex_lock (&periodic->lock);
  while (!periodic->stopping) {
    gint64 until = g_get_monotonic_time () + (gint64)periodic->interval_s * G_USEC_PER_SEC;
    while (!periodic->stopping && g_cond_wait_until (&periodic->wake, &periodic->lock, until))
      ;
    if (periodic->stopping)
      break;
    g_mutex_unlock (&periodic->lock);
    periodic->run (periodic->data);
    g_mutex_lock (&periodic->lock);
  }
  g_mutex_unlock (&periodic->lock);
  return NULL;
}

gn_periodic *
gn_periodic_start (const char *thread_name, const char *log_service, int interval_s,
                   void (*run) (void *data), void *data)
{
  gn_periodic *periodic = g_new0 (gn_periodic, 1);
  g_mutex_init (&periodic->lock);
  g_cond_init (&periodic->wake);
  periodic->interval_s = interval_s;
  periodic->log_service = g_strdup (log_service);
  periodic->run = run;
  periodic->data = data;
  periodic->thread = g_thread_new (thread_name, periodic_main, periodic);
  return periodic;
}

void
gn_periodic_stop (gn_periodic *periodic)
{
  if (periodic == NULL)
    return;
  g_mutex_lock (&periodic->lock);
  periodic->stopping = TRUE;
  g_cond_signal (&periodic->wake);
  g_mutex_unlock (&periodic->lock);
  g_thread_join (periodic->thread);
  g_mutex_clear (&periodic->lock);
  g_cond_clear (&periodic->wake);
  g_free (periodic->log_service);
  g_free (periodic);
}
