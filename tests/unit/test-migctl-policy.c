/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl's offline policy verbs, run as a real process: exit codes, messages, timelines and JSON. */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-c/json.h>
#include <string.h>

typedef struct Run {
        int status;
        char *out;
        char *err;
} Run;

static void run_clear(Run *r) {
        g_free(r->out);
        g_free(r->err);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Run, run_clear)

static char *tmp_dir;

static void run_migctl(Run *ret, const char *first, ...) {
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        g_auto(GStrv) env = g_get_environ();
        const char *build = g_getenv("MIGD_BUILD_ROOT");
        va_list ap;

        g_assert_nonnull(build);
        g_ptr_array_add(args, g_build_filename(build, "client", "migctl", NULL));
        va_start(ap, first);
        for (const char *a = first; a; a = va_arg(ap, const char *))
                g_ptr_array_add(args, g_strdup(a));
        va_end(ap);
        g_ptr_array_add(args, NULL);

        /* An empty policy dir keeps the host's /etc/migd out of the test. */
        env = g_environ_setenv(env, "MIGD_POLICY_DIR", tmp_dir, TRUE);
        env = g_environ_unsetenv(env, "NO_COLOR");
        g_assert_true(g_spawn_sync(NULL, (char **) args->pdata, env, G_SPAWN_DEFAULT, NULL, NULL, &ret->out,
                                   &ret->err, &ret->status, &error));
        g_assert_no_error(error);
}

static int exit_code(const Run *r) {
        g_assert_true(WIFEXITED(r->status));
        return WEXITSTATUS(r->status);
}

static char *write_policy(const char *name, const char *text) {
        char *path = g_build_filename(tmp_dir, "files", name, NULL);
        g_autofree char *dir = g_path_get_dirname(path);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_true(g_file_set_contents(path, text, -1, NULL));
        return path;
}

static void assert_contains(const char *haystack, const char *needle) {
        if (!strstr(haystack, needle))
                g_error("expected to find \"%s\" in:\n%s", needle, haystack);
}

