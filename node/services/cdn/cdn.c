/* cdn.c - the CDN service: signs media URLs over gRPC and serves them over HTTP.
 *
 * gRPC (generia.cdn.v1.CDNService):
 *   GetSignedURL     one call signs a whole feed page (up to MAX_KEYS storage keys): URLs under
 *                    cdn.public_url that expire after ttl_seconds (0: cdn.url_ttl), see sign.h.
 *                    Pure CPU, one HMAC per key, so it runs inline on the completion queue.
 *   InvalidateCache  drops the local copies of the given keys (remote backends; the fs backend
 *                    serves its files in place and keeps nothing to drop); answers how many
 *                    copies were removed.  The post service calls it when media is deleted.
 *   GetCDNConfig     the public base URL, the default URL lifetime, the largest file.
 *   HealthCheck      SERVING while the HTTP listener runs and the storage answers.
 *
 * HTTP: the module's init starts the listener of serve.c on cdn.address:cdn.port and its fini
 * stops it, so `--services cdn` is the whole CDN.  No database: the CDN reads storage ([storage]
 * of the configuration) and holds one secret, cdn.secret_file, shared by every CDN process of
 * a host so any of them verifies what another signed.
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
  gn_cdn_cache *cache; /* remote backends only */
  gn_cdn_server *server;
  char *public_url; /* without a trailing slash */
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
    url->url
        = gn_cdn_signed_url (arena, &state->key, state->public_url, req->storage_keys[i], expires);
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
  if (state->server == NULL) {
    out->status = GENERIA__COMMON__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    out->detail = "the HTTP listener is not running";
  } else if (!gn_storage_check (state->storage, &error)) {
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

/* cdn.port = 0 picks a free port (tests, several nodes on one host); the default public URL
 * then names the port picked, and the address listened on unless that is a wildcard. */
static char *
url_of_picked_port (const char *address, gn_cdn_server *server)
{
  int port = gn_cdn_server_port (server);

  if (strcmp (address, "0.0.0.0") == 0 || strcmp (address, "::") == 0)
    return g_strdup_printf ("http://localhost:%d", port);
  if (strchr (address, ':') != NULL)
    return g_strdup_printf ("http://[%s]:%d", address, port);
  return g_strdup_printf ("http://%s:%d", address, port);
}

static gboolean
cdn_init (const gn_service_env *env, gn_rpc_service *service, GError **error)
{
  const gn_config *config = env->config;
  cdn_state *state = g_new0 (cdn_state, 1);
  size_t len;

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

  gn_cdn_server_options options = {
    .address = config->cdn_address,
    .port = config->cdn_port,
    /* Its handlers never wait (fs) or wait in their own thread (remote), so one epoll thread
     * per core does the work; more only add context switches (tools/bench/cdn on 2 cores:
     * about 0.55 of nginx's rate with 4 threads, 0.65 to 0.8 with 2). */
    .threads = config->cdn_threads > 0 ? config->cdn_threads : (int)g_get_num_processors (),
    .cors_origins = "*",
    .key = &state->key,
    .storage = state->storage,
    .cache = state->cache,
  };
  state->server = gn_cdn_server_start (&options, error);
  if (state->server == NULL)
    goto fail;

  if (config->cdn_port == 0 && strcmp (config->cdn_public_url, "http://localhost:0") == 0)
    state->public_url = url_of_picked_port (config->cdn_address, state->server);
  else
    state->public_url = g_strdup (config->cdn_public_url);
  len = strlen (state->public_url);
  while (len > 0 && state->public_url[len - 1] == '/')
    state->public_url[--len] = '\0';
  state->default_ttl_s = config->cdn_url_ttl_s;
  state->max_ttl_s = MAX (MAX_TTL_S, config->cdn_url_ttl_s);
  state->max_file_bytes = (int64_t)config->media_max_upload_bytes;

  gn_info ("cdn listening on http://%s:%d (%s storage%s), media URLs under %s", config->cdn_address,
           gn_cdn_server_port (state->server), state->storage->ops->name,
           state->cache != NULL ? ", local copies in cdn.cache_dir" : "", state->public_url);
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
};
