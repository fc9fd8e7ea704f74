/* fuzz-json-limits.c - gn_json_check, the guard every JSON body passes before json-glib.
 *
 * Checked: whatever passes the guard is safe to hand to json-glib (no deep recursion, so no
 * stack overflow, whatever the parser then thinks of it), and every string json-glib reads
 * from a passing document is valid UTF-8 with no NUL cut short (its byte length is what the
 * guard let through, so no string is ever longer than the input). */
#include "fuzz.h"

#include <json-glib/json-glib.h>

#include "json-limits.h"

static void
check_node (JsonNode *node, size_t input_size, unsigned depth)
{
  FUZZ_ASSERT (depth <= GN_JSON_DEFAULT_MAX_DEPTH + 1);
  if (JSON_NODE_HOLDS_OBJECT (node)) {
    JsonObjectIter iter;
    const char *name;
    JsonNode *member;
    json_object_iter_init (&iter, json_node_get_object (node));
    while (json_object_iter_next (&iter, &name, &member)) {
      FUZZ_ASSERT (g_utf8_validate (name, -1, NULL) && strlen (name) <= input_size);
      check_node (member, input_size, depth + 1);
    }
  } else if (JSON_NODE_HOLDS_ARRAY (node)) {
    JsonArray *array = json_node_get_array (node);
    for (guint i = 0; i < json_array_get_length (array); i++)
      check_node (json_array_get_element (array, i), input_size, depth + 1);
  } else if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING) {
    const char *text = json_node_get_string (node);
    FUZZ_ASSERT (g_utf8_validate (text, -1, NULL) && strlen (text) <= input_size);
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;

  if (!gn_json_check ((const char *)data, size, NULL, &error)) {
    FUZZ_ASSERT (error != NULL && error->domain == GN_JSON_ERROR);
    g_error_free (error);
    return 0;
  }
  JsonParser *parser = json_parser_new_immutable ();
  if (json_parser_load_from_data (parser, (const char *)data, (gssize)size, &error)) {
    JsonNode *root = json_parser_get_root (parser);
    if (root != NULL)
      check_node (root, size, 0);
  } else {
    g_error_free (error);
  }
  g_object_unref (parser);
  return 0;
}
