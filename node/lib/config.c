/* config.c - generia-node's configuration: defaults, the config file, the environment.
 *
 * Every option has one name, "section.key", and one row in the `options` table below: its
 * type, where it lives in gn_config and its bounds.  The three ways to set an option all end
 * in gn_config_set():
 *
 *   config file   [gateway]          ->  gn_config_set ("gateway.port", "8081")
 *                 port = 8081
 *   environment   GENERIA_GATEWAY_PORT=8081
 *   flags         --gateway-port 8081 (main.c)
 *
 * so a value is checked the same way wherever it comes from, and the error names the key and
 * the bad value ("gateway.port: \"80x\" is not a whole number"), prefixed with the file or the
 * variable it came from.  Unknown keys in the file are errors (a typo must not be silently
 * ignored); unknown GENERIA_* variables are not, because other programs (the desktop app)
 * read variables of that prefix too.
 *
 * Options derived from others - the socket addresses and the token secret file from the data
 * folder - follow their source when it changes unless
 * they were set to something else: a derived value is recognised by being equal to what the
 * old source would have produced, so no "explicitly set" flags are needed.
 *
 * Bounds come before parsing: the file is read only if it is a regular file of at most
 * CONFIG_FILE_MAX bytes (a path naming a device or a huge file is an error, not a hang), and a
 * value longer than CONFIG_VALUE_MAX bytes is refused from any source.
 *
 * gn_config_dump() writes the effective configuration as a config file (GKeyFile) with the
 * password of a database or Redis URL replaced by "***". */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

#include "log.h"

#define KIB 1024
#define MIB (1024 * KIB)
#define DEFAULT_GATEWAY_PORT 8080
#define DEFAULT_GATEWAY_ADDRESS "127.0.0.1"
#define CONFIG_FILE_NAME "generia-node.conf"
#define ROOT_DATA_DIR "/var/lib/generia-node"
/* sun_path holds 108 bytes with the terminating NUL; the longest socket name placed in the run
 * folder is PostgreSQL's ".s.PGSQL.NNNNN" (14) plus the slash, with a little room to spare. */
#define RUN_DIR_MAX 88
/* Bounds on what is read before anything is parsed (see read_config_file). */
#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_VALUE_MAX 4096

G_DEFINE_QUARK (gn - config - error - quark, gn_config_error)

static const char *const service_names[GN_SERVICE_COUNT] = {
  [GN_SERVICE_AUTH] = "auth",   [GN_SERVICE_POST] = "post",
  [GN_SERVICE_MEDIA] = "media", [GN_SERVICE_INTERACTION] = "interaction",
  [GN_SERVICE_FEED] = "feed",   [GN_SERVICE_CACHE] = "cache",
  [GN_SERVICE_CDN] = "cdn",     [GN_SERVICE_GATEWAY] = "gateway",
};

const char *
gn_service_name (gn_service_id id)
{
  g_return_val_if_fail (id >= 0 && id < GN_SERVICE_COUNT, NULL);
  return service_names[id];
}

int
gn_service_from_name (const char *name)
{
  if (name == NULL)
    return -1;
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    if (strcmp (name, service_names[i]) == 0)
      return i;
  return -1;
}

static bool
is_grpc_service (int id)
{
  return id != GN_SERVICE_GATEWAY;
}

typedef enum {
  OPT_DATA_DIR,
  OPT_SERVICES,
  OPT_LOG_LEVEL,
  OPT_INT,
  OPT_SIZE,
  OPT_STRING,       /* any text, empty allowed */
  OPT_NAME,         /* non-empty text: a host name, a path */
  OPT_HTTP_URL,     /* http:// or https://, or "" for unset */
  OPT_DATABASE_URL, /* empty (embedded) or a libpq connection string; may hold a password */
  OPT_REDIS_URL,    /* empty (embedded), unix:/path or redis://host:port[/db] */
  OPT_RPC_ADDRESS,  /* unix:/path or host:port */
  OPT_SECRET,       /* any text, masked in dumps */
  OPT_BACKEND,      /* "fs" or "s3" */
  OPT_BOOL,         /* true/false, yes/no, on/off, 1/0 */
  OPT_PORT_UNSET,   /* "" (GN_CONFIG_PORT_UNSET) or a port, 0 picking one */
  OPT_NETWORKS,     /* comma-separated addresses and CIDR blocks, empty allowed */
} option_type;

