/* pb-check.h - the text rules of proto3 checked on the wire, before protobuf-c decodes.
 *
 * proto3 requires string fields to be valid UTF-8, and protobuf-c 1.4 checks nothing: it
 * copies a string's bytes into a NUL-terminated C string and forgets the length, so a NUL
 * inside the string silently cuts it (data lost) and invalid UTF-8 reaches handlers and the
 * database.  gn_pb_check() walks the encoded message with its descriptor and refuses a string
 * field (in the message or any nested message) that holds a NUL byte or is not valid UTF-8.
 * It also bounds how deep nested messages go.  The walk only reads: one pass over the bytes,
 * bytes fields and unknown fields skipped by their length.
 *
 * The rpc layer runs it on every request message a service receives (INVALID_ARGUMENT,
 * reason "invalid_utf8" or "nul_in_string"). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <glib.h>
#include <protobuf-c/protobuf-c.h>

#define GN_PB_ERROR (gn_pb_error_quark ())
GQuark gn_pb_error_quark (void);

typedef enum {
  GN_PB_ERROR_MALFORMED,    /* not a protobuf encoding (or nested too deep) */
  GN_PB_ERROR_INVALID_UTF8, /* a string field that is not valid UTF-8 */
  GN_PB_ERROR_NUL,          /* a string field holding a NUL byte */
} gn_pb_error_code;

#define GN_PB_MAX_DEPTH 32

/* TRUE if every string field of the encoded message (len bytes) is NUL-free valid UTF-8;
 * FALSE with error (naming the field) if not. */
gboolean gn_pb_check (const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t len,
                      GError **error);

/* "invalid_utf8", "nul_in_string" or "malformed_request". */
const char *gn_pb_error_reason (const GError *error);
