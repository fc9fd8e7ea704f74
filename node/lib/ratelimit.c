/* ratelimit.c - token buckets keyed by a string (see ratelimit.h).
 *
 * A bucket holds a fractional token count and the time it was last looked at; nothing ticks
 * in the background.  On each take the bucket is first refilled for the time that passed
 * (tokens = min(burst, tokens + elapsed * per_second)), then one token is taken if there is a
 * whole one.  When there is not, the wait until there is is (1 - tokens) / per_second.
 *
 * Layout.  The key space is split over SHARDS shards by the key's hash (one shard for small
 * limiters, where exact least-recently-used order is worth more than spreading locks; tests
 * rely on that).  A shard is a GHashTable from key to bucket plus a GQueue of the same
 * buckets, most recently used at the head: each bucket embeds its own list link, so moving it
 * to the front and dropping the tail are O(1) and a take allocates only for a new key.
 *
 * Bound.  A shard keeps at most its share of max_keys buckets.  A new key in a full shard
 * evicts the tail, the bucket untouched for longest.  That bucket has usually refilled
 * completely, and a full bucket is exactly what a new key starts with, so evicting it loses
 * nothing; if it has not, the limiter forgets part of a budget (fails open for that key)
 * rather than grow without bound.  Keys are capped at KEY_MAX bytes (longer ones are cut:
 * callers use addresses and ids). */
#include "ratelimit.h"

#include <string.h>
#include <glib.h>

#define SHARDS 16
#define SMALL_LIMITER_KEYS 1024
#define DEFAULT_MAX_KEYS 100000
#define KEY_MAX 128

typedef struct {
  GList link; /* in the shard's queue; link.data points back here */
  double tokens;
  int64_t last_us;
  char key[];
} bucket;

typedef struct {
  GMutex lock;
  GHashTable *buckets; /* key (bucket->key) -> bucket */
  GQueue order;        /* most recently used first */
  size_t capacity;
} shard;

struct gn_ratelimit {
  double burst;
  double per_second;
  size_t n_shards;
  shard shards[SHARDS];
};

gn_ratelimit *
gn_ratelimit_new (const gn_ratelimit_options *options)
{
  size_t max_keys = options->max_keys > 0 ? options->max_keys : DEFAULT_MAX_KEYS;
  gn_ratelimit *limiter;

  g_return_val_if_fail (options->burst >= 1 && options->per_second > 0, NULL);
  limiter = g_new0 (gn_ratelimit, 1);
  limiter->burst = options->burst;
  limiter->per_second = options->per_second;
  limiter->n_shards = max_keys >= SMALL_LIMITER_KEYS ? SHARDS : 1;
  for (size_t i = 0; i < limiter->n_shards; i++) {
    shard *s = &limiter->shards[i];

    g_mutex_init (&s->lock);
    s->buckets = g_hash_table_new (g_str_hash, g_str_equal);
    g_queue_init (&s->order);
    s->capacity = MAX ((size_t)1, max_keys / limiter->n_shards);
  }
  return limiter;
}

void
gn_ratelimit_free (gn_ratelimit *limiter)
{
  if (limiter == NULL)
    return;
  for (size_t i = 0; i < limiter->n_shards; i++) {
    shard *s = &limiter->shards[i];
    GList *link;

    while ((link = g_queue_pop_head_link (&s->order)) != NULL)
      g_free (link->data);
    g_hash_table_unref (s->buckets);
    g_mutex_clear (&s->lock);
  }
  g_free (limiter);
}

static bucket *
bucket_new (const char *key, size_t len, double tokens, int64_t now_us)
{
  bucket *b = g_malloc0 (sizeof *b + len + 1);

  memcpy (b->key, key, len);
  b->key[len] = '\0';
  b->link.data = b;
  b->tokens = tokens;
  b->last_us = now_us;
  return b;
}

/* The key's bucket, made most recently used; a new full one (evicting the least recently used
 * if the shard is full) if there is none. */
static bucket *
shard_lookup (gn_ratelimit *limiter, shard *s, const char *key, int64_t now_us)
{
  bucket *b = g_hash_table_lookup (s->buckets, key);

  if (b != NULL) {
    g_queue_unlink (&s->order, &b->link);
    g_queue_push_head_link (&s->order, &b->link);
    return b;
  }
  if (g_hash_table_size (s->buckets) >= s->capacity) {
    GList *oldest = g_queue_pop_tail_link (&s->order);
    bucket *evicted = oldest->data;

    g_hash_table_remove (s->buckets, evicted->key);
    g_free (evicted);
  }
  b = bucket_new (key, strlen (key), limiter->burst, now_us);
  g_hash_table_insert (s->buckets, b->key, b);
  g_queue_push_head_link (&s->order, &b->link);
  return b;
}

bool
gn_ratelimit_take (gn_ratelimit *limiter, const char *key, int64_t now_us, int64_t *retry_after_us)
{
  char cut[KEY_MAX + 1];
  bool allowed;

  if (strlen (key) > KEY_MAX) {
    memcpy (cut, key, KEY_MAX);
    cut[KEY_MAX] = '\0';
    key = cut;
  }
  shard *s = &limiter->shards[g_str_hash (key) % limiter->n_shards];

  g_mutex_lock (&s->lock);
  bucket *b = shard_lookup (limiter, s, key, now_us);
  if (now_us > b->last_us) {
    double refill = (double)(now_us - b->last_us) / G_USEC_PER_SEC * limiter->per_second;

    b->tokens = MIN (limiter->burst, b->tokens + refill);
    b->last_us = now_us;
  }
  allowed = b->tokens >= 1.0;
  if (allowed)
    b->tokens -= 1.0;
  else if (retry_after_us != NULL)
    *retry_after_us = MAX (
        (int64_t)1, (int64_t)((1.0 - b->tokens) / limiter->per_second * G_USEC_PER_SEC + 0.999999));
  g_mutex_unlock (&s->lock);
  return allowed;
}

size_t
gn_ratelimit_size (gn_ratelimit *limiter)
{
  size_t n = 0;

  for (size_t i = 0; i < limiter->n_shards; i++) {
    g_mutex_lock (&limiter->shards[i].lock);
    n += g_hash_table_size (limiter->shards[i].buckets);
    g_mutex_unlock (&limiter->shards[i].lock);
  }
  return n;
}