typedef struct {
  const char *key; /* "section.key" */
  option_type type;
  size_t offset; /* into gn_config; for OPT_RPC_ADDRESS the service id instead */
  long long min, max;
} option;

#define FIELD(name) offsetof (gn_config, name)

static const option options[] = {
  { "node.data_dir", OPT_DATA_DIR, 0, 0, 0 },
  { "node.services", OPT_SERVICES, 0, 0, 0 },
  { "node.log_level", OPT_LOG_LEVEL, FIELD (log_level), 0, 0 },
  { "node.shutdown_grace_ms", OPT_INT, FIELD (shutdown_grace_ms), 0, 3600 * 1000 },
  { "rpc.workers", OPT_INT, FIELD (rpc_workers), 1, 4096 },
  { "rpc.cq_threads", OPT_INT, FIELD (rpc_cq_threads), 1, 256 },
  { "rpc.deadline_ms", OPT_INT, FIELD (rpc_deadline_ms), 1, 3600 * 1000 },
  { "rpc.auth_address", OPT_RPC_ADDRESS, GN_SERVICE_AUTH, 0, 0 },
  { "rpc.post_address", OPT_RPC_ADDRESS, GN_SERVICE_POST, 0, 0 },
  { "rpc.media_address", OPT_RPC_ADDRESS, GN_SERVICE_MEDIA, 0, 0 },
  { "rpc.interaction_address", OPT_RPC_ADDRESS, GN_SERVICE_INTERACTION, 0, 0 },
  { "rpc.feed_address", OPT_RPC_ADDRESS, GN_SERVICE_FEED, 0, 0 },
  { "rpc.cache_address", OPT_RPC_ADDRESS, GN_SERVICE_CACHE, 0, 0 },
  { "rpc.cdn_address", OPT_RPC_ADDRESS, GN_SERVICE_CDN, 0, 0 },
  { "gateway.address", OPT_NAME, FIELD (gateway_address), 0, 0 },
  { "gateway.port", OPT_INT, FIELD (gateway_port), 0, 65535 },
  { "gateway.threads", OPT_INT, FIELD (gateway_threads), 0, 1024 },
  { "gateway.max_body_bytes", OPT_SIZE, FIELD (max_body_bytes), 1, (long long)1 << 40 },
  { "gateway.cors_origins", OPT_STRING, FIELD (cors_origins), 0, 0 },
  { "gateway.public_url", OPT_HTTP_URL, FIELD (public_url), 0, 0 },
  { "gateway.trusted_proxies", OPT_NETWORKS, FIELD (trusted_proxies), 0, 0 },
  { "gateway.workers", OPT_INT, FIELD (gateway_workers), 0, 4096 },
  { "gateway.queue_max", OPT_INT, FIELD (gateway_queue_max), 1, 1000000 },
  { "gateway.max_connections", OPT_INT, FIELD (gateway_max_connections), 1, 1000000 },
  { "gateway.max_connections_per_ip", OPT_INT, FIELD (gateway_max_connections_per_ip), 1, 1000000 },
  { "gateway.idle_timeout_s", OPT_INT, FIELD (gateway_idle_timeout_s), 1, 3600 },
  { "gateway.header_timeout_s", OPT_INT, FIELD (gateway_header_timeout_s), 1, 3600 },
  { "database.url", OPT_DATABASE_URL, FIELD (database_url), 0, 0 },
  { "redis.url", OPT_REDIS_URL, FIELD (redis_url), 0, 0 },
  { "auth.token_secret_file", OPT_NAME, FIELD (token_secret_file), 0, 0 },
  { "auth.access_token_ttl", OPT_INT, FIELD (access_token_ttl_s), 1, G_MAXINT },
  { "auth.refresh_token_ttl", OPT_INT, FIELD (refresh_token_ttl_s), 1, G_MAXINT },
  { "auth.max_concurrent_hashes", OPT_INT, FIELD (max_concurrent_hashes), 1, 4096 },
  { "ratelimit.enabled", OPT_BOOL, FIELD (ratelimit_enabled), 0, 0 },
  { "ratelimit.auth_burst", OPT_INT, FIELD (ratelimit_auth_burst), 1, 1000000 },
  { "ratelimit.auth_per_minute", OPT_INT, FIELD (ratelimit_auth_per_minute), 1, 60000000 },
  { "ratelimit.write_burst", OPT_INT, FIELD (ratelimit_write_burst), 1, 1000000 },
  { "ratelimit.write_per_minute", OPT_INT, FIELD (ratelimit_write_per_minute), 1, 60000000 },
  { "ratelimit.max_keys", OPT_INT, FIELD (ratelimit_max_keys), 1, 10000000 },
  { "auth.legacy_access_token_ttl", OPT_INT, FIELD (legacy_access_token_ttl_s), 1, G_MAXINT },
  { "auth.revocation_poll_ms", OPT_INT, FIELD (revocation_poll_ms), 50, 60 * 1000 },
  { "storage.backend", OPT_BACKEND, FIELD (storage_backend), 0, 0 },
  { "storage.path", OPT_NAME, FIELD (storage_path), 0, 0 },
  { "storage.s3_endpoint", OPT_STRING, FIELD (s3_endpoint), 0, 0 },
  { "storage.s3_bucket", OPT_STRING, FIELD (s3_bucket), 0, 0 },
  { "storage.s3_region", OPT_NAME, FIELD (s3_region), 0, 0 },
  { "storage.s3_access_key", OPT_STRING, FIELD (s3_access_key), 0, 0 },
  { "storage.s3_secret_key", OPT_SECRET, FIELD (s3_secret_key), 0, 0 },
  { "storage.s3_prefix", OPT_STRING, FIELD (s3_prefix), 0, 0 },
  { "media.max_upload_bytes", OPT_SIZE, FIELD (media_max_upload_bytes), 1, (long long)1 << 40 },
  { "media.max_pixels", OPT_SIZE, FIELD (media_max_pixels), 1, (long long)1 << 40 },
  { "media.max_video_seconds", OPT_INT, FIELD (media_max_video_seconds), 1, 24 * 3600 },
  { "media.original_max_side", OPT_INT, FIELD (media_original_max_side), 320, 65535 },
  { "media.upload_url_ttl", OPT_INT, FIELD (media_upload_url_ttl_s), 1, 7 * 24 * 3600 },
  { "media.sweep_interval", OPT_INT, FIELD (media_sweep_interval_s), 1, 24 * 3600 },
  { "media.spool_dir", OPT_NAME, FIELD (media_spool_dir), 0, 0 },
  { "post.pending_grace", OPT_INT, FIELD (post_pending_grace_s), 2, 24 * 3600 },
  { "media.secret_file", OPT_NAME, FIELD (media_secret_file), 0, 0 },
  { "cdn.address", OPT_NAME, FIELD (cdn_address), 0, 0 },
  { "cdn.port", OPT_PORT_UNSET, FIELD (cdn_port), 0, 65535 },
  { "cdn.threads", OPT_INT, FIELD (cdn_threads), 0, 1024 },
  { "cdn.public_url", OPT_HTTP_URL, FIELD (cdn_public_url), 0, 0 },
  { "cdn.url_ttl", OPT_INT, FIELD (cdn_url_ttl_s), 1, 365 * 24 * 3600 },
  { "cdn.secret_file", OPT_NAME, FIELD (cdn_secret_file), 0, 0 },
  { "cdn.cache_dir", OPT_NAME, FIELD (cdn_cache_dir), 0, 0 },
  { "cdn.cache_max_bytes", OPT_SIZE, FIELD (cdn_cache_max_bytes), 1, (long long)1 << 50 },
};

