/* test-media-process.c - the media pipeline on real files made at run time: libvips writes
 * the images (JPEG, PNG with alpha, WebP, animated GIF, HEIC), exiftool adds an EXIF
 * orientation and GPS position, zlib writes a decompression bomb, gst-launch-1.0 records
 * WebM and MP4 videos.  Nothing binary is checked in. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <vips/vips.h>
#include <zlib.h>

#include "media/process.h"

static char *workdir; /* every fixture and output folder, removed at the end */

/* --- helpers ----------------------------------------------------------------------------- */

static char *
fixture_path (const char *name)
{
  return g_build_filename (workdir, name, NULL);
}

static char *
new_out_dir (void)
{
  static int counter;
  char *dir = g_strdup_printf ("%s/out-%d", workdir, ++counter);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  return dir;
}

static int
count_entries (const char *dir)
{
  GDir *handle = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (handle);
  int count = 0;
  while (g_dir_read_name (handle) != NULL)
    count++;
  g_dir_close (handle);
  return count;
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  if (dir != NULL) {
    const char *name;
    while ((name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
    g_dir_close (dir);
    g_rmdir (path);
  } else {
    g_unlink (path);
  }
}

/* Runs a command (no shell) and returns its standard output. */
static char *
run (const char *const *argv)
{
  char *out = NULL, *err = NULL;
  int status = 0;
  GError *error = NULL;
  g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status,
                &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error))
    g_printerr ("%s: %s\n", argv[0], err);
  g_assert_no_error (error);
  g_free (err);
  return out;
}

/* An 8-bit sRGB image: top-left quadrant red, the rest blue; a 4th band is opaque alpha. */
static VipsImage *
quadrant_image (int width, int height, int bands)
{
  size_t size = (size_t)width * height * bands;
  guint8 *pixels = g_malloc (size);
  for (int y = 0; y < height; y++) {
    for (int x = 0; x < width; x++) {
      guint8 *p = pixels + ((size_t)y * width + x) * bands;
      gboolean red = x < width / 2 && y < height / 2;
      p[0] = red ? 255 : 0;
      p[1] = 0;
      p[2] = red ? 0 : 255;
      if (bands == 4)
        p[3] = 255;
    }
  }
  VipsImage *image
      = vips_image_new_from_memory_copy (pixels, size, width, height, bands, VIPS_FORMAT_UCHAR);
  g_free (pixels);
  image->Type = VIPS_INTERPRETATION_sRGB;
  return image;
}

static void
assert_colour_at (const char *path, double fx, double fy, int r, int g, int b)
{
  VipsImage *image = vips_image_new_from_file (path, NULL);
  g_assert_nonnull (image);
  double *pixel = NULL;
  int n = 0;
  int x = (int)(fx * image->Xsize), y = (int)(fy * image->Ysize);
  g_assert_cmpint (vips_getpoint (image, &pixel, &n, x, y, NULL), ==, 0);
  g_assert_cmpint (n, ==, 3);
  if (fabs (pixel[0] - r) > 40 || fabs (pixel[1] - g) > 40 || fabs (pixel[2] - b) > 40)
    g_error ("%s at (%d, %d): %.0f %.0f %.0f, expected %d %d %d", path, x, y, pixel[0], pixel[1],
             pixel[2], r, g, b);
  g_free (pixel);
  g_object_unref (image);
}

/* No EXIF (so no GPS), XMP, IPTC or ICC, as libvips and exiftool see the file. */
static void
assert_no_metadata (const char *path)
{
  VipsImage *image = vips_image_new_from_file (path, NULL);
  g_assert_nonnull (image);
  g_assert_cmpint (vips_image_get_typeof (image, VIPS_META_EXIF_NAME), ==, 0);
  g_assert_cmpint (vips_image_get_typeof (image, VIPS_META_XMP_NAME), ==, 0);
  g_assert_cmpint (vips_image_get_typeof (image, VIPS_META_IPTC_NAME), ==, 0);
  g_assert_cmpint (vips_image_get_typeof (image, VIPS_META_ICC_NAME), ==, 0);
  g_object_unref (image);

  const char *argv[]
      = { "exiftool",         "-s", "-s", "-s", "-EXIF:all", "-GPS:all", "-XMP:all", "-IPTC:all",
          "-ICC_Profile:all", path, NULL };
  g_autofree char *tags = run (argv);
  g_assert_cmpstr (tags, ==, "");
}

