/* The JSON guard (node/lib/json-limits.c): what passes still parses with json-glib, and the
 * hostile inputs (deep nesting, NUL, bad UTF-8, comments and quotes json-glib would read
 * differently, huge strings, many values) are refused with their reason word, in linear time. */
#include <string.h>
#include <glib.h>
#include <json-glib/json-glib.h>

#include "json-limits.h"

static void
assert_passes (const char *text)
{
  g_autoptr (GError) error = NULL;
  if (!gn_json_check (text, strlen (text), NULL, &error))
    g_error ("refused %s: %s", text, error->message);
  /* What the guard lets through is what json-glib then parses. */
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, text, (gssize)strlen (text), NULL));
}

static void
assert_refused_len (const char *text, size_t len, const gn_json_limits *limits, const char *reason)
{
  g_autoptr (GError) error = NULL;
  if (gn_json_check (text, len, limits, &error))
    g_error ("passed, expected %s: %.*s", reason, (int)MIN (len, 80), text);
  g_assert_error (error, GN_JSON_ERROR, error->code);
  g_assert_cmpstr (gn_json_error_reason (error), ==, reason);
}

static void
assert_refused (const char *text, const char *reason)
{
  assert_refused_len (text, strlen (text), NULL, reason);
}

static void
test_valid (void)
{
  assert_passes ("{}");
  assert_passes ("[]");
  assert_passes ("{\"username\":\"alice\",\"n\":-12.5e+3,\"ok\":true,\"x\":null}");
  assert_passes (" [ 1 , [ 2 , { \"a\" : [ ] } ] ]\n");
  assert_passes ("{\"s\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00\"}");
  assert_passes ("{\"caption\":\"Привет, мир 👋 — ça va\"}");
  assert_passes ("\"just a string\"");
  assert_passes ("42");
}

static void
test_depth (void)
{
  GString *text = g_string_new (NULL);
  for (int i = 0; i < 64; i++)
    g_string_append_c (text, '[');
  for (int i = 0; i < 64; i++)
    g_string_append_c (text, ']');
  assert_passes (text->str);

  g_string_prepend_c (text, '[');
  g_string_append_c (text, ']');
  assert_refused (text->str, "json_too_deep");

  /* Objects count too, and the limit is per call. */
  gn_json_limits shallow = { .max_depth = 2 };
  assert_refused_len ("{\"a\":{\"b\":[1]}}", 15, &shallow, "json_too_deep");
  g_assert_true (gn_json_check ("{\"a\":{\"b\":1}}", 13, &shallow, NULL));
  g_string_free (text, TRUE);
}

/* The body of the issue: 100,000 nested arrays.  Refused at level 65, and the scan does not
 * recurse (the test would crash like the node did otherwise: run under ASan too). */
static void
test_hostile_depth (void)
{
  size_t n = 1000 * 1000;
  char *text = g_malloc (n);
  memset (text, '[', n);
  assert_refused_len (text, n, NULL, "json_too_deep");
  /* Even with a huge depth limit the guard itself stays flat. */
  gn_json_limits deep = { .max_depth = G_MAXUINT, .max_values = G_MAXSIZE };
  assert_refused_len (text, n, &deep, "invalid_json");
  g_free (text);
}

static void
test_nul (void)
{
  assert_refused ("{\"username\":\"ali\\u0000ce\"}", "nul_in_string");
  assert_refused ("{\"username\":\"ali\\u0000\"}", "nul_in_string");
  assert_refused_len ("{\"u\":\"a\0b\"}", 11, NULL, "nul_in_string");
  /* A raw NUL outside a string (json-glib's scanner may take it for the end). */
  assert_refused_len ("{\"u\":1}\0[[[[", 12, NULL, "invalid_json");
  /* GScanner's octal escape is not JSON. */
  assert_refused ("{\"u\":\"a\\0b\"}", "invalid_json");
  /* \u0000 spelled with upper-case hex, and in a key. */
  assert_refused ("{\"a\\u0000\":1}", "nul_in_string");
}