/* Paths inside the data folder that follow it when it changes (unless set explicitly). */
static const struct {
  size_t offset;
  const char *const parts[3];
} data_paths[] = {
  { FIELD (token_secret_file), { "secrets", "token.key", NULL } },
  { FIELD (storage_path), { "media", NULL, NULL } },
  { FIELD (media_spool_dir), { "spool", NULL, NULL } },
  { FIELD (media_secret_file), { "secrets", "media.key", NULL } },
  { FIELD (cdn_secret_file), { "secrets", "cdn.key", NULL } },
  { FIELD (cdn_cache_dir), { "cdn-cache", NULL, NULL } },
};

static const option *
find_option (const char *key)
{
  for (size_t i = 0; i < G_N_ELEMENTS (options); i++)
    if (strcmp (options[i].key, key) == 0)
      return &options[i];
  return NULL;
}

static char **
string_field (gn_config *config, const option *opt)
{
  return (char **)((char *)config + opt->offset);
}

static int *
int_field (gn_config *config, const option *opt)
{
  return (int *)((char *)config + opt->offset);
}

/* ---- derived defaults ---- */

char *
gn_config_run_dir (const char *data_dir)
{
  g_autofree char *run_dir = g_build_filename (data_dir, "run", NULL);
  if (strlen (run_dir) <= RUN_DIR_MAX)
    return g_steal_pointer (&run_dir);

  g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, data_dir, -1);
  hash[16] = '\0';
  return g_strdup_printf ("/tmp/generia-%u-%s", (unsigned)getuid (), hash);
}

