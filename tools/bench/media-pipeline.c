/* media-pipeline.c - the helper tools/bench/media-pipeline runs (built as
 * bench-media-pipeline, not installed).
 *
 *   bench-media-pipeline make-photo PATH WIDTH HEIGHT
 *       writes a camera-like JPEG (smooth gradients plus sensor-like noise, Q 92)
 *   bench-media-pipeline process INPUT OUT_DIR
 *       sniffs and processes INPUT with the default limits, and prints the variants and the
 *       time gn_media_process took (the script measures the whole process's wall time and
 *       peak RSS from outside) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <vips/vips.h>

#include "media/process.h"

static int
make_photo (const char *path, int width, int height)
{
  VipsImage *xy = NULL, *bands[3] = { NULL }, *rgb = NULL, *noise = NULL, *sum = NULL,
            *pixels = NULL;
  int status = -1;
  if (vips_xyz (&xy, width, height, NULL) != 0)
    goto done;
  /* Red follows x, green follows y, blue a diagonal: smooth areas like a real scene. */
  double scale_x = 255.0 / width, scale_y = 255.0 / height;
  VipsImage *x = NULL, *y = NULL;
  if (vips_extract_band (xy, &x, 0, NULL) != 0 || vips_extract_band (xy, &y, 1, NULL) != 0) {
    g_clear_object (&x);
    goto done;
  }
  int ok = vips_linear1 (x, &bands[0], scale_x, 0, NULL) == 0
           && vips_linear1 (y, &bands[1], scale_y, 0, NULL) == 0
           && vips_add (bands[0], bands[1], &bands[2], NULL) == 0;
  g_object_unref (x);
  g_object_unref (y);
  if (!ok || vips_bandjoin (bands, &rgb, 3, NULL) != 0
      || vips_gaussnoise (&noise, width, height, "mean", 0.0, "sigma", 12.0, NULL) != 0
      || vips_add (rgb, noise, &sum, NULL) != 0 || vips_cast_uchar (sum, &pixels, NULL) != 0)
    goto done;
  pixels->Type = VIPS_INTERPRETATION_sRGB;
  status = vips_jpegsave (pixels, path, "Q", 92, NULL);

done:
  if (status != 0)
    fprintf (stderr, "make-photo: %s\n", vips_error_buffer ());
  VipsImage *all[] = { xy, bands[0], bands[1], bands[2], rgb, noise, sum, pixels };
  for (size_t i = 0; i < G_N_ELEMENTS (all); i++)
    g_clear_object (&all[i]);
  return status == 0 ? 0 : 1;
}

static int
process (const char *input, const char *out_dir)
{
  GError *error = NULL;
  gn_media_limits limits;
  gn_media_limits_init (&limits);
  gn_media_type type;
  gn_media_result result;
  if (!gn_media_init (&error) || !gn_media_sniff (input, &type, &error)) {
    fprintf (stderr, "%s\n", error->message);
    return 1;
  }
  gint64 start = g_get_monotonic_time ();
  if (!gn_media_process (input, &type, &limits, out_dir, &result, &error)) {
    fprintf (stderr, "%s\n", error->message);
    return 1;
  }
  gint64 elapsed_us = g_get_monotonic_time () - start;
  printf ("%s %dx%d", type.content_type, result.width, result.height);
  if (result.duration_ms > 0)
    printf (" %.1f s", result.duration_ms / 1000.0);
  for (int i = 0; i < GN_MEDIA_VARIANTS; i++)
    printf (" | %s %dx%d %ld KiB", result.variants[i].name, result.variants[i].width,
            result.variants[i].height, (long)(result.variants[i].size / 1024));
  printf (" | gn_media_process %.0f ms\n", elapsed_us / 1000.0);
  gn_media_result_clear (&result);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc == 5 && strcmp (argv[1], "make-photo") == 0) {
    if (VIPS_INIT (argv[0]) != 0)
      return 1;
    return make_photo (argv[2], atoi (argv[3]), atoi (argv[4]));
  }
  if (argc == 4 && strcmp (argv[1], "process") == 0)
    return process (argv[2], argv[3]);
  fprintf (stderr, "usage: %s make-photo PATH WIDTH HEIGHT | process INPUT OUT_DIR\n", argv[0]);
  return 2;
}
