/* fuzz-router.c - gn_router_match and gn_router_allowed_methods over the gateway's real route
 * table (every API v1 route plus /health, /ready, /metrics).
 *
 * Input: "METHOD\nPATH".  Checked: a match names a route of that method (or GET for HEAD),
 * with at most GN_ROUTE_MAX_PARAMS parameters, each a non-empty value; the 405 allow list is
 * non-empty and NUL-terminated. */
#include "fuzz.h"

#include "gateway.h"

static gn_router *router;
static gn_gateway_context context;

static void
no_handler (gn_http_request *request, void *data)
{
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* The media routes take their body limits from the configuration. */
  context.config = gn_config_new_default ();
  router = gn_router_new ();
  gn_router_add (router, "GET", "/health", no_handler, NULL, 0);
  gn_router_add (router, "GET", "/ready", no_handler, NULL, 0);
  gn_router_add (router, "GET", "/metrics", no_handler, NULL, 0);
  gn_gateway_add_auth_routes (router, &context);
  gn_gateway_add_post_routes (router, &context);
  gn_gateway_add_media_routes (router, &context);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *fields[2];
  char *copy = fuzz_split_fields (data, size, fields, 2);
  const char *method = fields[0], *path = fields[1];
  gn_arena *arena = gn_arena_new ();
  const gn_route *route = NULL;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params = 0;
  char allow[128];

  switch (gn_router_match (router, method, path, arena, &route, params, &n_params, allow,
                           sizeof allow)) {
    case GN_ROUTE_MATCH:
      FUZZ_ASSERT (route != NULL);
      FUZZ_ASSERT (strcmp (route->method, method) == 0
                   || (strcmp (method, "HEAD") == 0 && strcmp (route->method, "GET") == 0));
      FUZZ_ASSERT (n_params <= GN_ROUTE_MAX_PARAMS);
      for (size_t i = 0; i < n_params; i++)
        FUZZ_ASSERT (params[i].name != NULL && params[i].value != NULL);
      break;
    case GN_ROUTE_METHOD_NOT_ALLOWED:
      FUZZ_ASSERT (memchr (allow, '\0', sizeof allow) != NULL && allow[0] != '\0');
      break;
    case GN_ROUTE_NOT_FOUND:
      break;
  }
  char preflight_allow[128];
  if (gn_router_allowed_methods (router, path, preflight_allow, sizeof preflight_allow))
    FUZZ_ASSERT (memchr (preflight_allow, '\0', sizeof preflight_allow) != NULL);

  gn_arena_free (arena);
  g_free (copy);
  return 0;
}
