/* json-limits.h - a bounded guard over JSON text from outside, run before json-glib parses it.
 *
 * json-glib 1.6 parses recursively with no depth limit (a body of 100,000 nested arrays
 * overflows the stack and kills the process) and turns "\u0000" into a C string cut at the NUL
 * (data silently lost).  gn_json_check() scans the text once, without recursion and without
 * building anything, and refuses what must never reach the parser: invalid UTF-8, nesting
 * deeper than a limit, more values than a limit, one string longer than a limit, "\u0000" or a
 * lone surrogate escape, raw control bytes inside strings.  It is a guard, not a parser:
 * json-glib still decides whether the text is JSON; the guard only guarantees that what it
 * lets through is cheap and safe to parse and that every string json-glib returns is valid
 * UTF-8 without NUL.
 *
 * Errors are GErrors in GN_JSON_ERROR; gn_json_error_reason() gives each code a stable word
 * for problem+json ("json_too_deep", "invalid_utf8", "nul_in_string", ...). */
#pragma once

#include <stddef.h>
#include <glib.h>

#define GN_JSON_ERROR (gn_json_error_quark ())
GQuark gn_json_error_quark (void);

typedef enum {
  GN_JSON_ERROR_SYNTAX,           /* unbalanced brackets, unterminated string, bad escape */
  GN_JSON_ERROR_TOO_DEEP,         /* nesting deeper than max_depth */
  GN_JSON_ERROR_TOO_MANY_VALUES,  /* more than max_values values (keys count) */
  GN_JSON_ERROR_STRING_TOO_LONG,  /* one string longer than max_string_bytes */
  GN_JSON_ERROR_INVALID_UTF8,     /* bytes that are not UTF-8, or a lone surrogate escape */
  GN_JSON_ERROR_NUL_IN_STRING,    /* "\u0000" or a raw NUL byte inside a string */
  GN_JSON_ERROR_CONTROL_IN_STRING /* a raw byte below 0x20 inside a string */
} gn_json_error_code;

#define GN_JSON_DEFAULT_MAX_DEPTH 64
#define GN_JSON_DEFAULT_MAX_VALUES 100000
#define GN_JSON_DEFAULT_MAX_STRING_BYTES (64 * 1024)

/* Zero fields take the defaults above; NULL limits means all defaults. */
typedef struct {
  unsigned max_depth;
  size_t max_values;
  size_t max_string_bytes; /* as written, escapes included */
} gn_json_limits;

/* TRUE if text (len bytes, need not be NUL-terminated) passes; FALSE with error set if not. */
gboolean gn_json_check (const char *text, size_t len, const gn_json_limits *limits, GError **error);

/* The stable reason word of a GN_JSON_ERROR ("json_too_deep"); "invalid_json" for others. */
const char *gn_json_error_reason (const GError *error);
