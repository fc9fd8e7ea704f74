/* fuzz-sniff.c - gn_media_sniff: libmagic's verdict on an upload's first bytes, mapped to the
 * types the media pipeline accepts.
 *
 * Input: the uploaded file.  Checked: an accepted file has a kind and one of the content types
 * the rest of the pipeline knows. */
#include "fuzz.h"

#include "media/process.h"

static char *path;

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_autofree char *dir = g_dir_make_tmp ("fuzz-sniff-XXXXXX", NULL);
  path = g_build_filename (dir, "upload", NULL);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const char *const known[] = { "image/jpeg", "image/png",  "image/webp", "image/gif",
                                       "image/heic", "image/heif", "video/mp4",  "video/webm" };
  gn_media_type type;
  GError *error = NULL;

  fuzz_write_file (path, data, size);
  if (gn_media_sniff (path, &type, &error)) {
    FUZZ_ASSERT (type.kind == GN_MEDIA_KIND_IMAGE || type.kind == GN_MEDIA_KIND_VIDEO);
    gboolean listed = FALSE;
    for (size_t i = 0; i < G_N_ELEMENTS (known); i++)
      listed = listed || strcmp (type.content_type, known[i]) == 0;
    FUZZ_ASSERT (listed);
    FUZZ_ASSERT ((type.kind == GN_MEDIA_KIND_VIDEO)
                 == g_str_has_prefix (type.content_type, "video/"));
  } else {
    FUZZ_ASSERT (error != NULL && error->domain == GN_MEDIA_ERROR);
    FUZZ_ASSERT (error->code != GN_MEDIA_ERROR_FAILED);
    g_error_free (error);
  }
  return 0;
}
