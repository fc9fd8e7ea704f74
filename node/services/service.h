/* service.h - what every gRPC service module provides to generia-node's main.
 *
 * A module migrates its own schema, builds its gn_rpc_service (descriptor + handler table +
 * state) and frees that state at shutdown.  main.c keeps a table of modules and runs those
 * selected by --services, so adding a service is one table entry. */
#pragma once

#include <glib.h>

#include "config.h"
#include "rpc.h"
#include "token.h"

typedef struct {
  const gn_config *config;
  const char *database_url; /* resolved: configured or embedded */
  const char *redis_url;
  const gn_token_key *token_key;
} gn_service_env;

typedef struct {
  gn_service_id id;
  gboolean (*migrate) (const gn_service_env *env, GError **error);
  gboolean (*init) (const gn_service_env *env, gn_rpc_service *service, GError **error);
  void (*fini) (gn_rpc_service *service);
} gn_service_module;

extern const gn_service_module gn_auth_module;
extern const gn_service_module gn_cdn_module;
extern const gn_service_module gn_post_module;
extern const gn_service_module gn_media_module;

/* Shared by the modules: runs the embedded migrations of `service` against database_url. */
gboolean gn_service_migrate (const gn_service_env *env, const char *service, GError **error);
