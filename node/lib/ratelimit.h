/* ratelimit.h - token buckets keyed by a string, in memory, with a bounded number of keys.
 *
 * Each key (a client address, a user id) has a bucket of at most `burst` tokens that refills
 * at `per_second`; a request takes one token or is refused with the time until one is back.
 * Buckets live in a fixed number of shards, each a hash table with its own lock and its own
 * least-recently-used list, so concurrent requests for different keys rarely meet on a lock.
 * The number of keys is bounded: when a shard is full, its least recently used bucket is
 * forgotten to make room, so someone cycling through keys cannot grow memory (and can only
 * make the limiter forget budgets, never make it refuse anyone else).
 *
 * Time is the caller's monotonic clock in microseconds (g_get_monotonic_time()), passed in so
 * the bucket arithmetic is testable without sleeping. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gn_ratelimit gn_ratelimit;

typedef struct {
  double burst;      /* bucket size in requests (>= 1) */
  double per_second; /* refill rate (> 0) */
  size_t max_keys;   /* buckets kept at most (0: 100,000) */
} gn_ratelimit_options;

gn_ratelimit *gn_ratelimit_new (const gn_ratelimit_options *options);
void gn_ratelimit_free (gn_ratelimit *limiter);

/* Takes one token from key's bucket at now_us.  True if it was there; false if not, with
 * *retry_after_us (if non-NULL) set to the time until a token is back (> 0). */
bool gn_ratelimit_take (gn_ratelimit *limiter, const char *key, int64_t now_us,
                        int64_t *retry_after_us);

/* Buckets currently kept (all shards). */
size_t gn_ratelimit_size (gn_ratelimit *limiter);
