/* arena.c - per-request bump allocator (see arena.h).
 *
 * Blocks form a singly linked list, newest first.  An allocation is served from the head
 * block when it fits; otherwise a new block is pushed, sized max(next_size, request) where
 * next_size doubles from 4 KiB up to 64 KiB.  Freeing walks the list once.  reset() keeps
 * only the oldest (first) block, so an arena reused across requests settles at one malloc. */
#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#define ARENA_ALIGN 16
#define ARENA_FIRST_BLOCK 4096
#define ARENA_MAX_BLOCK 65536

typedef struct arena_block {
  struct arena_block *next;
  size_t size; /* usable bytes in data[] */
  size_t used;
  _Alignas(ARENA_ALIGN) unsigned char data[];
} arena_block;

struct gn_arena {
  arena_block *head;
  size_t next_size;
  size_t total_used;
  ProtobufCAllocator protobuf;
};

static void *
protobuf_alloc (void *data, size_t size)
{
  return gn_arena_alloc (data, size);
}

static void
protobuf_free (void *data, void *pointer)
{
  /* Released with the arena. */
}

static arena_block *
block_new (size_t size)
{
  arena_block *block = g_malloc (sizeof (arena_block) + size);
  block->next = NULL;
  block->size = size;
  block->used = 0;
  return block;
}

gn_arena *
gn_arena_new (void)
{
  gn_arena *arena = g_new0 (gn_arena, 1);
  arena->head = block_new (ARENA_FIRST_BLOCK);
  arena->next_size = ARENA_FIRST_BLOCK * 2;
  arena->protobuf.alloc = protobuf_alloc;
  arena->protobuf.free = protobuf_free;
  arena->protobuf.allocator_data = arena;
  return arena;
}

void
gn_arena_free (gn_arena *arena)
{
  if (arena == NULL)
    return;
  arena_block *block = arena->head;
  while (block != NULL) {
    arena_block *next = block->next;
    g_free (block);
    block = next;
  }
  g_free (arena);
}

void
gn_arena_reset (gn_arena *arena)
{
  arena_block *block = arena->head;
  while (block->next != NULL) {
    arena_block *next = block->next;
    g_free (block);
    block = next;
  }
  block->used = 0;
  arena->head = block;
  arena->next_size = ARENA_FIRST_BLOCK * 2;
  arena->total_used = 0;
}

void *
gn_arena_alloc (gn_arena *arena, size_t size)
{
  size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (rounded == 0)
    rounded = ARENA_ALIGN;
  arena_block *head = arena->head;
  if (head->size - head->used < rounded) {
    size_t block_size = arena->next_size > rounded ? arena->next_size : rounded;
    arena_block *block = block_new (block_size);
    if (rounded > arena->next_size) {
      /* An oversized block goes behind the head so the head's free space stays usable. */
      block->next = head->next;
      head->next = block;
      block->used = rounded;
      arena->total_used += rounded;
      return block->data;
    }
    block->next = head;
    arena->head = head = block;
    if (arena->next_size < ARENA_MAX_BLOCK)
      arena->next_size *= 2;
  }
  void *p = head->data + head->used;
  head->used += rounded;
  arena->total_used += rounded;
  return p;
}

void *
gn_arena_zalloc (gn_arena *arena, size_t size)
{
  void *p = gn_arena_alloc (arena, size);
  memset (p, 0, size);
  return p;
}

char *
gn_arena_strndup (gn_arena *arena, const char *s, size_t n)
{
  if (s == NULL)
    return NULL;
  char *copy = gn_arena_alloc (arena, n + 1);
  memcpy (copy, s, n);
  copy[n] = '\0';
  return copy;
}

char *
gn_arena_strdup (gn_arena *arena, const char *s)
{
  if (s == NULL)
    return NULL;
  return gn_arena_strndup (arena, s, strlen (s));
}

char *
gn_arena_vprintf (gn_arena *arena, const char *fmt, va_list ap)
{
  /* Most strings fit the stack buffer and are formatted once. */
  char small[256];
  va_list copy;
  va_copy (copy, ap);
  int n = vsnprintf (small, sizeof small, fmt, copy);
  va_end (copy);
  if (n < 0)
    return gn_arena_strdup (arena, "");
  if ((size_t)n < sizeof small)
    return gn_arena_strndup (arena, small, (size_t)n);
  char *out = gn_arena_alloc (arena, (size_t)n + 1);
  vsnprintf (out, (size_t)n + 1, fmt, ap);
  return out;
}

char *
gn_arena_printf (gn_arena *arena, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *out = gn_arena_vprintf (arena, fmt, ap);
  va_end (ap);
  return out;
}

size_t
gn_arena_used (const gn_arena *arena)
{
  return arena->total_used;
}

ProtobufCAllocator *
gn_arena_protobuf_allocator (gn_arena *arena)
{
  return &arena->protobuf;
}
