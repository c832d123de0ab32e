/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy tests: defaults, round trips, every validation message, directories, built-ins and resolution. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "policy.h"
#include "util.h"

#define ALL_KEYS "name, description, match, priority, irq_restore, postcopy, precopy, p2p, downtime_limit_ms, " \
                 "timeouts_ms, on_irq_while_stopped"

/* ---- helpers ---- */

static Policy *parse_ok(const char *json) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        Policy *p = NULL;
        int r;

        r = policy_parse_json(json, "test.json", &p, &errors);
        for (size_t i = 0; i < errors.n; i++)
                g_test_message("unexpected: %s: %s", errors.items[i].json_path, errors.items[i].message);
        g_assert_cmpint(r, ==, 0);
        g_assert_cmpuint(errors.n, ==, 0);
        g_assert_nonnull(p);
        return p;
}

/* Parses a document that must fail; ret is left to the caller to inspect. */
static void parse_bad(const char *json, PolicyErrors *errors) {
        Policy *p = (Policy *) 0x1;
        int r;

        r = policy_parse_json(json, "bad.json", &p, errors);
        g_assert_cmpint(r, ==, -EINVAL);
        g_assert_true(p == (Policy *) 0x1); /* untouched on failure */
        g_assert_cmpuint(errors->n, >, 0);
}

static const PolicyError *find_error(const PolicyErrors *e, const char *json_path) {
        for (size_t i = 0; i < e->n; i++)
                if (streq(e->items[i].json_path, json_path))
                        return &e->items[i];
        return NULL;
}

static void assert_has_error(const PolicyErrors *e, const char *json_path, const char *substring) {
        const PolicyError *err = find_error(e, json_path);

        if (!err) {
                for (size_t i = 0; i < e->n; i++)
                        g_test_message("have: %s: %s", e->items[i].json_path, e->items[i].message);
                g_error("no error at %s", json_path);
        }
        if (!strstr(err->message, substring))
                g_error("error at %s is \"%s\", wanted it to contain \"%s\"", json_path, err->message, substring);
}

/* The only error of a document, with an exact path and an exact message. */
static void assert_single_error(const char *json, const char *json_path, const char *message) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};

        parse_bad(json, &errors);
        for (size_t i = 0; i < errors.n; i++)
                g_test_message("have: %s: %s", errors.items[i].json_path, errors.items[i].message);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].file, ==, "bad.json");
        g_assert_cmpstr(errors.items[0].json_path, ==, json_path);
        g_assert_cmpstr(errors.items[0].message, ==, message);
}

static void assert_single_error_contains(const char *json, const char *json_path, const char *substring) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};

        parse_bad(json, &errors);
        g_assert_cmpuint(errors.n, ==, 1);
        assert_has_error(&errors, json_path, substring);
}

static char *make_tmp_dir(void) {
        g_autoptr(GError) error = NULL;
        char *dir = g_dir_make_tmp("migd-test-policy-XXXXXX", &error);

        g_assert_no_error(error);
        return dir;
}

static char *write_file(const char *dir, const char *name, const char *contents) {
        g_autoptr(GError) error = NULL;
        char *path = g_build_filename(dir, name, NULL);

        g_file_set_contents(path, contents, -1, &error);
        g_assert_no_error(error);
        return path;
}

static void remove_tree(const char *dir) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const char *name;

        g_assert_nonnull(d);
        while ((name = g_dir_read_name(d))) {
                g_autofree char *path = g_build_filename(dir, name, NULL);

                if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK))
                        remove_tree(path);
                else
                        g_assert_cmpint(g_unlink(path), ==, 0);
        }
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void assert_names(const PolicySet *s, const char *const *names, size_t n) {
        for (size_t i = 0; i < s->n; i++)
                g_test_message("set[%zu] = %s (%d)", i, s->items[i]->name, s->items[i]->priority);
        g_assert_cmpuint(s->n, ==, n);
        for (size_t i = 0; i < n; i++)
                g_assert_cmpstr(s->items[i]->name, ==, names[i]);
}

static const char *const builtin_order[] = { "stop-window", "qemu-compatible", "early-irqs", "postcopy" };

/* ---- enums ---- */

static void test_enum_strings(void) {
        static const char *const phases[] = { "preflight", "prepare",     "precopy", "stop_copy",
                                              "load",      "irq_restore", "verify",  "commit",
                                              "start",     "cleanup",     "rollback" };

        g_assert_cmpstr(irq_restore_to_string(IRQ_RESTORE_BEFORE_RESUMING), ==, "before-resuming");
        g_assert_cmpstr(irq_restore_to_string(IRQ_RESTORE_DURING_RESUMING), ==, "during-resuming");
        g_assert_cmpstr(irq_restore_to_string(IRQ_RESTORE_AFTER_RESUMING), ==, "after-resuming");
        g_assert_null(irq_restore_to_string(_IRQ_RESTORE_MAX));
        g_assert_null(irq_restore_to_string(_IRQ_RESTORE_INVALID));
        g_assert_cmpint(irq_restore_from_string("during-resuming"), ==, IRQ_RESTORE_DURING_RESUMING);
        g_assert_cmpint(irq_restore_from_string("During-Resuming"), ==, _IRQ_RESTORE_INVALID);
        g_assert_cmpint(irq_restore_from_string(NULL), ==, _IRQ_RESTORE_INVALID);

        g_assert_cmpstr(tristate_to_string(TRISTATE_OFF), ==, "off");
        g_assert_cmpstr(tristate_to_string(TRISTATE_AUTO), ==, "auto");
        g_assert_cmpstr(tristate_to_string(TRISTATE_REQUIRED), ==, "required");
        g_assert_cmpint(tristate_from_string("required"), ==, TRISTATE_REQUIRED);
        g_assert_cmpint(tristate_from_string("on"), ==, _TRISTATE_INVALID);

        g_assert_cmpstr(irq_while_stopped_to_string(IRQ_WHILE_STOPPED_FAIL), ==, "fail");
        g_assert_cmpstr(irq_while_stopped_to_string(IRQ_WHILE_STOPPED_WARN), ==, "warn");
        g_assert_cmpstr(irq_while_stopped_to_string(IRQ_WHILE_STOPPED_IGNORE), ==, "ignore");
        g_assert_cmpint(irq_while_stopped_from_string("ignore"), ==, IRQ_WHILE_STOPPED_IGNORE);
        g_assert_cmpint(irq_while_stopped_from_string("panic"), ==, _IRQ_WHILE_STOPPED_INVALID);

        g_assert_cmpuint(G_N_ELEMENTS(phases), ==, _MIG_PHASE_MAX);
        for (MigPhase i = 0; i < _MIG_PHASE_MAX; i++) {
                g_assert_cmpstr(mig_phase_to_string(i), ==, phases[i]);
                g_assert_cmpint(mig_phase_from_string(phases[i]), ==, i);
        }
        g_assert_null(mig_phase_to_string(_MIG_PHASE_MAX));
        g_assert_cmpint(mig_phase_from_string("stop-copy"), ==, _MIG_PHASE_INVALID);
}