static void
assert_file_matches (const gn_media_variant *variant)
{
  g_autofree char *bytes = NULL;
  gsize length = 0;
  g_assert_true (g_file_get_contents (variant->path, &bytes, &length, NULL));
  g_assert_cmpint ((int64_t)length, ==, variant->size);
  g_autofree char *digest
      = g_compute_checksum_for_data (G_CHECKSUM_SHA256, (guchar *)bytes, length);
  g_assert_cmpstr (digest, ==, variant->sha256);
}

static void
assert_variant (const gn_media_result *result, int index, const char *name, int width, int height)
{
  const gn_media_variant *variant = &result->variants[index];
  g_assert_cmpstr (variant->name, ==, name);
  g_assert_nonnull (variant->path);
  g_assert_cmpint (variant->width, ==, width);
  g_assert_cmpint (variant->height, ==, height);
  assert_file_matches (variant);
  if (strcmp (variant->content_type, "image/jpeg") == 0) {
    VipsImage *image = vips_image_new_from_file (variant->path, NULL);
    g_assert_nonnull (image);
    g_assert_cmpint (image->Xsize, ==, width);
    g_assert_cmpint (image->Ysize, ==, height);
    g_assert_cmpint (image->Bands, ==, 3);
    g_object_unref (image);
    assert_no_metadata (variant->path);
  }
}

