/* arena.h - per-request bump allocator.
 *
 * Every gRPC call and every HTTP request owns one arena.  Decoded protobuf messages, response
 * messages, strings and JSON fragments are carved out of it and the whole lot is released in
 * one place when the request ends, so a handler cannot leak on any of its error paths.
 *
 * Memory comes in blocks (4 KiB first, doubling, up to 64 KiB; larger requests get a block of
 * their own).  gn_arena_protobuf_allocator() adapts the arena to protobuf-c, whose free()
 * becomes a no-op. */
#pragma once

#include <stddef.h>
#include <stdarg.h>
#include <protobuf-c/protobuf-c.h>

typedef struct gn_arena gn_arena;

gn_arena *gn_arena_new (void);
void gn_arena_free (gn_arena *arena);
/* Keeps the first block and forgets the rest: reuse for the next request. */
void gn_arena_reset (gn_arena *arena);

void *gn_arena_alloc (gn_arena *arena, size_t size); /* 16-byte aligned, never NULL */
void *gn_arena_zalloc (gn_arena *arena, size_t size);
char *gn_arena_strdup (gn_arena *arena, const char *s); /* NULL stays NULL */
char *gn_arena_strndup (gn_arena *arena, const char *s, size_t n);
char *gn_arena_printf (gn_arena *arena, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
char *gn_arena_vprintf (gn_arena *arena, const char *fmt, va_list ap)
    __attribute__ ((format (printf, 2, 0)));

/* Total bytes handed out since creation or the last reset. */
size_t gn_arena_used (const gn_arena *arena);

/* A protobuf-c allocator backed by the arena (valid while the arena lives). */
ProtobufCAllocator *gn_arena_protobuf_allocator (gn_arena *arena);