static char *
default_service_address (const char *data_dir)
{
  g_autofree char *run_dir = gn_config_run_dir (data_dir);
  return g_strdup_printf ("unix:%s/node.sock", run_dir);
}

static char *
default_data_dir (void)
{
  if (getuid () == 0)
    return g_strdup (ROOT_DATA_DIR);
  return g_build_filename (g_get_user_data_dir (), "generia-node", NULL);
}

/* Replaces *field with `new_value` if it still holds `old_default` (or nothing). */
static void
follow_default (char **field, const char *old_default, char *new_value)
{
  if (*field == NULL || g_strcmp0 (*field, old_default) == 0) {
    g_free (*field);
    *field = new_value;
  } else
    g_free (new_value);
}

void
gn_config_set_data_dir (gn_config *config, const char *data_dir)
{
  g_return_if_fail (config != NULL && data_dir != NULL);

  g_autofree char *old_dir = config->data_dir;
  config->data_dir = g_strdup (data_dir);

  g_autofree char *old_address = old_dir ? default_service_address (old_dir) : NULL;
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    if (is_grpc_service (i))
      follow_default (&config->service_address[i], old_address, default_service_address (data_dir));

  for (size_t i = 0; i < G_N_ELEMENTS (data_paths); i++) {
    char **field = (char **)((char *)config + data_paths[i].offset);
    const char *const *parts = data_paths[i].parts;
    g_autofree char *old_path
        = old_dir ? g_build_filename (old_dir, parts[0], parts[1], parts[2], NULL) : NULL;
    follow_default (field, old_path,
                    g_build_filename (data_dir, parts[0], parts[1], parts[2], NULL));
  }
}

gn_config *
gn_config_new_default (void)
{
  gn_config *config = g_new0 (gn_config, 1);
  g_autofree char *data_dir = default_data_dir ();

  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    config->run[i] = true;
  config->log_level = g_strdup ("info");
  config->shutdown_grace_ms = 5000;

  config->rpc_workers = 8;
  config->rpc_cq_threads = 2;
  config->rpc_deadline_ms = 5000;

  config->gateway_address = g_strdup (DEFAULT_GATEWAY_ADDRESS);
  config->gateway_port = DEFAULT_GATEWAY_PORT;
  config->gateway_threads = 0;
  config->max_body_bytes = 1 * MIB;
  config->cors_origins = g_strdup ("*");
  config->public_url = g_strdup ("");
  config->trusted_proxies = g_strdup ("");
  config->gateway_workers = 0;
  config->gateway_queue_max = 1024;
  config->gateway_max_connections = 16384;
  config->gateway_max_connections_per_ip = 256;
  config->gateway_idle_timeout_s = 60;
  config->gateway_header_timeout_s = 30;

  config->database_url = g_strdup ("");
  config->redis_url = g_strdup ("");

  config->access_token_ttl_s = 15 * 60;
  config->refresh_token_ttl_s = 30 * 24 * 3600;
  config->max_concurrent_hashes = (int)g_get_num_processors ();

  /* Far above what a person does by hand; a script guessing passwords meets them at once. */
  config->ratelimit_enabled = true;
  config->ratelimit_auth_burst = 10;
  config->ratelimit_auth_per_minute = 30;
  config->ratelimit_write_burst = 60;
  config->ratelimit_write_per_minute = 300;
  config->ratelimit_max_keys = 100000;
  config->legacy_access_token_ttl_s = 24 * 3600;
  config->revocation_poll_ms = 1000;

  config->storage_backend = g_strdup ("fs");
  config->s3_endpoint = g_strdup ("");
  config->s3_bucket = g_strdup ("");
  config->s3_region = g_strdup ("us-east-1");
  config->s3_access_key = g_strdup ("");
  config->s3_secret_key = g_strdup ("");
  config->s3_prefix = g_strdup ("");

  config->media_max_upload_bytes = 100 * MIB;
  config->media_max_pixels = 100 * 1000 * 1000;
  config->media_max_video_seconds = 120;
  config->media_original_max_side = 4096;
  config->media_upload_url_ttl_s = 900;
  config->media_sweep_interval_s = 60;

  config->post_pending_grace_s = 60;

  config->cdn_address = g_strdup (DEFAULT_GATEWAY_ADDRESS);
  config->cdn_port = GN_CONFIG_PORT_UNSET;
  config->cdn_threads = 0;
  config->cdn_public_url = g_strdup ("");
  config->cdn_url_ttl_s = 3600;
  config->cdn_cache_max_bytes = 1024 * MIB;

  gn_config_set_data_dir (config, data_dir);
  return config;
}