static void
sniff_ok (const char *path, gn_media_type *type, const char *expected)
{
  GError *error = NULL;
  g_assert_true (gn_media_sniff (path, type, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (type->content_type, ==, expected);
}

/* Sniffs and processes with the given limits; the result must be cleared by the caller. */
static gboolean
process_file (const char *path, const gn_media_limits *limits, const char *out_dir,
              gn_media_result *result, GError **error)
{
  gn_media_type type;
  if (!gn_media_sniff (path, &type, error))
    return FALSE;
  return gn_media_process (path, &type, limits, out_dir, result, error);
}

static long
status_kib (const char *field)
{
  g_autofree char *status = NULL;
  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  const char *line = strstr (status, field);
  g_assert_nonnull (line);
  return strtol (line + strlen (field), NULL, 10);
}

/* Under AddressSanitizer (quarantine, shadow memory) or valgrind the process's memory is the
 * tool's, not the pipeline's: the memory bounds are then not measured. */
static gboolean
memory_is_measurable (void)
{
#ifdef __SANITIZE_ADDRESS__
  return FALSE;
#else
  const char *preload = g_getenv ("LD_PRELOAD");
  return preload == NULL || strstr (preload, "vgpreload") == NULL;
#endif
}

/* Resets VmHWM to the current RSS (Linux clear_refs 5); returns that RSS in KiB. */
static long
reset_peak_rss (void)
{
  FILE *f = fopen ("/proc/self/clear_refs", "w");
  g_assert_nonnull (f);
  fputs ("5", f);
  fclose (f);
  return status_kib ("VmRSS:");
}

static void
save_or_fail (int status)
{
  if (status != 0)
    g_error ("libvips: %s", vips_error_buffer ());
}

/* --- blurhash ------------------------------------------------------------------------------ */

typedef guint8 (*channel_fn) (int x, int y, int channel);

static void
encode_generated (int width, int height, channel_fn fn, int nx, int ny, char out[64])
{
  g_autofree guint8 *rgb = g_malloc ((size_t)width * height * 3);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      for (int c = 0; c < 3; c++)
        rgb[(y * width + x) * 3 + c] = fn (x, y, c);
  gn_blurhash_encode (rgb, width, height, width * 3, nx, ny, out);
}

static guint8
gradient (int x, int y, int c)
{
  return c == 0 ? 255 - x * 8 : c == 1 ? 255 - y * 10 : 128;
}

static guint8
uniform (int x, int y, int c)
{
  return c == 0 ? 40 : c == 1 ? 120 : 200;
}

static guint8
quadrant (int x, int y, int c)
{
  gboolean red = x < 16 && y < 12;
  return c == 0 ? (red ? 255 : 0) : c == 1 ? 0 : (red ? 0 : 255);
}

/* Expected strings come from woltapp's encoder on npm (blurhash 2.0.5) run on the same
 * generated pixels.  That port scales the AC terms by their largest signed value where the C
 * and Swift originals take the largest magnitude; in these images the largest-magnitude AC
 * term is positive, so both definitions give the same string. */
static void
test_blurhash_reference (void)
{
  char hash[64];
  encode_generated (32, 24, gradient, 4, 3, hash);
  g_assert_cmpstr (hash, ==, "L;Hx}{|_$5xGq8odjtkAgcfjfQfj");
  encode_generated (32, 32, uniform, 4, 3, hash);
  g_assert_cmpstr (hash, ==, "L54r1CpMfQpMpMflfQflfQfQfQfQ");
  encode_generated (32, 24, quadrant, 4, 3, hash);
  g_assert_cmpstr (hash, ==, "LtFwRn|UsRJr|U;un~N|sRsRjsa}");
  encode_generated (32, 24, gradient, 1, 1, hash);
  g_assert_cmpstr (hash, ==, "00Hx}{");
}

/* --- sniffing --------------------------------------------------------------------------- */

static void
test_sniff_refuses_by_content (void)
{
  gn_media_type type;
  GError *error = NULL;

  g_autofree char *text = fixture_path ("holiday.jpg");
  g_assert_true (g_file_set_contents (text, "just some words, not a photo\n", -1, NULL));
  g_assert_false (gn_media_sniff (text, &type, &error));
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED);
  g_assert_cmpstr (error->message, ==, "text/plain is not a supported image or video type");
  g_clear_error (&error);

  g_autofree char *empty = fixture_path ("empty.png");
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));
  g_assert_false (gn_media_sniff (empty, &type, &error));
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED);
  g_clear_error (&error);

  /* An AVIF still is HEIF with another codec: refused by type, as decided. */
  VipsImage *image = quadrant_image (64, 48, 3);
  g_autofree char *avif = fixture_path ("still.avif");
  if (vips_heifsave (image, avif, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL) == 0) {
    g_assert_false (gn_media_sniff (avif, &type, &error));
    g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED);
    g_assert_cmpstr (error->message, ==, "image/avif is not a supported image or video type");
    g_clear_error (&error);
  } else {
    vips_error_clear ();
  }
  g_object_unref (image);

  /* Generic Matroska and QuickTime are refused; WebM and MP4 are not. */
  struct {
    const char *name, *mux, *expected;
  } videos[] = {
    { "clip.mkv", "matroskamux", "video/x-matroska" },
    { "clip.mov", "qtmux", "video/quicktime" },
  };
  for (size_t i = 0; i < G_N_ELEMENTS (videos); i++) {
    g_autofree char *path = fixture_path (videos[i].name);
    g_autofree char *location = g_strdup_printf ("location=%s", path);
    const char *argv[] = { "gst-launch-1.0",
                           "-q",
                           "videotestsrc",
                           "num-buffers=5",
                           "!",
                           "video/x-raw,width=64,height=48,framerate=10/1",
                           "!",
                           "vp8enc",
                           "deadline=1",
                           "!",
                           videos[i].mux,
                           "!",
                           "filesink",
                           location,
                           NULL };
    g_free (run (argv));
    g_assert_false (gn_media_sniff (path, &type, &error));
    g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_UNSUPPORTED);
    g_autofree char *message
        = g_strdup_printf ("%s is not a supported image or video type", videos[i].expected);
    g_assert_cmpstr (error->message, ==, message);
    g_clear_error (&error);
  }

  /* An MP4 box whose size points outside the file: libmagic itself fails on it (found by
   * tests/fuzz/fuzz-sniff).  The upload is at fault: INVALID, not our FAILED. */
  static const char malformed[] = "\0\0\xfe\xff\xff\xff\0 ftypmp42@";
  g_autofree char *box = fixture_path ("box.mp4");
  g_assert_true (g_file_set_contents (box, malformed, sizeof malformed - 1, NULL));
  g_assert_false (gn_media_sniff (box, &type, &error));
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID);
  g_clear_error (&error);

  g_autofree char *missing = fixture_path ("no-such-file");
  g_assert_false (gn_media_sniff (missing, &type, &error));
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_FAILED);
  g_clear_error (&error);
}

