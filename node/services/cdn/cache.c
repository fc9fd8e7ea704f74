/* cache.c - local copies of remote objects for the CDN (see cache.h).
 *
 * One mutex guards the index: a hash table key -> entry, the entries in a queue from least to
 * most recently used, and a table of fetches under way.  The slow parts (the download, the
 * fsync inside the storage backend) run without the lock; only opening, renaming and
 * unlinking files happen under it, so eviction can never unlink a copy between a hit's lookup
 * and its open().
 *
 * A fetch is shared by every request that misses on the same key while it runs: they wait on
 * one condition variable (broadcast when any fetch ends) and then look again.  The most
 * recently stored copy is never evicted, so the cache may pass its budget by one object, and a
 * request that waited for a fetch always finds its copy. */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <gio/gio.h>

#include "log.h"

/* Where downloads land before they are renamed into place: upper case, so no storage key
 * ([a-z0-9._/-]) can name it. */
#define INCOMING_DIR "INCOMING"

typedef struct {
  GList link; /* in cache->lru; data points back to the entry */
  char *key;
  uint64_t size;
} entry;

typedef struct {
  int refs; /* the fetching request and the ones waiting for it */
  bool done;
  bool dropped; /* invalidated while running: the copy is served once, not stored */
  GError *error;
} fetch;

struct gn_cdn_cache {
  gn_storage *storage;
  char *dir;
  char *incoming;
  uint64_t max_bytes;

  GMutex lock;
  GCond fetch_done;
  GHashTable *entries;  /* key -> entry */
  GQueue lru;           /* head: least recently used */
  GHashTable *fetching; /* key -> fetch */
  uint64_t bytes;
  uint64_t fetches;
};

static void
entry_free (gpointer data)
{
  entry *e = data;

  g_free (e->key);
  g_free (e);
}

static void
fetch_release (fetch *f)
{
  if (--f->refs > 0)
    return;
  g_clear_error (&f->error);
  g_free (f);
}

static char *
copy_path (gn_cdn_cache *cache, const char *key)
{
  return g_build_filename (cache->dir, key, NULL);
}

/* Removes the folders above path that became empty, up to the cache's own folder. */
static void
prune_empty_dirs (gn_cdn_cache *cache, const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);

  while (strcmp (dir, cache->dir) != 0 && g_str_has_prefix (dir, cache->dir)) {
    char *parent;

    if (rmdir (dir) != 0)
      return;
    parent = g_path_get_dirname (dir);
    g_free (dir);
    dir = parent;
  }
}

/* With the lock held. */
static void
remove_entry (gn_cdn_cache *cache, entry *e)
{
  g_autofree char *path = copy_path (cache, e->key);

  if (unlink (path) != 0 && errno != ENOENT)
    gn_warn ("cdn cache: cannot remove %s: %s", path, g_strerror (errno));
  prune_empty_dirs (cache, path);
  cache->bytes -= e->size;
  g_queue_unlink (&cache->lru, &e->link);
  g_hash_table_remove (cache->entries, e->key);
}

/* With the lock held: appends a new most recently used entry. */
static void
add_entry (gn_cdn_cache *cache, const char *key, uint64_t size)
{
  entry *e = g_new0 (entry, 1);

  e->key = g_strdup (key);
  e->size = size;
  e->link.data = e;
  g_queue_push_tail_link (&cache->lru, &e->link);
  g_hash_table_insert (cache->entries, e->key, e);
  cache->bytes += size;
}

/* With the lock held. */
static void
evict (gn_cdn_cache *cache)
{
  while (cache->bytes > cache->max_bytes && cache->lru.length > 1)
    remove_entry (cache, cache->lru.head->data);
}

typedef struct {
  char *key;
  uint64_t size;
  int64_t stored_ns; /* ctime: when the copy was renamed into place */
} found_copy;

static void
found_copy_free (gpointer data)
{
  found_copy *copy = data;

  g_free (copy->key);
  g_free (copy);
}

static gint
compare_stored (gconstpointer a, gconstpointer b)
{
  const found_copy *x = *(found_copy *const *)a, *y = *(found_copy *const *)b;

  return (x->stored_ns > y->stored_ns) - (x->stored_ns < y->stored_ns);
}

