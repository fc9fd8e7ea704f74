/* fuzz-pb-check.c - gn_pb_check, the proto3 string rules every request a service receives
 * passes on the wire, before protobuf-c decodes it.
 *
 * The first input byte picks the message type (a flat one and a nested one), the rest is the
 * encoded message.  Checked: a message that passes and decodes has only NUL-free valid UTF-8
 * strings, and the reason word of a refusal is one of the documented ones. */
#include "fuzz.h"

#include "pb-check.h"
#include "media.pb-c.h"
#include "post.pb-c.h"

static void
check_strings (const ProtobufCMessage *message)
{
  const ProtobufCMessageDescriptor *descriptor = message->descriptor;

  for (unsigned i = 0; i < descriptor->n_fields; i++) {
    const ProtobufCFieldDescriptor *field = &descriptor->fields[i];
    const char *base = (const char *)message + field->offset;

    if (field->type == PROTOBUF_C_TYPE_STRING && field->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)((const char *)message + field->quantifier_offset);
      char *const *values = *(char *const *const *)base;
      for (size_t j = 0; j < n; j++)
        FUZZ_ASSERT (g_utf8_validate (values[j], -1, NULL));
    } else if (field->type == PROTOBUF_C_TYPE_STRING) {
      const char *value = *(const char *const *)base;
      FUZZ_ASSERT (value == NULL || g_utf8_validate (value, -1, NULL));
    } else if (field->type == PROTOBUF_C_TYPE_MESSAGE
               && field->label != PROTOBUF_C_LABEL_REPEATED) {
      const ProtobufCMessage *child = *(const ProtobufCMessage *const *)base;
      if (child != NULL)
        check_strings (child);
    }
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const ProtobufCMessageDescriptor *const descriptors[] = {
    &generia__post__v1__create_post_request__descriptor,
    &generia__media__v1__media__descriptor,
  };
  GError *error = NULL;

  if (size == 0)
    return 0;
  const ProtobufCMessageDescriptor *descriptor = descriptors[data[0] % 2];
  data++;
  size--;
  if (!gn_pb_check (descriptor, data, size, &error)) {
    const char *reason = gn_pb_error_reason (error);
    FUZZ_ASSERT (strcmp (reason, "invalid_utf8") == 0 || strcmp (reason, "nul_in_string") == 0
                 || strcmp (reason, "malformed_request") == 0);
    g_error_free (error);
    return 0;
  }
  ProtobufCMessage *message = protobuf_c_message_unpack (descriptor, NULL, size, data);
  if (message != NULL) {
    check_strings (message);
    protobuf_c_message_free_unpacked (message, NULL);
  }
  return 0;
}