void
gn_config_free (gn_config *config)
{
  if (config == NULL)
    return;
  g_free (config->data_dir);
  g_free (config->config_file);
  g_free (config->log_level);
  for (int i = 0; i < GN_SERVICE_COUNT; i++)
    g_free (config->service_address[i]);
  g_free (config->gateway_address);
  g_free (config->cors_origins);
  g_free (config->public_url);
  g_free (config->trusted_proxies);
  g_free (config->database_url);
  g_free (config->redis_url);
  g_free (config->token_secret_file);
  g_free (config->storage_backend);
  g_free (config->storage_path);
  g_free (config->s3_endpoint);
  g_free (config->s3_bucket);
  g_free (config->s3_region);
  g_free (config->s3_access_key);
  g_free (config->s3_secret_key);
  g_free (config->s3_prefix);
  g_free (config->media_spool_dir);
  g_free (config->media_secret_file);
  g_free (config->cdn_address);
  g_free (config->cdn_public_url);
  g_free (config->cdn_secret_file);
  g_free (config->cdn_cache_dir);
  g_free (config);
}

/* ---- setting one option ---- */

static gboolean
invalid (GError **error, const char *key, const char *value, const char *why)
{
  g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE, "%s: \"%s\" %s", key, value,
               why);
  return FALSE;
}

gboolean
gn_config_set_services (gn_config *config, const char *list, GError **error)
{
  g_return_val_if_fail (config != NULL && list != NULL, FALSE);

  bool run[GN_SERVICE_COUNT] = { false };
  bool any = false;
  g_auto (GStrv) names = g_strsplit (list, ",", -1);

  for (char **name = names; *name != NULL; name++) {
    g_strstrip (*name);
    if (**name == '\0')
      continue;
    if (strcmp (*name, "all") == 0) {
      for (int i = 0; i < GN_SERVICE_COUNT; i++)
        run[i] = true;
      any = true;
      continue;
    }
    int id = gn_service_from_name (*name);
    if (id < 0) {
      g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_UNKNOWN_KEY,
                   "node.services: unknown service \"%s\" (known: all, auth, post, media, "
                   "interaction, feed, cache, cdn, gateway)",
                   *name);
      return FALSE;
    }
    run[id] = true;
    any = true;
  }
  if (!any)
    return invalid (error, "node.services", list,
                    "names no service (use \"all\" or e.g. "
                    "\"auth,gateway\")");

  memcpy (config->run, run, sizeof run);
  return TRUE;
}

static gboolean
parse_integer (const char *key, const char *value, long long min, long long max, long long *out,
               GError **error)
{
  gint64 number;
  g_autoptr (GError) parse_error = NULL;

  if (!g_ascii_string_to_signed (value, 10, G_MININT64, G_MAXINT64, &number, &parse_error))
    return invalid (error, key, value, "is not a whole number");
  if (number < min || number > max) {
    g_autofree char *why = g_strdup_printf ("is out of range (%lld-%lld)", min, max);
    return invalid (error, key, value, why);
  }
  *out = number;
  return TRUE;
}

static gboolean
valid_rpc_address (const char *value)
{
  if (g_str_has_prefix (value, "unix:")) {
    const char *path = value + strlen ("unix:");
    return path[0] == '/' && strlen (path) < 108;
  }

  const char *colon = strrchr (value, ':');
  if (colon == NULL || colon == value)
    return FALSE;
  guint64 port;
  return g_ascii_string_to_unsigned (colon + 1, 10, 1, 65535, &port, NULL);
}

/* "127.0.0.1, 10.0.0.0/8, ::1": each an address or a CIDR block (at most 64 of them). */
static gboolean
valid_networks (const char *key, const char *value, GError **error)
{
  g_auto (GStrv) blocks = g_strsplit (value, ",", 65);

  if (g_strv_length (blocks) > 64)
    return invalid (error, key, value, "lists more than 64 addresses");
  for (char **block = blocks; *block != NULL; block++) {
    g_autoptr (GInetAddressMask) mask = NULL;

    if (*g_strstrip (*block) == '\0')
      continue;
    mask = g_inet_address_mask_new_from_string (*block, NULL);
    if (mask == NULL) {
      g_autofree char *why = g_strdup_printf (
          "names \"%s\", which is not an address or a CIDR block (10.0.0.0/8)", *block);
      return invalid (error, key, value, why);
    }
  }
  return TRUE;
}

