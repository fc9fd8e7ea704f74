/* service.c - helpers shared by the service modules (see service.h). */
#include "service.h"

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
