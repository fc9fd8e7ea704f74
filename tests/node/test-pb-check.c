/* The proto3 text check on the wire (node/lib/pb-check.c): strings with a NUL or invalid UTF-8
 * are refused at any nesting level, bytes fields and unknown fields pass untouched, and
 * malformed or too deeply nested encodings are refused without protobuf-c seeing them.  The
 * encodings are written by hand, since protobuf-c cannot pack a string with a NUL. */
#include <string.h>
#include <glib.h>

#include "pb-check.h"
#include "auth.pb-c.h"
#include "media.pb-c.h"
#include "post.pb-c.h"

static void
assert_check (const ProtobufCMessageDescriptor *descriptor, const char *bytes, size_t len,
              const char *reason)
{
  g_autoptr (GError) error = NULL;
  gboolean ok = gn_pb_check (descriptor, (const uint8_t *)bytes, len, &error);

  if (reason == NULL) {
    g_assert_no_error (error);
    g_assert_true (ok);
    return;
  }
  g_assert_false (ok);
  g_assert_nonnull (error);
  g_assert_cmpstr (gn_pb_error_reason (error), ==, reason);
}

#define CHECK(descriptor, literal, reason)                                                         \
  assert_check (&(descriptor), literal, sizeof literal - 1, reason)

static void
test_packed_message_passes (void)
{
  Generia__Auth__V1__RegisterRequest req = GENERIA__AUTH__V1__REGISTER_REQUEST__INIT;
  req.username = "alice";
  req.email = "alice@example.org";
  req.password = "Пароль-пароль 👋";
  req.client_name = "Generia";
  size_t len = protobuf_c_message_get_packed_size (&req.base);
  g_autofree uint8_t *buffer = g_malloc (len);
  protobuf_c_message_pack (&req.base, buffer);
  assert_check (&generia__auth__v1__register_request__descriptor, (const char *)buffer, len, NULL);
  assert_check (&generia__auth__v1__register_request__descriptor, "", 0, NULL);
}

static void
test_strings (void)
{
  const ProtobufCMessageDescriptor *register_request
      = &generia__auth__v1__register_request__descriptor;
  /* username = "ab\0cd": protobuf-c would decode "ab". */
  CHECK (*register_request,
         "\x0a\x05"
         "ab\0cd",
         "nul_in_string");
  CHECK (*register_request,
         "\x0a\x02"
         "a\xff",
         "invalid_utf8");
  CHECK (*register_request,
         "\x12\x03"
         "\xed\xa0\x80",
         "invalid_utf8"); /* a surrogate */
  CHECK (*register_request,
         "\x0a\x02"
         "ab"
         "\x22\x02"
         "\xc3\xa9",
         NULL);
  /* An unknown length-delimited field (99) is skipped whatever it holds. */
  CHECK (*register_request,
         "\x9a\x06\x03"
         "\0\xff\0"
         "\x0a\x01"
         "a",
         NULL);
}

static void
test_nested (void)
{
  /* GetGlobalFeedRequest.page (1) -> PageRequest.cursor (3). */
  CHECK (generia__post__v1__get_global_feed_request__descriptor,
         "\x0a\x05"
         "\x1a\x03"
         "a\0b",
         "nul_in_string");
  CHECK (generia__post__v1__get_global_feed_request__descriptor,
         "\x0a\x07"
         "\x08\x14"
         "\x1a\x03"
         "abc",
         NULL);
  CHECK (generia__post__v1__get_global_feed_request__descriptor,
         "\x0a\x05"
         "\x1a\x04"
         "abc",
         "malformed_request"); /* inner length past the end */
}

static void
test_bytes_pass (void)
{
  /* UploadChunk.data (2) is bytes: NULs and any octets are fine. */
  CHECK (generia__media__v1__upload_chunk__descriptor,
         "\x12\x04"
         "\0\xff\xfe\0",
         NULL);
  /* UploadChunk.start (1).filename is a string. */
  const ProtobufCFieldDescriptor *filename = protobuf_c_message_descriptor_get_field_by_name (
      &generia__media__v1__upload_start__descriptor, "filename");
  g_assert_nonnull (filename);
  char encoded[16];
  size_t n = 0;
  encoded[n++] = 0x0a;
  encoded[n++] = 4;
  encoded[n++] = (char)(filename->id << 3 | 2);
  encoded[n++] = 2;
  encoded[n++] = 'a';
  encoded[n++] = '\0';
  assert_check (&generia__media__v1__upload_chunk__descriptor, encoded, n, "nul_in_string");
}

static void
test_malformed (void)
{
  const ProtobufCMessageDescriptor *d = &generia__auth__v1__register_request__descriptor;
  CHECK (*d, "\x0a", "malformed_request"); /* tag without length */
  CHECK (*d,
         "\x0a\x05"
         "ab",
         "malformed_request");                     /* length past the end */
  CHECK (*d, "\x08\xff\xff", "malformed_request"); /* cut varint */
  CHECK (*d, "\x00\x01", "malformed_request");     /* field number 0 */
  CHECK (*d, "\x0b\x0c", "malformed_request");     /* a group */
  CHECK (*d, "\x0d\x01\x02", "malformed_request"); /* cut fixed32 */
  CHECK (*d, "\x08\x96\x01", NULL);                /* a varint (wrong type: protobuf-c's call) */
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/pb-check/packed-message-passes", test_packed_message_passes);
  g_test_add_func ("/pb-check/strings", test_strings);
  g_test_add_func ("/pb-check/nested", test_nested);
  g_test_add_func ("/pb-check/bytes-pass", test_bytes_pass);
  g_test_add_func ("/pb-check/malformed", test_malformed);
  return g_test_run ();
}