static gboolean
valid_redis_url (const char *value)
{
  if (*value == '\0')
    return TRUE;
  if (g_str_has_prefix (value, "unix:"))
    return value[strlen ("unix:")] == '/';
  return g_str_has_prefix (value, "redis://") && value[strlen ("redis://")] != '\0';
}

gboolean
gn_config_set (gn_config *config, const char *key, const char *value, GError **error)
{
  g_return_val_if_fail (config != NULL && key != NULL && value != NULL, FALSE);

  const option *opt = find_option (key);
  if (opt == NULL) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_UNKNOWN_KEY, "unknown option \"%s\"", key);
    return FALSE;
  }

  if (strlen (value) > CONFIG_VALUE_MAX) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE,
                 "%s: the value is longer than %d bytes", key, CONFIG_VALUE_MAX);
    return FALSE;
  }
  g_autofree char *text = g_strstrip (g_strdup (value));
  long long number;

  switch (opt->type) {
    case OPT_DATA_DIR:
      if (!g_path_is_absolute (text))
        return invalid (error, key, text, "is not an absolute path");
      gn_config_set_data_dir (config, text);
      return TRUE;

    case OPT_SERVICES:
      return gn_config_set_services (config, text, error);

    case OPT_LOG_LEVEL:
      if (gn_log_level_parse (text) < 0)
        return invalid (error, key, text, "is not a log level (debug, info, warn, error)");
      break;

    case OPT_INT:
      if (!parse_integer (key, text, opt->min, opt->max, &number, error))
        return FALSE;
      *int_field (config, opt) = (int)number;
      return TRUE;

    case OPT_PORT_UNSET:
      if (*text == '\0')
        number = GN_CONFIG_PORT_UNSET;
      else if (!parse_integer (key, text, opt->min, opt->max, &number, error))
        return FALSE;
      *int_field (config, opt) = (int)number;
      return TRUE;

    case OPT_NETWORKS:
      if (!valid_networks (key, text, error))
        return FALSE;
      break;

    case OPT_SIZE:
      if (!parse_integer (key, text, opt->min, opt->max, &number, error))
        return FALSE;
      *(size_t *)((char *)config + opt->offset) = (size_t)number;
      return TRUE;

    case OPT_STRING:
    case OPT_SECRET:
    case OPT_DATABASE_URL:
      break;

    case OPT_BOOL: {
      static const char *const yes[] = { "true", "yes", "on", "1" };
      static const char *const no[] = { "false", "no", "off", "0" };
      for (size_t i = 0; i < G_N_ELEMENTS (yes); i++)
        if (g_ascii_strcasecmp (text, yes[i]) == 0 || g_ascii_strcasecmp (text, no[i]) == 0) {
          *(bool *)((char *)config + opt->offset) = g_ascii_strcasecmp (text, yes[i]) == 0;
          return TRUE;
        }
      return invalid (error, key, text, "is not true or false");
    }

    case OPT_BACKEND:
      if (strcmp (text, "fs") != 0 && strcmp (text, "s3") != 0)
        return invalid (error, key, text, "is not a storage backend (fs or s3)");
      break;

    case OPT_NAME:
      if (*text == '\0')
        return invalid (error, key, text, "is empty");
      break;

    case OPT_HTTP_URL:
      if (*text != '\0' && !g_str_has_prefix (text, "http://")
          && !g_str_has_prefix (text, "https://"))
        return invalid (error, key, text, "is not an http:// or https:// URL");
      break;

    case OPT_REDIS_URL:
      if (!valid_redis_url (text))
        return invalid (error, key, text,
                        "is not a Redis URL (unix:/path/redis.sock or redis://host:port)");
      break;

    case OPT_RPC_ADDRESS:
      if (!valid_rpc_address (text))
        return invalid (error, key, text,
                        "is not an address (unix:/absolute/path.sock or host:port)");
      g_free (config->service_address[opt->offset]);
      config->service_address[opt->offset] = g_steal_pointer (&text);
      return TRUE;
  }

  char **field = string_field (config, opt);
  g_free (*field);
  *field = g_steal_pointer (&text);
  return TRUE;
}