/* Collects the copies under dir/relative (relative NULL: the top). */
static void
scan_dir (gn_cdn_cache *cache, const char *relative, GPtrArray *found)
{
  g_autofree char *path
      = relative != NULL ? g_build_filename (cache->dir, relative, NULL) : g_strdup (cache->dir);
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *child_relative
        = relative != NULL ? g_build_filename (relative, name, NULL) : g_strdup (name);
    g_autofree char *child = g_build_filename (cache->dir, child_relative, NULL);
    struct stat st;

    if (relative == NULL && strcmp (name, INCOMING_DIR) == 0)
      continue;
    if (lstat (child, &st) != 0)
      continue;
    if (S_ISDIR (st.st_mode)) {
      scan_dir (cache, child_relative, found);
    } else if (S_ISREG (st.st_mode) && gn_storage_key_is_valid (child_relative)) {
      found_copy *copy = g_new0 (found_copy, 1);

      copy->key = g_steal_pointer (&child_relative);
      copy->size = (uint64_t)st.st_size;
      copy->stored_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
      g_ptr_array_add (found, copy);
    }
  }
}

/* Interrupted downloads of an earlier run. */
static void
clear_incoming (gn_cdn_cache *cache)
{
  g_autoptr (GDir) dir = g_dir_open (cache->incoming, 0, NULL);
  const char *name;

  if (dir == NULL)
    return;
  while ((name = g_dir_read_name (dir)) != NULL) {
    g_autofree char *path = g_build_filename (cache->incoming, name, NULL);

    unlink (path);
  }
}

gn_cdn_cache *
gn_cdn_cache_new (gn_storage *storage, const char *dir, uint64_t max_bytes, GError **error)
{
  gn_cdn_cache *cache;
  g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (found_copy_free);
  g_autofree char *incoming = g_build_filename (dir, INCOMING_DIR, NULL);

  if (g_mkdir_with_parents (incoming, 0700) != 0) {
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot create %s: %s", incoming,
                 g_strerror (errno));
    return NULL;
  }
  cache = g_new0 (gn_cdn_cache, 1);
  cache->storage = storage;
  cache->dir = g_canonicalize_filename (dir, NULL);
  cache->incoming = g_build_filename (cache->dir, INCOMING_DIR, NULL);
  cache->max_bytes = max_bytes;
  g_mutex_init (&cache->lock);
  g_cond_init (&cache->fetch_done);
  cache->entries = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, entry_free);
  g_queue_init (&cache->lru);
  cache->fetching = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  clear_incoming (cache);
  scan_dir (cache, NULL, found);
  g_ptr_array_sort (found, compare_stored);
  for (guint i = 0; i < found->len; i++) {
    found_copy *copy = g_ptr_array_index (found, i);

    add_entry (cache, copy->key, copy->size);
  }
  evict (cache);
  if (cache->lru.length > 0)
    gn_info ("cdn cache: %u copies, %" G_GUINT64_FORMAT " bytes kept from the last run in %s",
             cache->lru.length, cache->bytes, cache->dir);
  return cache;
}

/* Downloads key into a new file under INCOMING without the lock; the file's name, or NULL
 * with error set. */
static char *
download (gn_cdn_cache *cache, const char *key, GError **error)
{
  g_autofree char *uuid = g_uuid_string_random ();
  char *path = g_build_filename (cache->incoming, uuid, NULL);
  gn_storage_stat stat = { 0 };

  if (!gn_storage_get_to_file (cache->storage, key, path, &stat, error)) {
    unlink (path);
    g_free (path);
    return NULL;
  }
  if (stat.mtime_us > 0) {
    /* The object's time, for Last-Modified; atime untouched. */
    struct timespec times[2] = {
      { .tv_nsec = UTIME_OMIT },
      { .tv_sec = stat.mtime_us / G_USEC_PER_SEC,
        .tv_nsec = (long)(stat.mtime_us % G_USEC_PER_SEC) * 1000 },
    };

    if (utimensat (AT_FDCWD, path, times, 0) != 0)
      gn_warn ("cdn cache: cannot set the time of %s: %s", path, g_strerror (errno));
  }
  return path;
}

/* With the lock held: moves a finished download into place and opens it. */
static int
store (gn_cdn_cache *cache, const char *key, const char *downloaded, GError **error)
{
  g_autofree char *path = copy_path (cache, key);
  g_autofree char *parent = g_path_get_dirname (path);
  struct stat st;
  int fd;

  if (g_mkdir_with_parents (parent, 0700) != 0 || rename (downloaded, path) != 0) {
    int saved = errno;

    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot store %s in %s: %s", key,
                 cache->dir, g_strerror (saved));
    unlink (downloaded);
    prune_empty_dirs (cache, path);
    return -1;
  }
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat (fd, &st) != 0) {
    int saved = errno;

    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot open %s: %s", path,
                 g_strerror (saved));
    if (fd >= 0)
      close (fd);
    unlink (path);
    prune_empty_dirs (cache, path);
    return -1;
  }
  add_entry (cache, key, (uint64_t)st.st_size);
  evict (cache);
  return fd;
}

