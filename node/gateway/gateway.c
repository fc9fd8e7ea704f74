/* gateway.c - starts the REST gateway (see gateway.h) and serves its own endpoints:
 * /health (liveness: the process answers), /ready (readiness: every service the gateway
 * routes to answers HealthCheck as SERVING, asked in parallel with a short deadline).
 *
 * Tokens are verified here with the shared key and the process's set of revoked sessions
 * (revocations.c), so routes that need a user cost no extra hop; the services verify the
 * forwarded token again (authorisation stays with the data).
 *
 * One port for everything: when this process runs the cdn service, its media routes
 * (/media/...) are served here as well, so a host opens the gateway's port and nothing else.
 * URLs in answers start with the base URL the client used (gn_http_base_url: Host, or
 * X-Forwarded-Host/-Proto from gateway.trusted_proxies), unless gateway.public_url or
 * cdn.public_url fix them. */
#include "gateway.h"

#include <errno.h>
#include <string.h>
#include <microhttpd.h>

#include "common.pb-c.h"
#include "auth.pb-c.h"
#include "cdn.pb-c.h"
#include "media.pb-c.h"
#include "post.pb-c.h"
#include "errors.h"
#include "json-limits.h"
#include "log.h"
#include "metrics.h"

struct gn_gateway {
  gn_gateway_context context;
  gn_router *router;
  gn_gateway_limits *limits;
  gn_http_server *server;
  gn_token_verifier verifier;
};

/* Services whose health decides readiness, with their HealthCheck descriptors. */
typedef struct {
  gn_service_id id;
  const ProtobufCServiceDescriptor *descriptor;
} ready_dependency;

static const ready_dependency ready_dependencies[] = {
  { GN_SERVICE_AUTH, &generia__auth__v1__auth_service__descriptor },
  { GN_SERVICE_POST, &generia__post__v1__post_service__descriptor },
  { GN_SERVICE_MEDIA, &generia__media__v1__media_service__descriptor },
  { GN_SERVICE_CDN, &generia__cdn__v1__cdnservice__descriptor },
};

void
gn_gateway_call_options (gn_http_request *request, gn_rpc_call_options *options)
{
  memset (options, 0, sizeof *options);
  options->request_id = request->request_id;
  options->traceparent = gn_http_header (request, "traceparent");
  options->authorization = request->user_id != NULL ? request->authorization : NULL;
}

gboolean
gn_gateway_call (gn_http_request *request, gn_gateway_context *context, gn_service_id service,
                 const ProtobufCServiceDescriptor *descriptor, const char *method,
                 const ProtobufCMessage *req, ProtobufCMessage **response)
{
  gn_rpc_call_options options;
  gn_rpc_status status;
  gn_gateway_call_options (request, &options);
  gn_rpc_unary (context->clients[service], descriptor, method, req, response, request->arena,
                &options, &status);
  if (status.code != GRPC_STATUS_OK) {
    gn_gateway_respond_rpc_error (request, &status, gn_service_name (service));
    return FALSE;
  }
  return TRUE;
}

JsonParser *
gn_gateway_parse_object_text (gn_http_request *request, const char *text, size_t len,
                              const gn_json_limits *limits, JsonObject **object)
{
  g_autoptr (GError) error = NULL;

  *object = NULL;
  /* json-glib recurses without limit and cuts strings at "\u0000": the guard goes first. */
  if (!gn_json_check (text, len, limits, &error)) {
    gn_http_respond_error (request, 400, gn_json_error_reason (error),
                           "the body is not acceptable JSON: %s", error->message);
    return NULL;
  }
  JsonParser *parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, (gssize)len, &error)) {
    gn_http_respond_error (request, 400, "invalid_json", "the body is not valid JSON: %s",
                           error->message);
    g_object_unref (parser);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    gn_http_respond_error (request, 400, "invalid_request", "the body must be a JSON object");
    g_object_unref (parser);
    return NULL;
  }
  *object = json_node_get_object (root);
  return parser;
}

JsonParser *
gn_gateway_parse_object (gn_http_request *request, JsonObject **object)
{
  *object = NULL;
  if (request->body == NULL || request->body_len == 0) {
    gn_http_respond_error (request, 400, "invalid_request", "a JSON object body is required");
    return NULL;
  }
  return gn_gateway_parse_object_text (request, request->body, request->body_len, NULL, object);
}

gboolean
gn_gateway_text_ok (const char *text, size_t max)
{
  size_t len = strnlen (text, max + 1);

  if (len > max || !g_utf8_validate (text, (gssize)len, NULL))
    return FALSE;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
      return FALSE;
  return TRUE;
}