/* ---- defaults ---- */

static void assert_defaults(const Policy *p) {
        g_assert_cmpstr(p->description, ==, "");
        g_assert_null(p->match.drivers);
        g_assert_false(p->match.has_vendor_id);
        g_assert_false(p->match.has_device_id);
        g_assert_null(p->match.mdev_types);
        g_assert_null(p->match.names);
        g_assert_cmpint(p->priority, ==, 0);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_AFTER_RESUMING);
        g_assert_false(p->postcopy);
        g_assert_cmpint(p->precopy, ==, TRISTATE_AUTO);
        g_assert_cmpint(p->p2p, ==, TRISTATE_AUTO);
        g_assert_cmpuint(p->downtime_limit_ms, ==, 300);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_PREFLIGHT], ==, 10000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_PREPARE], ==, 10000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_PRECOPY], ==, 600000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_STOP_COPY], ==, 120000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_LOAD], ==, 120000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_IRQ_RESTORE], ==, 5000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_VERIFY], ==, 10000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_COMMIT], ==, 10000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_START], ==, 5000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_CLEANUP], ==, 10000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_ROLLBACK], ==, 10000);
        g_assert_cmpint(p->on_irq_while_stopped, ==, IRQ_WHILE_STOPPED_WARN);
}

static void test_minimal_defaults(void) {
        _cleanup_(policy_freep) Policy *p = NULL, *q = NULL;

        p = parse_ok("{\"name\": \"x\"}");
        g_assert_cmpstr(p->name, ==, "x");
        g_assert_cmpstr(p->source, ==, "test.json");
        assert_defaults(p);

        q = parse_ok("{\"name\": \"x\", \"irq_restore\": \"after-resuming\"}");
        assert_defaults(q);
}

static void test_new_default(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        Policy *untouched = (Policy *) 0x1;

        g_assert_cmpint(policy_new_default("my-policy.v2", &p), ==, 0);
        g_assert_cmpstr(p->name, ==, "my-policy.v2");
        assert_defaults(p);

        g_assert_cmpint(policy_new_default("Bad", &untouched), ==, -EINVAL);
        g_assert_cmpint(policy_new_default("", &untouched), ==, -EINVAL);
        g_assert_cmpint(policy_new_default("-x", &untouched), ==, -EINVAL);
        g_assert_true(untouched == (Policy *) 0x1);
}

static void test_name_rule(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        char name[66], doc[128];

        memset(name, 'a', 64);
        name[64] = '\0';
        snprintf(doc, sizeof(doc), "{\"name\": \"%s\"}", name);
        p = parse_ok(doc);
        g_assert_cmpuint(strlen(p->name), ==, 64);

        name[64] = 'a';
        name[65] = '\0';
        snprintf(doc, sizeof(doc), "{\"name\": \"%s\"}", name);
        assert_single_error_contains(doc, "$.name", "must be a string of 1 to 64 characters");

        assert_single_error("{\"name\": \"Foo\"}", "$.name",
                            "must be a string of 1 to 64 characters from a-z, 0-9, \".\", \"_\" and \"-\", "
                            "starting with a-z or 0-9; got \"Foo\"");
        assert_single_error_contains("{\"name\": \"_x\"}", "$.name", "got \"_x\"");
        assert_single_error_contains("{\"name\": \"\"}", "$.name", "got \"\"");
        assert_single_error_contains("{\"name\": \"a b\"}", "$.name", "got \"a b\"");
        assert_single_error_contains("{\"name\": 5}", "$.name", "; got an integer");
        assert_single_error_contains("{\"name\": null}", "$.name", "; got null");
        assert_single_error_contains("{\"name\": \"a\\u0000b\"}", "$.name", "got \"a\\u0000b\"");
}

/* ---- round trip ---- */

static const char full_doc[] =
        "{\n"
        "  \"name\": \"gpu-a100\",\n"
        "  \"description\": \"A100 VFs: \\\"quoted\\\" text\",\n"
        "  \"match\": {\n"
        "    \"driver\": [\"nvidia-vfio\", \"vfio-pci\"],\n"
        "    \"vendor_id\": \"10de\",\n"
        "    \"device_id\": 8384,\n"
        "    \"mdev_type\": \"nvidia-500\",\n"
        "    \"name\": [\"0000:3b:*\", \"sim?\"]\n"
        "  },\n"
        "  \"priority\": 250,\n"
        "  \"irq_restore\": \"during-resuming\",\n"
        "  \"postcopy\": true,\n"
        "  \"precopy\": \"required\",\n"
        "  \"p2p\": \"off\",\n"
        "  \"downtime_limit_ms\": 1500,\n"
        "  \"timeouts_ms\": {\"preflight\": 1, \"load\": 3600000, \"irq_restore\": 42},\n"
        "  \"on_irq_while_stopped\": \"fail\"\n"
        "}\n";

