/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Planner tests: every built-in policy's steps on both hosts, device-dependent refusals and invariants. */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "plan.h"
#include "policy.h"
#include "util.h"

enum { SC = MIG_FLAG_STOP_COPY, P2P = MIG_FLAG_P2P, PRE = MIG_FLAG_PRE_COPY };

/* "STOP | ->RESUMING | open_stream | ...": one token per step, arcs prefixed with their arrow. */
static char *lane_string(const Plan *p, PlanRole role) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; i < p->n_steps[role]; i++) {
                const PlanStep *step = &p->steps[role][i];

                if (i > 0)
                        g_string_append(s, " | ");
                if (step->kind == PLAN_STEP_STATE)
                        g_string_append(s, mig_state_to_string(step->to));
                else if (step->kind == PLAN_STEP_ARC)
                        g_string_append_printf(s, "->%s", mig_state_to_string(step->to));
                else
                        g_string_append(s, plan_action_to_string(step->action));
        }
        return g_string_free(s, FALSE);
}

static PolicySet *builtins(void) {
        PolicySet *set = NULL;

        g_assert_cmpint(policy_set_new_builtin(&set), ==, 0);
        return set;
}

static Plan *plan_for(const char *policy_name, uint32_t flags, unsigned uapi) {
        _cleanup_(policy_set_freep) PolicySet *set = builtins();
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        const Policy *policy = policy_set_find(set, policy_name);
        Plan *plan = NULL;

        g_assert_nonnull(policy);
        g_assert_cmpint(plan_build(policy, &(MigCaps) { .flags = flags, .uapi = uapi }, &plan, &errors), ==, 0);
        g_assert_cmpuint(errors.n, ==, 0);
        return plan;
}

static void assert_lanes(const char *policy_name, uint32_t flags, unsigned uapi, const char *source,
                         const char *destination) {
        _cleanup_(plan_freep) Plan *plan = plan_for(policy_name, flags, uapi);
        g_autofree char *s = lane_string(plan, PLAN_ROLE_SOURCE);
        g_autofree char *d = lane_string(plan, PLAN_ROLE_DESTINATION);

        g_assert_cmpstr(s, ==, source);
        g_assert_cmpstr(d, ==, destination);
}

#define SOURCE_STOP_COPY_ONLY \
        "RUNNING | ->STOP | ->STOP_COPY | open_stream | transfer | commit | ->STOP | teardown_irqs | release"

static void test_stop_window(void) {
        assert_lanes("stop-window", SC, 2, SOURCE_STOP_COPY_ONLY,
                     "STOP | ->RESUMING | open_stream | transfer | verify | ->STOP | set_irqs | commit | ->RUNNING");
}

static void test_qemu_compatible(void) {
        assert_lanes("qemu-compatible", SC, 2, SOURCE_STOP_COPY_ONLY,
                     "STOP | ->RESUMING | open_stream | transfer | verify | set_irqs | ->STOP | commit | ->RUNNING");
}

static void test_early_irqs(void) {
        assert_lanes("early-irqs", SC, 2, SOURCE_STOP_COPY_ONLY,
                     "STOP | set_irqs | ->RESUMING | open_stream | transfer | verify | ->STOP | commit | ->RUNNING");
}

static void test_postcopy_v1(void) {
        assert_lanes("postcopy", SC, 1,
                     "RUNNING | ->STOP | ->STOP_COPY | open_stream | commit | transfer | ->STOP | teardown_irqs | "
                     "release",
                     "STOP | ->RESUMING | open_stream | set_irqs | commit | ->RESUMING_RUNNING | transfer | verify | "
                     "->RUNNING");
}

/* mtty's flags: pre-copy is used (auto), the saving group stays one stream, P2P states are walked. */
static void test_stop_window_all_flags(void) {
        assert_lanes("stop-window", SC | P2P | PRE, 2,
                     "RUNNING | ->PRE_COPY | open_stream | transfer_precopy | ->PRE_COPY_P2P | ->STOP_COPY | "
                     "transfer | commit | ->STOP | teardown_irqs | release",
                     "STOP | ->RESUMING | open_stream | transfer_precopy | transfer | verify | ->STOP | set_irqs | "
                     "commit | ->RUNNING_P2P | ->RUNNING");
}

