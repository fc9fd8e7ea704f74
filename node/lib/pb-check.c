/* pb-check.c - string fields of an encoded protobuf message checked on the wire (see
 * pb-check.h).
 *
 * Why on the wire and not on the decoded message: protobuf-c keeps a decoded string as a bare
 * C string, so after decoding "ab\0cd" looks exactly like "ab"; only the encoded bytes still
 * carry the length.  The encoding is a flat sequence of records (tag = field number << 3 |
 * wire type, then a varint, 8 or 4 bytes, or a length and that many bytes), so the walk is a
 * loop over records: the field number is looked up in the descriptor (a binary search inside
 * protobuf-c), a length-delimited record of a string field is checked with one memchr and one
 * g_utf8_validate, one of a message field is walked the same way with the field's descriptor
 * (at most GN_PB_MAX_DEPTH levels: deeper is refused before protobuf-c, which recurses, ever
 * sees it), and everything else - numbers, bytes, packed repeated numbers, unknown fields -
 * is skipped by its length.  Groups (wire types 3 and 4, proto2 only) are refused. */
#include "pb-check.h"

#include <string.h>

G_DEFINE_QUARK (gn - pb - error - quark, gn_pb_error)

typedef struct {
  const uint8_t *p;
  const uint8_t *end;
} reader;

static gboolean
read_varint (reader *r, uint64_t *value)
{
  *value = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t byte = *r->p++;

    *value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80))
      return TRUE;
  }
  return FALSE;
}

static gboolean
skip (reader *r, uint64_t n)
{
  if (n > (uint64_t)(r->end - r->p))
    return FALSE;
  r->p += n;
  return TRUE;
}

static gboolean
malformed (GError **error, const ProtobufCMessageDescriptor *descriptor, const char *why)
{
  g_set_error (error, GN_PB_ERROR, GN_PB_ERROR_MALFORMED, "%s: %s", descriptor->name, why);
  return FALSE;
}

static gboolean
walk (const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t len, int depth,
      GError **error)
{
  reader r = { data, data + len };

  if (depth > GN_PB_MAX_DEPTH)
    return malformed (error, descriptor, "messages nested too deep");
  while (r.p < r.end) {
    uint64_t tag, value;

    if (!read_varint (&r, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
      return malformed (error, descriptor, "a bad field tag");
    const ProtobufCFieldDescriptor *field
        = protobuf_c_message_descriptor_get_field (descriptor, (unsigned)(tag >> 3));

    switch (tag & 7) {
      case 0:
        if (!read_varint (&r, &value))
          return malformed (error, descriptor, "a cut varint");
        break;
      case 1:
        if (!skip (&r, 8))
          return malformed (error, descriptor, "a cut fixed64");
        break;
      case 5:
        if (!skip (&r, 4))
          return malformed (error, descriptor, "a cut fixed32");
        break;
      case 2: {
        if (!read_varint (&r, &value) || value > (uint64_t)(r.end - r.p))
          return malformed (error, descriptor, "a length past the end");
        const char *bytes = (const char *)r.p;
        r.p += value;
        if (field == NULL)
          break;
        if (field->type == PROTOBUF_C_TYPE_STRING) {
          if (memchr (bytes, '\0', value) != NULL) {
            g_set_error (error, GN_PB_ERROR, GN_PB_ERROR_NUL, "%s.%s holds a NUL byte",
                         descriptor->name, field->name);
            return FALSE;
          }
          if (!g_utf8_validate (bytes, (gssize)value, NULL)) {
            g_set_error (error, GN_PB_ERROR, GN_PB_ERROR_INVALID_UTF8, "%s.%s is not valid UTF-8",
                         descriptor->name, field->name);
            return FALSE;
          }
        } else if (field->type == PROTOBUF_C_TYPE_MESSAGE
                   && !walk (field->descriptor, (const uint8_t *)bytes, value, depth + 1, error)) {
          return FALSE;
        }
        break;
      }
      default:
        return malformed (error, descriptor, "an unsupported wire type");
    }
  }
  return TRUE;
}

gboolean
gn_pb_check (const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t len,
             GError **error)
{
  return walk (descriptor, data, len, 1, error);
}

const char *
gn_pb_error_reason (const GError *error)
{
  if (error != NULL && error->domain == GN_PB_ERROR && error->code == GN_PB_ERROR_INVALID_UTF8)
    return "invalid_utf8";
  if (error != NULL && error->domain == GN_PB_ERROR && error->code == GN_PB_ERROR_NUL)
    return "nul_in_string";
  return "malformed_request";
}