static void assert_full(const Policy *p) {
        g_assert_cmpstr(p->name, ==, "gpu-a100");
        g_assert_cmpstr(p->description, ==, "A100 VFs: \"quoted\" text");
        g_assert_cmpuint(strv_length(p->match.drivers), ==, 2);
        g_assert_cmpstr(p->match.drivers[0], ==, "nvidia-vfio");
        g_assert_cmpstr(p->match.drivers[1], ==, "vfio-pci");
        g_assert_true(p->match.has_vendor_id);
        g_assert_cmphex(p->match.vendor_id, ==, 0x10de);
        g_assert_true(p->match.has_device_id);
        g_assert_cmphex(p->match.device_id, ==, 0x20c0);
        g_assert_cmpuint(strv_length(p->match.mdev_types), ==, 1);
        g_assert_cmpstr(p->match.mdev_types[0], ==, "nvidia-500");
        g_assert_cmpuint(strv_length(p->match.names), ==, 2);
        g_assert_cmpstr(p->match.names[1], ==, "sim?");
        g_assert_cmpint(p->priority, ==, 250);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_DURING_RESUMING);
        g_assert_true(p->postcopy);
        g_assert_cmpint(p->precopy, ==, TRISTATE_REQUIRED);
        g_assert_cmpint(p->p2p, ==, TRISTATE_OFF);
        g_assert_cmpuint(p->downtime_limit_ms, ==, 1500);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_PREFLIGHT], ==, 1);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_LOAD], ==, 3600000);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_IRQ_RESTORE], ==, 42);
        g_assert_cmpuint(p->timeout_ms[MIG_PHASE_PRECOPY], ==, 600000); /* not given: default */
        g_assert_cmpint(p->on_irq_while_stopped, ==, IRQ_WHILE_STOPPED_FAIL);
}

static void test_round_trip(void) {
        _cleanup_(policy_freep) Policy *p = NULL, *q = NULL, *copy = NULL;
        _cleanup_json_ struct json_object *j = NULL, *k = NULL, *jc = NULL;
        struct json_object *v, *match;
        const char *text;

        p = parse_ok(full_doc);
        assert_full(p);

        j = policy_to_json(p);
        g_assert_nonnull(j);
        g_assert_cmpint(json_object_object_length(j), ==, 11);
        g_assert_true(json_object_object_get_ex(j, "match", &match));
        g_assert_true(json_object_object_get_ex(match, "vendor_id", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "0x10de");
        g_assert_true(json_object_object_get_ex(match, "device_id", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "0x20c0");
        g_assert_true(json_object_object_get_ex(match, "mdev_type", &v));
        g_assert_true(json_object_is_type(v, json_type_array));
        g_assert_true(json_object_object_get_ex(j, "timeouts_ms", &v));
        g_assert_cmpint(json_object_object_length(v), ==, _MIG_PHASE_MAX);

        text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY);
        q = parse_ok(text);
        assert_full(q);
        k = policy_to_json(q);
        g_assert_true(json_object_equal(j, k));

        copy = policy_dup(p);
        g_assert_nonnull(copy);
        g_assert_true(copy->match.drivers != p->match.drivers);
        g_assert_cmpstr(copy->source, ==, "test.json");
        jc = policy_to_json(copy);
        g_assert_true(json_object_equal(j, jc));
}

static void test_to_json_minimal(void) {
        _cleanup_(policy_freep) Policy *p = NULL, *q = NULL, *copy = NULL;
        _cleanup_json_ struct json_object *j = NULL;
        struct json_object *v;

        p = parse_ok("{\"name\": \"x\"}");
        j = policy_to_json(p);
        g_assert_cmpint(json_object_object_length(j), ==, 11);
        g_assert_true(json_object_object_get_ex(j, "match", &v));
        g_assert_cmpint(json_object_object_length(v), ==, 0);
        g_assert_true(json_object_object_get_ex(j, "irq_restore", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "after-resuming");
        g_assert_true(json_object_object_get_ex(j, "on_irq_while_stopped", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "warn");
        g_assert_true(json_object_object_get_ex(j, "timeouts_ms", &v));
        g_assert_true(json_object_object_get_ex(v, "stop_copy", &v));
        g_assert_cmpint(json_object_get_int(v), ==, 120000);

        q = parse_ok(json_object_to_json_string(j));
        assert_defaults(q);

        /* A copy of a policy without match rules still matches everything. */
        copy = policy_dup(p);
        g_assert_null(copy->match.drivers);
        g_assert_true(policy_matches(copy, &(DeviceDescription) { .name = "sim0", .driver = "mtty" }));
}

/* ---- validation ---- */

static void test_error_json_syntax(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};

        parse_bad("{\n  \"name\": \"x\",\n  \"priority\": tru\n}\n", &errors);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].json_path, ==, "$");
        g_assert_cmpstr(errors.items[0].message, ==, "not valid JSON: boolean expected (line 3, column 18)");

        assert_single_error("", "$", "not valid JSON: unexpected end of data (line 1, column 1)");
        assert_single_error("{\"name\": \"x\",\n}", "$", "not valid JSON: unexpected character (line 2, column 1)");
        assert_single_error("{\"name\": \"x\"} {}", "$", "not valid JSON: unexpected character (line 1, column 15)");
        assert_single_error_contains("{\"name\": \"x\"", "$", "not valid JSON: unexpected end of data (line 1, column 13)");
}

static void test_error_not_object(void) {
        assert_single_error("[1, 2]", "$", "must be a JSON object; got an array");
        assert_single_error("\"x\"", "$", "must be a JSON object; got a string");
        assert_single_error("42", "$", "must be a JSON object; got an integer");
        assert_single_error("null", "$", "must be a JSON object; got null");
}

static void test_error_missing_name(void) {
        assert_single_error("{}", "$.name", "is required");
        assert_single_error("{\"irq_restore\": \"after-resuming\"}", "$.name", "is required");
}

