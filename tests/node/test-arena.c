/* The per-request arena: alignment, growth, large blocks, reset, protobuf allocator. */
#include <stdint.h>
#include <string.h>
#include <glib.h>

#include "arena.h"
#include "auth.pb-c.h"

static void
test_alignment_and_contents (void)
{
  gn_arena *arena = gn_arena_new ();
  char *pointers[1000];
  for (int i = 0; i < 1000; i++) {
    size_t size = (size_t)(i % 37) + 1;
    pointers[i] = gn_arena_alloc (arena, size);
    g_assert_cmpuint ((uintptr_t)pointers[i] % 16, ==, 0);
    memset (pointers[i], i & 0xff, size);
  }
  /* Nothing overlapped: each allocation still holds its own byte. */
  for (int i = 0; i < 1000; i++)
    for (size_t j = 0; j < (size_t)(i % 37) + 1; j++)
      g_assert_cmpint ((unsigned char)pointers[i][j], ==, i & 0xff);
  gn_arena_free (arena);
}

static void
test_large_and_strings (void)
{
  gn_arena *arena = gn_arena_new ();
  char *small = gn_arena_strdup (arena, "before");
  char *big = gn_arena_zalloc (arena, 1 << 20);
  for (size_t i = 0; i < 1 << 20; i++)
    g_assert_cmpint (big[i], ==, 0);
  char *after = gn_arena_printf (arena, "%s-%d", "after", 42);
  g_assert_cmpstr (small, ==, "before");
  g_assert_cmpstr (after, ==, "after-42");
  g_assert_cmpstr (gn_arena_strndup (arena, "abcdef", 3), ==, "abc");
  g_assert_null (gn_arena_strdup (arena, NULL));
  g_assert_cmpuint (gn_arena_used (arena), >=, (1 << 20) + 16);
  gn_arena_free (arena);
}

static void
test_reset (void)
{
  gn_arena *arena = gn_arena_new ();
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 500; i++)
      gn_arena_strdup (arena, "some request-scoped text");
    g_assert_cmpuint (gn_arena_used (arena), >, 0);
    gn_arena_reset (arena);
    g_assert_cmpuint (gn_arena_used (arena), ==, 0);
  }
  gn_arena_free (arena);
}

static void
test_protobuf_allocator (void)
{
  Generia__Auth__V1__RegisterRequest req = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  req.username = "alice";
  req.email = "alice@example.org";
  req.password = "correct horse";
  size_t len = protobuf_c_message_get_packed_size (&req.base);
  g_autofree uint8_t *buf = g_malloc (len);
  protobuf_c_message_pack (&req.base, buf);

  gn_arena *arena = gn_arena_new ();
  Generia__Auth__V1__RegisterRequest *decoded
      = generia__auth__v1__register_request__unpack (gn_arena_protobuf_allocator (arena), len, buf);
  g_assert_nonnull (decoded);
  g_assert_cmpstr (decoded->username, ==, "alice");
  g_assert_cmpstr (decoded->email, ==, "alice@example.org");
  /* Freeing through the allocator is a no-op; the arena releases everything. */
  generia__auth__v1__register_request__free_unpacked (decoded, gn_arena_protobuf_allocator (arena));
  gn_arena_free (arena);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/arena/alignment-and-contents", test_alignment_and_contents);
  g_test_add_func ("/arena/large-and-strings", test_large_and_strings);
  g_test_add_func ("/arena/reset", test_reset);
  g_test_add_func ("/arena/protobuf-allocator", test_protobuf_allocator);
  return g_test_run ();
}