static void test_precopy_off_and_p2p(void) {
        _cleanup_(policy_freep) Policy *p = NULL;
        _cleanup_(plan_freep) Plan *plan = NULL;
        g_autofree char *s = NULL;

        g_assert_cmpint(policy_new_default("no-precopy", &p), ==, 0);
        p->precopy = TRISTATE_OFF;
        g_assert_cmpint(plan_build(p, &(MigCaps) { .flags = SC | P2P | PRE, .uapi = 2 }, &plan, NULL), ==, 0);
        g_assert_false(plan->precopy);
        g_assert_true(plan->p2p);
        s = lane_string(plan, PLAN_ROLE_SOURCE);
        g_assert_cmpstr(s, ==,
                        "RUNNING | ->RUNNING_P2P | ->STOP | ->STOP_COPY | open_stream | transfer | commit | ->STOP | "
                        "teardown_irqs | release");
}

static void test_json(void) {
        _cleanup_(plan_freep) Plan *sw = plan_for("stop-window", SC, 2);
        _cleanup_json_ struct json_object *j = plan_to_json(sw);
        struct json_object *dest, *step, *v;

        g_assert_nonnull(j);
        g_assert_true(json_object_object_get_ex(j, "policy", &v));
        g_assert_cmpstr(json_object_get_string(v), ==, "stop-window");
        g_assert_true(json_object_object_get_ex(j, "destination", &dest));
        g_assert_cmpuint(json_object_array_length(dest), ==, 9);
        step = json_object_array_get_idx(dest, 0);
        g_assert_cmpstr(json_object_to_json_string_ext(step, JSON_C_TO_STRING_PLAIN), ==,
                        "{\"state\":\"STOP\",\"bits\":\"000\"}");
        step = json_object_array_get_idx(dest, 6);
        g_assert_cmpstr(json_object_to_json_string_ext(step, JSON_C_TO_STRING_PLAIN), ==, "{\"action\":\"set_irqs\"}");
        step = json_object_array_get_idx(dest, 8);
        g_assert_cmpstr(json_object_to_json_string_ext(step, JSON_C_TO_STRING_PLAIN), ==,
                        "{\"state\":\"RUNNING\",\"bits\":\"001\",\"from\":\"STOP\"}");
}

static void assert_refused(const Policy *p, MigCaps caps, const char *json_path, const char *message_part) {
        _cleanup_(policy_errors_clearp) PolicyErrors errors = {};
        Plan *plan = NULL;

        g_assert_cmpint(plan_build(p, &caps, &plan, &errors), ==, -EINVAL);
        g_assert_null(plan);
        g_assert_cmpuint(errors.n, >=, 1);
        g_assert_cmpstr(errors.items[0].file, ==, p->source ?: "built-in");
        g_assert_cmpstr(errors.items[0].json_path, ==, json_path);
        if (!strstr(errors.items[0].message, message_part))
                g_error("message \"%s\" lacks \"%s\"", errors.items[0].message, message_part);
}

static void test_device_dependent_refusals(void) {
        _cleanup_(policy_set_freep) PolicySet *set = builtins();
        _cleanup_(policy_freep) Policy *p = NULL;

        g_assert_cmpint(policy_new_default("needs-things", &p), ==, 0);
        free(p->source);
        p->source = g_strdup("/etc/migd/policy.d/needs-things.json");
        p->precopy = TRISTATE_REQUIRED;
        assert_refused(p, (MigCaps) { SC | P2P, 2 }, "$.precopy", "lack pre-copy");
        p->precopy = TRISTATE_AUTO;
        p->p2p = TRISTATE_REQUIRED;
        assert_refused(p, (MigCaps) { SC | PRE, 2 }, "$.p2p", "lack p2p");
        p->p2p = TRISTATE_AUTO;
        assert_refused(p, (MigCaps) { P2P, 2 }, "$", "lack stop-copy");
        assert_refused(policy_set_find(set, "postcopy"), (MigCaps) { SC, 2 }, "$.postcopy",
                       "migration v2 does not have");
        p->postcopy = true;
        p->irq_restore = IRQ_RESTORE_AFTER_RESUMING;
        assert_refused(p, (MigCaps) { SC, 1 }, "$.irq_restore", "STOP window");
}

/* Copies a plan's lane with one step moved, to feed plan_check() broken plans. */
static void move_step(Plan *p, PlanRole role, size_t from, size_t to) {
        PlanStep s = p->steps[role][from];

        if (from < to)
                memmove(&p->steps[role][from], &p->steps[role][from + 1], (to - from) * sizeof(PlanStep));
        else
                memmove(&p->steps[role][to + 1], &p->steps[role][to], (from - to) * sizeof(PlanStep));
        p->steps[role][to] = s;
}

