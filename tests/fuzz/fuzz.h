/* fuzz.h - small helpers shared by the libFuzzer harnesses of tests/fuzz.
 *
 * Each harness is one fuzz-<name>.c defining LLVMFuzzerTestOneInput (and, when it needs set-up
 * once per process, LLVMFuzzerInitialize).  Harnesses must not keep state between inputs
 * beyond that set-up: libFuzzer's crash reproducers replay one input in a fresh process. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
int LLVMFuzzerInitialize (int *argc, char ***argv);

/* Sanitizer settings built into every harness (this header is included by exactly one file
 * of each), so that a reproducer replays by hand (`_build-fuzz/tests/fuzz/fuzz-NAME FILE`)
 * exactly as under tools/fuzz.  Leaks are errors, except allocations that shared libraries
 * make from their constructors while they load (as tests/lsan.supp says for the sanitized
 * test run); the slow unwinder is what lets a suppression see those libraries' frames.  A
 * harness that defines FUZZ_NO_LEAK_CHECK before including this header checks no leaks. */
const char *__asan_default_options (void);
const char *__lsan_default_suppressions (void);
const char *__ubsan_default_options (void);

const char *
__asan_default_options (void)
{
#ifdef FUZZ_NO_LEAK_CHECK
  return "detect_leaks=0";
#else
  return "fast_unwind_on_malloc=0:malloc_context_size=10";
#endif
}

const char *
__lsan_default_suppressions (void)
{
  return "leak:_dl_init\nleak:x265_encoder_open\n";
}

const char *
__ubsan_default_options (void)
{
  return "print_stacktrace=1:halt_on_error=1";
}

/* Splits the input at its first n - 1 newlines into n NUL-terminated fields (missing fields
 * are empty strings).  The fields point into one g_malloc'd copy, returned for g_free. */
static inline char *
fuzz_split_fields (const uint8_t *data, size_t size, char **fields, size_t n)
{
  char *copy = g_malloc (size + 1);
  memcpy (copy, data, size);
  copy[size] = '\0';
  char *p = copy;
  for (size_t i = 0; i < n; i++) {
    fields[i] = p;
    char *newline = i + 1 < n ? memchr (p, '\n', (size_t)(copy + size - p)) : NULL;
    if (newline != NULL) {
      *newline = '\0';
      p = newline + 1;
    } else {
      p = copy + size; /* the following fields are empty */
    }
  }
  return copy;
}

/* The input as one NUL-terminated string (cut at an embedded NUL, as C callers see it). */
static inline char *
fuzz_string (const uint8_t *data, size_t size)
{
  char *copy = g_malloc (size + 1);
  memcpy (copy, data, size);
  copy[size] = '\0';
  return copy;
}

/* Replaces the file at path with the input.  Not g_file_set_contents: it fsyncs an existing
 * file, which costs milliseconds per run. */
static inline void
fuzz_write_file (const char *path, const uint8_t *data, size_t size)
{
  FILE *file = fopen (path, "wb");
  if (file == NULL || fwrite (data, 1, size, file) != size || fclose (file) != 0) {
    g_printerr ("cannot write %s\n", path);
    abort ();
  }
}

/* Stops the harness with a message when a property of the code under test does not hold:
 * libFuzzer records the input as a crash. */
#define FUZZ_ASSERT(condition)                                                                     \
  do {                                                                                             \
    if (!(condition)) {                                                                            \
      g_printerr ("%s:%d: property failed: %s\n", __FILE__, __LINE__, #condition);                 \
      abort ();                                                                                    \
    }                                                                                              \
  } while (0)