/* With the lock held: serves a download that was invalidated meanwhile without storing it. */
static int
open_dropped (const char *downloaded, GError **error)
{
  int fd = open (downloaded, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot open %s: %s", downloaded,
                 g_strerror (errno));
  unlink (downloaded);
  return fd;
}

int
gn_cdn_cache_open (gn_cdn_cache *cache, const char *key, GError **error)
{
  fetch *f;
  g_autofree char *downloaded = NULL;
  GError *fetch_error = NULL;
  int fd = -1;

  if (!gn_storage_key_is_valid (key)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not a storage key");
    return -1;
  }

  g_mutex_lock (&cache->lock);
  for (;;) {
    entry *e = g_hash_table_lookup (cache->entries, key);

    if (e != NULL) {
      g_autofree char *path = copy_path (cache, key);

      fd = open (path, O_RDONLY | O_CLOEXEC);
      if (fd >= 0) {
        g_queue_unlink (&cache->lru, &e->link);
        g_queue_push_tail_link (&cache->lru, &e->link);
        g_mutex_unlock (&cache->lock);
        return fd;
      }
      /* Removed behind our back (an operator cleaning the folder): fetch it again. */
      remove_entry (cache, e);
    }
    f = g_hash_table_lookup (cache->fetching, key);
    if (f == NULL)
      break;
    f->refs++;
    while (!f->done)
      g_cond_wait (&cache->fetch_done, &cache->lock);
    if (f->error != NULL) {
      g_propagate_error (error, g_error_copy (f->error));
      fetch_release (f);
      g_mutex_unlock (&cache->lock);
      return -1;
    }
    fetch_release (f);
  }

  f = g_new0 (fetch, 1);
  f->refs = 1;
  g_hash_table_insert (cache->fetching, g_strdup (key), f);
  cache->fetches++;
  g_mutex_unlock (&cache->lock);

  downloaded = download (cache, key, &fetch_error);

  g_mutex_lock (&cache->lock);
  if (downloaded != NULL)
    fd = f->dropped ? open_dropped (downloaded, &fetch_error)
                    : store (cache, key, downloaded, &fetch_error);
  f->done = true;
  f->error = fetch_error;
  g_hash_table_remove (cache->fetching, key);
  g_cond_broadcast (&cache->fetch_done);
  if (fd < 0)
    g_propagate_error (error, g_error_copy (fetch_error));
  fetch_release (f);
  g_mutex_unlock (&cache->lock);
  return fd;
}

gboolean
gn_cdn_cache_invalidate (gn_cdn_cache *cache, const char *key)
{
  entry *e;
  fetch *f;
  gboolean removed = FALSE;

  g_mutex_lock (&cache->lock);
  e = g_hash_table_lookup (cache->entries, key);
  if (e != NULL) {
    remove_entry (cache, e);
    removed = TRUE;
  }
  f = g_hash_table_lookup (cache->fetching, key);
  if (f != NULL)
    f->dropped = true;
  g_mutex_unlock (&cache->lock);
  return removed;
}

uint64_t
gn_cdn_cache_bytes (gn_cdn_cache *cache)
{
  uint64_t bytes;

  g_mutex_lock (&cache->lock);
  bytes = cache->bytes;
  g_mutex_unlock (&cache->lock);
  return bytes;
}

unsigned
gn_cdn_cache_count (gn_cdn_cache *cache)
{
  unsigned count;

  g_mutex_lock (&cache->lock);
  count = cache->lru.length;
  g_mutex_unlock (&cache->lock);
  return count;
}

uint64_t
gn_cdn_cache_fetches (gn_cdn_cache *cache)
{
  uint64_t fetches;

  g_mutex_lock (&cache->lock);
  fetches = cache->fetches;
  g_mutex_unlock (&cache->lock);
  return fetches;
}

void
gn_cdn_cache_free (gn_cdn_cache *cache)
{
  if (cache == NULL)
    return;
  g_hash_table_destroy (cache->fetching);
  g_hash_table_destroy (cache->entries);
  g_cond_clear (&cache->fetch_done);
  g_mutex_clear (&cache->lock);
  g_free (cache->incoming);
  g_free (cache->dir);
  g_free (cache);
}
