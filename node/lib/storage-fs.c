/* storage-fs.c - the filesystem storage backend (see storage.h): object "a/b/c.jpg" is the
 * file <root>/a/b/c.jpg.
 *
 * Writes copy the source into a temp file in the object's folder and rename it into place
 * (storage-private.h), so the CDN, which serves these files directly with sendfile, never sees
 * a partial object, and a failed write leaves nothing behind.  The source is copied rather
 * than linked or moved: callers (the media service) own their source files and delete them.
 * Folders are created 0700 on demand and left in place when their last object goes; an empty
 * folder costs nothing and removing it would race with a concurrent put into it.
 *
 * Nothing is shared between calls but the root path, so any number of threads can use one
 * storage at once; rename(2) makes concurrent puts of one key end with one whole object. */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

#include "storage-private.h"

#define COPY_BUFFER_BYTES (256 * 1024)

typedef struct {
  gn_storage base;
  char *root;
} fs_storage;

static char *
object_path (gn_storage *storage, const char *key)
{
  return g_build_filename (((fs_storage *)storage)->root, key, NULL);
}

static void
set_not_found (GError **error, const char *key)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no object %s in the storage", key);
}

static void
stat_from (const struct stat *st, gn_storage_stat *stat)
{
  if (stat == NULL)
    return;
  stat->size = st->st_size;
  stat->mtime_us = (int64_t)st->st_mtim.tv_sec * G_USEC_PER_SEC + st->st_mtim.tv_nsec / 1000;
}

static gboolean
copy_fd (int from, const char *from_path, int to, const char *to_path, GError **error)
{
  g_autofree char *buffer = g_malloc (COPY_BUFFER_BYTES);
  for (;;) {
    ssize_t got = read (from, buffer, COPY_BUFFER_BYTES);
    if (got == 0)
      return TRUE;
    if (got < 0) {
      if (errno == EINTR)
        continue;
      gn_storage_set_errno_error (error, errno, "cannot read", from_path);
      return FALSE;
    }
    for (ssize_t done = 0; done < got;) {
      ssize_t put = write (to, buffer + done, (size_t)(got - done));
      if (put < 0) {
        if (errno == EINTR)
          continue;
        gn_storage_set_errno_error (error, errno, "cannot write", to_path);
        return FALSE;
      }
      done += put;
    }
  }
}

/* Copies the open regular file `from` to `dest_path` through a temp file beside it. */
static gboolean
copy_to_path (int from, const char *from_path, const char *dest_path, GError **error)
{
  g_autofree char *temp_path = NULL;
  int to = gn_storage_temp_open (dest_path, &temp_path, error);
  if (to < 0)
    return FALSE;
  if (!copy_fd (from, from_path, to, temp_path, error)) {
    gn_storage_temp_discard (to, temp_path);
    return FALSE;
  }
  return gn_storage_temp_commit (to, temp_path, dest_path, error);
}

static int
open_regular_file (const char *path, struct stat *st)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat (fd, st) != 0) {
    int saved_errno = errno;
    close (fd);
    errno = saved_errno;
    return -1;
  }
  if (!S_ISREG (st->st_mode)) {
    close (fd);
    errno = S_ISDIR (st->st_mode) ? EISDIR : EINVAL;
    return -1;
  }
  return fd;
}

static gboolean
fs_put_file (gn_storage *storage, const char *key, const char *path, const char *content_type,
             GError **error)
{
  g_autofree char *dest_path = object_path (storage, key);
  g_autofree char *folder = g_path_get_dirname (dest_path);
  struct stat st = { 0 };

  int from = open_regular_file (path, &st);
  if (from < 0) {
    gn_storage_set_errno_error (error, errno, "cannot read", path);
    return FALSE;
  }
  if (g_mkdir_with_parents (folder, 0700) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot create the folder", folder);
    close (from);
    return FALSE;
  }
  gboolean ok = copy_to_path (from, path, dest_path, error);
  close (from);
  return ok;
}

static gboolean
fs_get_to_file (gn_storage *storage, const char *key, const char *path, gn_storage_stat *stat,
                GError **error)
{
  g_autofree char *object = object_path (storage, key);
  struct stat st = { 0 };

  int from = open_regular_file (object, &st);
  if (from < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
      set_not_found (error, key);
    else
      gn_storage_set_errno_error (error, errno, "cannot read", object);
    return FALSE;
  }
  gboolean ok = copy_to_path (from, object, path, error);
  close (from);
  if (ok)
    stat_from (&st, stat);
  return ok;
}

static gboolean
fs_stat (gn_storage *storage, const char *key, gn_storage_stat *out, GError **error)
{
  g_autofree char *object = object_path (storage, key);
  struct stat st;

  if (stat (object, &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      set_not_found (error, key);
    else
      gn_storage_set_errno_error (error, errno, "cannot stat", object);
    return FALSE;
  }
  if (!S_ISREG (st.st_mode)) {
    set_not_found (error, key);
    return FALSE;
  }
  stat_from (&st, out);
  return TRUE;
}

static gboolean
fs_remove (gn_storage *storage, const char *key, GError **error)
{
  g_autofree char *object = object_path (storage, key);

  /* A key that names a folder is not an object either, hence EISDIR. */
  if (unlink (object) != 0 && errno != ENOENT && errno != ENOTDIR && errno != EISDIR) {
    gn_storage_set_errno_error (error, errno, "cannot remove", object);
    return FALSE;
  }
  return TRUE;
}

static char *
fs_local_path (gn_storage *storage, const char *key)
{
  char *object = object_path (storage, key);
  if (!g_file_test (object, G_FILE_TEST_IS_REGULAR)) {
    g_free (object);
    return NULL;
  }
  return object;
}

/* Really creates a file: access(W_OK) says yes to root even on a read-only mount. */
static gboolean
fs_check (gn_storage *storage, GError **error)
{
  g_autofree char *probe = object_path (storage, "check");
  g_autofree char *temp_path = NULL;

  int fd = gn_storage_temp_open (probe, &temp_path, error);
  if (fd < 0)
    return FALSE;
  gn_storage_temp_discard (fd, temp_path);
  return TRUE;
}

static void
fs_free (gn_storage *storage)
{
  fs_storage *fs = (fs_storage *)storage;
  g_free (fs->root);
  g_free (fs);
}

static const gn_storage_ops fs_ops = {
  .name = "fs",
  .put_file = fs_put_file,
  .get_to_file = fs_get_to_file,
  .stat = fs_stat,
  .remove = fs_remove,
  .local_path = fs_local_path,
  .check = fs_check,
  .free = fs_free,
};

gn_storage *
gn_storage_fs_new (const char *root, GError **error)
{
  g_return_val_if_fail (root != NULL, NULL);

  if (root[0] == '\0') {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "the storage folder is not set");
    return NULL;
  }
  if (g_mkdir_with_parents (root, 0700) != 0) {
    gn_storage_set_errno_error (error, errno, "cannot create the storage folder", root);
    return NULL;
  }
  fs_storage *fs = g_new0 (fs_storage, 1);
  fs->base.ops = &fs_ops;
  fs->root = g_strdup (root);
  return &fs->base;
}