static void test_error_enums(void) {
        assert_single_error("{\"name\": \"x\", \"irq_restore\": \"soon\"}", "$.irq_restore",
                            "must be one of before-resuming, during-resuming, after-resuming; got \"soon\"");
        assert_single_error("{\"name\": \"x\", \"irq_restore\": 1}", "$.irq_restore",
                            "must be one of before-resuming, during-resuming, after-resuming; got an integer");
        assert_single_error("{\"name\": \"x\", \"precopy\": \"on\"}", "$.precopy",
                            "must be one of off, auto, required; got \"on\"");
        assert_single_error("{\"name\": \"x\", \"p2p\": true}", "$.p2p",
                            "must be one of off, auto, required; got a boolean");
        assert_single_error("{\"name\": \"x\", \"on_irq_while_stopped\": \"abort\"}", "$.on_irq_while_stopped",
                            "must be one of fail, warn, ignore; got \"abort\"");
}

static void test_error_unknown_keys(void) {
        assert_single_error("{\"name\": \"x\", \"irq_restor\": \"after-resuming\"}", "$.irq_restor",
                            "unknown key \"irq_restor\" (did you mean \"irq_restore\"?)");
        assert_single_error("{\"name\": \"x\", \"prioirty\": 1}", "$.prioirty",
                            "unknown key \"prioirty\" (did you mean \"priority\"?)");
        assert_single_error("{\"name\": \"x\", \"colour\": \"red\"}", "$.colour",
                            "unknown key \"colour\"; allowed keys: " ALL_KEYS);
        assert_single_error("{\"name\": \"x\", \"match\": {\"vendorid\": 1}}", "$.match.vendorid",
                            "unknown key \"vendorid\" (did you mean \"vendor_id\"?)");
        assert_single_error("{\"name\": \"x\", \"match\": {\"pci\": 1}}", "$.match.pci",
                            "unknown key \"pci\"; allowed keys: driver, vendor_id, device_id, mdev_type, name");
        assert_single_error("{\"name\": \"x\", \"timeouts_ms\": {\"stopcopy\": 5}}", "$.timeouts_ms.stopcopy",
                            "unknown key \"stopcopy\" (did you mean \"stop_copy\"?)");
        assert_single_error("{\"name\": \"x\", \"timeouts_ms\": {\"migrate\": 5}}", "$.timeouts_ms.migrate",
                            "unknown key \"migrate\"; allowed keys: preflight, prepare, precopy, stop_copy, load, "
                            "irq_restore, verify, commit, start, cleanup, rollback");
        assert_single_error("{\"name\": \"x\", \"odd key\": 1}", "$[\"odd key\"]",
                            "unknown key \"odd key\"; allowed keys: " ALL_KEYS);
}

static void test_error_integers(void) {
        assert_single_error("{\"name\": \"x\", \"downtime_limit_ms\": 0}", "$.downtime_limit_ms",
                            "must be an integer from 1 to 600000; got 0");
        assert_single_error("{\"name\": \"x\", \"downtime_limit_ms\": 600001}", "$.downtime_limit_ms",
                            "must be an integer from 1 to 600000; got 600001");
        assert_single_error("{\"name\": \"x\", \"downtime_limit_ms\": 1.5}", "$.downtime_limit_ms",
                            "must be an integer from 1 to 600000; got 1.5");
        assert_single_error("{\"name\": \"x\", \"downtime_limit_ms\": \"300\"}", "$.downtime_limit_ms",
                            "must be an integer from 1 to 600000; got a string");
        assert_single_error("{\"name\": \"x\", \"priority\": -1001}", "$.priority",
                            "must be an integer from -1000 to 1000; got -1001");
        assert_single_error("{\"name\": \"x\", \"priority\": 99999999999999999999}", "$.priority",
                            "must be an integer from -1000 to 1000; got 18446744073709551615");
        assert_single_error("{\"name\": \"x\", \"timeouts_ms\": {\"load\": 0}}", "$.timeouts_ms.load",
                            "must be an integer from 1 to 3600000; got 0");
        assert_single_error("{\"name\": \"x\", \"timeouts_ms\": {\"commit\": 3600001}}", "$.timeouts_ms.commit",
                            "must be an integer from 1 to 3600000; got 3600001");
        assert_single_error("{\"name\": \"x\", \"timeouts_ms\": 5}", "$.timeouts_ms",
                            "must be an object; got an integer");
}

static void test_error_types(void) {
        assert_single_error("{\"name\": \"x\", \"postcopy\": \"yes\"}", "$.postcopy",
                            "must be true or false; got a string");
        assert_single_error("{\"name\": \"x\", \"postcopy\": 1}", "$.postcopy", "must be true or false; got an integer");
        assert_single_error("{\"name\": \"x\", \"description\": [\"a\"]}", "$.description",
                            "must be a string; got an array");
        assert_single_error("{\"name\": \"x\", \"match\": \"all\"}", "$.match", "must be an object; got a string");
}

static void test_error_match(void) {
        assert_single_error("{\"name\": \"x\", \"match\": {\"vendor_id\": \"zz\"}}", "$.match.vendor_id",
                            "must be an integer from 0 to 65535 or a hexadecimal string such as \"0x10de\"; got \"zz\"");
        assert_single_error_contains("{\"name\": \"x\", \"match\": {\"vendor_id\": 65536}}", "$.match.vendor_id",
                                     "; got 65536");
        assert_single_error_contains("{\"name\": \"x\", \"match\": {\"device_id\": -1}}", "$.match.device_id",
                                     "; got -1");
        assert_single_error_contains("{\"name\": \"x\", \"match\": {\"device_id\": \"0x12345\"}}",
                                     "$.match.device_id", "; got \"0x12345\"");
        assert_single_error_contains("{\"name\": \"x\", \"match\": {\"device_id\": \"0x\"}}", "$.match.device_id",
                                     "; got \"0x\"");
        assert_single_error_contains("{\"name\": \"x\", \"match\": {\"device_id\": true}}", "$.match.device_id",
                                     "; got a boolean");
        assert_single_error("{\"name\": \"x\", \"match\": {\"driver\": []}}", "$.match.driver",
                            "must be a non-empty string or a non-empty array of non-empty strings; got an empty array");
        assert_single_error("{\"name\": \"x\", \"match\": {\"driver\": \"\"}}", "$.match.driver",
                            "must be a non-empty string or a non-empty array of non-empty strings; got \"\"");
        assert_single_error("{\"name\": \"x\", \"match\": {\"mdev_type\": 3}}", "$.match.mdev_type",
                            "must be a non-empty string or a non-empty array of non-empty strings; got an integer");
        assert_single_error("{\"name\": \"x\", \"match\": {\"name\": [\"sim*\", 5]}}", "$.match.name[1]",
                            "must be a non-empty string; got an integer");
}

