/* image.c - photos through libvips: refuse what is too large, then make three clean JPEGs.
 *
 * The upload is opened with the loader of its sniffed type only (never by libvips guessing
 * again), with sequential access and fail_on=error, so a truncated or corrupt file fails
 * instead of coming out half grey.  Opening reads the header alone: width x height (the first
 * page of an animated GIF/WebP, the primary image of a HEIF) is checked against max_pixels
 * before any pixel is decoded, so a 30000 x 30000 PNG of a few kilobytes costs nothing.
 *
 * Each variant larger than the thumbnail is one pass over the upload: vips_thumbnail_image
 * caps the long side (for a JPEG much larger than that, libjpeg's shrink-on-load does most of
 * the work: the medium pass of a 12 MP photo decodes it at half size), applies the EXIF
 * orientation and converts an embedded ICC profile to sRGB; then alpha is flattened on white
 * and the result is encoded with strip=TRUE, which drops EXIF (GPS included), XMP, IPTC and
 * ICC.  The pipeline streams through libvips' sequential line cache; what costs memory is
 * libjpeg's progressive/optimised encoder, which holds every DCT coefficient of the image
 * (2 bytes x 1.5 samples per pixel at 4:2:0: 36 MB for a 12 MP original), and a rotation
 * (orientation 5-8), which needs the capped image in memory once (36 MB more at 12 MP).
 * The medium is not decoded from the progressive original for the same reason.
 *
 * Everything is encoded into memory first and written afterwards: a failure while encoding
 * means the upload's pixels did not decode (GN_MEDIA_ERROR_INVALID), a failure while writing
 * is ours (GN_MEDIA_ERROR_FAILED), and the file name can carry the content's SHA-256.
 *
 * The thumbnail and the blurhash come from the medium JPEG (or a video's poster frame) with
 * vips_thumbnail_buffer: small, already upright, already sRGB.  A medium that would not be
 * smaller than the original is the original's bytes, not a second lossy generation.
 *
 * Files are named <variant>-<sha256>.jpg in out_dir and written with GLib's consistent write
 * (a temporary file renamed into place), so no partial file is ever visible under a final
 * name. */
#include "image.h"

#include <string.h>

#define ORIGINAL_QUALITY 85
#define MEDIUM_QUALITY 85
#define THUMBNAIL_QUALITY 80
#define BLURHASH_SIDE 32
#define BLURHASH_X_COMPONENTS 4
#define BLURHASH_Y_COMPONENTS 3

/* The largest JPEG shrink-on-load factor libjpeg offers. */
#define MAX_JPEG_SHRINK 8

/* libvips 8.14 keeps one error buffer for the whole process, appended to by every thread and
 * also by operations that recovered.  Its last line is the most recent failure: ours, unless
 * another worker failed at the same instant, which can only garble the text, never the code. */
static void
set_vips_error (GError **error, int code, const char *what)
{
  g_autofree char *buffer = vips_error_buffer_copy ();
  g_strstrip (buffer);
  const char *last_line = strrchr (buffer, '\n');
  const char *detail = last_line != NULL ? last_line + 1 : buffer;
  g_set_error (error, GN_MEDIA_ERROR, code, "%s: %s", what,
               detail[0] != '\0' ? detail : "unknown libvips error");
}

static void
release_images (VipsImage **images, size_t count)
{
  for (size_t i = 0; i < count; i++)
    g_clear_object (&images[i]);
}

void
gn_media_sha256_hex (const void *bytes, size_t length, char out[65])
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (checksum, bytes, (gssize)length);
  g_strlcpy (out, g_checksum_get_string (checksum), 65);
}

gboolean
gn_media_encode_jpeg (VipsImage *image, int quality, gboolean interlace, void **bytes,
                      size_t *length, int code, GError **error)
{
  if (vips_jpegsave_buffer (image, bytes, length, "Q", quality, "strip", TRUE, "optimize_coding",
                            TRUE, "interlace", interlace, NULL)
      != 0) {
    set_vips_error (error, code, "the image does not decode");
    return FALSE;
  }
  return TRUE;
}

