/* test-router.c - the gateway's method + path router. */
#include <string.h>
#include <glib.h>

#include "router.h"

static void
handler_a (gn_http_request *request, void *data)
{
}

static void
handler_b (gn_http_request *request, void *data)
{
}

typedef struct {
  gn_router *router;
  gn_arena *arena;
  const gn_route *route;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params;
  char allow[128];
} fixture;

static void
fixture_setup (fixture *f, gconstpointer data)
{
  f->router = gn_router_new ();
  f->arena = gn_arena_new ();
  gn_router_add (f->router, "GET", "/health", handler_a, NULL, 0);
  gn_router_add (f->router, "GET", "/api/v1/users/{user_id}/posts", handler_a, NULL, 0);
  gn_router_add (f->router, "GET", "/api/v1/users/me", handler_b, NULL, 0);
  gn_router_add (f->router, "GET", "/api/v1/users/{id}", handler_a, NULL, 0);
  gn_router_add (f->router, "GET", "/api/v1/posts/{id}", handler_a, NULL, 0);
  gn_router_add (f->router, "POST", "/api/v1/posts/{id}/like", handler_a, NULL, 0);
  gn_router_add (f->router, "DELETE", "/api/v1/posts/{id}/like", handler_b, NULL, 0);
  gn_router_add (f->router, "POST", "/api/v1/posts", handler_b, NULL, 0);
  gn_router_add (f->router, "GET", "/{a}/{b}/{c}/{d}", handler_a, NULL, 0);
  gn_router_add (f->router, "GET", "/", handler_b, NULL, 0);
}

static void
fixture_teardown (fixture *f, gconstpointer data)
{
  gn_router_free (f->router);
  gn_arena_free (f->arena);
}

static gn_route_result
match (fixture *f, const char *method, const char *path)
{
  return gn_router_match (f->router, method, path, f->arena, &f->route, f->params, &f->n_params,
                          f->allow, sizeof f->allow);
}

