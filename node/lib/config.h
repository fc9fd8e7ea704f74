/* config.h - generia-node's configuration.
 *
 * Three layers, later wins: built-in defaults (an embedded node that works with no config at
 * all) < the config file (GKeyFile "<data-dir>/generia-node.conf", or --config FILE) <
 * environment variables (GENERIA_<SECTION>_<KEY>, e.g. GENERIA_GATEWAY_PORT) < command-line
 * flags.  gn_config_dump() prints the result with secrets masked.
 *
 * The data folder defaults to $XDG_DATA_HOME/generia-node for a normal user and
 * /var/lib/generia-node for root (a system service).  The gateway listens on 127.0.0.1 by
 * default: a desktop node is not reachable from the network until gateway.address says so.
 * GENERIA_DATA_DIR (or node.data_dir) moves the data folder; a --data-dir flag should be
 * applied with gn_config_set_data_dir() before gn_config_load(), which then looks for the file
 * there and lets GENERIA_DATA_DIR apply only while data_dir is still the default. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <glib.h>

#define GN_CONFIG_ERROR (gn_config_error_quark ())
GQuark gn_config_error_quark (void);

typedef enum {
  GN_CONFIG_ERROR_FILE,          /* the config file cannot be read or parsed */
  GN_CONFIG_ERROR_UNKNOWN_KEY,   /* a key, section or service name that does not exist */
  GN_CONFIG_ERROR_INVALID_VALUE, /* a value out of range or of the wrong form */
} gn_config_error_code;

typedef enum {
  GN_SERVICE_AUTH,
  GN_SERVICE_POST,
  GN_SERVICE_MEDIA,
  GN_SERVICE_INTERACTION,
  GN_SERVICE_FEED,
  GN_SERVICE_CACHE,
  GN_SERVICE_CDN,
  GN_SERVICE_GATEWAY,
  GN_SERVICE_COUNT,
} gn_service_id;

/* "auth", "post", ..., "gateway". */
const char *gn_service_name (gn_service_id id);
/* Returns -1 for an unknown name. */
int gn_service_from_name (const char *name);

/* An optional port that is not set. */
#define GN_CONFIG_PORT_UNSET (-1)