/* --- images -------------------------------------------------------------------------------- */

static void
test_jpeg_orientation_and_privacy (void)
{
  g_autofree char *path = fixture_path ("rotated.jpg");
  VipsImage *image = quadrant_image (400, 300, 3);
  save_or_fail (vips_jpegsave (image, path, "Q", 95, NULL));
  g_object_unref (image);
  const char *exiftool[] = { "exiftool",
                             "-q",
                             "-GPSLatitude=48.8584",
                             "-GPSLatitudeRef=N",
                             "-GPSLongitude=2.2945",
                             "-GPSLongitudeRef=E",
                             "-Orientation#=6",
                             "-XMP:Creator=someone",
                             "-overwrite_original",
                             path,
                             NULL };
  g_free (run (exiftool));
  const char *check[]
      = { "exiftool", "-s", "-s", "-s", "-n", "-GPSLatitude", "-Orientation", path, NULL };
  g_autofree char *tags = run (check);
  g_assert_cmpstr (tags, ==, "48.8584\n6\n");

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);

  g_assert_cmpstr (result.type.content_type, ==, "image/jpeg");
  g_assert_cmpint (result.width, ==, 300);
  g_assert_cmpint (result.height, ==, 400);
  assert_variant (&result, 0, "original", 300, 400);
  assert_variant (&result, 1, "medium", 300, 400); /* never enlarged */
  assert_variant (&result, 2, "thumbnail", 320, 320);
  g_assert_cmpint (strlen (result.blurhash), ==, 28);
  g_assert_cmpint (count_entries (out_dir), ==, 3);

  /* Orientation 6 means "rotate 90 degrees clockwise to view": the stored top-left quadrant
   * is shown at the top right. */
  assert_colour_at (result.variants[0].path, 0.75, 0.25, 255, 0, 0);
  assert_colour_at (result.variants[0].path, 0.25, 0.25, 0, 0, 255);
  assert_colour_at (result.variants[0].path, 0.75, 0.75, 0, 0, 255);
  assert_colour_at (result.variants[2].path, 0.9, 0.1, 255, 0, 0);
  assert_colour_at (result.variants[2].path, 0.1, 0.9, 0, 0, 255);
  gn_media_result_clear (&result);
}

static void
test_large_jpeg_sizes_and_memory (void)
{
  g_autofree char *path = fixture_path ("large.jpg");
  VipsImage *image = quadrant_image (4000, 3000, 3);
  save_or_fail (vips_jpegsave (image, path, "Q", 90, NULL));
  g_object_unref (image);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  limits.original_max_side = 2048;
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;

  long rss_before = reset_peak_rss ();
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  long growth_kib = status_kib ("VmHWM:") - rss_before;
  g_test_message ("12 MP JPEG: peak RSS grew by %ld KiB", growth_kib);
  if (memory_is_measurable ())
    g_assert_cmpint (growth_kib, <, 64 * 1024);

  g_assert_cmpint (result.width, ==, 4000);
  g_assert_cmpint (result.height, ==, 3000);
  assert_variant (&result, 0, "original", 2048, 1536);
  assert_variant (&result, 1, "medium", 1080, 810);
  assert_variant (&result, 2, "thumbnail", 320, 320);
  assert_colour_at (result.variants[1].path, 0.25, 0.25, 255, 0, 0);
  assert_colour_at (result.variants[1].path, 0.75, 0.75, 0, 0, 255);
  gn_media_result_clear (&result);
}