static void test_explain_stop_window(void) {
        g_auto(Run) r = {};

        run_migctl(&r, "policy", "explain", "stop-window", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        /* Not a terminal: no colour codes. */
        g_assert_null(strstr(r.out, "\033["));
        assert_contains(r.out, "Destination  (v1 bits RESUMING SAVING RUNNING)\n");
        assert_contains(r.out, "  000 -> 100 -> 000 -> SET_IRQS -> 001\n");
        assert_contains(r.out, "  001 -> 000 -> 010 -> 000\n");
        assert_contains(r.out, "   ├─ SET_IRQS: restore INTx/MSI/MSI-X  <== interrupts restored here\n");
        assert_contains(r.out, "   │  arc RESUMING -> STOP\n");
}

static void test_explain_qemu_compatible(void) {
        g_auto(Run) r = {};

        run_migctl(&r, "policy", "explain", "qemu-compatible", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        assert_contains(r.out, "  000 -> 100 -> SET_IRQS -> 000 -> 001\n");
}

static void test_explain_flags_p2p(void) {
        g_auto(Run) r = {};

        run_migctl(&r, "policy", "explain", "early-irqs", "--flags", "stop-copy,p2p", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        assert_contains(r.out, "  000 -> SET_IRQS -> 100 -> 000 -> RUNNING_P2P -> 001\n");
        assert_contains(r.out, "  ---  RUNNING_P2P      (P2P states have no v1 form)\n");
}

static void test_explain_postcopy(void) {
        g_auto(Run) r = {}, v2 = {};

        run_migctl(&r, "policy", "explain", "postcopy", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        assert_contains(r.out, "Note: post-copy needs the v1 state RESUMING|RUNNING");
        assert_contains(r.out, "  000 -> 100 -> SET_IRQS -> 101 -> 001\n");

        run_migctl(&v2, "policy", "explain", "postcopy", "--uapi", "2", NULL);
        g_assert_cmpint(exit_code(&v2), ==, 3);
        assert_contains(v2.err, "built-in: $.postcopy: post-copy needs the v1 state RESUMING|RUNNING (101)");
}

static void test_explain_json(void) {
        g_auto(Run) r = {};
        json_object *o, *v, *dest;
        GString *bits = g_string_new(NULL);

        run_migctl(&r, "--json", "policy", "explain", "stop-window", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        o = json_tokener_parse(r.out);
        g_assert_nonnull(o);
        g_assert_true(json_object_object_get_ex(o, "policy", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "stop-window");
        g_assert_true(json_object_object_get_ex(o, "source", &v));
        g_assert_true(json_object_is_type(v, json_type_array));
        g_assert_true(json_object_object_get_ex(o, "destination", &dest));
        for (size_t i = 0; i < json_object_array_length(dest); i++) {
                json_object *step = json_object_array_get_idx(dest, i), *x;

                if (json_object_object_get_ex(step, "bits", &x))
                        g_string_append_printf(bits, "%s ", json_object_get_string(x));
                else if (json_object_object_get_ex(step, "action", &x) &&
                         g_str_equal(json_object_get_string(x), "set_irqs"))
                        g_string_append(bits, "set_irqs ");
        }
        g_assert_cmpstr(bits->str, ==, "000 100 000 set_irqs 001 ");
        g_string_free(bits, TRUE);
        json_object_put(o);
}

static void test_explain_errors(void) {
        g_auto(Run) unknown = {}, flags = {}, usage = {}, precopy = {};
        g_autofree char *needs = write_policy("needs-precopy.json",
                                              "{\"name\": \"needs-precopy\", \"precopy\": \"required\"}");

        run_migctl(&unknown, "policy", "explain", "no-such-policy", NULL);
        g_assert_cmpint(exit_code(&unknown), ==, 6);
        assert_contains(unknown.err, "no policy named 'no-such-policy'");

        run_migctl(&flags, "policy", "explain", "stop-window", "--flags", "stop-copy,turbo", NULL);
        g_assert_cmpint(exit_code(&flags), ==, 2);
        assert_contains(flags.err, "--flags 'stop-copy,turbo'");

        run_migctl(&usage, "policy", "explain", NULL);
        g_assert_cmpint(exit_code(&usage), ==, 2);

        run_migctl(&precopy, "policy", "explain", needs, "--flags", "stop-copy,p2p", NULL);
        g_assert_cmpint(exit_code(&precopy), ==, 3);
        assert_contains(precopy.err, "needs-precopy.json: $.precopy: required, but the device's migration flags "
                                     "(stop-copy,p2p) lack pre-copy");
}

static void test_check(void) {
        g_auto(Run) good = {}, bad = {}, both = {}, none = {};
        g_autofree char *ok = write_policy("ok.json", "{\"name\": \"x\", \"irq_restore\": \"after-resuming\"}");
        g_autofree char *broken = write_policy(
                "after-postcopy.json",
                "{\"name\": \"y\", \"irq_restore\": \"after-resuming\", \"postcopy\": true}");

        run_migctl(&good, "policy", "check", ok, NULL);
        g_assert_cmpint(exit_code(&good), ==, 0);
        assert_contains(good.out, "ok.json: ok (policy x)");

        run_migctl(&bad, "policy", "check", broken, NULL);
        g_assert_cmpint(exit_code(&bad), ==, 1);
        assert_contains(bad.err, broken);
        assert_contains(bad.err, ": $.irq_restore: ");
        assert_contains(bad.err, "postcopy");

        run_migctl(&both, "policy", "check", ok, broken, NULL);
        g_assert_cmpint(exit_code(&both), ==, 1);

        run_migctl(&none, "policy", "check", NULL);
        g_assert_cmpint(exit_code(&none), ==, 2);
}

static void test_show(void) {
        g_auto(Run) r = {};
        json_object *o, *v;

        run_migctl(&r, "policy", "show", "qemu-compatible", NULL);
        g_assert_cmpint(exit_code(&r), ==, 0);
        o = json_tokener_parse(r.out);
        g_assert_nonnull(o);
        g_assert_true(json_object_object_get_ex(o, "irq_restore", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "during-resuming");
        json_object_put(o);
}

static void test_usage(void) {
        g_auto(Run) none = {}, bogus = {}, opt = {}, help = {};

        run_migctl(&none, NULL);
        g_assert_cmpint(exit_code(&none), ==, 2);
        run_migctl(&bogus, "frobnicate", NULL);
        g_assert_cmpint(exit_code(&bogus), ==, 2);
        assert_contains(bogus.err, "unknown command 'frobnicate'");
        run_migctl(&opt, "--frob", "devices", NULL);
        g_assert_cmpint(exit_code(&opt), ==, 2);
        run_migctl(&help, "policy", "--help", NULL);
        g_assert_cmpint(exit_code(&help), ==, 0);
        assert_contains(help.out, "migctl policy explain NAME|FILE");
}

int main(int argc, char *argv[]) {
        int r;

        g_test_init(&argc, &argv, NULL);
        tmp_dir = g_dir_make_tmp("migctl-policy-XXXXXX", NULL);
        g_assert_nonnull(tmp_dir);
        g_test_add_func("/migctl/policy/explain-stop-window", test_explain_stop_window);
        g_test_add_func("/migctl/policy/explain-qemu-compatible", test_explain_qemu_compatible);
        g_test_add_func("/migctl/policy/explain-flags-p2p", test_explain_flags_p2p);
        g_test_add_func("/migctl/policy/explain-postcopy", test_explain_postcopy);
        g_test_add_func("/migctl/policy/explain-json", test_explain_json);
        g_test_add_func("/migctl/policy/explain-errors", test_explain_errors);
        g_test_add_func("/migctl/policy/check", test_check);
        g_test_add_func("/migctl/policy/show", test_show);
        g_test_add_func("/migctl/usage", test_usage);
        r = g_test_run();
        {
                g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp_dir);
                (void) !system(cmd);
        }
        g_free(tmp_dir);
        return r;
}
