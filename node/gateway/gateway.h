/* gateway.h - the REST gateway: API v1 routes over the gRPC services.
 *
 * The gateway owns no data.  Each route handler reads JSON, calls one service (or a few, in
 * parallel, for pages that combine services), and writes JSON; bearer tokens are verified
 * locally by the HTTP layer before the handler runs and forwarded to the services, which do
 * their own authorisation.  Route files (routes-<area>.c) register their routes through one
 * function each. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "config.h"
#include "http.h"
#include "json-limits.h"
#include "revocations.h"
#include "rpc.h"
#include "token.h"

typedef struct {
  const gn_config *config;
  const gn_token_key *key;
  gn_rpc_client *clients[GN_SERVICE_COUNT]; /* by gn_service_id; NULL if not configured */
  char *media_base_url; /* cdn.public_url without a trailing slash; NULL: the gateway's own */
} gn_gateway_context;

typedef struct gn_gateway gn_gateway;

/* Adds the routes that services running in this process serve on the gateway's port (the
 * CDN's media files), before the listener starts. */
typedef void (*gn_gateway_add_routes) (void *data, gn_router *router);

/* Bearer tokens are checked with key and must not belong to a session in revocations.  Warns
 * when media URLs could not work: the cdn service runs elsewhere and cdn.public_url does not say
 * where its listener is reached. */
gn_gateway *gn_gateway_start (const gn_config *config, const gn_token_key *key,
                              gn_revocations *revocations, gn_gateway_add_routes add_routes,
                              void *routes_data, GError **error);
int gn_gateway_port (gn_gateway *gateway);
void gn_gateway_stop (gn_gateway *gateway);

/* Admission before the body (limits.c): bounds on the request line, then rate limits per
 * client address on login/register/refresh and per user on writes, from config [ratelimit].
 * gn_gateway_admit is the gn_http_admit hook; its data is the gn_gateway_limits. */
typedef struct gn_gateway_limits gn_gateway_limits;
gn_gateway_limits *gn_gateway_limits_new (const gn_config *config);
void gn_gateway_limits_free (gn_gateway_limits *limits);
bool gn_gateway_admit (void *data, gn_http_request *request);

/* Route registration per area. */
void gn_gateway_add_auth_routes (gn_router *router, gn_gateway_context *context);
void gn_gateway_add_post_routes (gn_router *router, gn_gateway_context *context);
void gn_gateway_add_media_routes (gn_router *router, gn_gateway_context *context);

/* Helpers shared by the route files. */

/* One unary call to `service` on behalf of `request` (its request id, traceparent and bearer
 * go along).  On failure answers the request with the HTTP form of the error and returns
 * FALSE. */
gboolean gn_gateway_call (gn_http_request *request, gn_gateway_context *context,
                          gn_service_id service, const ProtobufCServiceDescriptor *descriptor,
                          const char *method, const ProtobufCMessage *req,
                          ProtobufCMessage **response);

/* Options for a call made on behalf of `request`: its request id, traceparent and bearer. */
void gn_gateway_call_options (gn_http_request *request, gn_rpc_call_options *options);
/* Parses the body as a JSON object; answers 400 (invalid_json / invalid_request) and returns
 * NULL otherwise.  The object lives as long as the returned parser (unref it). */
JsonParser *gn_gateway_parse_object (gn_http_request *request, JsonObject **object);
/* The same for JSON text from elsewhere (a spooled body), under the given limits of the guard
 * (json-limits.h; NULL: its defaults).  Refusals of the guard answer 400 with its reason word
 * (json_too_deep, nul_in_string, invalid_utf8, ...). */
JsonParser *gn_gateway_parse_object_text (gn_http_request *request, const char *text, size_t len,
                                          const gn_json_limits *limits, JsonObject **object);

/* The body limit of routes that take a JSON document (a caption, ids): uploads have their own,
 * the auth routes a smaller one. */
#define GN_GATEWAY_JSON_MAX_BODY (64 * 1024)

/* Text from a header or a form that goes to a service as a string: valid UTF-8, no control
 * characters, at most max bytes. */
#define GN_GATEWAY_CONTENT_TYPE_MAX 255
gboolean gn_gateway_text_ok (const char *text, size_t max);

/* Query values are short text: longer ones, "%00" and invalid UTF-8 are refused. */
#define GN_GATEWAY_QUERY_VALUE_MAX 1024
/* A query parameter: NULL if absent; answers 400 (invalid_query) and sets *failed if it is
 * longer than GN_GATEWAY_QUERY_VALUE_MAX, holds a NUL or is not valid UTF-8. */
const char *gn_gateway_query (gn_http_request *request, const char *name, gboolean *failed);
/* A string member: NULL if absent; answers 400 and sets *failed if present but not a string. */
const char *gn_gateway_string_member (gn_http_request *request, JsonObject *object,
                                      const char *name, gboolean *failed);
/* Serialises the builder's root and answers with it. */
void gn_gateway_respond_builder (gn_http_request *request, int status, JsonBuilder *builder);
/* The base of media URLs for this request: cdn.public_url, else the base URL the client used
 * to reach the gateway (gn_http_base_url), which serves the media too. */
const char *gn_gateway_media_base_url (gn_http_request *request, gn_gateway_context *context);
/* "2026-11-26T14:00:00Z" into buf. */
const char *gn_gateway_format_time (int64_t us, char buf[32]);