static void
test_png_alpha_on_white (void)
{
  g_autofree char *path = fixture_path ("alpha.png");
  VipsImage *image = quadrant_image (200, 100, 4);
  /* Make the left half fully transparent (its colour must not show through). */
  size_t size = 0;
  guint8 *pixels = vips_image_write_to_memory (image, &size);
  for (int y = 0; y < 100; y++)
    for (int x = 0; x < 100; x++)
      pixels[(y * 200 + x) * 4 + 3] = 0;
  VipsImage *transparent
      = vips_image_new_from_memory_copy (pixels, size, 200, 100, 4, VIPS_FORMAT_UCHAR);
  transparent->Type = VIPS_INTERPRETATION_sRGB;
  g_free (pixels);
  save_or_fail (vips_pngsave (transparent, path, NULL));
  g_object_unref (transparent);
  g_object_unref (image);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (result.type.content_type, ==, "image/png");
  assert_variant (&result, 0, "original", 200, 100);
  assert_colour_at (result.variants[0].path, 0.25, 0.25, 255, 255, 255);
  assert_colour_at (result.variants[0].path, 0.75, 0.75, 0, 0, 255);
  gn_media_result_clear (&result);
}

static void
test_webp (void)
{
  g_autofree char *path = fixture_path ("photo.webp");
  VipsImage *image = quadrant_image (1600, 1200, 3);
  save_or_fail (vips_webpsave (image, path, NULL));
  g_object_unref (image);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (result.type.content_type, ==, "image/webp");
  /* Larger than the medium: a second pass over a non-JPEG upload. */
  assert_variant (&result, 0, "original", 1600, 1200);
  assert_variant (&result, 1, "medium", 1080, 810);
  assert_variant (&result, 2, "thumbnail", 320, 320);
  assert_colour_at (result.variants[0].path, 0.25, 0.25, 255, 0, 0);
  gn_media_result_clear (&result);
}

static void
test_animated_gif_first_frame (void)
{
  /* Two 120 x 90 frames stacked: red first, then green. */
  int width = 120, height = 90;
  size_t size = (size_t)width * height * 2 * 3;
  g_autofree guint8 *pixels = g_malloc0 (size);
  for (size_t i = 0; i < size / 2; i += 3)
    pixels[i] = 255;
  for (size_t i = size / 2; i < size; i += 3)
    pixels[i + 1] = 255;
  VipsImage *frames
      = vips_image_new_from_memory_copy (pixels, size, width, height * 2, 3, VIPS_FORMAT_UCHAR);
  frames->Type = VIPS_INTERPRETATION_sRGB;
  vips_image_set_int (frames, VIPS_META_PAGE_HEIGHT, height);
  g_autofree char *path = fixture_path ("anim.gif");
  save_or_fail (vips_gifsave (frames, path, NULL));
  g_object_unref (frames);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (result.type.content_type, ==, "image/gif");
  assert_variant (&result, 0, "original", width, height);
  assert_colour_at (result.variants[0].path, 0.5, 0.5, 255, 0, 0);
  gn_media_result_clear (&result);
}

static void
test_heic (void)
{
  g_autofree char *path = fixture_path ("photo.heic");
  VipsImage *image = quadrant_image (640, 480, 3);
  int saved = vips_heifsave (image, path, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_HEVC, NULL);
  g_object_unref (image);
  if (saved != 0) {
    g_test_skip_printf ("libvips cannot write HEIC here: %s", vips_error_buffer ());
    vips_error_clear ();
    return;
  }

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (result.type.content_type, ==, "image/heic");
  assert_variant (&result, 0, "original", 640, 480);
  assert_variant (&result, 2, "thumbnail", 320, 320);
  assert_colour_at (result.variants[0].path, 0.25, 0.25, 255, 0, 0);
  assert_colour_at (result.variants[0].path, 0.75, 0.75, 0, 0, 255);
  gn_media_result_clear (&result);
}

/* libvips g_warning()s about a broken file fed to it on purpose ("error in tile ..."):
 * expected, so not fatal; every other warning still is. */
static gboolean
vips_warnings_are_not_fatal (const char *domain, GLogLevelFlags level, const char *message,
                             gpointer data)
{
  return g_strcmp0 (domain, "VIPS") != 0 || (level & G_LOG_LEVEL_WARNING) == 0;
}