/* Writes out_dir/<name>-<sha256>.jpg and fills the variant. */
static gboolean
write_variant (gn_media_variant *variant, const char *name, const void *bytes, size_t length,
               int width, int height, const char *out_dir, GError **error)
{
  g_strlcpy (variant->name, name, sizeof variant->name);
  gn_media_sha256_hex (bytes, length, variant->sha256);
  g_autofree char *file_name = g_strdup_printf ("%s-%s.jpg", name, variant->sha256);
  char *path = g_build_filename (out_dir, file_name, NULL);
  GError *local_error = NULL;
  if (!g_file_set_contents_full (path, bytes, (gssize)length, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                 &local_error)) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED, "writing the %s variant: %s", name,
                 local_error->message);
    g_error_free (local_error);
    g_free (path);
    return FALSE;
  }
  variant->path = path;
  g_strlcpy (variant->content_type, "image/jpeg", sizeof variant->content_type);
  variant->width = width;
  variant->height = height;
  variant->size = (int64_t)length;
  return TRUE;
}

static gboolean
blurhash_of (const void *master_jpeg, size_t master_len, char out[64], GError **error)
{
  VipsImage *tiny = NULL;
  if (vips_thumbnail_buffer ((void *)master_jpeg, master_len, &tiny, BLURHASH_SIDE, "height",
                             BLURHASH_SIDE, NULL)
      != 0) {
    set_vips_error (error, GN_MEDIA_ERROR_FAILED, "blurhash");
    return FALSE;
  }
  size_t size = 0;
  unsigned char *rgb = vips_image_write_to_memory (tiny, &size);
  if (rgb == NULL || tiny->Bands != 3 || tiny->BandFmt != VIPS_FORMAT_UCHAR) {
    g_free (rgb);
    g_object_unref (tiny);
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED,
                 "blurhash: the master is not 8-bit RGB");
    return FALSE;
  }
  gn_blurhash_encode (rgb, tiny->Xsize, tiny->Ysize, tiny->Xsize * 3, BLURHASH_X_COMPONENTS,
                      BLURHASH_Y_COMPONENTS, out);
  g_free (rgb);
  g_object_unref (tiny);
  return TRUE;
}

/* The thumbnail variant and the blurhash, from a clean JPEG no larger than needed. */
static gboolean
derive_thumbnail (const void *source_jpeg, size_t source_len, const gn_media_limits *limits,
                  const char *out_dir, gn_media_result *result, GError **error)
{
  VipsImage *square = NULL;
  void *bytes = NULL;
  size_t length = 0;
  if (vips_thumbnail_buffer ((void *)source_jpeg, source_len, &square, limits->thumbnail_side,
                             "height", limits->thumbnail_side, "crop", VIPS_INTERESTING_CENTRE,
                             NULL)
      != 0) {
    set_vips_error (error, GN_MEDIA_ERROR_FAILED, "thumbnail variant");
    return FALSE;
  }
  gboolean ok = gn_media_encode_jpeg (square, THUMBNAIL_QUALITY, FALSE, &bytes, &length,
                                      GN_MEDIA_ERROR_FAILED, error)
                && write_variant (&result->variants[GN_MEDIA_VARIANT_THUMBNAIL], "thumbnail", bytes,
                                  length, square->Xsize, square->Ysize, out_dir, error)
                && blurhash_of (source_jpeg, source_len, result->blurhash, error);
  g_free (bytes);
  g_object_unref (square);
  return ok;
}