typedef struct {
  char *data_dir;
  char *config_file; /* the file read, or NULL */

  /* [node] */
  bool run[GN_SERVICE_COUNT]; /* services this process runs (--services) */
  char *log_level;
  int shutdown_grace_ms;

  /* [rpc]: address per gRPC service ("unix:/path" or "host:port").  All default to one unix
   * socket in <data-dir>/run, served by the process that runs them.  The gateway's slot is
   * NULL: it is an HTTP server, not a gRPC service. */
  char *service_address[GN_SERVICE_COUNT];
  int rpc_workers; /* per service (each service has its own pool) */
  int rpc_cq_threads;
  int rpc_deadline_ms;

  /* [gateway] */
  char *gateway_address;
  int gateway_port;
  int gateway_threads; /* epoll event threads holding the connections; 0: one per core */
  size_t max_body_bytes;
  char *cors_origins;
  char *public_url;            /* how clients reach the gateway ("https://photos.example.org");
                                * default "": from each request (Host, trusted proxies' headers) */
  char *trusted_proxies;       /* addresses / CIDR blocks whose X-Forwarded-* are believed (default
                                * "": none) */
  int gateway_workers;         /* threads running the handlers; 0: 4 x cores */
  int gateway_queue_max;       /* requests waiting for a worker; more: 503 (1024) */
  int gateway_max_connections; /* default 16384, lowered to the open file limit */
  int gateway_max_connections_per_ip; /* default 256; trusted proxies exempt */
  int gateway_idle_timeout_s;         /* nothing received for this long: closed (60) */
  int gateway_header_timeout_s;       /* headers not complete this long after their start (30) */

  /* [database] / [redis]: empty = embedded (started in <data-dir>) */
  char *database_url;
  char *redis_url;

  /* [auth] */
  char *token_secret_file;   /* default <data-dir>/secrets/token.key, created 0600 if missing */
  int access_token_ttl_s;    /* default 900 */
  int refresh_token_ttl_s;   /* default 30 days */
  int max_concurrent_hashes; /* argon2id hashes at once (64 MiB each); default: the cores */
  /* Access tokens of clients that do not say they refresh (API v1's web client); default 24 h */
  int legacy_access_token_ttl_s;
  int revocation_poll_ms; /* how often revoked sessions are fetched from auth; default 1000 */

  /* [ratelimit]: token buckets in the gateway (gateway/limits.c); a burst, then a rate */
  bool ratelimit_enabled;         /* default true */
  int ratelimit_auth_burst;       /* login, register, refresh per client address: 10 */
  int ratelimit_auth_per_minute;  /* 30 */
  int ratelimit_write_burst;      /* POST/PUT/PATCH/DELETE per signed-in user: 60 */
  int ratelimit_write_per_minute; /* 300 */
  int ratelimit_max_keys;         /* addresses and users remembered per limiter: 100000 */

  /* [storage]: where media objects live */
  char *storage_backend; /* "fs" (default) or "s3" */
  char *storage_path;    /* fs: root folder, default <data-dir>/media */
  char *s3_endpoint;     /* s3: e.g. http://127.0.0.1:9000 (path-style requests) */
  char *s3_bucket;
  char *s3_region; /* default us-east-1 */
  char *s3_access_key;
  char *s3_secret_key; /* masked in dumps */
  char *s3_prefix;     /* key prefix inside the bucket, may be empty */

  /* [media] */
  size_t media_max_upload_bytes; /* per file, default 100 MiB */
  size_t media_max_pixels;       /* per image, checked from the header (default 100 MP) */
  int media_max_video_seconds;   /* default 120 */
  int media_original_max_side;   /* the re-encoded original is capped to this (default 4096) */
  int media_upload_url_ttl_s;    /* presigned upload URLs expire (default 900) */
  int media_sweep_interval_s;    /* unconfirmed uploads past expiry are removed this often */
  char *media_spool_dir;         /* temporary files, default <data-dir>/spool */
  char *media_secret_file;       /* signs upload URLs, default <data-dir>/secrets/media.key */

  /* [post] */
  int post_pending_grace_s; /* a post left pending this long is settled by healing (60) */

  /* [cdn]: media by signed URLs, served on the gateway's port, and on a listener of its own
   * when cdn.port is set */
  char *cdn_address;          /* of that listener, default 127.0.0.1 */
  int cdn_port;               /* GN_CONFIG_PORT_UNSET (the default, written ""): no listener of its
                               * own; 0 picks a free one */
  int cdn_threads;            /* epoll pool, 0 = one per core */
  char *cdn_public_url;       /* base of media URLs (a web server or CDN in front of the media);
                               * default "": the base URL of the gateway the client used */
  int cdn_url_ttl_s;          /* lifetime of a signed media URL (default 3600) */
  char *cdn_secret_file;      /* default <data-dir>/secrets/cdn.key */
  char *cdn_cache_dir;        /* local copies of remote (S3) objects, <data-dir>/cdn-cache */
  size_t cdn_cache_max_bytes; /* default 1 GiB */
} gn_config;

/* Defaults only (data_dir resolved).  Never NULL. */
gn_config *gn_config_new_default (void);
/* Applies the file (if it exists; an explicit --config that does not exist is an error), then
 * the environment.  envp NULL = the process environment. */
gboolean gn_config_load (gn_config *config, const char *file, char **envp, GError **error);
/* Sets one option by its "section.key" name from a string (flags and env go through here),
 * e.g. ("gateway.port", "8081").  Unknown keys and bad values are errors. */
gboolean gn_config_set (gn_config *config, const char *key, const char *value, GError **error);
/* "all" or a comma list; unknown names are an error. */
gboolean gn_config_set_services (gn_config *config, const char *list, GError **error);
/* Re-derives paths that depend on data_dir (socket addresses, secret file) unless they were
 * set explicitly.  Called after data_dir changes. */
void gn_config_set_data_dir (gn_config *config, const char *data_dir);
/* The folder for the node's unix sockets: <data-dir>/run, or /tmp/generia-<uid>-<hash of
 * data_dir> when the data folder's path is too long for a socket path (108 bytes). */
char *gn_config_run_dir (const char *data_dir);
/* The effective configuration in the config file's format, secrets masked (a password in the
 * database or Redis URL). */
char *gn_config_dump (const gn_config *config);
void gn_config_free (gn_config *config);
