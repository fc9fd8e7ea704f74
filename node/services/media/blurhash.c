/* blurhash.c - the BlurHash encoder (the public algorithm of github.com/woltapp/blurhash,
 * Algorithm.md), encode side only.
 *
 * A blurhash is a tiny DCT of the image: x_components x y_components cosine factors per
 * channel, computed in linear light, written in base 83.  The first character encodes the
 * component counts, the second the largest AC magnitude, the next four the average colour in
 * sRGB (the DC term), then two characters per AC term, each channel quantised to 19 levels
 * on a square-root scale.  For 4 x 3 components that is 1 + 1 + 4 + 11 * 2 = 28 characters.
 *
 * Clients decode it into a blurred placeholder while the thumbnail loads.  The input is a
 * small (~32 px) RGB rendition: the sum is O(width * height * components), and more pixels
 * would not change the few low frequencies kept.  Arithmetic is done in double precision,
 * like the reference TypeScript encoder. */
#include <math.h>
#include <string.h>

#include "process.h"

static const char base83_digits[]
    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

#define MAX_COMPONENTS 9

static char *
encode_base83 (int value, int digits, char *out)
{
  int divisor = 1;
  for (int i = 1; i < digits; i++)
    divisor *= 83;
  for (int i = 0; i < digits; i++) {
    *out++ = base83_digits[(value / divisor) % 83];
    divisor /= 83;
  }
  return out;
}

static double
srgb_to_linear (int value)
{
  double v = value / 255.0;
  return v <= 0.04045 ? v / 12.92 : pow ((v + 0.055) / 1.055, 2.4);
}

static int
linear_to_srgb (double value)
{
  double v = fmax (0, fmin (1, value));
  if (v <= 0.0031308)
    return (int)(v * 12.92 * 255 + 0.5);
  return (int)((1.055 * pow (v, 1 / 2.4) - 0.055) * 255 + 0.5);
}

static double
sign_pow (double value, double exponent)
{
  return copysign (pow (fabs (value), exponent), value);
}

static int
quantise_ac (double value, double maximum)
{
  return (int)fmax (0, fmin (18, floor (sign_pow (value / maximum, 0.5) * 9 + 9.5)));
}

void
gn_blurhash_encode (const unsigned char *rgb, int width, int height, int stride, int x_components,
                    int y_components, char out[64])
{
  g_return_if_fail (x_components >= 1 && x_components <= MAX_COMPONENTS);
  g_return_if_fail (y_components >= 1 && y_components <= MAX_COMPONENTS);
  g_return_if_fail (width > 0 && height > 0 && rgb != NULL);
  /* 2 + 4 + 2 per AC component must fit with its terminator. */
  g_return_if_fail (6 + (x_components * y_components - 1) * 2 < 64);

  /* Linear light once per pixel, not once per pixel and component. */
  double *linear = g_new (double, (size_t)width *height * 3);
  for (int y = 0; y < height; y++)
    for (int x = 0; x < width; x++)
      for (int c = 0; c < 3; c++)
        linear[((size_t)y * width + x) * 3 + c]
            = srgb_to_linear (rgb[(size_t)y * stride + x * 3 + c]);

  double factors[MAX_COMPONENTS * MAX_COMPONENTS][3];
  for (int j = 0; j < y_components; j++) {
    for (int i = 0; i < x_components; i++) {
      double sum[3] = { 0, 0, 0 };
      for (int y = 0; y < height; y++) {
        double cos_y = cos (M_PI * j * y / height);
        for (int x = 0; x < width; x++) {
          double basis = cos (M_PI * i * x / width) * cos_y;
          const double *pixel = &linear[((size_t)y * width + x) * 3];
          for (int c = 0; c < 3; c++)
            sum[c] += basis * pixel[c];
        }
      }
      double scale = (i == 0 && j == 0 ? 1.0 : 2.0) / ((double)width * height);
      for (int c = 0; c < 3; c++)
        factors[j * x_components + i][c] = sum[c] * scale;
    }
  }
  g_free (linear);

  int ac_count = x_components * y_components - 1;
  char *p = out;
  p = encode_base83 ((x_components - 1) + (y_components - 1) * 9, 1, p);

  double maximum = 1;
  if (ac_count > 0) {
    double actual_maximum = 0;
    for (int k = 1; k <= ac_count; k++)
      for (int c = 0; c < 3; c++)
        actual_maximum = fmax (actual_maximum, fabs (factors[k][c]));
    int quantised_maximum = (int)fmax (0, fmin (82, floor (actual_maximum * 166 - 0.5)));
    maximum = (quantised_maximum + 1) / 166.0;
    p = encode_base83 (quantised_maximum, 1, p);
  } else {
    p = encode_base83 (0, 1, p);
  }

  int dc = (linear_to_srgb (factors[0][0]) << 16) + (linear_to_srgb (factors[0][1]) << 8)
           + linear_to_srgb (factors[0][2]);
  p = encode_base83 (dc, 4, p);

  for (int k = 1; k <= ac_count; k++) {
    int ac = quantise_ac (factors[k][0], maximum) * 19 * 19
             + quantise_ac (factors[k][1], maximum) * 19 + quantise_ac (factors[k][2], maximum);
    p = encode_base83 (ac, 2, p);
  }
  *p = '\0';
}