static void
test_truncated_jpeg_is_invalid (void)
{
  /* GLib resets the handler before each test case. */
  g_test_log_set_fatal_handler (vips_warnings_are_not_fatal, NULL);
  /* Noise, so the entropy-coded data is long and the cut falls inside it. */
  VipsImage *noise = NULL;
  save_or_fail (vips_gaussnoise (&noise, 800, 600, "mean", 128.0, "sigma", 40.0, NULL));
  VipsImage *bytes = NULL;
  save_or_fail (vips_cast_uchar (noise, &bytes, NULL));
  void *jpeg = NULL;
  size_t length = 0;
  save_or_fail (vips_jpegsave_buffer (bytes, &jpeg, &length, NULL));
  g_object_unref (bytes);
  g_object_unref (noise);
  g_autofree char *path = fixture_path ("truncated.jpg");
  g_assert_true (g_file_set_contents (path, jpeg, (gssize)(length * 6 / 10), NULL));
  g_free (jpeg);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_false (process_file (path, &limits, out_dir, &result, &error));
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_INVALID);
  g_test_message ("truncated JPEG: %s", error->message);
  g_clear_error (&error);
  g_assert_cmpint (count_entries (out_dir), ==, 0);
}

static void
write_png_chunk (FILE *f, const char *type, const guint8 *data, guint32 length)
{
  guint8 header[8]
      = { length >> 24, length >> 16, length >> 8, length, type[0], type[1], type[2], type[3] };
  fwrite (header, 1, 8, f);
  if (length > 0)
    fwrite (data, 1, length, f);
  uLong crc = crc32 (0, header + 4, 4);
  crc = crc32 (crc, data, length);
  guint8 trailer[4] = { crc >> 24, crc >> 16, crc >> 8, crc };
  fwrite (trailer, 1, 4, f);
}

/* A valid 1-bit greyscale PNG of width x height white pixels: ~100 KiB on disk for
 * 30000 x 30000, 900 MB once decoded to 8 bits. */
static void
write_png_bomb (const char *path, guint32 width, guint32 height)
{
  FILE *f = fopen (path, "wb");
  g_assert_nonnull (f);
  fwrite ("\x89PNG\r\n\x1a\n", 1, 8, f);
  guint8 ihdr[13] = { width >> 24,
                      width >> 16,
                      width >> 8,
                      width,
                      height >> 24,
                      height >> 16,
                      height >> 8,
                      height,
                      1 /* bit depth */,
                      0 /* grey */,
                      0,
                      0,
                      0 };
  write_png_chunk (f, "IHDR", ihdr, sizeof ihdr);

  size_t row_length = 1 + (width + 7) / 8;
  g_autofree guint8 *row = g_malloc (row_length);
  memset (row, 0xff, row_length);
  row[0] = 0; /* filter: none */
  g_autofree guint8 *out = g_malloc (64 * 1024);
  z_stream z = { 0 };
  g_assert_cmpint (deflateInit (&z, 9), ==, Z_OK);
  for (guint32 y = 0; y <= height; y++) {
    gboolean last = y == height;
    z.next_in = last ? NULL : row;
    z.avail_in = last ? 0 : row_length;
    do {
      z.next_out = out;
      z.avail_out = 64 * 1024;
      deflate (&z, last ? Z_FINISH : Z_NO_FLUSH);
      guint32 produced = 64 * 1024 - z.avail_out;
      if (produced > 0)
        write_png_chunk (f, "IDAT", out, produced);
    } while (z.avail_out == 0);
  }
  deflateEnd (&z);
  write_png_chunk (f, "IEND", NULL, 0);
  fclose (f);
}

static void
test_decompression_bomb_refused_from_header (void)
{
  g_autofree char *path = fixture_path ("bomb.png");
  write_png_bomb (path, 30000, 30000);
  struct stat st;
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_test_message ("30000 x 30000 PNG: %ld bytes on disk", (long)st.st_size);
  g_assert_cmpint (st.st_size, <, 1024 * 1024);

  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  long rss_before = reset_peak_rss ();
  gint64 start = g_get_monotonic_time ();
  g_assert_false (process_file (path, &limits, out_dir, &result, &error));
  gint64 elapsed_us = g_get_monotonic_time () - start;
  long growth_kib = status_kib ("VmHWM:") - rss_before;
  g_test_message ("bomb refused in %" G_GINT64_FORMAT " us, peak RSS +%ld KiB", elapsed_us,
                  growth_kib);
  g_assert_error (error, GN_MEDIA_ERROR, GN_MEDIA_ERROR_TOO_LARGE);
  g_assert_cmpstr (error->message, ==,
                   "image is 30000 x 30000 pixels; the limit is 100 megapixels");
  g_clear_error (&error);
  g_assert_cmpint (elapsed_us, <, 500 * 1000);
  if (memory_is_measurable ())
    g_assert_cmpint (growth_kib, <, 8 * 1024);
  g_assert_cmpint (count_entries (out_dir), ==, 0);
}