const char *
gn_gateway_query (gn_http_request *request, const char *name, gboolean *failed)
{
  const char *value = NULL;
  size_t len = 0;

  if (MHD_lookup_connection_value_n (request->connection, MHD_GET_ARGUMENT_KIND, name,
                                     strlen (name), &value, &len)
          != MHD_YES
      || value == NULL)
    return NULL;
  /* The value's decoded length tells a "%00" apart: the C string stops there. */
  if (len > GN_GATEWAY_QUERY_VALUE_MAX || memchr (value, '\0', len) != NULL
      || !g_utf8_validate (value, (gssize)len, NULL)) {
    if (!*failed)
      gn_http_respond_error (request, 400, "invalid_query",
                             "the query parameter %s must be UTF-8 text of at most %d bytes "
                             "without NUL",
                             name, GN_GATEWAY_QUERY_VALUE_MAX);
    *failed = TRUE;
    return NULL;
  }
  return value;
}

const char *
gn_gateway_string_member (gn_http_request *request, JsonObject *object, const char *name,
                          gboolean *failed)
{
  JsonNode *node = json_object_get_member (object, name);
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return NULL;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_STRING) {
    if (!*failed)
      gn_http_respond_error (request, 400, "invalid_request", "%s must be a string", name);
    *failed = TRUE;
    return NULL;
  }
  return json_node_get_string (node);
}

void
gn_gateway_respond_builder (gn_http_request *request, int status, JsonBuilder *builder)
{
  g_autoptr (JsonNode) root = json_builder_get_root (builder);
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  json_generator_set_root (generator, root);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data (generator, &len);
  gn_http_respond_json (request, status, text, len);
}

const char *
gn_gateway_media_base_url (gn_http_request *request, gn_gateway_context *context)
{
  return context->media_base_url != NULL ? context->media_base_url : gn_http_base_url (request);
}

const char *
gn_gateway_format_time (int64_t us, char buf[32])
{
  g_autoptr (GDateTime) dt = g_date_time_new_from_unix_utc (us / G_USEC_PER_SEC);
  if (dt == NULL) {
    g_strlcpy (buf, "1970-01-01T00:00:00Z", 32);
    return buf;
  }
  g_autofree char *text = g_date_time_format (dt, "%Y-%m-%dT%H:%M:%SZ");
  g_strlcpy (buf, text, 32);
  return buf;
}