/* ---- file and environment ---- */

static char *
env_name (const char *key)
{
  g_autofree char *upper = g_ascii_strup (key, -1);
  g_strdelimit (upper, ".", '_');
  return g_strconcat ("GENERIA_", upper, NULL);
}

/* Reads at most CONFIG_FILE_MAX bytes of path: a config file is a few kilobytes, and a path
 * that names a huge file or a device must end in an error, not in memory or a hang. */
static char *
read_config_file (const char *path, gsize *len, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;

  if (fd < 0) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "%s: %s", path, g_strerror (errno));
    return NULL;
  }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE,
                 "%s: not a regular file of at most %d bytes", path, CONFIG_FILE_MAX);
    close (fd);
    return NULL;
  }
  char *data = g_malloc (CONFIG_FILE_MAX + 1);
  gsize got = 0;
  while (got <= CONFIG_FILE_MAX) {
    ssize_t n = read (fd, data + got, CONFIG_FILE_MAX + 1 - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "%s: %s", path,
                   g_strerror (errno));
      g_free (data);
      close (fd);
      return NULL;
    }
    if (n == 0)
      break;
    got += (gsize)n;
  }
  close (fd);
  if (got > CONFIG_FILE_MAX) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "%s: larger than %d bytes", path,
                 CONFIG_FILE_MAX);
    g_free (data);
    return NULL;
  }
  data[got] = '\0';
  *len = got;
  return data;
}

static gboolean
apply_file (gn_config *config, const char *path, GError **error)
{
  g_autoptr (GKeyFile) file = g_key_file_new ();
  g_autoptr (GError) local_error = NULL;
  gsize len = 0;
  g_autofree char *data = read_config_file (path, &len, error);

  if (data == NULL)
    return FALSE;
  if (!g_key_file_load_from_data (file, data, len, G_KEY_FILE_NONE, &local_error)) {
    g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "%s: %s", path,
                 local_error->message);
    return FALSE;
  }

  g_auto (GStrv) groups = g_key_file_get_groups (file, NULL);
  for (char **group = groups; *group != NULL; group++) {
    g_auto (GStrv) keys = g_key_file_get_keys (file, *group, NULL, NULL);
    for (char **key = keys; *key != NULL; key++) {
      g_autofree char *name = g_strdup_printf ("%s.%s", *group, *key);
      g_autofree char *value = g_key_file_get_string (file, *group, *key, &local_error);
      if (value == NULL) {
        g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "%s: %s: %s", path, name,
                     local_error->message);
        return FALSE;
      }
      if (!gn_config_set (config, name, value, error)) {
        g_prefix_error (error, "%s: ", path);
        return FALSE;
      }
    }
  }
  return TRUE;
}

static gboolean
apply_environment (gn_config *config, char **envp, GError **error)
{
  for (size_t i = 0; i < G_N_ELEMENTS (options); i++) {
    if (options[i].type == OPT_DATA_DIR)
      continue; /* applied before the file is read */
    g_autofree char *name = env_name (options[i].key);
    const char *value = g_environ_getenv (envp, name);
    if (value != NULL && !gn_config_set (config, options[i].key, value, error)) {
      g_prefix_error (error, "%s: ", name);
      return FALSE;
    }
  }
  return TRUE;
}

/* GENERIA_DATA_DIR, or its long form GENERIA_NODE_DATA_DIR. */
static gboolean
apply_environment_data_dir (gn_config *config, char **envp, GError **error)
{
  static const char *const names[] = { "GENERIA_DATA_DIR", "GENERIA_NODE_DATA_DIR" };
  g_autofree char *default_dir = default_data_dir ();

  if (strcmp (config->data_dir, default_dir) != 0)
    return TRUE; /* a --data-dir flag wins */
  for (size_t i = 0; i < G_N_ELEMENTS (names); i++) {
    const char *value = g_environ_getenv (envp, names[i]);
    if (value == NULL)
      continue;
    if (!gn_config_set (config, "node.data_dir", value, error)) {
      g_prefix_error (error, "%s: ", names[i]);
      return FALSE;
    }
    return TRUE;
  }
  return TRUE;
}

