/* generia-image-loader.c: media URLs as textures, with a shared in-memory cache
 *
 * A post's media URL is signed: its query (?expires=…&signature=…) changes every time the feed
 * is fetched, but its path names content-addressed bytes that never change. So the cache is keyed
 * by the URL without its query and fragment, and a card scrolled back into view finds its image
 * at once, however many times the feed was reloaded in between.
 *
 * The cache holds decoded textures, bounded by their decoded size (width × height × 4 bytes) and
 * evicting the least recently used first: a GQueue of entries, most recently used at its head,
 * and a hash table from key to the entry's link in that queue.
 *
 * Loads of a key that is already being fetched wait for that one download instead of starting
 * another. Each caller has its own GTask and cancellable; a caller that cancels gets its
 * G_IO_ERROR_CANCELLED at once and leaves the download running for the others. Only when the
 * last caller has cancelled is the download itself cancelled, so that a card scrolled past does
 * not keep the connection busy. Images are decoded in a worker thread, as
 * gdk_texture_new_from_bytes() allows, so that a large photo does not stall the main loop.
 * Failures (an error status, a body that is not an image) are given to the callers and not cached.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */

#include "generia-config.h"

#include "generia-image-loader.h"

typedef struct
{
  char       *key;
  GdkTexture *texture;
  gsize       n_bytes;
} CacheEntry;

/* One download shared by every caller that asked for its key while it was in flight */
typedef struct
{
  GeneriaImageLoader *loader;
  char               *key;
  GCancellable       *cancellable;
  GPtrArray          *waiters;
} Download;

/* The task data of a caller's GTask */
typedef struct
{
  Download *download;
  GSource  *cancelled_source;
} Waiter;

struct _GeneriaImageLoader
{
  GObject        parent_instance;

  GeneriaClient *client;

  /* key → GList link in lru, whose data is a CacheEntry; the head of lru is the most recent */
  GHashTable    *cache;
  GQueue         lru;
  gsize          n_bytes;
  gsize          max_bytes;

  /* key → Download */
  GHashTable    *in_flight;
};

G_DEFINE_FINAL_TYPE (GeneriaImageLoader, generia_image_loader, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_CLIENT,
  PROP_MAX_BYTES,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static char *
cache_key (const char *url)
{
  return g_strndup (url, strcspn (url, "?#"));
}

static void
cache_entry_free (CacheEntry *entry)
{
  g_free (entry->key);
  g_object_unref (entry->texture);
  g_free (entry);
}

static void
evict_to (GeneriaImageLoader *self,
          gsize               max_bytes)
{
  while (self->n_bytes > max_bytes)
    {
      CacheEntry *entry = g_queue_pop_tail (&self->lru);

      g_assert (entry != NULL);
      self->n_bytes -= entry->n_bytes;
      g_hash_table_remove (self->cache, entry->key);
      cache_entry_free (entry);
    }
}

static GdkTexture *
cache_lookup (GeneriaImageLoader *self,
              const char         *key)
{
  GList *link = g_hash_table_lookup (self->cache, key);

  if (link == NULL)
    return NULL;

  g_queue_unlink (&self->lru, link);
  g_queue_push_head_link (&self->lru, link);

  return ((CacheEntry *)link->data)->texture;
}

static void
cache_insert (GeneriaImageLoader *self,
              const char         *key,
              GdkTexture         *texture)
{
  gsize n_bytes = (gsize)gdk_texture_get_width (texture) * gdk_texture_get_height (texture) * 4;
  CacheEntry *entry;

  /* A texture that alone exceeds the bound would only push out everything else. */
  if (n_bytes > self->max_bytes || g_hash_table_contains (self->cache, key))
    return;

  evict_to (self, self->max_bytes - n_bytes);

  entry = g_new0 (CacheEntry, 1);
  entry->key = g_strdup (key);
  entry->texture = g_object_ref (texture);
  entry->n_bytes = n_bytes;
  g_queue_push_head (&self->lru, entry);
  g_hash_table_insert (self->cache, entry->key, self->lru.head);
  self->n_bytes += n_bytes;
}

static void
download_free (Download *download)
{
  g_assert (download->waiters->len == 0);

  g_object_unref (download->loader);
  g_free (download->key);
  g_object_unref (download->cancellable);
  g_ptr_array_unref (download->waiters);
  g_free (download);
}

static void
waiter_free (Waiter *waiter)
{
  if (waiter->cancelled_source != NULL)
    {
      g_source_destroy (waiter->cancelled_source);
      g_source_unref (waiter->cancelled_source);
    }
  g_free (waiter);
}

/* Ends the download's part in the loader; the caller then answers and frees it */
static void
download_detach (Download *download)
{
  GeneriaImageLoader *self = download->loader;

  if (g_hash_table_lookup (self->in_flight, download->key) == download)
    g_hash_table_remove (self->in_flight, download->key);
}

static GPtrArray *
download_steal_waiters (Download *download)
{
  GPtrArray *waiters = g_steal_pointer (&download->waiters);

  download->waiters = g_ptr_array_new_with_free_func (g_object_unref);

  for (guint i = 0; i < waiters->len; i++)
    {
      Waiter *waiter = g_task_get_task_data (g_ptr_array_index (waiters, i));

      waiter->download = NULL;
      if (waiter->cancelled_source != NULL)
        g_source_destroy (waiter->cancelled_source);
    }

  return waiters;
}

static void
download_fail (Download *download,
               GError   *error)
{
  g_autoptr(GPtrArray) waiters = NULL;

  download_detach (download);
  waiters = download_steal_waiters (download);
  for (guint i = 0; i < waiters->len; i++)
    g_task_return_error (g_ptr_array_index (waiters, i), g_error_copy (error));

  g_error_free (error);
  download_free (download);
}

static void
decode_in_thread (GTask        *task,
                  gpointer      source_object,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  GBytes *bytes = task_data;
  GError *error = NULL;
  GdkTexture *texture;

  if (!(texture = gdk_texture_new_from_bytes (bytes, &error)))
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, texture, g_object_unref);
}