static void
handle_metrics (gn_http_request *request, void *data)
{
  size_t len = 0;
  g_autofree char *text = gn_metrics_render (&len);
  gn_http_respond (request, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static void
handle_health (gn_http_request *request, void *data)
{
  static const char body[] = "{\"status\":\"ok\"}";
  gn_http_respond_json (request, 200, body, sizeof body - 1);
}

/* The probes go out together and are awaited one by one: the slowest service sets the time,
 * and no thread is started for them. */
static void
handle_ready (gn_http_request *request, void *data)
{
  gn_gateway_context *context = data;
  enum { N = G_N_ELEMENTS (ready_dependencies) };
  gn_rpc_pending *pending[N];
  Generia__Common__V1__HealthCheckRequest req = GENERIA__COMMON__V1__HEALTH_CHECK_REQUEST__INIT;
  gn_rpc_call_options options = { .request_id = request->request_id, .timeout_ms = 2000 };
  gboolean ready = TRUE;
  g_autoptr (JsonBuilder) builder = json_builder_new ();

  for (size_t i = 0; i < N; i++)
    pending[i]
        = gn_rpc_unary_start (context->clients[ready_dependencies[i].id],
                              ready_dependencies[i].descriptor, "HealthCheck", &req.base, &options);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "services");
  json_builder_begin_object (builder);
  for (size_t i = 0; i < N; i++) {
    ProtobufCMessage *response = NULL;
    gn_rpc_status status;
    grpc_status_code code = gn_rpc_unary_finish (pending[i], &response, request->arena, &status);
    gboolean serving = FALSE;
    const char *detail;

    if (code == GRPC_STATUS_OK) {
      Generia__Common__V1__HealthCheckResponse *health = (void *)response;
      serving
          = health->status == GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
      detail = serving ? "serving" : health->detail;
    } else {
      detail
          = gn_arena_printf (request->arena, "%s: %s", gn_rpc_status_name (code), status.message);
    }
    ready = ready && serving;
    json_builder_set_member_name (builder, gn_service_name (ready_dependencies[i].id));
    json_builder_add_string_value (builder, detail);
  }
  json_builder_end_object (builder);
  json_builder_set_member_name (builder, "status");
  json_builder_add_string_value (builder, ready ? "ready" : "not_ready");
  json_builder_end_object (builder);
  gn_gateway_respond_builder (request, ready ? 200 : 503, builder);
}

static void
gateway_free (gn_gateway *gateway)
{
  gn_router_free (gateway->router);
  gn_gateway_limits_free (gateway->limits);
  g_free (gateway->context.media_base_url);
  g_free (gateway);
}

gn_gateway *
gn_gateway_start (const gn_config *config, const gn_token_key *key, gn_revocations *revocations,
                  gn_gateway_add_routes add_routes, void *routes_data, GError **error)
{
  gn_gateway *gateway = g_new0 (gn_gateway, 1);
  gateway->context.config = config;
  gateway->context.key = key;
  gateway->verifier = (gn_token_verifier){ .key = key, .revocations = revocations };
  if (config->cdn_public_url[0] != '\0') {
    gateway->context.media_base_url = g_strdup (config->cdn_public_url);
    while (g_str_has_suffix (gateway->context.media_base_url, "/"))
      gateway->context.media_base_url[strlen (gateway->context.media_base_url) - 1] = '\0';
  }
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    if (i != GN_SERVICE_GATEWAY && config->service_address[i] != NULL)
      gateway->context.clients[i] = gn_rpc_client_get (config->service_address[i]);

  gateway->router = gn_router_new ();
  gn_router_add (gateway->router, "GET", "/health", handle_health, NULL, 0);
  gn_router_add (gateway->router, "GET", "/ready", handle_ready, &gateway->context, 0);
  gn_router_add (gateway->router, "GET", "/metrics", handle_metrics, NULL, 0);
  gn_gateway_add_auth_routes (gateway->router, &gateway->context);
  gn_gateway_add_post_routes (gateway->router, &gateway->context);
  gn_gateway_add_media_routes (gateway->router, &gateway->context);
  gateway->limits = gn_gateway_limits_new (config);
  if (add_routes != NULL)
    add_routes (routes_data, gateway->router);

  gn_http_server_options options = {
    .name = "gateway",
    .address = config->gateway_address,
    .port = config->gateway_port,
    /* Connections wait on epoll event threads; API handlers wait on gRPC calls, on the pool
     * of workers. */
    .threads = config->gateway_threads,
    .blocking_handlers = true,
    .workers = config->gateway_workers,
    .queue_max = config->gateway_queue_max,
    .max_connections = config->gateway_max_connections,
    .max_connections_per_ip = config->gateway_max_connections_per_ip,
    .connection_timeout_s = config->gateway_idle_timeout_s,
    .header_timeout_s = config->gateway_header_timeout_s,
    .stop_grace_ms = config->shutdown_grace_ms,
    .max_body = config->max_body_bytes,
    .spool_dir = config->media_spool_dir,
    .cors_origins = config->cors_origins,
    .router = gateway->router,
    .authenticate = gn_token_verifier_check,
    .auth_data = &gateway->verifier,
    .observer = gn_metrics_observe_http,
    .admit = gn_gateway_admit,
    .admit_data = gateway->limits,
    .data = &gateway->context,
    .public_url = config->public_url,
    .trusted_proxies = config->trusted_proxies,
  };
  /* Large uploads are spooled here before they stream to the media service. */
  if (g_mkdir_with_parents (config->media_spool_dir, 0700) != 0) {
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s: %s",
                 config->media_spool_dir, g_strerror (errno));
    gateway_free (gateway);
    return NULL;
  }
  gateway->server = gn_http_server_start (&options, error);
  if (gateway->server == NULL) {
    gateway_free (gateway);
    return NULL;
  }
  /* The API still works, so this is no reason to stop; but every image would be a 404. */
  if (!config->run[GN_SERVICE_CDN] && gateway->context.media_base_url == NULL)
    gn_warn ("the cdn service does not run in this process, so media URLs pointing at this "
             "gateway will not load: set cdn.public_url to where the CDN's own listener "
             "(cdn.port of the process running it) is reached, or run the cdn service here");
  gn_info ("gateway listening on http://%s:%d%s%s%s%s", config->gateway_address,
           gn_http_server_port (gateway->server), config->run[GN_SERVICE_CDN] ? ", media too" : "",
           config->public_url[0] != '\0' ? "; API URLs under " : "", config->public_url,
           gateway->context.media_base_url != NULL ? "; media URLs under cdn.public_url" : "");
  return gateway;
}

int
gn_gateway_port (gn_gateway *gateway)
{
  return gn_http_server_port (gateway->server);
}

void
gn_gateway_stop (gn_gateway *gateway)
{
  if (gateway == NULL)
    return;
  /* Handlers still running past the grace keep using the routes: leave them to the exit. */
  if (!gn_http_server_stop (gateway->server))
    return;
  gateway_free (gateway);
}