static void
test_literal (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/health"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/health");
  g_assert_cmpstr (f->route->name, ==, "/health");
  g_assert_cmpuint (f->n_params, ==, 0);

  g_assert_cmpint (match (f, "GET", "/"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/");
  g_assert_cmpint (match (f, "GET", "/healthz"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_null (f->route);
  g_assert_cmpint (match (f, "GET", "/Health"), ==, GN_ROUTE_NOT_FOUND);
}

static void
test_params (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/api/v1/users/42/posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/users/{user_id}/posts");
  g_assert_cmpuint (f->n_params, ==, 1);
  g_assert_cmpstr (f->params[0].name, ==, "user_id");
  g_assert_cmpstr (f->params[0].value, ==, "42");

  g_assert_cmpint (match (f, "GET", "/w/x/y/z"), ==, GN_ROUTE_MATCH);
  g_assert_cmpuint (f->n_params, ==, 4);
  g_assert_cmpstr (f->params[0].name, ==, "a");
  g_assert_cmpstr (f->params[3].name, ==, "d");
  g_assert_cmpstr (f->params[3].value, ==, "z");

  /* A parameter is exactly one segment. */
  g_assert_cmpint (match (f, "GET", "/api/v1/users/42/posts/7"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users"), ==, GN_ROUTE_NOT_FOUND);
}

static void
test_literal_precedence (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/api/v1/users/me"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/users/me");
  g_assert_true (f->route->handler == handler_b);
  g_assert_cmpuint (f->n_params, ==, 0);

  g_assert_cmpint (match (f, "GET", "/api/v1/users/mel"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/users/{id}");
  g_assert_cmpstr (f->params[0].value, ==, "mel");

  /* The earlier literal wins over a later one: /api/v1/... beats /{a}/{b}/{c}/{d}. */
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/9"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/posts/{id}");
}

static void
test_literal_precedence_any_order (void)
{
  gn_router *router = gn_router_new ();
  gn_arena *arena = gn_arena_new ();
  const gn_route *route;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params;

  /* Registered param-first and literal-first: the literal wins either way. */
  gn_router_add (router, "GET", "/a/{x}/c", handler_a, NULL, 0);
  gn_router_add (router, "GET", "/a/b/{y}", handler_b, NULL, 0);
  g_assert_cmpint (
      gn_router_match (router, "GET", "/a/b/c", arena, &route, params, &n_params, NULL, 0), ==,
      GN_ROUTE_MATCH);
  g_assert_cmpstr (route->pattern, ==, "/a/b/{y}");
  g_assert_cmpstr (params[0].name, ==, "y");
  g_assert_cmpstr (params[0].value, ==, "c");
  g_assert_cmpint (
      gn_router_match (router, "GET", "/a/z/c", arena, &route, params, &n_params, NULL, 0), ==,
      GN_ROUTE_MATCH);
  g_assert_cmpstr (route->pattern, ==, "/a/{x}/c");

  gn_router_free (router);
  gn_arena_free (arena);
}

static void
test_method_not_allowed (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "PUT", "/api/v1/posts/5/like"), ==, GN_ROUTE_METHOD_NOT_ALLOWED);
  g_assert_null (f->route);
  g_assert_cmpstr (f->allow, ==, "POST, DELETE");

  g_assert_cmpint (match (f, "DELETE", "/api/v1/posts/5/like"), ==, GN_ROUTE_MATCH);
  g_assert_true (f->route->handler == handler_b);
  g_assert_cmpstr (f->params[0].value, ==, "5");

  g_assert_cmpint (match (f, "GET", "/api/v1/posts"), ==, GN_ROUTE_METHOD_NOT_ALLOWED);
  g_assert_cmpstr (f->allow, ==, "POST");

  /* Every pattern matching the path contributes, whichever wins. */
  gn_router_add (f->router, "PATCH", "/api/v1/users/{id}", handler_a, NULL, 0);
  g_assert_cmpint (match (f, "PUT", "/api/v1/users/me"), ==, GN_ROUTE_METHOD_NOT_ALLOWED);
  g_assert_cmpstr (f->allow, ==, "GET, HEAD, PATCH");

  g_assert_cmpint (match (f, "POST", "/health"), ==, GN_ROUTE_METHOD_NOT_ALLOWED);
  g_assert_cmpstr (f->allow, ==, "GET, HEAD");

  /* A NULL or short buffer is fine: whole methods only. */
  g_assert_cmpint (gn_router_match (f->router, "PUT", "/health", f->arena, &f->route, f->params,
                                    &f->n_params, NULL, 0),
                   ==, GN_ROUTE_METHOD_NOT_ALLOWED);
  {
    char small[6];

    g_assert_cmpint (gn_router_match (f->router, "PUT", "/health", f->arena, &f->route, f->params,
                                      &f->n_params, small, sizeof small),
                     ==, GN_ROUTE_METHOD_NOT_ALLOWED);
    g_assert_cmpstr (small, ==, "GET");
  }
}

static void
test_allowed_methods (fixture *f, gconstpointer data)
{
  char allow[64];

  g_assert_true (
      gn_router_allowed_methods (f->router, "/api/v1/posts/1/like", allow, sizeof allow));
  g_assert_cmpstr (allow, ==, "POST, DELETE");
  g_assert_true (gn_router_allowed_methods (f->router, "/health/", allow, sizeof allow));
  g_assert_cmpstr (allow, ==, "GET, HEAD");
  g_assert_false (gn_router_allowed_methods (f->router, "/nope", allow, sizeof allow));
  g_assert_cmpstr (allow, ==, "");
}

static void
test_head (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "HEAD", "/health"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->method, ==, "GET");
  g_assert_cmpint (match (f, "HEAD", "/api/v1/posts"), ==, GN_ROUTE_METHOD_NOT_ALLOWED);

  /* An explicit HEAD route is preferred over the GET one. */
  gn_router_add (f->router, "HEAD", "/health", handler_b, NULL, 0);
  g_assert_cmpint (match (f, "HEAD", "/health"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->method, ==, "HEAD");
  g_assert_cmpint (match (f, "GET", "/health"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->method, ==, "GET");
}

static void
test_decoding (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a%20b%C3%A9%2e/posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "a b\xc3\xa9.");

  g_assert_cmpint (match (f, "GET", "/api/v1/users/%7e%7E/posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "~~");

  /* '+' is not a space in a path. */
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a+b/posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "a+b");

  /* Decoding to '/' or NUL, and broken escapes, do not match. */
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a%2Fb/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a%2fb/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a%00b/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users/a%zzb/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users/ab%2/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/users/ab%/posts"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/%"), ==, GN_ROUTE_NOT_FOUND);

  /* Literal segments compare raw bytes: an escaped literal is another path. */
  g_assert_cmpint (match (f, "GET", "/%68ealth"), ==, GN_ROUTE_NOT_FOUND);
}

static void
test_traversal (fixture *f, gconstpointer data)
{
  const char *paths[] = {
    "/api/v1/users/../posts",
    "/api/v1/users/./posts",
    "/api/v1/users/%2e%2e/posts",
    "/api/v1/users/.%2E/posts",
    "/api/v1/users/%2e/posts",
    "/api/v1/users//posts",
    "/api/v1//users/42/posts",
    "//health",
    "/a/../c/d",
    "/api/v1/users/42/posts//",
    "health",
    "",
  };

  for (size_t i = 0; i < G_N_ELEMENTS (paths); i++) {
    g_test_message ("path %s", paths[i]);
    g_assert_cmpint (match (f, "GET", paths[i]), ==, GN_ROUTE_NOT_FOUND);
  }
  g_assert_cmpint (match (f, "GET", NULL), ==, GN_ROUTE_NOT_FOUND);

  /* Three dots, or dots inside a value, are ordinary names. */
  g_assert_cmpint (match (f, "GET", "/api/v1/users/.../posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "...");
  g_assert_cmpint (match (f, "GET", "/api/v1/users/.hidden/posts"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, ".hidden");
}

static void
test_trailing_slash (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/health/"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/health");
  g_assert_cmpint (match (f, "GET", "/api/v1/users/42/posts/"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "42");
  g_assert_cmpint (match (f, "GET", "/api/v1/users/me/"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/users/me");

  /* And in patterns. */
  gn_router_add (f->router, "GET", "/api/v1/feed/", handler_a, NULL, 0);
  g_assert_cmpint (match (f, "GET", "/api/v1/feed"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->route->pattern, ==, "/api/v1/feed/");
}

static void
test_add_returns_tunable_route (void)
{
  gn_router *router = gn_router_new ();
  gn_arena *arena = gn_arena_new ();
  char pattern[] = "/api/v1/media/{id}";
  gn_route *added = gn_router_add (router, "PUT", pattern, handler_a, &router, GN_ROUTE_RAW_BODY);
  const gn_route *route;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params;

  added->max_body = 1 << 20;
  added->flags |= GN_ROUTE_AUTH_REQUIRED;
  /* Patterns are copied. */
  memset (pattern, 'x', sizeof pattern - 1);

  g_assert_cmpint (gn_router_match (router, "PUT", "/api/v1/media/m1", arena, &route, params,
                                    &n_params, NULL, 0),
                   ==, GN_ROUTE_MATCH);
  g_assert_true (route == added);
  g_assert_cmpstr (route->pattern, ==, "/api/v1/media/{id}");
  g_assert_cmpuint (route->max_body, ==, 1 << 20);
  g_assert_cmpuint (route->flags, ==, GN_ROUTE_RAW_BODY | GN_ROUTE_AUTH_REQUIRED);
  g_assert_true (route->data == &router);

  gn_router_free (router);
  gn_arena_free (arena);
}

static void
test_many_routes_no_allocation (void)
{
  gn_router *router = gn_router_new ();
  gn_arena *arena = gn_arena_new ();
  const gn_route *route;
  gn_route_param params[GN_ROUTE_MAX_PARAMS];
  size_t n_params;

  for (int i = 0; i < 60; i++) {
    g_autofree char *pattern = g_strdup_printf ("/api/v1/thing%d/{id}", i);
    gn_router_add (router, "GET", pattern, handler_a, GINT_TO_POINTER (i), 0);
  }
  for (int i = 0; i < 60; i++) {
    g_autofree char *path = g_strdup_printf ("/api/v1/thing%d/x", i);
    g_assert_cmpint (
        gn_router_match (router, "GET", path, arena, &route, params, &n_params, NULL, 0), ==,
        GN_ROUTE_MATCH);
    g_assert_cmpint (GPOINTER_TO_INT (route->data), ==, i);
  }
  /* Only parameter values come from the arena: a miss or a literal hit takes nothing. */
  gn_arena_reset (arena);
  g_assert_cmpint (
      gn_router_match (router, "GET", "/api/v1/thing7", arena, &route, params, &n_params, NULL, 0),
      ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpuint (gn_arena_used (arena), ==, 0);
  g_assert_cmpint (gn_router_match (router, "GET", "/api/v1/thing7/abc", arena, &route, params,
                                    &n_params, NULL, 0),
                   ==, GN_ROUTE_MATCH);
  g_assert_cmpuint (gn_arena_used (arena), >=, 4);
  g_assert_cmpuint (gn_arena_used (arena), <=, 64);

  gn_router_free (router);
  gn_arena_free (arena);
}

/* Parameters are text: %00, bytes that are not UTF-8 and overlong values match nothing; so
 * does an overlong path.  Valid multi-byte UTF-8, raw or escaped, still matches. */
static void
test_bounds_and_text (fixture *f, gconstpointer data)
{
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/a%00b"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/%ff"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/\xc3"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/%ed%a0%80"), ==, GN_ROUTE_NOT_FOUND);
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/%c3%a9t%C3%A9"), ==, GN_ROUTE_MATCH);
  g_assert_cmpstr (f->params[0].value, ==, "\xc3\xa9t\xc3\xa9");
  g_assert_cmpint (match (f, "GET", "/api/v1/posts/\xc3\xa9"), ==, GN_ROUTE_MATCH);

  g_autofree char *longest = g_strnfill (GN_ROUTE_PARAM_MAX, 'x');
  g_autofree char *path = g_strconcat ("/api/v1/posts/", longest, NULL);
  g_assert_cmpint (match (f, "GET", path), ==, GN_ROUTE_MATCH);
  g_assert_cmpuint (strlen (f->params[0].value), ==, GN_ROUTE_PARAM_MAX);
  g_autofree char *too_long = g_strconcat (path, "x", NULL);
  g_assert_cmpint (match (f, "GET", too_long), ==, GN_ROUTE_NOT_FOUND);
  /* Escapes count as the byte they stand for. */
  GString *escaped = g_string_new ("/api/v1/posts/");
  for (int i = 0; i < GN_ROUTE_PARAM_MAX; i++)
    g_string_append (escaped, "%41");
  g_assert_cmpint (match (f, "GET", escaped->str), ==, GN_ROUTE_MATCH);
  g_string_append (escaped, "%41");
  g_assert_cmpint (match (f, "GET", escaped->str), ==, GN_ROUTE_NOT_FOUND);
  g_string_free (escaped, TRUE);

  GString *deep = g_string_new (NULL);
  while (deep->len <= GN_ROUTE_PATH_MAX)
    g_string_append (deep, "/a");
  g_assert_cmpint (match (f, "GET", deep->str), ==, GN_ROUTE_NOT_FOUND);
  g_string_free (deep, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, fn) g_test_add (path, fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/router/literal", test_literal);
  ADD ("/router/params", test_params);
  ADD ("/router/literal-precedence", test_literal_precedence);
  ADD ("/router/method-not-allowed", test_method_not_allowed);
  ADD ("/router/allowed-methods", test_allowed_methods);
  ADD ("/router/head", test_head);
  ADD ("/router/decoding", test_decoding);
  ADD ("/router/traversal", test_traversal);
  ADD ("/router/trailing-slash", test_trailing_slash);
  ADD ("/router/bounds-and-text", test_bounds_and_text);
#undef ADD
  g_test_add_func ("/router/literal-precedence-any-order", test_literal_precedence_any_order);
  g_test_add_func ("/router/add-returns-tunable-route", test_add_returns_tunable_route);
  g_test_add_func ("/router/many-routes", test_many_routes_no_allocation);

  return g_test_run ();
}