static void
test_utf8 (void)
{
  assert_refused ("{\"u\":\"\xff\"}", "invalid_utf8");
  assert_refused ("{\"u\":\"\xc0\xaf\"}", "invalid_utf8");           /* overlong '/' */
  assert_refused ("{\"u\":\"\xe0\x80\xaf\"}", "invalid_utf8");       /* overlong, 3 bytes */
  assert_refused ("{\"u\":\"\xed\xa0\x80\"}", "invalid_utf8");       /* U+D800 encoded */
  assert_refused ("{\"u\":\"\xf4\x90\x80\x80\"}", "invalid_utf8");   /* past U+10FFFF */
  assert_refused ("{\"u\":\"\xe2\x82\"}", "invalid_utf8");           /* cut sequence */
  assert_refused_len ("{\"u\":\"\xe2\x82", 8, NULL, "invalid_utf8"); /* cut at the end */
  assert_refused ("{\"u\":\"\\ud800\"}", "invalid_utf8");            /* lone high surrogate */
  assert_refused ("{\"u\":\"\\udc00\"}", "invalid_utf8");            /* lone low surrogate */
  assert_refused ("{\"u\":\"\\ud800\\u0041\"}", "invalid_utf8");     /* high + not low */
  assert_refused ("\xef\xbb\xbf{}", "invalid_json");                 /* a BOM is not JSON */
  assert_refused ("{\"u\":1}\xff", "invalid_utf8");
}

static void
test_controls_and_escapes (void)
{
  assert_refused ("{\"u\":\"a\nb\"}", "control_in_string");
  assert_refused ("{\"u\":\"a\x01\"}", "control_in_string");
  assert_refused ("{\"u\":\"\\x41\"}", "invalid_json");
  assert_refused ("{\"u\":\"\\u12\"}", "invalid_json");
  assert_refused ("{\"u\":\"\\u12G4\"}", "invalid_json");
  assert_refused ("{\"u\":\"abc", "invalid_json");
  assert_refused ("{\"u\":\"abc\\", "invalid_json");
  assert_refused ("{\"u\":\"\\u00", "invalid_json");
}

/* Text json-glib's scanner reads differently from JSON (comments, single quotes) could hide
 * brackets from the guard: only JSON's own characters pass outside strings. */
static void
test_scanner_tricks (void)
{
  GString *text = g_string_new ("/* \" */ ");
  for (int i = 0; i < 200; i++)
    g_string_append_c (text, '[');
  g_string_append (text, " /* \" */");
  assert_refused (text->str, "invalid_json");
  g_string_assign (text, "'\"' ");
  for (int i = 0; i < 200; i++)
    g_string_append_c (text, '[');
  g_string_append (text, " '\"'");
  assert_refused (text->str, "invalid_json");
  assert_refused ("// x\n{}", "invalid_json");
  assert_refused ("# x\n{}", "invalid_json");
  assert_refused ("{\"a\":1}}", "invalid_json");
  assert_refused ("{\"a\":[1}", "invalid_json");
  g_string_free (text, TRUE);
}

static void
test_counts (void)
{
  /* An object, two keys and two numbers: five values. */
  gn_json_limits few = { .max_values = 5 };
  g_assert_true (gn_json_check ("{\"a\":1,\"b\":2}", 13, &few, NULL));
  g_assert_true (gn_json_check ("[true,false,-1e5,9]", 19, &few, NULL));
  assert_refused_len ("[1,2,3,4,5]", 11, &few, "json_too_many_values");
  assert_refused_len ("[true,false,null,-1e5,9]", 24, &few, "json_too_many_values");

  gn_json_limits short_strings = { .max_string_bytes = 8 };
  g_assert_true (gn_json_check ("[\"12345678\"]", 12, &short_strings, NULL));
  assert_refused_len ("[\"123456789\"]", 13, &short_strings, "json_string_too_long");

  /* The defaults: a flat array of a million numbers is refused. */
  GString *text = g_string_new ("[");
  for (int i = 0; i < GN_JSON_DEFAULT_MAX_VALUES + 1; i++)
    g_string_append (text, "1,");
  g_string_append (text, "1]");
  assert_refused (text->str, "json_too_many_values");
  g_string_free (text, TRUE);
}

static void
test_reason_of_other_errors (void)
{
  g_autoptr (GError) other = g_error_new_literal (G_FILE_ERROR, 0, "x");
  g_assert_cmpstr (gn_json_error_reason (other), ==, "invalid_json");
  g_assert_cmpstr (gn_json_error_reason (NULL), ==, "invalid_json");
  g_assert_true (gn_json_check ("", 0, NULL, NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json-limits/valid", test_valid);
  g_test_add_func ("/json-limits/depth", test_depth);
  g_test_add_func ("/json-limits/hostile-depth", test_hostile_depth);
  g_test_add_func ("/json-limits/nul", test_nul);
  g_test_add_func ("/json-limits/utf8", test_utf8);
  g_test_add_func ("/json-limits/controls-and-escapes", test_controls_and_escapes);
  g_test_add_func ("/json-limits/scanner-tricks", test_scanner_tricks);
  g_test_add_func ("/json-limits/counts", test_counts);
  g_test_add_func ("/json-limits/reason-of-other-errors", test_reason_of_other_errors);
  return g_test_run ();
}