static void test_error_postcopy(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};

        assert_single_error("{\"name\": \"x\", \"irq_restore\": \"after-resuming\", \"postcopy\": true}",
                            "$.irq_restore",
                            "after-resuming needs a STOP window between RESUMING and RUNNING, but postcopy (true "
                            "at $.postcopy) runs the device while it is still resuming; use during-resuming or "
                            "before-resuming, or set postcopy to false");
        /* after-resuming is the default, so postcopy alone conflicts with it, and the fix is at irq_restore. */
        assert_single_error_contains("{\"name\": \"x\", \"postcopy\": true}", "$.postcopy",
                                     "true needs irq_restore set to during-resuming or before-resuming");
        /* An invalid irq_restore is reported once, not also as a conflict. */
        parse_bad("{\"name\": \"x\", \"irq_restore\": \"later\", \"postcopy\": true}", &errors);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].json_path, ==, "$.irq_restore");

        p = parse_ok("{\"name\": \"x\", \"irq_restore\": \"before-resuming\", \"postcopy\": true}");
        g_assert_true(p->postcopy);
}

static void test_error_many(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_free_ char *line = NULL;

        parse_bad("{\n"
                  "  \"irq_restor\": \"after-resuming\",\n"
                  "  \"priority\": 5000,\n"
                  "  \"match\": {\"vendor_id\": \"nvidia\", \"driver\": [\"\"], \"nme\": \"x\"},\n"
                  "  \"postcopy\": \"yes\",\n"
                  "  \"timeouts_ms\": {\"load\": -5, \"verify\": 7}\n"
                  "}",
                  &errors);
        for (size_t i = 0; i < errors.n; i++)
                g_test_message("%s: %s", errors.items[i].json_path, errors.items[i].message);
        g_assert_cmpuint(errors.n, ==, 8);
        /* Document order, then the document-level checks. */
        g_assert_cmpstr(errors.items[0].json_path, ==, "$.irq_restor");
        g_assert_cmpstr(errors.items[1].json_path, ==, "$.priority");
        g_assert_cmpstr(errors.items[2].json_path, ==, "$.match.vendor_id");
        g_assert_cmpstr(errors.items[3].json_path, ==, "$.match.driver[0]");
        g_assert_cmpstr(errors.items[4].json_path, ==, "$.match.nme");
        g_assert_cmpstr(errors.items[5].json_path, ==, "$.postcopy");
        g_assert_cmpstr(errors.items[6].json_path, ==, "$.timeouts_ms.load");
        g_assert_cmpstr(errors.items[7].json_path, ==, "$.name");
        assert_has_error(&errors, "$.match.nme", "(did you mean \"name\"?)");
        assert_has_error(&errors, "$.timeouts_ms.load", "got -5");
        for (size_t i = 0; i < errors.n; i++)
                g_assert_cmpstr(errors.items[i].file, ==, "bad.json");

        line = policy_error_format(&errors.items[1]);
        g_assert_cmpstr(line, ==, "bad.json: $.priority: must be an integer from -1000 to 1000; got 5000");
}

static void test_errors_null_and_append(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        Policy *p = NULL;

        /* Without an error list the verdict is the same. */
        g_assert_cmpint(policy_parse_json("{\"name\": 1}", "a.json", &p, NULL), ==, -EINVAL);
        g_assert_null(p);

        /* Errors accumulate over calls, each with its own file. */
        g_assert_cmpint(policy_parse_json("{}", "a.json", &p, &errors), ==, -EINVAL);
        g_assert_cmpint(policy_parse_json("[]", "b.json", &p, &errors), ==, -EINVAL);
        g_assert_cmpuint(errors.n, ==, 2);
        g_assert_cmpstr(errors.items[0].file, ==, "a.json");
        g_assert_cmpstr(errors.items[1].file, ==, "b.json");
        policy_errors_clear(&errors);
        g_assert_cmpuint(errors.n, ==, 0);
        g_assert_null(errors.items);
}

static void test_long_value_is_cut(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        GString *doc = g_string_new("{\"name\": \"x\", \"irq_restore\": \"");

        for (int i = 0; i < 1000; i++)
                g_string_append_c(doc, 'z');
        g_string_append(doc, "\"}");
        parse_bad(doc->str, &errors);
        g_assert_cmpuint(strlen(errors.items[0].message), <, 200);
        g_assert_nonnull(strstr(errors.items[0].message, "zzz...\""));
        g_string_free(doc, TRUE);
}

/* ---- files ---- */

static void test_parse_file(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_freep) Policy *p = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *path = NULL, *missing = NULL;
        int fd;

        fd = g_file_open_tmp("migd-policy-XXXXXX.json", &path, &error);
        g_assert_no_error(error);
        g_assert_cmpint(write(fd, full_doc, strlen(full_doc)), ==, (ssize_t) strlen(full_doc));
        close(fd);
        g_assert_cmpint(policy_parse_file(path, &p, &errors), ==, 0);
        assert_full(p);
        g_assert_cmpstr(p->source, ==, path);

        g_file_set_contents(path, "{\"name\": \"x\", \"priority\": \"high\"}", -1, &error);
        g_assert_no_error(error);
        g_assert_cmpint(policy_parse_file(path, &p, &errors), ==, -EINVAL);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].file, ==, path);
        g_assert_cmpstr(errors.items[0].json_path, ==, "$.priority");

        g_file_set_contents(path, "{\"name\": \"x\"}\0", 14, &error);
        g_assert_no_error(error);
        g_assert_cmpint(policy_parse_file(path, &p, &errors), ==, -EINVAL);
        g_assert_cmpuint(errors.n, ==, 2);
        g_assert_cmpstr(errors.items[1].message, ==, "contains a NUL byte at offset 13; a policy is JSON text");
        g_unlink(path);

        missing = g_strconcat(path, ".missing", NULL);
        g_assert_cmpint(policy_parse_file(missing, &p, &errors), ==, -ENOENT);
        g_assert_cmpuint(errors.n, ==, 3);
        g_assert_cmpstr(errors.items[2].file, ==, missing);
        g_assert_cmpstr(errors.items[2].json_path, ==, "$");
        g_assert_nonnull(strstr(errors.items[2].message, "cannot be read: "));
}

