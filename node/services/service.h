/* service.h - what every gRPC service module provides to generia-node's main.
 *
 * A module migrates its own schema, builds its gn_rpc_service (descriptor + handler table +
 * state) and frees that state at shutdown.  main.c keeps a table of modules and runs those
 * selected by --services, so adding a service is one table entry. */
#pragma once

#include <glib.h>
#include <libpq-fe.h>

#include "config.h"
#include "revocations.h"
#include "router.h"
#include "rpc.h"
#include "token.h"

typedef struct {
  const gn_config *config;
  const char *database_url; /* resolved: configured or embedded */
  const char *redis_url;
  const gn_token_key *token_key;
  gn_revocations *revocations; /* the process's revoked sessions (see revocations.h) */
} gn_service_env;

typedef struct {
  gn_service_id id;
  gboolean (*migrate) (const gn_service_env *env, GError **error);
  gboolean (*init) (const gn_service_env *env, gn_rpc_service *service, GError **error);
  void (*fini) (gn_rpc_service *service);
  /* Optional: HTTP routes the service serves on the gateway's port when both run in one
   * process (the CDN's media files).  Called after init; the routes may use service->data
   * until fini. */
  void (*add_http_routes) (gn_rpc_service *service, gn_router *router);
} gn_service_module;

extern const gn_service_module gn_auth_module;
extern const gn_service_module gn_cdn_module;
extern const gn_service_module gn_post_module;
extern const gn_service_module gn_media_module;

/* Shared by the modules: runs the embedded migrations of `service` against database_url. */
gboolean gn_service_migrate (const gn_service_env *env, const char *service, GError **error);

/* Handler helpers for the services that own a PostgreSQL schema. */

/* The calling worker's connection; NULL after failing the call UNAVAILABLE
 * "database_unavailable". */
PGconn *gn_service_db (gn_rpc_call *call, const char *database_url, grpc_status_code *code);
/* Logs `error` and fails the call: UNAVAILABLE when the database connection is gone,
 * DEADLINE_EXCEEDED "timeout" when the call's deadline ended the work, otherwise INTERNAL with
 * a generic message (the details stay in the log, never in an answer). */
grpc_status_code gn_service_fail_internal (gn_rpc_call *call, const GError *error);
/* ROLLBACK, whatever state the connection is in. */
void gn_service_rollback (PGconn *conn);
/* Every handler that writes runs its statements between these two (pg.h: Deadlines): BEGIN
 * with the call's remaining deadline as the statement timeout, and a COMMIT that rolls back
 * instead once the deadline has passed.  Their errors go to gn_service_fail_internal, which
 * answers DEADLINE_EXCEEDED for them.  The fail point "commit.<Method>" (e.g.
 * "commit.Register=sleep(1500)") runs just before the deadline check of the commit. */
gboolean gn_service_begin (gn_rpc_call *call, PGconn *conn, GError **error);
gboolean gn_service_commit (gn_rpc_call *call, PGconn *conn, GError **error);
/* The HealthCheck answer: SERVING when the database answers and `check` (NULL, or a probe of
 * another dependency such as storage) passes, else NOT_SERVING with the reason. */
grpc_status_code gn_service_health (gn_rpc_call *call, const char *service,
                                    const char *database_url,
                                    gboolean (*check) (void *data, GError **error),
                                    void *check_data, ProtobufCMessage **response);

/* A job that runs every interval_s seconds on a thread of its own (sweeps, outbox retries),
 * with the given log service name, until gn_periodic_stop wakes and joins it. */
typedef struct gn_periodic gn_periodic;

gn_periodic *gn_periodic_start (const char *thread_name, const char *log_service, int interval_s,
                                void (*run) (void *data), void *data);
void gn_periodic_stop (gn_periodic *periodic);