/* --- videos -------------------------------------------------------------------------------- */

static char *
record_video (const char *name, const char *encoder, const char *muxer, gboolean with_audio)
{
  char *path = fixture_path (name);
  g_autofree char *location = g_strdup_printf ("location=%s", path);
  GPtrArray *argv = g_ptr_array_new ();
  const char *video[] = { "gst-launch-1.0",
                          "-q",
                          "-e",
                          "videotestsrc",
                          "num-buffers=60",
                          "!",
                          "video/x-raw,width=320,height=240,framerate=30/1",
                          "!",
                          encoder,
                          "!",
                          muxer,
                          "name=mux",
                          "!",
                          "filesink",
                          location };
  for (size_t i = 0; i < G_N_ELEMENTS (video); i++)
    g_ptr_array_add (argv, (char *)video[i]);
  if (with_audio) {
    const char *audio[]
        = { "audiotestsrc", "num-buffers=86", "!", "audioconvert", "!", "avenc_aac", "!", "mux." };
    for (size_t i = 0; i < G_N_ELEMENTS (audio); i++)
      g_ptr_array_add (argv, (char *)audio[i]);
  }
  g_ptr_array_add (argv, NULL);
  g_free (run ((const char *const *)argv->pdata));
  g_ptr_array_free (argv, TRUE);
  return path;
}

static void
check_video (const char *path, const char *content_type)
{
  gn_media_limits limits;
  gn_media_limits_init (&limits);
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  gint64 start = g_get_monotonic_time ();
  g_assert_true (process_file (path, &limits, out_dir, &result, &error));
  g_assert_no_error (error);
  g_test_message ("%s processed in %" G_GINT64_FORMAT " ms", content_type,
                  (g_get_monotonic_time () - start) / 1000);

  g_assert_cmpstr (result.type.content_type, ==, content_type);
  g_assert_cmpint (result.duration_ms, >=, 1900);
  g_assert_cmpint (result.duration_ms, <=, 2100);
  g_assert_cmpint (result.width, ==, 320);
  g_assert_cmpint (result.height, ==, 240);
  g_assert_cmpstr (result.variants[0].path, ==, path);
  g_assert_cmpstr (result.variants[0].content_type, ==, content_type);
  assert_variant (&result, 0, "original", 320, 240);
  assert_variant (&result, 1, "medium", 320, 240);
  assert_variant (&result, 2, "thumbnail", 320, 320);
  g_assert_cmpint (strlen (result.blurhash), ==, 28);
  g_assert_cmpint (count_entries (out_dir), ==, 2);
  /* videotestsrc's colour bars: white on the far left, blue on the far right of the top. */
  assert_colour_at (result.variants[1].path, 0.05, 0.3, 255, 255, 255);
  assert_colour_at (result.variants[1].path, 0.95, 0.3, 0, 0, 255);
  gn_media_result_clear (&result);
}

static void
test_webm (void)
{
  g_autofree char *path = record_video ("clip.webm", "vp8enc", "webmmux", FALSE);
  check_video (path, "video/webm");
}

static void
test_mp4_with_audio (void)
{
  g_autofree char *path = record_video ("clip.mp4", "x264enc", "mp4mux", TRUE);
  check_video (path, "video/mp4");
}

static void
expect_video_error (const char *path, gint64 max_video_ms, int code, const char *message)
{
  gn_media_limits limits;
  gn_media_limits_init (&limits);
  limits.max_video_ms = max_video_ms;
  g_autofree char *out_dir = new_out_dir ();
  gn_media_result result;
  GError *error = NULL;
  g_assert_false (process_file (path, &limits, out_dir, &result, &error));
  g_assert_error (error, GN_MEDIA_ERROR, code);
  g_test_message ("%s: %s", path, error->message);
  if (message != NULL)
    g_assert_cmpstr (error->message, ==, message);
  g_clear_error (&error);
  g_assert_cmpint (count_entries (out_dir), ==, 0);
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
}