/* ---- built-ins ---- */

static void test_builtins(void) {
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        const Policy *p;

        g_assert_cmpint(policy_set_new_builtin(&s), ==, 0);
        assert_names(s, builtin_order, G_N_ELEMENTS(builtin_order));

        for (size_t i = 0; i < s->n; i++) {
                p = s->items[i];
                g_assert_cmpstr(p->source, ==, "built-in");
                g_assert_cmpuint(strlen(p->description), >, 20);
                g_assert_null(p->match.drivers);
                g_assert_false(p->match.has_vendor_id);
                g_assert_false(p->match.has_device_id);
                g_assert_null(p->match.mdev_types);
                g_assert_null(p->match.names);
                g_assert_cmpint(p->precopy, ==, TRISTATE_AUTO);
                g_assert_cmpint(p->p2p, ==, TRISTATE_AUTO);
                g_assert_cmpuint(p->downtime_limit_ms, ==, 300);
                g_assert_cmpuint(p->timeout_ms[MIG_PHASE_IRQ_RESTORE], ==, 5000);
                g_assert_cmpint(p->on_irq_while_stopped, ==, IRQ_WHILE_STOPPED_WARN);
        }

        p = policy_set_find(s, "stop-window");
        g_assert_cmpint(p->priority, ==, -100);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_AFTER_RESUMING);
        g_assert_false(p->postcopy);
        p = policy_set_find(s, "qemu-compatible");
        g_assert_cmpint(p->priority, ==, -200);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_DURING_RESUMING);
        g_assert_false(p->postcopy);
        p = policy_set_find(s, "early-irqs");
        g_assert_cmpint(p->priority, ==, -300);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_BEFORE_RESUMING);
        g_assert_false(p->postcopy);
        p = policy_set_find(s, "postcopy");
        g_assert_cmpint(p->priority, ==, -400);
        g_assert_cmpint(p->irq_restore, ==, IRQ_RESTORE_DURING_RESUMING);
        g_assert_true(p->postcopy);
        g_assert_null(policy_set_find(s, "nope"));

        /* With nothing else configured every device gets stop-window. */
        p = policy_set_resolve(s, &(DeviceDescription) { .name = "sim0", .driver = "mtty" });
        g_assert_cmpstr(p->name, ==, "stop-window");
}

/* ---- directories ---- */

static void test_load_dir_missing(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *missing = g_build_filename(dir, "policy.d", NULL);

        g_assert_cmpint(policy_set_load_dir(missing, &s, &errors), ==, 0);
        g_assert_cmpuint(errors.n, ==, 0);
        assert_names(s, builtin_order, G_N_ELEMENTS(builtin_order));
        remove_tree(dir);
}

static void test_load_dir(void) {
        static const char *const want[] = { "gpu", "zz-late", "stop-window", "qemu-compatible", "early-irqs",
                                            "postcopy" };
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *sub = NULL;
        const Policy *p;

        a = write_file(dir, "10-gpu.json", "{\"name\": \"gpu\", \"priority\": 10, \"match\": {\"vendor_id\": \"10de\"}}");
        b = write_file(dir, "20-stop.json",
                       "{\"name\": \"stop-window\", \"description\": \"site copy\", \"priority\": -100}");
        c = write_file(dir, "30-late.json", "{\"name\": \"zz-late\", \"priority\": 0}");
        /* Ignored: not *.json, or dot files. */
        d = write_file(dir, "README", "not json");
        e = write_file(dir, ".#30-late.json", "{ broken");
        sub = write_file(dir, "40-notes.json.bak", "{ broken");

        g_assert_cmpint(policy_set_load_dir(dir, &s, &errors), ==, 0);
        g_assert_cmpuint(errors.n, ==, 0);
        assert_names(s, want, G_N_ELEMENTS(want));

        /* The file shadows the built-in of the same name. */
        p = policy_set_find(s, "stop-window");
        g_assert_cmpstr(p->description, ==, "site copy");
        g_assert_cmpstr(p->source, ==, b);
        g_assert_cmpstr(policy_set_find(s, "gpu")->source, ==, a);
        g_assert_cmpstr(policy_set_find(s, "postcopy")->source, ==, "built-in");

        remove_tree(dir);
}

static void test_load_dir_broken(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = NULL, *b = NULL, *c = NULL;

        a = write_file(dir, "a.json", "{\"name\": \"good\"}");
        b = write_file(dir, "b.json", "{\"name\": \"bad\", \"p2p\": \"maybe\", \"downtime_limit_ms\": 0}");
        c = write_file(dir, "c.json", "{\"name\": \"worse\",}");

        g_assert_cmpint(policy_set_load_dir(dir, &s, &errors), ==, -EINVAL);
        g_assert_null(s);
        /* Every problem of every file, files in name order. */
        g_assert_cmpuint(errors.n, ==, 3);
        g_assert_cmpstr(errors.items[0].file, ==, b);
        g_assert_cmpstr(errors.items[0].json_path, ==, "$.p2p");
        g_assert_cmpstr(errors.items[1].file, ==, b);
        g_assert_cmpstr(errors.items[1].json_path, ==, "$.downtime_limit_ms");
        g_assert_cmpstr(errors.items[2].file, ==, c);
        g_assert_cmpstr(errors.items[2].json_path, ==, "$");
        g_assert_nonnull(strstr(errors.items[2].message, "not valid JSON: "));

        remove_tree(dir);
}

