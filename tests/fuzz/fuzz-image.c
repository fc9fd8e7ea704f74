/* fuzz-image.c - the image half of the media pipeline on an upload (see fuzz-media.h).  The
 * pixel limit is checked from the header before decoding, as in production. */
#include "fuzz.h"
#include "fuzz-media.h"

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_media_setup ("image");
  /* 1 MP: enough for every seed, small enough that one run takes milliseconds. */
  fuzz_media_limits.max_pixels = 1000 * 1000;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_media_run (data, size, GN_MEDIA_KIND_IMAGE);
  return 0;
}