static void
on_decoded (GObject      *object,
            GAsyncResult *result,
            gpointer      user_data)
{
  Download *download = user_data;
  g_autoptr(GdkTexture) texture = NULL;
  g_autoptr(GPtrArray) waiters = NULL;
  GError *error = NULL;

  if (!(texture = g_task_propagate_pointer (G_TASK (result), &error)))
    {
      download_fail (download, error);
      return;
    }

  cache_insert (download->loader, download->key, texture);

  download_detach (download);
  waiters = download_steal_waiters (download);
  for (guint i = 0; i < waiters->len; i++)
    g_task_return_pointer (g_ptr_array_index (waiters, i), g_object_ref (texture),
                           g_object_unref);

  download_free (download);
}

static void
on_downloaded (GObject      *object,
               GAsyncResult *result,
               gpointer      user_data)
{
  Download *download = user_data;
  g_autoptr(GTask) decode = NULL;
  g_autoptr(GBytes) bytes = NULL;
  GError *error = NULL;

  if (!(bytes = generia_client_download_finish (GENERIA_CLIENT (object), result, &error)))
    {
      download_fail (download, error);
      return;
    }

  /* No source object: the worker thread may drop the task last, and must not be the one to
   * finalize the loader. The download, with its reference on the loader, is freed on this
   * thread, in on_decoded(). */
  decode = g_task_new (NULL, NULL, on_decoded, download);
  g_task_set_source_tag (decode, on_downloaded);
  g_task_set_task_data (decode, g_steal_pointer (&bytes), (GDestroyNotify)g_bytes_unref);
  g_task_run_in_thread (decode, decode_in_thread);
}

static gboolean
on_waiter_cancelled (GCancellable *cancellable,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = g_object_ref (user_data);
  Waiter *waiter = g_task_get_task_data (task);
  Download *download = waiter->download;

  waiter->download = NULL;
  g_ptr_array_remove_fast (download->waiters, task);

  if (download->waiters->len == 0)
    {
      download_detach (download);
      g_cancellable_cancel (download->cancellable);
    }

  g_task_return_error_if_cancelled (task);

  return G_SOURCE_REMOVE;
}

static void
generia_image_loader_dispose (GObject *object)
{
  GeneriaImageLoader *self = (GeneriaImageLoader *)object;

  /* Every download holds a reference on the loader, so none is in flight now. */
  g_assert (g_hash_table_size (self->in_flight) == 0);

  evict_to (self, 0);
  g_clear_object (&self->client);

  G_OBJECT_CLASS (generia_image_loader_parent_class)->dispose (object);
}

static void
generia_image_loader_finalize (GObject *object)
{
  GeneriaImageLoader *self = (GeneriaImageLoader *)object;

  g_clear_pointer (&self->cache, g_hash_table_unref);
  g_clear_pointer (&self->in_flight, g_hash_table_unref);

  G_OBJECT_CLASS (generia_image_loader_parent_class)->finalize (object);
}