static void test_load_dir_duplicate(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_free_ char *message = NULL;
        PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = NULL, *b = NULL;

        b = write_file(dir, "b.json", "{\"name\": \"x\", \"priority\": 2}");
        a = write_file(dir, "a.json", "{\"name\": \"x\", \"priority\": 1}");

        g_assert_cmpint(policy_set_load_dir(dir, &s, &errors), ==, -EINVAL);
        g_assert_null(s);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].file, ==, b);
        g_assert_cmpstr(errors.items[0].json_path, ==, "$.name");
        message = g_strdup_printf("policy \"x\" is already defined in %s", a);
        g_assert_cmpstr(errors.items[0].message, ==, message);

        remove_tree(dir);
}

static void test_load_dir_not_a_dir(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *file = write_file(dir, "file", "x");

        g_assert_cmpint(policy_set_load_dir(file, &s, &errors), ==, -EINVAL);
        g_assert_null(s);
        g_assert_cmpuint(errors.n, ==, 1);
        g_assert_cmpstr(errors.items[0].file, ==, file);
        g_assert_nonnull(strstr(errors.items[0].message, "cannot read the policy directory"));
        remove_tree(dir);
}

static void test_load_files(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_set_freep) PolicySet *s = NULL, *t = NULL;
        PolicySet *u = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = NULL, *b = NULL, *c = NULL, *missing = NULL;

        a = write_file(dir, "one", "{\"name\": \"one\", \"priority\": 5}");
        b = write_file(dir, "two.json", "{\"name\": \"two\", \"priority\": 7}");
        c = write_file(dir, "postcopy.json", "{\"name\": \"postcopy\", \"irq_restore\": \"before-resuming\", \"postcopy\": true}");
        missing = g_build_filename(dir, "missing.json", NULL);

        {
                /* Explicit paths need no .json suffix; without built-ins only the files are there. */
                char *paths[] = { a, b, NULL };
                static const char *const want[] = { "two", "one" };

                g_assert_cmpint(policy_set_load_files(paths, false, &s, &errors), ==, 0);
                assert_names(s, want, G_N_ELEMENTS(want));
                g_assert_cmpstr(policy_set_resolve(s, &(DeviceDescription) { .name = "sim0" })->name, ==, "two");
        }
        {
                char *paths[] = { a, c, NULL };
                /* The file's postcopy keeps the default priority 0, so it moves up. */
                static const char *const want[] = { "one", "postcopy", "stop-window", "qemu-compatible",
                                                    "early-irqs" };

                g_assert_cmpint(policy_set_load_files(paths, true, &t, &errors), ==, 0);
                assert_names(t, want, G_N_ELEMENTS(want));
                g_assert_cmpint(policy_set_find(t, "postcopy")->irq_restore, ==, IRQ_RESTORE_BEFORE_RESUMING);
                g_assert_cmpstr(policy_set_find(t, "postcopy")->source, ==, c);
        }
        {
                char *paths[] = { a, missing, a, NULL };

                g_assert_cmpint(policy_set_load_files(paths, true, &u, &errors), ==, -EINVAL);
                g_assert_null(u);
                g_assert_cmpuint(errors.n, ==, 2);
                g_assert_cmpstr(errors.items[0].file, ==, missing);
                g_assert_cmpstr(errors.items[1].file, ==, a);
                g_assert_nonnull(strstr(errors.items[1].message, "is already defined in "));
        }
        {
                _cleanup_(policy_set_freep) PolicySet *empty = NULL;

                g_assert_cmpint(policy_set_load_files(NULL, false, &empty, &errors), ==, 0);
                g_assert_cmpuint(empty->n, ==, 0);
        }

        remove_tree(dir);
}

/* ---- matching ---- */

static void test_matches(void) {
        _cleanup_(policy_freep) Policy *any = NULL, *drv = NULL, *ids = NULL, *ids_int = NULL, *mdev = NULL,
                                       *glob = NULL, *all = NULL;
        DeviceDescription gpu = { .name = "0000:3b:00.1", .driver = "vfio-pci", .vendor_id = 0x10de, .device_id = 0x20b5 };
        DeviceDescription sim = { .name = "sim0", .driver = "mtty", .vendor_id = 0, .device_id = 0,
                                  .mdev_type = "mtty-2" };
        DeviceDescription bare = { .name = NULL, .driver = NULL };

        any = parse_ok("{\"name\": \"any\"}");
        drv = parse_ok("{\"name\": \"drv\", \"match\": {\"driver\": [\"mlx5_vfio_pci\", \"vfio-pci\"]}}");
        ids = parse_ok("{\"name\": \"ids\", \"match\": {\"vendor_id\": \"0x10DE\", \"device_id\": \"20b5\"}}");
        ids_int = parse_ok("{\"name\": \"ids-int\", \"match\": {\"vendor_id\": 4318}}");
        mdev = parse_ok("{\"name\": \"mdev\", \"match\": {\"mdev_type\": [\"mtty-1\", \"mtty-2\"]}}");
        glob = parse_ok("{\"name\": \"glob\", \"match\": {\"name\": [\"0000:3b:*\", \"sim[0-3]\"]}}");
        all = parse_ok("{\"name\": \"all\", \"match\": {\"driver\": \"mtty\", \"mdev_type\": \"mtty-2\", "
                       "\"name\": \"sim*\", \"vendor_id\": 0}}");

        g_assert_true(policy_matches(any, &gpu));
        g_assert_true(policy_matches(any, &bare));

        g_assert_true(policy_matches(drv, &gpu));
        g_assert_false(policy_matches(drv, &sim));
        g_assert_false(policy_matches(drv, &bare));

        g_assert_cmphex(ids->match.vendor_id, ==, 0x10de);
        g_assert_true(policy_matches(ids, &gpu));
        g_assert_false(policy_matches(ids, &(DeviceDescription) { .vendor_id = 0x10de, .device_id = 0x20b6 }));
        g_assert_true(policy_matches(ids_int, &gpu));
        g_assert_false(policy_matches(ids_int, &sim));

        g_assert_true(policy_matches(mdev, &sim));
        g_assert_false(policy_matches(mdev, &gpu)); /* no mdev type at all */
        g_assert_false(policy_matches(mdev, &(DeviceDescription) { .name = "sim1", .mdev_type = "mtty-4" }));

        g_assert_true(policy_matches(glob, &gpu));
        g_assert_true(policy_matches(glob, &sim));
        g_assert_false(policy_matches(glob, &(DeviceDescription) { .name = "sim4" }));
        g_assert_false(policy_matches(glob, &(DeviceDescription) { .name = "0000:3c:00.1" }));
        g_assert_false(policy_matches(glob, &bare));

        g_assert_true(policy_matches(all, &sim));
        g_assert_false(policy_matches(all, &(DeviceDescription) { .name = "sim0", .driver = "mtty", .vendor_id = 1,
                                                                  .mdev_type = "mtty-2" }));
}