gboolean
gn_media_derive_variants (const void *master_jpeg, size_t master_len, const gn_media_limits *limits,
                          const char *out_dir, gn_media_result *result, GError **error)
{
  /* The master is our own clean JPEG: a failure from here on is ours. */
  VipsImage *master = NULL;
  if (vips_jpegload_buffer ((void *)master_jpeg, master_len, &master, NULL) != 0) {
    set_vips_error (error, GN_MEDIA_ERROR_FAILED, "reading the master");
    return FALSE;
  }
  int master_width = master->Xsize, master_height = master->Ysize;
  g_object_unref (master);

  gn_media_variant *medium = &result->variants[GN_MEDIA_VARIANT_MEDIUM];
  if (MAX (master_width, master_height) <= limits->medium_side)
    return write_variant (medium, "medium", master_jpeg, master_len, master_width, master_height,
                          out_dir, error)
           && derive_thumbnail (master_jpeg, master_len, limits, out_dir, result, error);

  VipsImage *resized = NULL;
  void *bytes = NULL;
  size_t length = 0;
  if (vips_thumbnail_buffer ((void *)master_jpeg, master_len, &resized, limits->medium_side,
                             "height", limits->medium_side, "size", VIPS_SIZE_DOWN, NULL)
      != 0) {
    set_vips_error (error, GN_MEDIA_ERROR_FAILED, "medium variant");
    return FALSE;
  }
  gboolean ok = gn_media_encode_jpeg (resized, MEDIUM_QUALITY, TRUE, &bytes, &length,
                                      GN_MEDIA_ERROR_FAILED, error)
                && write_variant (medium, "medium", bytes, length, resized->Xsize, resized->Ysize,
                                  out_dir, error)
                && derive_thumbnail (bytes, length, limits, out_dir, result, error);
  g_free (bytes);
  g_object_unref (resized);
  return ok;
}

/* Opens the upload with the loader of its sniffed type; only the header is read here. */
static VipsImage *
open_upload (const char *input, const char *content_type, int jpeg_shrink)
{
  VipsImage *out = NULL;
  int status;
  if (strcmp (content_type, "image/jpeg") == 0)
    status = vips_jpegload (input, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                            VIPS_FAIL_ON_ERROR, "shrink", jpeg_shrink, NULL);
  else if (strcmp (content_type, "image/png") == 0)
    status = vips_pngload (input, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                           VIPS_FAIL_ON_ERROR, NULL);
  else if (strcmp (content_type, "image/webp") == 0)
    status = vips_webpload (input, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                            VIPS_FAIL_ON_ERROR, NULL);
  else if (strcmp (content_type, "image/gif") == 0)
    status = vips_gifload (input, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                           VIPS_FAIL_ON_ERROR, NULL);
  else if (strcmp (content_type, "image/heic") == 0 || strcmp (content_type, "image/heif") == 0)
    /* The primary image, never an embedded thumbnail that could show something else. */
    status = vips_heifload (input, &out, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                            VIPS_FAIL_ON_ERROR, "thumbnail", FALSE, NULL);
  else {
    vips_error ("generia", "%s is not an image type", content_type);
    status = -1;
  }
  return status == 0 ? out : NULL;
}

/* The largest power-of-two JPEG shrink-on-load that keeps the long side >= target. */
static int
jpeg_shrink_for (int width, int height, int target)
{
  int long_side = MAX (width, height);
  int shrink = 1;
  while (shrink < MAX_JPEG_SHRINK && long_side / (shrink * 2) >= target)
    shrink *= 2;
  return shrink;
}

/* sRGB, 8 bits, 3 bands, no alpha: the only shape the encoder and blurhash take. */
static VipsImage *
to_plain_srgb (VipsImage *in, VipsImage **scratch)
{
  VipsImage *current = in;
  if (vips_colourspace (current, &scratch[0], VIPS_INTERPRETATION_sRGB, NULL) != 0)
    return NULL;
  current = scratch[0];
  if (vips_image_hasalpha (current)) {
    VipsArrayDouble *white = vips_array_double_newv (3, 255.0, 255.0, 255.0);
    int status = vips_flatten (current, &scratch[1], "background", white, NULL);
    vips_area_unref (VIPS_AREA (white));
    if (status != 0)
      return NULL;
    current = scratch[1];
  }
  if (current->Bands > 3) {
    if (vips_extract_band (current, &scratch[2], 0, "n", 3, NULL) != 0)
      return NULL;
    current = scratch[2];
  }
  if (current->BandFmt != VIPS_FORMAT_UCHAR) {
    if (vips_cast_uchar (current, &scratch[3], NULL) != 0)
      return NULL;
    current = scratch[3];
  }
  return current;
}

/* One pass over the upload: decode (JPEG shrinking on load), orient, cap the long side at
 * `side`, sRGB without alpha, encode.  `header` is the upload opened once already, for its
 * size.  A failure is the upload's. */