static void assert_check_fails(Plan *p, const char *expected) {
        g_autofree char *error = NULL;

        g_assert_cmpint(plan_check(p, &error), ==, -EINVAL);
        g_assert_cmpstr(error, ==, expected);
}

static void test_invariants(void) {
        _cleanup_(plan_freep) Plan *p = NULL;
        g_autofree char *error = NULL;

        p = plan_for("stop-window", SC, 2);
        g_assert_cmpint(plan_check(p, &error), ==, 0);
        g_assert_null(error);

        /* SET_IRQS after the device runs. */
        move_step(p, PLAN_ROLE_DESTINATION, 6, 8);
        assert_check_fails(p, "destination: step 8: SET_IRQS while the device is RUNNING");
        move_step(p, PLAN_ROLE_DESTINATION, 8, 6);
        g_assert_cmpint(plan_check(p, NULL), ==, 0);

        /* Running before verify: verify moved behind the last arc. */
        move_step(p, PLAN_ROLE_DESTINATION, 4, 8);
        assert_check_fails(p, "destination: the device runs before its data is verified");
        plan_free(TAKE_PTR(p));

        /* An arc the device does not implement: RUNNING -> STOP with P2P present. */
        p = plan_for("stop-window", SC | P2P, 2);
        p->steps[PLAN_ROLE_SOURCE][1].to = MIG_STATE_STOP;
        assert_check_fails(p, "source: step 1: RUNNING -> STOP is not a legal arc for this device");
        plan_free(TAKE_PTR(p));

        /* The source commits while still running. */
        p = plan_for("stop-window", SC, 2);
        move_step(p, PLAN_ROLE_SOURCE, 5, 1);
        assert_check_fails(p, "source: the device is still RUNNING at the commit point");
        plan_free(TAKE_PTR(p));

        /* The destination runs before the commit point. */
        p = plan_for("stop-window", SC, 2);
        move_step(p, PLAN_ROLE_DESTINATION, 7, 8);
        assert_check_fails(p, "destination: the device runs before the commit point");
        plan_free(TAKE_PTR(p));

        /* Interrupts torn down on the source before the commit. */
        p = plan_for("stop-window", SC, 2);
        move_step(p, PLAN_ROLE_SOURCE, 7, 4);
        assert_check_fails(p, "source: interrupts are torn down before the commit point");
        plan_free(TAKE_PTR(p));

        /* No verification before running (non-postcopy): verify dropped by turning it into a release. */
        p = plan_for("qemu-compatible", SC, 2);
        p->steps[PLAN_ROLE_DESTINATION][4].action = PLAN_ACTION_RELEASE;
        assert_check_fails(p, "destination: the data is not verified after it is transferred");
}

static void test_every_builtin_every_flag_set_is_valid(void) {
        _cleanup_(policy_set_freep) PolicySet *set = builtins();
        static const uint32_t flag_sets[] = { SC, SC | P2P, SC | PRE, SC | P2P | PRE };

        g_assert_cmpuint(set->n, ==, 4);
        for (size_t i = 0; i < set->n; i++)
                for (size_t f = 0; f < G_N_ELEMENTS(flag_sets); f++) {
                        _cleanup_(plan_freep) Plan *plan = NULL;
                        unsigned uapi = set->items[i]->postcopy ? 1 : 2;

                        g_assert_cmpint(plan_build(set->items[i], &(MigCaps) { flag_sets[f], uapi }, &plan, NULL),
                                        ==, 0);
                        g_assert_cmpint(plan_check(plan, NULL), ==, 0);
                }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/plan/stop-window", test_stop_window);
        g_test_add_func("/plan/qemu-compatible", test_qemu_compatible);
        g_test_add_func("/plan/early-irqs", test_early_irqs);
        g_test_add_func("/plan/postcopy-v1", test_postcopy_v1);
        g_test_add_func("/plan/stop-window-all-flags", test_stop_window_all_flags);
        g_test_add_func("/plan/precopy-off-p2p", test_precopy_off_and_p2p);
        g_test_add_func("/plan/json", test_json);
        g_test_add_func("/plan/device-dependent-refusals", test_device_dependent_refusals);
        g_test_add_func("/plan/invariants", test_invariants);
        g_test_add_func("/plan/every-builtin-every-flag-set", test_every_builtin_every_flag_set_is_valid);
        return g_test_run();
}