static void test_resolve(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        DeviceDescription gpu = { .name = "0000:3b:00.1", .driver = "vfio-pci", .vendor_id = 0x10de, .device_id = 0x20b5 };
        DeviceDescription nic = { .name = "0000:5e:00.2", .driver = "mlx5_vfio_pci", .vendor_id = 0x15b3 };
        DeviceDescription sim = { .name = "sim0", .driver = "mtty", .mdev_type = "mtty-2" };
        DeviceDescription other = { .name = "0000:01:00.0", .driver = "vfio-pci", .vendor_id = 0x8086 };

        /* Same priority for nvidia-b and nvidia-a: the name decides. */
        a = write_file(dir, "a.json", "{\"name\": \"nvidia-b\", \"priority\": 10, \"match\": {\"vendor_id\": 4318}}");
        b = write_file(dir, "b.json", "{\"name\": \"nvidia-a\", \"priority\": 10, \"irq_restore\": \"during-resuming\", "
                                      "\"match\": {\"vendor_id\": \"10de\"}}");
        c = write_file(dir, "c.json", "{\"name\": \"mlx\", \"priority\": -99, \"match\": {\"driver\": \"mlx5_vfio_pci\"}}");
        d = write_file(dir, "d.json", "{\"name\": \"mtty\", \"priority\": 500, \"match\": {\"mdev_type\": \"mtty-2\", "
                                      "\"name\": \"sim*\"}}");
        /* Below stop-window, so it never wins while stop-window matches everything. */
        e = write_file(dir, "e.json", "{\"name\": \"never\", \"priority\": -101}");

        g_assert_cmpint(policy_set_load_dir(dir, &s, &errors), ==, 0);
        g_assert_cmpstr(s->items[0]->name, ==, "mtty");
        g_assert_cmpstr(s->items[1]->name, ==, "nvidia-a");
        g_assert_cmpstr(s->items[2]->name, ==, "nvidia-b");
        g_assert_cmpstr(s->items[3]->name, ==, "mlx");
        g_assert_cmpstr(s->items[4]->name, ==, "stop-window");
        g_assert_cmpstr(s->items[5]->name, ==, "never");

        g_assert_cmpstr(policy_set_resolve(s, &gpu)->name, ==, "nvidia-a");
        g_assert_cmpstr(policy_set_resolve(s, &nic)->name, ==, "mlx");
        g_assert_cmpstr(policy_set_resolve(s, &sim)->name, ==, "mtty");
        g_assert_cmpstr(policy_set_resolve(s, &other)->name, ==, "stop-window");

        remove_tree(dir);
}

static void test_resolve_none(void) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        g_autofree char *dir = make_tmp_dir();
        g_autofree char *a = write_file(dir, "a.json", "{\"name\": \"only-mtty\", \"match\": {\"driver\": \"mtty\"}}");
        char *paths[] = { a, NULL };

        g_assert_cmpint(policy_set_load_files(paths, false, &s, &errors), ==, 0);
        g_assert_null(policy_set_resolve(s, &(DeviceDescription) { .name = "x", .driver = "vfio-pci" }));
        g_assert_cmpstr(policy_set_resolve(s, &(DeviceDescription) { .name = "x", .driver = "mtty" })->name, ==,
                        "only-mtty");
        remove_tree(dir);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/policy/enum-strings", test_enum_strings);
        g_test_add_func("/policy/defaults/minimal", test_minimal_defaults);
        g_test_add_func("/policy/defaults/new-default", test_new_default);
        g_test_add_func("/policy/defaults/name-rule", test_name_rule);
        g_test_add_func("/policy/json/round-trip", test_round_trip);
        g_test_add_func("/policy/json/minimal", test_to_json_minimal);
        g_test_add_func("/policy/errors/json-syntax", test_error_json_syntax);
        g_test_add_func("/policy/errors/not-object", test_error_not_object);
        g_test_add_func("/policy/errors/missing-name", test_error_missing_name);
        g_test_add_func("/policy/errors/enums", test_error_enums);
        g_test_add_func("/policy/errors/unknown-keys", test_error_unknown_keys);
        g_test_add_func("/policy/errors/integers", test_error_integers);
        g_test_add_func("/policy/errors/types", test_error_types);
        g_test_add_func("/policy/errors/match", test_error_match);
        g_test_add_func("/policy/errors/postcopy", test_error_postcopy);
        g_test_add_func("/policy/errors/many", test_error_many);
        g_test_add_func("/policy/errors/null-and-append", test_errors_null_and_append);
        g_test_add_func("/policy/errors/long-value", test_long_value_is_cut);
        g_test_add_func("/policy/file/parse", test_parse_file);
        g_test_add_func("/policy/set/builtins", test_builtins);
        g_test_add_func("/policy/set/dir-missing", test_load_dir_missing);
        g_test_add_func("/policy/set/dir", test_load_dir);
        g_test_add_func("/policy/set/dir-broken", test_load_dir_broken);
        g_test_add_func("/policy/set/dir-duplicate", test_load_dir_duplicate);
        g_test_add_func("/policy/set/dir-not-a-dir", test_load_dir_not_a_dir);
        g_test_add_func("/policy/set/files", test_load_files);
        g_test_add_func("/policy/match/rules", test_matches);
        g_test_add_func("/policy/match/resolve", test_resolve);
        g_test_add_func("/policy/match/resolve-none", test_resolve_none);

        return g_test_run();
}
