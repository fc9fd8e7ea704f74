/* cdn.c - the CDN service: signs media URLs over gRPC and serves them over HTTP.
 *
 * gRPC (generia.cdn.v1.CDNService):
 *   GetSignedURL     one call signs a whole feed page (up to MAX_KEYS storage keys): URL paths
 *                    ("/media/...?expires=&signature=") that expire after ttl_seconds (0:
 *                    cdn.url_ttl), see sign.h.  The gateway puts the base URL in front, so one
 *                    signed path works through whichever address a client reached the node by.
 *                    Pure CPU, one HMAC per key, so it runs inline on the completion queue.
 *   InvalidateCache  drops the local copies of the given keys (remote backends; the fs backend
 *                    serves its files in place and keeps nothing to drop); answers how many
 *                    copies were removed.  The post service calls it when media is deleted.
 *   GetCDNConfig     cdn.public_url, the default URL lifetime, the largest file, the port of
 *                    the listener of its own (if any).
 *   HealthCheck      SERVING while the storage answers.
 *
 * HTTP: the media routes of serve.c go on the gateway's router when the gateway runs in the
 * same process (add_http_routes), so a node needs one port.  With cdn.port set, the module's
 * init also starts a listener of its own on cdn.address:cdn.port (fini stops it), so
 * `--services cdn` is a whole CDN for hosts that split it off.  No database: the CDN reads
 * storage ([storage] of the configuration) and holds one secret, cdn.secret_file, shared by
 * every CDN process of a host so any of them verifies what another signed.
 *
 * Media are fetched by <img> and <video> elements from any page showing a post, and a signed
 * URL is itself the permission, so the listener allows every CORS origin. */
#include "service.h"

#include <string.h>
#include <gio/gio.h>
#include <sodium.h>

#include "cache.h"
#include "cdn.pb-c.h"
#include "common.pb-c.h"
#include "log.h"
#include "serve.h"
#include "sign.h"
#include "storage.h"

#define MAX_KEYS 1000
/* Longest URL lifetime a caller may ask for, unless cdn.url_ttl is longer: a leaked URL is a
 * leaked permission until it expires (S3 caps presigned URLs at a week too). */
#define MAX_TTL_S (7 * 24 * 3600)

typedef struct {
  gn_cdn_key key;
  gn_storage *storage;
  gn_cdn_cache *cache;   /* remote backends only */
  gn_cdn_media media;    /* the three above, for serve.c */
  gn_cdn_server *server; /* the listener of its own; NULL without cdn.port */
  char *public_url;      /* cdn.public_url, "" when unset */
  int default_ttl_s;
  int max_ttl_s;
  int64_t max_file_bytes;
} cdn_state;

static cdn_state *
state_of (gn_rpc_call *call)
{
  return gn_rpc_call_service_data (call);
}

