/* storage.c - the storage interface's shared part (see storage.h): key rules, the dispatch
 * helpers that check keys before any backend sees them, the choice of backend from the
 * configuration, and the temp-file-then-rename helpers both backends use for local files
 * (storage-private.h).
 *
 * Keys are checked here and only here, so a backend can map a key straight to a path or a
 * URL: the rules exclude everything that would let a key escape its root ("..", a leading
 * '/'), name a folder instead of a file (an empty segment, a trailing '/') or need escaping. */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

#include "storage-private.h"

#define KEY_MAX_BYTES 512

gboolean
gn_storage_key_is_valid (const char *key)
{
  if (key == NULL)
    return FALSE;
  size_t length = strlen (key);
  if (length == 0 || length > KEY_MAX_BYTES)
    return FALSE;

  const char *segment = key;
  for (const char *p = key;; p++) {
    if (*p == '/' || *p == '\0') {
      size_t segment_length = (size_t)(p - segment);
      if (segment_length == 0)
        return FALSE;
      if (segment_length <= 2 && strncmp (segment, "..", segment_length) == 0)
        return FALSE;
      if (*p == '\0')
        return TRUE;
      segment = p + 1;
    } else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
                 || *p == '-')) {
      return FALSE;
    }
  }
}

static gboolean
check_key (const char *key, GError **error)
{
  if (gn_storage_key_is_valid (key))
    return TRUE;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "\"%.64s%s\" is not a valid storage key (1 to %d bytes of [a-z0-9._/-], no empty, "
               "\".\" or \"..\" segment)",
               key != NULL ? key : "(null)", key != NULL && strlen (key) > 64 ? "..." : "",
               KEY_MAX_BYTES);
  return FALSE;
}

gboolean
gn_storage_put_file (gn_storage *storage, const char *key, const char *path,
                     const char *content_type, GError **error)
{
  g_return_val_if_fail (storage != NULL && path != NULL, FALSE);
  if (!check_key (key, error))
    return FALSE;
  return storage->ops->put_file (
      storage, key, path, content_type != NULL ? content_type : "application/octet-stream", error);
}

gboolean
gn_storage_get_to_file (gn_storage *storage, const char *key, const char *path,
                        gn_storage_stat *stat, GError **error)
{
  g_return_val_if_fail (storage != NULL && path != NULL, FALSE);
  if (!check_key (key, error))
    return FALSE;
  return storage->ops->get_to_file (storage, key, path, stat, error);
}

gboolean
gn_storage_stat_object (gn_storage *storage, const char *key, gn_storage_stat *stat, GError **error)
{
  g_return_val_if_fail (storage != NULL, FALSE);
  if (!check_key (key, error))
    return FALSE;
  gn_storage_stat ignored;
  return storage->ops->stat (storage, key, stat != NULL ? stat : &ignored, error);
}

gboolean
gn_storage_remove (gn_storage *storage, const char *key, GError **error)
{
  g_return_val_if_fail (storage != NULL, FALSE);
  if (!check_key (key, error))
    return FALSE;
  return storage->ops->remove (storage, key, error);
}

char *
gn_storage_local_path (gn_storage *storage, const char *key)
{
  g_return_val_if_fail (storage != NULL, NULL);
  if (!gn_storage_key_is_valid (key) || storage->ops->local_path == NULL)
    return NULL;
  return storage->ops->local_path (storage, key);
}

gboolean
gn_storage_check (gn_storage *storage, GError **error)
{
  g_return_val_if_fail (storage != NULL, FALSE);
  return storage->ops->check (storage, error);
}

void
gn_storage_free (gn_storage *storage)
{
  if (storage != NULL)
    storage->ops->free (storage);
}

static gboolean
require_option (const char *value, const char *name, GError **error)
{
  if (value != NULL && value[0] != '\0')
    return TRUE;
  g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE,
               "storage.backend is s3 but %s is not set", name);
  return FALSE;
}

gn_storage *
gn_storage_new_from_config (const gn_config *config, GError **error)
{
  const char *backend = config->storage_backend != NULL ? config->storage_backend : "fs";

  if (strcmp (backend, "fs") == 0) {
    if (config->storage_path == NULL || config->storage_path[0] == '\0') {
      g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE,
                   "storage.backend is fs but storage.path is not set");
      return NULL;
    }
    return gn_storage_fs_new (config->storage_path, error);
  }
  if (strcmp (backend, "s3") == 0) {
    if (!require_option (config->s3_endpoint, "storage.s3_endpoint", error)
        || !require_option (config->s3_bucket, "storage.s3_bucket", error)
        || !require_option (config->s3_access_key, "storage.s3_access_key", error)
        || !require_option (config->s3_secret_key, "storage.s3_secret_key", error))
      return NULL;
    gn_s3_options options = {
      .endpoint = config->s3_endpoint,
      .bucket = config->s3_bucket,
      .region
      = config->s3_region != NULL && config->s3_region[0] != '\0' ? config->s3_region : NULL,
      .access_key = config->s3_access_key,
      .secret_key = config->s3_secret_key,
      .prefix = config->s3_prefix,
    };
    return gn_storage_s3_new (&options, error);
  }
  g_set_error (error, GN_CONFIG_ERROR, GN_CONFIG_ERROR_INVALID_VALUE,
               "storage.backend \"%s\" is not a storage backend (fs or s3)", backend);
  return NULL;
}

void
gn_storage_set_errno_error (GError **error, int saved_errno, const char *what, const char *path)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s: %s", what, path,
               g_strerror (saved_errno));
}

int
gn_storage_temp_open (const char *dest_path, char **temp_path, GError **error)
{
  g_autofree char *folder = g_path_get_dirname (dest_path);
  g_autofree char *name = g_path_get_basename (dest_path);
  g_autofree char *template = g_strdup_printf ("%s/.%s.tmp-XXXXXX", folder, name);

  int fd = g_mkstemp_full (template, O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    gn_storage_set_errno_error (error, errno, "cannot create a temp file for", dest_path);
    return -1;
  }
  *temp_path = g_steal_pointer (&template);
  return fd;
}

void
gn_storage_temp_discard (int fd, const char *temp_path)
{
  if (fd >= 0)
    close (fd);
  g_unlink (temp_path);
}

static gboolean
fsync_folder_of (const char *path, GError **error)
{
  g_autofree char *folder = g_path_get_dirname (path);
  int fd = open (folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || fsync (fd) != 0) {
    int saved_errno = errno;
    if (fd >= 0)
      close (fd);
    gn_storage_set_errno_error (error, saved_errno, "cannot sync the folder", folder);
    return FALSE;
  }
  close (fd);
  return TRUE;
}

gboolean
gn_storage_temp_commit (int fd, const char *temp_path, const char *dest_path, GError **error)
{
  if (fsync (fd) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot sync", temp_path);
    gn_storage_temp_discard (fd, temp_path);
    return FALSE;
  }
  /* close() reports write-back errors on some filesystems (NFS), so it is checked too. */
  if (close (fd) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot close", temp_path);
    gn_storage_temp_discard (-1, temp_path);
    return FALSE;
  }
  if (rename (temp_path, dest_path) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot rename a temp file to", dest_path);
    gn_storage_temp_discard (-1, temp_path);
    return FALSE;
  }
  return fsync_folder_of (dest_path, error);
}