static gboolean
encode_upload (const char *input, const gn_media_type *type, VipsImage *header, int side,
               int quality, void **bytes, size_t *length, int *width, int *height, GError **error)
{
  VipsImage *images[6] = { NULL };
  gboolean ok = FALSE;
  /* A fresh open per pass: sequential access reads the file once. */
  int shrink = strcmp (type->content_type, "image/jpeg") == 0
                   ? jpeg_shrink_for (header->Xsize, header->Ysize, side)
                   : 1;
  images[0] = open_upload (input, type->content_type, shrink);
  if (images[0] == NULL) {
    set_vips_error (error, GN_MEDIA_ERROR_INVALID, "the image cannot be read");
    goto fail;
  }
  if (vips_thumbnail_image (images[0], &images[1], side, "height", side, "size", VIPS_SIZE_DOWN,
                            NULL)
      != 0) {
    set_vips_error (error, GN_MEDIA_ERROR_INVALID, "the image cannot be processed");
    goto fail;
  }
  VipsImage *plain = to_plain_srgb (images[1], &images[2]);
  if (plain == NULL) {
    set_vips_error (error, GN_MEDIA_ERROR_INVALID, "the image cannot be converted to sRGB");
    goto fail;
  }
  /* Decoding happens here, pulled by the encoder. */
  if (!gn_media_encode_jpeg (plain, quality, TRUE, bytes, length, GN_MEDIA_ERROR_INVALID, error))
    goto fail;
  *width = plain->Xsize;
  *height = plain->Ysize;
  ok = TRUE;

fail:
  release_images (images, G_N_ELEMENTS (images));
  return ok;
}

gboolean
gn_media_image_process (const char *input, const gn_media_type *type, const gn_media_limits *limits,
                        const char *out_dir, gn_media_result *result, GError **error)
{
  VipsImage *header = NULL;
  void *bytes = NULL;
  size_t length = 0;
  int width = 0, height = 0;
  gboolean ok = FALSE;

  header = open_upload (input, type->content_type, 1);
  if (header == NULL) {
    set_vips_error (error, GN_MEDIA_ERROR_INVALID, "the image cannot be read");
    goto fail;
  }
  if ((int64_t)header->Xsize * header->Ysize > limits->max_pixels) {
    g_set_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_TOO_LARGE,
                 "image is %d x %d pixels; the limit is %g megapixels", header->Xsize,
                 header->Ysize, (double)limits->max_pixels / 1e6);
    goto fail;
  }
  gboolean swaps_sides = vips_image_get_orientation_swap (header);
  result->width = swaps_sides ? header->Ysize : header->Xsize;
  result->height = swaps_sides ? header->Xsize : header->Ysize;

  if (!encode_upload (input, type, header, limits->original_max_side, ORIGINAL_QUALITY, &bytes,
                      &length, &width, &height, error)
      || !write_variant (&result->variants[GN_MEDIA_VARIANT_ORIGINAL], "original", bytes, length,
                         width, height, out_dir, error))
    goto fail;

  /* A small image: the medium is the original, the thumbnail comes from it. */
  if (MAX (width, height) <= limits->medium_side) {
    ok = write_variant (&result->variants[GN_MEDIA_VARIANT_MEDIUM], "medium", bytes, length, width,
                        height, out_dir, error)
         && derive_thumbnail (bytes, length, limits, out_dir, result, error);
    goto fail;
  }
  /* Otherwise a second pass over the upload, not a decode of the progressive original, which
   * libjpeg can only do holding every DCT coefficient of the image (36 MB at 12 MP). */
  g_clear_pointer (&bytes, g_free);
  if (!encode_upload (input, type, header, limits->medium_side, MEDIUM_QUALITY, &bytes, &length,
                      &width, &height, error)
      || !write_variant (&result->variants[GN_MEDIA_VARIANT_MEDIUM], "medium", bytes, length, width,
                         height, out_dir, error))
    goto fail;
  ok = derive_thumbnail (bytes, length, limits, out_dir, result, error);

fail:
  g_free (bytes);
  g_clear_object (&header);
  return ok;
}