static grpc_status_code
check_keys (gn_rpc_call *call, char **keys, size_t n_keys)
{
  if (n_keys > MAX_KEYS)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "too_many_keys",
                             "at most %d storage keys per call", MAX_KEYS);
  for (size_t i = 0; i < n_keys; i++)
    if (!gn_storage_key_is_valid (keys[i]))
      return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_storage_key",
                               "storage key %zu is not a valid storage key", i);
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_signed_url (gn_rpc_call *call, const ProtobufCMessage *message,
                       ProtobufCMessage **response)
{
  const Generia__Cdn__V1__GetSignedURLRequest *req = (const void *)message;
  cdn_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code;
  int ttl_s = req->ttl_seconds != 0 ? req->ttl_seconds : state->default_ttl_s;
  int64_t expires;
  Generia__Cdn__V1__GetSignedURLResponse *out;

  if ((code = check_keys (call, req->storage_keys, req->n_storage_keys)) != GRPC_STATUS_OK)
    return code;
  if (ttl_s < 0 || ttl_s > state->max_ttl_s)
    return gn_rpc_call_fail (call, GRPC_STATUS_INVALID_ARGUMENT, "invalid_ttl",
                             "ttl_seconds must be 0 (the default) to %d", state->max_ttl_s);

  expires = gn_cdn_expiry (g_get_real_time () / G_USEC_PER_SEC, ttl_s);
  out = gn_arena_alloc (arena, sizeof *out);
  generia__cdn__v1__get_signed_urlresponse__init (out);
  out->n_urls = req->n_storage_keys;
  out->urls = gn_arena_alloc (arena, sizeof *out->urls * MAX (out->n_urls, 1));
  for (size_t i = 0; i < req->n_storage_keys; i++) {
    Generia__Cdn__V1__SignedURL *url = gn_arena_alloc (arena, sizeof *url);

    generia__cdn__v1__signed_url__init (url);
    url->storage_key = req->storage_keys[i];
    url->url = gn_cdn_signed_url (arena, &state->key, "", req->storage_keys[i], expires);
    url->expires_at_us = expires * G_USEC_PER_SEC;
    out->urls[i] = url;
  }
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_invalidate_cache (gn_rpc_call *call, const ProtobufCMessage *message,
                         ProtobufCMessage **response)
{
  const Generia__Cdn__V1__InvalidateCacheRequest *req = (const void *)message;
  cdn_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  grpc_status_code code;
  Generia__Cdn__V1__InvalidateCacheResponse *out;

  if ((code = check_keys (call, req->storage_keys, req->n_storage_keys)) != GRPC_STATUS_OK)
    return code;
  out = gn_arena_alloc (arena, sizeof *out);
  generia__cdn__v1__invalidate_cache_response__init (out);
  if (state->cache != NULL)
    for (size_t i = 0; i < req->n_storage_keys; i++)
      out->invalidated += gn_cdn_cache_invalidate (state->cache, req->storage_keys[i]) ? 1 : 0;
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_get_cdn_config (gn_rpc_call *call, const ProtobufCMessage *message,
                       ProtobufCMessage **response)
{
  cdn_state *state = state_of (call);
  Generia__Cdn__V1__CDNConfig *out = gn_arena_alloc (gn_rpc_call_arena (call), sizeof *out);

  generia__cdn__v1__cdnconfig__init (out);
  out->public_base_url = state->public_url;
  out->default_ttl_seconds = state->default_ttl_s;
  out->max_file_bytes = state->max_file_bytes;
  out->http_port = state->server != NULL ? gn_cdn_server_port (state->server) : 0;
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static grpc_status_code
handle_health_check (gn_rpc_call *call, const ProtobufCMessage *message,
                     ProtobufCMessage **response)
{
  cdn_state *state = state_of (call);
  gn_arena *arena = gn_rpc_call_arena (call);
  g_autoptr (GError) error = NULL;
  Generia__Common__V1__HealthCheckResponse *out = gn_arena_alloc (arena, sizeof *out);

  generia__common__v1__health_check_response__init (out);
  out->service = "cdn";
  out->version = PACKAGE_VERSION;
  out->status = GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
  if (!gn_storage_check (state->storage, &error)) {
    out->status = GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    out->detail = gn_arena_printf (arena, "storage: %s", error->message);
  }
  *response = &out->base;
  return GRPC_STATUS_OK;
}

static const gn_rpc_method cdn_methods[] = {
  { "GetSignedURL", handle_get_signed_url, 0 },
  { "InvalidateCache", handle_invalidate_cache, GN_RPC_BLOCKING },
  { "GetCDNConfig", handle_get_cdn_config, 0 },
  { "HealthCheck", handle_health_check, GN_RPC_BLOCKING },
  { NULL, NULL, 0 },
};

static void
cdn_state_free (cdn_state *state)
{
  gn_cdn_server_stop (state->server);
  gn_cdn_cache_free (state->cache);
  if (state->storage != NULL)
    gn_storage_free (state->storage);
  g_free (state->public_url);
  sodium_memzero (&state->key, sizeof state->key);
  g_free (state);
}

static gboolean
cdn_init (const gn_service_env *env, gn_rpc_service *service, GError **error)
{
  const gn_config *config = env->config;
  cdn_state *state = g_new0 (cdn_state, 1);

  if (config->cdn_port == GN_CONFIG_PORT_UNSET && !config->run[GN_SERVICE_GATEWAY]) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE,
                 "the cdn service runs without the gateway and without cdn.port, so nothing "
                 "would serve media: set cdn.port (and cdn.public_url in the gateway's "
                 "configuration) or run the gateway in this process");
    goto fail;
  }
  if (!gn_cdn_key_load (&state->key, config->cdn_secret_file, error))
    goto fail;
  state->storage = gn_storage_new_from_config (config, error);
  if (state->storage == NULL)
    goto fail;
  /* Backends without local files are served from local copies. */
  if (state->storage->ops->local_path == NULL) {
    state->cache = gn_cdn_cache_new (state->storage, config->cdn_cache_dir,
                                     config->cdn_cache_max_bytes, error);
    if (state->cache == NULL)
      goto fail;
  }

  state->media
      = (gn_cdn_media){ .key = &state->key, .storage = state->storage, .cache = state->cache };
  state->public_url = g_strdup (config->cdn_public_url);
  state->default_ttl_s = config->cdn_url_ttl_s;
  state->max_ttl_s = MAX (MAX_TTL_S, config->cdn_url_ttl_s);
  state->max_file_bytes = (int64_t)config->media_max_upload_bytes;

  if (config->cdn_port != GN_CONFIG_PORT_UNSET) {
    gn_cdn_server_options options = {
      .address = config->cdn_address,
      .port = config->cdn_port,
      /* Its handlers never wait (fs) or wait in their own thread (remote), so one epoll thread
       * per core does the work; more only add context switches (tools/bench/cdn on 2 cores:
       * about 0.55 of nginx's rate with 4 threads, 0.65 to 0.8 with 2). */
      .threads = config->cdn_threads > 0 ? config->cdn_threads : (int)g_get_num_processors (),
      .cors_origins = "*",
      .media = &state->media,
    };
    state->server = gn_cdn_server_start (&options, error);
    if (state->server == NULL)
      goto fail;
    gn_info ("cdn listening on http://%s:%d", config->cdn_address,
             gn_cdn_server_port (state->server));
  }
  gn_info ("cdn: %s storage%s, media served %s%s%s", state->storage->ops->name,
           state->cache != NULL ? ", local copies in cdn.cache_dir" : "",
           config->run[GN_SERVICE_GATEWAY] ? "on the gateway's port" : "on cdn.port",
           state->public_url[0] != '\0' ? ", URLs under " : "", state->public_url);
  service->descriptor = &generia__cdn__v1__cdnservice__descriptor;
  service->methods = cdn_methods;
  service->log_name = "cdn";
  service->data = state;
  return TRUE;

fail:
  cdn_state_free (state);
  return FALSE;
}

static void
cdn_add_http_routes (gn_rpc_service *service, gn_router *router)
{
  cdn_state *state = service->data;

  gn_cdn_add_routes (router, &state->media);
}

static void
cdn_fini (gn_rpc_service *service)
{
  if (service->data == NULL)
    return;
  cdn_state_free (service->data);
  service->data = NULL;
}

const gn_service_module gn_cdn_module = {
  .id = GN_SERVICE_CDN,
  .init = cdn_init,
  .fini = cdn_fini,
  .add_http_routes = cdn_add_http_routes,
};