gboolean
gn_config_load (gn_config *config, const char *file, char **envp, GError **error)
{
  g_return_val_if_fail (config != NULL, FALSE);

  g_auto (GStrv) own_environ = NULL;
  if (envp == NULL)
    envp = own_environ = g_get_environ ();

  if (!apply_environment_data_dir (config, envp, error))
    return FALSE;

  g_autofree char *path = NULL;
  if (file != NULL) {
    if (!g_file_test (file, G_FILE_TEST_EXISTS)) {
      g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_FILE, "config file %s does not exist",
                   file);
      return FALSE;
    }
    path = g_strdup (file);
  } else {
    path = g_build_filename (config->data_dir, CONFIG_FILE_NAME, NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      g_clear_pointer (&path, g_free);
  }

  if (path != NULL) {
    if (!apply_file (config, path, error))
      return FALSE;
    g_free (config->config_file);
    config->config_file = g_steal_pointer (&path);
  }

  return apply_environment (config, envp, error);
}

/* ---- dump ---- */

/* "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db",
 * "host=h password=secret" -> "host=h password=***", "redis://:secret@h" -> "redis://:***@h". */
static char *
mask_password (const char *url)
{
  const char *scheme_end = strstr (url, "://");
  if (scheme_end != NULL) {
    const char *authority = scheme_end + 3;
    const char *at = strchr (authority, '@');
    const char *slash = strchr (authority, '/');
    if (at != NULL && (slash == NULL || at < slash)) {
      const char *colon = memchr (authority, ':', (size_t)(at - authority));
      if (colon != NULL)
        return g_strdup_printf ("%.*s:***%s", (int)(colon - url), url, at);
    }
    return g_strdup (url);
  }

  g_autoptr (GRegex) keyword
      = g_regex_new ("(password\\s*=\\s*)('(?:[^'\\\\]|\\\\.)*'|\\S*)", G_REGEX_CASELESS, 0, NULL);
  return g_regex_replace (keyword, url, -1, 0, "\\1***", 0, NULL);
}

static char *
services_text (const gn_config *config)
{
  g_autoptr (GString) text = g_string_new (NULL);
  bool all = true;

  for (int i = 0; i < GN_SERVICE_COUNT; i++) {
    if (!config->run[i]) {
      all = false;
      continue;
    }
    if (text->len > 0)
      g_string_append_c (text, ',');
    g_string_append (text, service_names[i]);
  }
  return all ? g_strdup ("all") : g_string_free (g_steal_pointer (&text), FALSE);
}

static char *
option_text (const gn_config *config, const option *opt)
{
  gn_config *fields = (gn_config *)config;

  switch (opt->type) {
    case OPT_DATA_DIR:
      return g_strdup (config->data_dir);
    case OPT_SERVICES:
      return services_text (config);
    case OPT_INT:
      return g_strdup_printf ("%d", *int_field (fields, opt));
    case OPT_PORT_UNSET:
      if (*int_field (fields, opt) == GN_CONFIG_PORT_UNSET)
        return g_strdup ("");
      return g_strdup_printf ("%d", *int_field (fields, opt));
    case OPT_SIZE:
      return g_strdup_printf ("%zu", *(size_t *)((char *)fields + opt->offset));
    case OPT_BOOL:
      return g_strdup (*(bool *)((char *)fields + opt->offset) ? "true" : "false");
    case OPT_SECRET:
      return g_strdup (**string_field (fields, opt) != '\0' ? "***" : "");
    case OPT_RPC_ADDRESS:
      return g_strdup (config->service_address[opt->offset]);
    case OPT_DATABASE_URL:
    case OPT_REDIS_URL:
      return mask_password (*string_field (fields, opt));
    case OPT_LOG_LEVEL:
    case OPT_STRING:
    case OPT_NAME:
    case OPT_HTTP_URL:
    case OPT_BACKEND:
    case OPT_NETWORKS:
      break;
  }
  return g_strdup (*string_field (fields, opt));
}

char *
gn_config_dump (const gn_config *config)
{
  g_return_val_if_fail (config != NULL, NULL);

  g_autoptr (GKeyFile) file = g_key_file_new ();
  g_autofree char *comment = g_strdup_printf (
      " generia-node configuration (config file: %s)",
      config->config_file ? config->config_file : "none, defaults and environment");
  g_key_file_set_comment (file, NULL, NULL, comment, NULL);

  for (size_t i = 0; i < G_N_ELEMENTS (options); i++) {
    const char *dot = strchr (options[i].key, '.');
    g_autofree char *group = g_strndup (options[i].key, (size_t)(dot - options[i].key));
    g_autofree char *value = option_text (config, &options[i]);
    g_key_file_set_string (file, group, dot + 1, value ? value : "");
  }
  return g_key_file_to_data (file, NULL, NULL);
}
