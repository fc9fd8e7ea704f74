/* process.h - what the media service does to an uploaded file: decide its type from the
 * bytes, refuse what it must, and make the variants.
 *
 * Types accepted (decided by libmagic from the content, never from the name or the client's
 * claim): images JPEG, PNG, WebP, GIF, HEIC/HEIF; videos MP4 and WebM.  Anything else:
 * GN_MEDIA_ERROR_UNSUPPORTED.
 *
 * Images (libvips): the header is read first and an image over limits->max_pixels is refused
 * before any pixel is decoded (decompression bombs cost nothing); then EXIF orientation is
 * applied, all metadata (EXIF with GPS, XMP, IPTC, ICC after conversion to sRGB) is dropped,
 * and three JPEG variants are written into out_dir:
 *   thumbnail  square centre crop, limits->thumbnail_side (320) px
 *   medium     long side limits->medium_side (1080) px, never enlarged
 *   original   re-encoded, long side capped at limits->original_max_side
 * plus the blurhash (4x3 components) of the image.  Animated GIF/WebP keep their first frame.
 *
 * Videos (GStreamer): duration, width and height from the container; longer than
 * limits->max_video_ms is refused; the poster frame (at 1 s, or the middle of shorter videos)
 * becomes the thumbnail and medium variants as above; the original variant is the uploaded
 * file itself, unchanged.
 *
 * Memory stays bounded: libvips streams (sequential access) and its operation cache is off;
 * GStreamer decodes one frame.  Everything is reentrant: workers process in parallel. */
#pragma once

#include <stdint.h>
#include <glib.h>

#define GN_MEDIA_ERROR (gn_media_error_quark ())
GQuark gn_media_error_quark (void);

typedef enum {
  GN_MEDIA_ERROR_UNSUPPORTED, /* not an accepted type (HTTP 415) */
  GN_MEDIA_ERROR_TOO_LARGE,   /* over max_pixels or max_video_ms (HTTP 400) */
  GN_MEDIA_ERROR_INVALID,     /* claims to be an accepted type but does not decode (HTTP 400) */
  GN_MEDIA_ERROR_FAILED,      /* our side: disk full, encoder failure (HTTP 500) */
} gn_media_error_code;

typedef enum {
  GN_MEDIA_KIND_UNKNOWN,
  GN_MEDIA_KIND_IMAGE,
  GN_MEDIA_KIND_VIDEO,
} gn_media_kind;

typedef struct {
  gn_media_kind kind;
  char content_type[64]; /* "image/jpeg", "image/heic", "video/mp4", ... */
} gn_media_type;

/* Reads the first bytes of `path`. */
gboolean gn_media_sniff (const char *path, gn_media_type *type, GError **error);

typedef struct {
  int64_t max_pixels;
  int64_t max_video_ms;
  int original_max_side; /* 4096 */
  int medium_side;       /* 1080 */
  int thumbnail_side;    /* 320 */
} gn_media_limits;

/* Fills the defaults above (max_pixels 100 MP, max_video_ms 120 s). */
void gn_media_limits_init (gn_media_limits *limits);

typedef struct {
  char name[16];         /* "original", "medium", "thumbnail" */
  char *path;            /* the file written into out_dir (or the input for a video original) */
  char content_type[64]; /* "image/jpeg", or the video's type */
  int width;
  int height;
  int64_t size;
  char sha256[65]; /* hex digest of the file's bytes */
} gn_media_variant;

#define GN_MEDIA_VARIANTS 3

typedef struct {
  gn_media_type type;
  int width; /* of the upload after orientation (for a video, its frame size) */
  int height;
  int64_t duration_ms; /* videos */
  char blurhash[64];
  gn_media_variant variants[GN_MEDIA_VARIANTS]; /* original, medium, thumbnail in this order */
} gn_media_result;

/* Processes `input` (already sniffed as `type`) into variant files under out_dir, which must
 * exist.  On failure nothing is left in out_dir. */
gboolean gn_media_process (const char *input, const gn_media_type *type,
                           const gn_media_limits *limits, const char *out_dir,
                           gn_media_result *result, GError **error);
/* Frees the paths (does not delete the files). */
void gn_media_result_clear (gn_media_result *result);

/* Once per process, before any worker processes media (libvips and GStreamer init). */
gboolean gn_media_init (GError **error);

/* The blurhash of an sRGB image given as 8-bit RGB rows (exposed for tests). */
void gn_blurhash_encode (const unsigned char *rgb, int width, int height, int stride,
                         int x_components, int y_components, char out[64]);