static void
test_video_over_limit (void)
{
  g_autofree char *path = record_video ("long.webm", "vp8enc", "webmmux", FALSE);
  expect_video_error (path, 1000, GN_MEDIA_ERROR_TOO_LARGE, "video is 2 s long; the limit is 1 s");
}

static void
test_audio_only_is_invalid (void)
{
  g_autofree char *webm = fixture_path ("voice.webm");
  g_autofree char *webm_location = g_strdup_printf ("location=%s", webm);
  const char *vorbis[] = { "gst-launch-1.0",
                           "-q",
                           "audiotestsrc",
                           "num-buffers=40",
                           "!",
                           "audioconvert",
                           "!",
                           "vorbisenc",
                           "!",
                           "webmmux",
                           "!",
                           "filesink",
                           webm_location,
                           NULL };
  g_free (run (vorbis));
  g_autofree char *mp4 = fixture_path ("voice.mp4");
  g_autofree char *mp4_location = g_strdup_printf ("location=%s", mp4);
  const char *aac[] = { "gst-launch-1.0",
                        "-q",
                        "audiotestsrc",
                        "num-buffers=40",
                        "!",
                        "audioconvert",
                        "!",
                        "avenc_aac",
                        "!",
                        "mp4mux",
                        "!",
                        "filesink",
                        mp4_location,
                        NULL };
  g_free (run (aac));

  gn_media_type type;
  sniff_ok (webm, &type, "video/webm");
  sniff_ok (mp4, &type, "video/mp4");
  expect_video_error (webm, 120000, GN_MEDIA_ERROR_INVALID,
                      "the video/webm file has no video stream that can be decoded");
  expect_video_error (mp4, 120000, GN_MEDIA_ERROR_INVALID,
                      "the video/mp4 file has no video stream that can be decoded");
}

static void
test_truncated_mp4_is_invalid (void)
{
  g_autofree char *path = record_video ("cut.mp4", "x264enc", "mp4mux", FALSE);
  g_autofree char *bytes = NULL;
  gsize length = 0;
  g_assert_true (g_file_get_contents (path, &bytes, &length, NULL));
  /* mp4mux writes the index (moov) last: half a file has frames but no index. */
  g_assert_true (g_file_set_contents (path, bytes, (gssize)length / 2, NULL));
  expect_video_error (path, 120000, GN_MEDIA_ERROR_INVALID, NULL);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  GError *error = NULL;
  g_assert_true (gn_media_init (&error));
  g_assert_no_error (error);
  workdir = g_dir_make_tmp ("test-media-process-XXXXXX", &error);
  g_assert_no_error (error);

  g_test_add_func ("/media/blurhash/reference", test_blurhash_reference);
  g_test_add_func ("/media/sniff/refuses-by-content", test_sniff_refuses_by_content);
  g_test_add_func ("/media/image/bomb", test_decompression_bomb_refused_from_header);
  g_test_add_func ("/media/image/jpeg-orientation-privacy", test_jpeg_orientation_and_privacy);
  g_test_add_func ("/media/image/large-jpeg", test_large_jpeg_sizes_and_memory);
  g_test_add_func ("/media/image/png-alpha", test_png_alpha_on_white);
  g_test_add_func ("/media/image/webp", test_webp);
  g_test_add_func ("/media/image/gif-first-frame", test_animated_gif_first_frame);
  g_test_add_func ("/media/image/heic", test_heic);
  g_test_add_func ("/media/image/truncated", test_truncated_jpeg_is_invalid);
  g_test_add_func ("/media/video/webm", test_webm);
  g_test_add_func ("/media/video/mp4-with-audio", test_mp4_with_audio);
  g_test_add_func ("/media/video/over-limit", test_video_over_limit);
  g_test_add_func ("/media/video/audio-only", test_audio_only_is_invalid);
  g_test_add_func ("/media/video/truncated", test_truncated_mp4_is_invalid);

  int status = g_test_run ();
  remove_tree (workdir);
  g_free (workdir);
  return status;
}