static void
generia_image_loader_get_property (GObject    *object,
                                   guint       prop_id,
                                   GValue     *value,
                                   GParamSpec *pspec)
{
  GeneriaImageLoader *self = GENERIA_IMAGE_LOADER (object);

  switch (prop_id)
    {
    case PROP_CLIENT:
      g_value_set_object (value, self->client);
      break;

    case PROP_MAX_BYTES:
      g_value_set_uint64 (value, self->max_bytes);
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_image_loader_set_property (GObject      *object,
                                   guint         prop_id,
                                   const GValue *value,
                                   GParamSpec   *pspec)
{
  GeneriaImageLoader *self = GENERIA_IMAGE_LOADER (object);

  switch (prop_id)
    {
    case PROP_CLIENT:
      self->client = g_value_dup_object (value);
      break;

    case PROP_MAX_BYTES:
      generia_image_loader_set_max_bytes (self, g_value_get_uint64 (value));
      break;

    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
generia_image_loader_class_init (GeneriaImageLoaderClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = generia_image_loader_dispose;
  object_class->finalize = generia_image_loader_finalize;
  object_class->get_property = generia_image_loader_get_property;
  object_class->set_property = generia_image_loader_set_property;

  properties[PROP_CLIENT] =
    g_param_spec_object ("client", NULL, NULL, GENERIA_TYPE_CLIENT,
                         (G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS));

  properties[PROP_MAX_BYTES] =
    g_param_spec_uint64 ("max-bytes", NULL, NULL,
                         0, G_MAXSIZE, GENERIA_IMAGE_LOADER_DEFAULT_MAX_BYTES,
                         (G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS));

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
generia_image_loader_init (GeneriaImageLoader *self)
{
  self->cache = g_hash_table_new (g_str_hash, g_str_equal);
  self->in_flight = g_hash_table_new (g_str_hash, g_str_equal);
  self->max_bytes = GENERIA_IMAGE_LOADER_DEFAULT_MAX_BYTES;
}

/**
 * generia_image_loader_new:
 * @client: the client whose connections fetch the images
 */
GeneriaImageLoader *
generia_image_loader_new (GeneriaClient *client)
{
  g_return_val_if_fail (GENERIA_IS_CLIENT (client), NULL);

  return g_object_new (GENERIA_TYPE_IMAGE_LOADER, "client", client, NULL);
}

gsize
generia_image_loader_get_max_bytes (GeneriaImageLoader *self)
{
  g_return_val_if_fail (GENERIA_IS_IMAGE_LOADER (self), 0);

  return self->max_bytes;
}

/**
 * generia_image_loader_set_max_bytes:
 * @max_bytes: the most decoded bytes (width × height × 4 per texture) the cache may hold
 *
 * Bounds the cache, evicting the least recently used textures until it fits.
 */
void
generia_image_loader_set_max_bytes (GeneriaImageLoader *self,
                                    gsize               max_bytes)
{
  g_return_if_fail (GENERIA_IS_IMAGE_LOADER (self));

  if (self->max_bytes == max_bytes)
    return;

  self->max_bytes = max_bytes;
  evict_to (self, max_bytes);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_BYTES]);
}

/**
 * generia_image_loader_lookup:
 * @url: a media URL; its query does not matter
 *
 * Looks @url up in the cache only, e.g. to show an image in the same frame as its post, and
 * counts as a use of it.
 *
 * Returns: (transfer full) (nullable): the texture, or %NULL when it is not cached
 */
GdkTexture *
generia_image_loader_lookup (GeneriaImageLoader *self,
                             const char         *url)
{
  g_autofree char *key = NULL;
  GdkTexture *texture;

  g_return_val_if_fail (GENERIA_IS_IMAGE_LOADER (self), NULL);
  g_return_val_if_fail (url != NULL, NULL);

  key = cache_key (url);
  texture = cache_lookup (self, key);

  return texture != NULL ? g_object_ref (texture) : NULL;
}

/**
 * generia_image_loader_load_async:
 * @url: a media URL that needs no credentials, such as a post's signed media URL
 * @cancellable: (nullable): cancels this caller's wait only, unless it is the last one waiting
 *
 * Gives the image at @url as a texture: from the cache, from a download of the same image
 * already in flight, or from a new download.
 */
void
generia_image_loader_load_async (GeneriaImageLoader  *self,
                                 const char          *url,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autofree char *key = NULL;
  GdkTexture *texture;
  Download *download;
  Waiter *waiter;

  g_return_if_fail (GENERIA_IS_IMAGE_LOADER (self));
  g_return_if_fail (url != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, generia_image_loader_load_async);

  if (g_task_return_error_if_cancelled (task))
    return;

  key = cache_key (url);
  if ((texture = cache_lookup (self, key)) != NULL)
    {
      g_task_return_pointer (task, g_object_ref (texture), g_object_unref);
      return;
    }

  if (!(download = g_hash_table_lookup (self->in_flight, key)))
    {
      download = g_new0 (Download, 1);
      download->loader = g_object_ref (self);
      download->key = g_steal_pointer (&key);
      download->cancellable = g_cancellable_new ();
      download->waiters = g_ptr_array_new_with_free_func (g_object_unref);
      g_hash_table_insert (self->in_flight, download->key, download);

      generia_client_download_async (self->client, url, download->cancellable, on_downloaded,
                                     download);
    }

  waiter = g_new0 (Waiter, 1);
  waiter->download = download;
  g_task_set_task_data (task, waiter, (GDestroyNotify)waiter_free);

  if (cancellable != NULL)
    {
      waiter->cancelled_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (waiter->cancelled_source, G_SOURCE_FUNC (on_waiter_cancelled),
                             task, NULL);
      g_source_set_static_name (waiter->cancelled_source, "[generia] image load cancelled");
      g_source_attach (waiter->cancelled_source, g_task_get_context (task));
    }

  g_ptr_array_add (download->waiters, g_steal_pointer (&task));
}

/**
 * generia_image_loader_load_finish:
 *
 * Returns: (transfer full): the texture, or %NULL with @error set
 */
GdkTexture *
generia_image_loader_load_finish (GeneriaImageLoader  *self,
                                  GAsyncResult        *result,
                                  GError             **error)
{
  g_return_val_if_fail (GENERIA_IS_IMAGE_LOADER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
