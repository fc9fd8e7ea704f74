/* image.h - the libvips half of the media pipeline, shared by process.c and video.c.
 *
 * Not a public interface: process.h is.  The functions fill a gn_media_result and report
 * errors in the GN_MEDIA_ERROR domain; on failure they may leave variant files already
 * written (their paths are in the result), which gn_media_process removes. */
#pragma once

#include <stddef.h>
#include <vips/vips.h>

#include "process.h"

/* Index of each variant in gn_media_result.variants. */
enum {
  GN_MEDIA_VARIANT_ORIGINAL,
  GN_MEDIA_VARIANT_MEDIUM,
  GN_MEDIA_VARIANT_THUMBNAIL,
};

/* The whole image path: header check, orientation, sRGB, the three variants, blurhash. */
gboolean gn_media_image_process (const char *input, const gn_media_type *type,
                                 const gn_media_limits *limits, const char *out_dir,
                                 gn_media_result *result, GError **error);

/* Medium and thumbnail variants and the blurhash, from a master picture already upright,
 * sRGB, 3 bands of 8 bits and without metadata, given as JPEG bytes (the image's original
 * variant, or a video's poster frame). */
gboolean gn_media_derive_variants (const void *master_jpeg, size_t master_len,
                                   const gn_media_limits *limits, const char *out_dir,
                                   gn_media_result *result, GError **error);

/* Encodes an sRGB 8-bit 3-band image as a JPEG without metadata; FALSE with the libvips
 * message in *error (code `code`) when the pixels cannot be computed. */
gboolean gn_media_encode_jpeg (VipsImage *image, int quality, gboolean interlace, void **bytes,
                               size_t *length, int code, GError **error);

/* Lowercase hex SHA-256 of bytes. */
void gn_media_sha256_hex (const void *bytes, size_t length, char out[65]);
