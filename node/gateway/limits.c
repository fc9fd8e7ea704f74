/* limits.c - the gateway's admission hook: bounds on the request line and rate limits, decided
 * once the headers are in and before any body byte is read (gn_http_server_options.admit).
 *
 * Bounds.  A query string of more than QUERY_MAX_PARAMS parameters is refused with 400, one
 * key or value longer than GN_GATEWAY_QUERY_VALUE_MAX with 414 (paths are bounded by the
 * router: GN_ROUTE_PATH_MAX).  libmicrohttpd has already read them into its per-connection
 * memory (64 KiB for the request line and headers together), so these bounds are about what
 * handlers and services get to see: nothing a client of API v1 sends comes near them.
 *
 * Rate limits (token buckets, ratelimit.h):
 *   auth    login, register and refresh, per client address (request->client_ip, already the
 *           forwarded client behind a trusted proxy).  IPv6 addresses count per /64, the
 *           block one host usually gets, so a host cannot mint fresh keys from its own block.
 *   writes  POST, PUT, PATCH and DELETE of a signed-in user, per user id.  Anonymous writes
 *           (an upload by signed URL) are not counted here: the URL's signature bounds them.
 * A refused request gets 429 with code "rate_limited" and Retry-After in whole seconds.
 * Buckets are in memory, per gateway process: a split deployment with several gateways
 * multiplies the allowance by their number, which is fine for limits meant to stop scripts. */
#include "gateway.h"

#include <string.h>
#include <gio/gio.h>
#include <microhttpd.h>

#include "ratelimit.h"

#define QUERY_MAX_PARAMS 32

struct gn_gateway_limits {
  bool enabled;
  gn_ratelimit *auth;
  gn_ratelimit *writes;
};

/* The routes whose every request costs a password hash or a token family lookup. */
static const char *const auth_routes[] = {
  "/api/v1/auth/login",
  "/api/v1/auth/register",
  "/api/v1/auth/refresh",
};

gn_gateway_limits *
gn_gateway_limits_new (const gn_config *config)
{
  gn_gateway_limits *limits = g_new0 (gn_gateway_limits, 1);
  gn_ratelimit_options auth = {
    .burst = config->ratelimit_auth_burst,
    .per_second = config->ratelimit_auth_per_minute / 60.0,
    .max_keys = (size_t)config->ratelimit_max_keys,
  };
  gn_ratelimit_options writes = {
    .burst = config->ratelimit_write_burst,
    .per_second = config->ratelimit_write_per_minute / 60.0,
    .max_keys = (size_t)config->ratelimit_max_keys,
  };

  limits->enabled = config->ratelimit_enabled;
  limits->auth = gn_ratelimit_new (&auth);
  limits->writes = gn_ratelimit_new (&writes);
  return limits;
}

void
gn_gateway_limits_free (gn_gateway_limits *limits)
{
  if (limits == NULL)
    return;
  gn_ratelimit_free (limits->auth);
  gn_ratelimit_free (limits->writes);
  g_free (limits);
}

typedef struct {
  size_t count;
  size_t longest;
} query_shape;

static enum MHD_Result
measure_query (void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
               const char *value, size_t value_size)
{
  query_shape *shape = cls;

  shape->count++;
  shape->longest = MAX (shape->longest, MAX (key_size, value_size));
  return MHD_YES;
}

/* 400 / 414 for a query string past the bounds; true if within them. */
static bool
admit_request_line (gn_http_request *request)
{
  query_shape shape = { 0, 0 };

  MHD_get_connection_values_n (request->connection, MHD_GET_ARGUMENT_KIND, measure_query, &shape);
  if (shape.count > QUERY_MAX_PARAMS) {
    gn_http_respond_error (request, 400, "too_many_query_parameters",
                           "The query string has more than %d parameters", QUERY_MAX_PARAMS);
    return false;
  }
  if (shape.longest > GN_GATEWAY_QUERY_VALUE_MAX) {
    gn_http_respond_error (request, 414, "uri_too_long",
                           "A query parameter is longer than %d bytes", GN_GATEWAY_QUERY_VALUE_MAX);
    return false;
  }
  return true;
}

/* The address as a bucket key: IPv6 by its /64. */
static char *
address_key (gn_arena *arena, const char *client_ip)
{
  g_autoptr (GInetAddress) address = g_inet_address_new_from_string (client_ip);

  if (address == NULL || g_inet_address_get_family (address) != G_SOCKET_FAMILY_IPV6)
    return gn_arena_strdup (arena, client_ip);
  const guint8 *bytes = g_inet_address_to_bytes (address);
  return gn_arena_printf (arena, "%02x%02x:%02x%02x:%02x%02x:%02x%02x::/64", bytes[0], bytes[1],
                          bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]);
}

static bool
is_write (const char *method)
{
  return strcmp (method, "POST") == 0 || strcmp (method, "PUT") == 0
         || strcmp (method, "PATCH") == 0 || strcmp (method, "DELETE") == 0;
}

static bool
refuse (gn_http_request *request, int64_t retry_after_us, const char *what)
{
  int64_t seconds = (retry_after_us + G_USEC_PER_SEC - 1) / G_USEC_PER_SEC;
  char value[24];

  g_snprintf (value, sizeof value, "%" G_GINT64_FORMAT, MAX (seconds, (int64_t)1));
  gn_http_add_header (request, "Retry-After", value);
  gn_http_respond_error (request, 429, "rate_limited", "Too many %s: try again in %s seconds", what,
                         value);
  return false;
}

bool
gn_gateway_admit (void *data, gn_http_request *request)
{
  gn_gateway_limits *limits = data;
  int64_t now = g_get_monotonic_time ();
  int64_t retry_after = 0;

  if (!admit_request_line (request))
    return false;
  if (!limits->enabled || request->route == NULL)
    return true;

  for (size_t i = 0; i < G_N_ELEMENTS (auth_routes); i++)
    if (strcmp (request->route->pattern, auth_routes[i]) == 0) {
      const char *key = address_key (request->arena, request->client_ip);
      if (!gn_ratelimit_take (limits->auth, key, now, &retry_after))
        return refuse (request, retry_after, "sign-in attempts from this address");
      break;
    }
  if (request->user_id != NULL && is_write (request->method)
      && !gn_ratelimit_take (limits->writes, request->user_id, now, &retry_after))
    return refuse (request, retry_after, "changes from this account");
  return true;
}
