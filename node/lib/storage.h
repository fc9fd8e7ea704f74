/* storage.h - where media objects live: one interface, a filesystem and an S3 implementation.
 *
 * Keys are relative object names of [a-z0-9._/-] ("media/<media-id>/medium-<sha256>.jpg"):
 * no leading '/', no empty, "." or ".." segment, at most 512 bytes; anything else is refused
 * with G_IO_ERROR_INVALID_ARGUMENT before the backend is touched.
 *
 * Objects are written whole from a local file and are immutable once written (names carry
 * the content hash), so readers never see a partial object:
 *   - fs: temp file in the same folder + fsync + rename(2);
 *   - s3: one PUT (SigV4-signed by libcurl's CURLOPT_AWS_SIGV4, x-amz-content-sha256 set), which
 *     S3 makes visible atomically.
 * Every function is safe to call from many threads at once.
 *
 * Errors: G_IO_ERROR_NOT_FOUND for a missing object (stat, get_to_file); removing a missing
 * object succeeds; anything else is G_IO_ERROR_FAILED with the backend's words (HTTP status and
 * S3 error code for s3). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "config.h"

typedef struct gn_storage gn_storage;

typedef struct {
  int64_t size;
  int64_t mtime_us; /* last modification, microseconds since the epoch */
} gn_storage_stat;

typedef struct {
  const char *name; /* "fs" or "s3" */
  gboolean (*put_file) (gn_storage *storage, const char *key, const char *path,
                        const char *content_type, GError **error);
  /* Copies the object into the local file `path` (created or replaced atomically). */
  gboolean (*get_to_file) (gn_storage *storage, const char *key, const char *path,
                           gn_storage_stat *stat, GError **error);
  gboolean (*stat) (gn_storage *storage, const char *key, gn_storage_stat *stat, GError **error);
  gboolean (*remove) (gn_storage *storage, const char *key, GError **error);
  /* Backends whose objects are local files (fs) return the file's path, so the CDN can serve
   * it with sendfile; others return NULL.  g_free the result. */
  char *(*local_path) (gn_storage *storage, const char *key);
  /* Answers whether the backend is reachable (for HealthCheck). */
  gboolean (*check) (gn_storage *storage, GError **error);
  void (*free) (gn_storage *storage);
} gn_storage_ops;

/* Implementations embed this as their first member. */
struct gn_storage {
  const gn_storage_ops *ops;
};

/* Creates `root` (0700) if missing. */
gn_storage *gn_storage_fs_new (const char *root, GError **error);

typedef struct {
  const char *endpoint; /* "http://127.0.0.1:9000": path-style requests to <endpoint>/<bucket>/ */
  const char *bucket;
  const char *region; /* "us-east-1" if NULL */
  const char *access_key;
  const char *secret_key;
  const char *prefix; /* prepended to every key, may be NULL or "" */
} gn_s3_options;

gn_storage *gn_storage_s3_new (const gn_s3_options *options, GError **error);

/* From [storage] of the configuration. */
gn_storage *gn_storage_new_from_config (const gn_config *config, GError **error);

gboolean gn_storage_key_is_valid (const char *key);

/* Dispatch helpers (validate the key, then call the backend). */
gboolean gn_storage_put_file (gn_storage *storage, const char *key, const char *path,
                              const char *content_type, GError **error);
gboolean gn_storage_get_to_file (gn_storage *storage, const char *key, const char *path,
                                 gn_storage_stat *stat, GError **error);
gboolean gn_storage_stat_object (gn_storage *storage, const char *key, gn_storage_stat *stat,
                                 GError **error);
gboolean gn_storage_remove (gn_storage *storage, const char *key, GError **error);
char *gn_storage_local_path (gn_storage *storage, const char *key);
gboolean gn_storage_check (gn_storage *storage, GError **error);
void gn_storage_free (gn_storage *storage);
