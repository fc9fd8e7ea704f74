/* cache.h - local copies of remote (S3) objects, so the CDN can serve them with sendfile.
 *
 * The copy of key K is the file <dir>/K.  A miss fetches the object once, however many
 * requests ask for it at the same time: the first starts gn_storage_get_to_file into
 * <dir>/.incoming/, the others wait for it.  The finished file gets the object's modification
 * time (for Last-Modified) and is renamed into place.  Copies are evicted least recently used
 * first whenever the total passes max_bytes; an evicted file that is still being sent stays
 * readable through its open descriptor (unlink(2) semantics), so eviction never breaks a
 * download.
 *
 * At start the folder is scanned, so a restart keeps its copies (ordered by when they were
 * stored), and leftovers of interrupted fetches are removed.  All functions are thread-safe. */
#pragma once

#include <stdint.h>
#include <glib.h>

#include "storage.h"

typedef struct gn_cdn_cache gn_cdn_cache;

/* Creates dir (0700) if missing.  storage must outlive the cache. */
gn_cdn_cache *gn_cdn_cache_new (gn_storage *storage, const char *dir, uint64_t max_bytes,
                                GError **error);
/* An O_RDONLY descriptor of the local copy of key, fetched first on a miss; -1 with
 * G_IO_ERROR_NOT_FOUND when the object does not exist, other errors as the storage says. */
int gn_cdn_cache_open (gn_cdn_cache *cache, const char *key, GError **error);
/* Drops the copy of key; TRUE if there was one.  A fetch of key under way is not stored. */
gboolean gn_cdn_cache_invalidate (gn_cdn_cache *cache, const char *key);
/* Bytes held and copies held now. */
uint64_t gn_cdn_cache_bytes (gn_cdn_cache *cache);
unsigned gn_cdn_cache_count (gn_cdn_cache *cache);
/* Counts storage fetches made so far (misses that went to the backend). */
uint64_t gn_cdn_cache_fetches (gn_cdn_cache *cache);
void gn_cdn_cache_free (gn_cdn_cache *cache);
