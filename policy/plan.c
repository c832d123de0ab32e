/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The planner: turns a policy and a device's migration capabilities into checked steps for both hosts. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "util.h"

static const char *const role_names[_PLAN_ROLE_MAX] = {
        [PLAN_ROLE_SOURCE] = "source",
        [PLAN_ROLE_DESTINATION] = "destination",
};

static const char *const action_names[_PLAN_ACTION_MAX] = {
        [PLAN_ACTION_OPEN_STREAM] = "open_stream",
        [PLAN_ACTION_TRANSFER_PRECOPY] = "transfer_precopy",
        [PLAN_ACTION_TRANSFER] = "transfer",
        [PLAN_ACTION_VERIFY] = "verify",
        [PLAN_ACTION_SET_IRQS] = "set_irqs",
        [PLAN_ACTION_COMMIT] = "commit",
        [PLAN_ACTION_TEARDOWN_IRQS] = "teardown_irqs",
        [PLAN_ACTION_RELEASE] = "release",
};

const char *plan_role_to_string(PlanRole r) {
        return r >= 0 && r < _PLAN_ROLE_MAX ? role_names[r] : NULL;
}

PlanRole plan_role_from_string(const char *s) {
        for (PlanRole r = 0; s && r < _PLAN_ROLE_MAX; r++)
                if (streq(s, role_names[r]))
                        return r;
        return _PLAN_ROLE_INVALID;
}

const char *plan_action_to_string(PlanAction a) {
        return a >= 0 && a < _PLAN_ACTION_MAX ? action_names[a] : NULL;
}

PlanAction plan_action_from_string(const char *s) {
        for (PlanAction a = 0; s && a < _PLAN_ACTION_MAX; a++)
                if (streq(s, action_names[a]))
                        return a;
        return _PLAN_ACTION_INVALID;
}

Plan *plan_free(Plan *p) {
        if (!p)
                return NULL;
        for (PlanRole r = 0; r < _PLAN_ROLE_MAX; r++)
                free(p->steps[r]);
        free(p->policy);
        free(p);
        return NULL;
}

void plan_freep(Plan **p) {
        plan_free(*p);
}

/* Steps of one role while it is being built; `state` tracks where the device is after the last step. */
typedef struct Builder {
        PlanStep *steps;
        size_t n;
        MigState state;
        int error;
} Builder;

static void builder_push(Builder *b, PlanStep step) {
        PlanStep *grown;

        if (b->error < 0)
                return;
        grown = realloc(b->steps, (b->n + 1) * sizeof(PlanStep));
        if (!grown) {
                b->error = -ENOMEM;
                return;
        }
        b->steps = grown;
        b->steps[b->n++] = step;
}

static void builder_start(Builder *b, MigState s) {
        builder_push(b, (PlanStep) { .kind = PLAN_STEP_STATE, .to = s });
        b->state = s;
}

static void builder_action(Builder *b, PlanAction a) {
        builder_push(b, (PlanStep) { .kind = PLAN_STEP_ACTION, .action = a });
}

static void builder_arc(Builder *b, MigState to) {
        builder_push(b, (PlanStep) { .kind = PLAN_STEP_ARC, .from = b->state, .to = to });
        b->state = to;
}

/* The kernel's own path, arc by arc, so the plan shows exactly what the device will see. */
static void builder_walk(Builder *b, MigState target, uint32_t flags) {
        MigState path[MIG_PATH_MAX];
        size_t n;
        int r;

        r = mig_path(b->state, target, flags, path, &n);
        if (r < 0) {
                b->error = b->error ?: r;
                return;
        }
        for (size_t i = 0; i < n; i++)
                builder_arc(b, path[i]);
}

static void errors_add(PolicyErrors *errors, const Policy *policy, const char *json_path, const char *format, ...)
        _printf_(4, 5);

static void errors_add(PolicyErrors *errors, const Policy *policy, const char *json_path, const char *format, ...) {
        PolicyError *grown, e = {};
        va_list ap;

        if (!errors)
                return;
        va_start(ap, format);
        if (vasprintf(&e.message, format, ap) < 0)
                e.message = NULL;
        va_end(ap);
        e.file = strdup(policy->source ?: "built-in");
        e.json_path = strdup(json_path);
        grown = realloc(errors->items, (errors->n + 1) * sizeof(PolicyError));
        if (!e.message || !e.file || !e.json_path || !grown) {
                free(e.message);
                free(e.file);
                free(e.json_path);
                if (grown)
                        errors->items = grown;
                return;
        }
        errors->items = grown;
        errors->items[errors->n++] = e;
}

/* Device-dependent checks the document validator cannot make; each names the policy key responsible. */
static int plan_check_compatibility(const Policy *policy, const MigCaps *caps, PolicyErrors *errors) {
        char flags[MIG_FLAGS_STRING_MAX];
        int r = 0;

        mig_flags_to_string(caps->flags, flags, sizeof(flags));
        if (!(caps->flags & MIG_FLAG_STOP_COPY)) {
                errors_add(errors, policy, "$", "the device cannot migrate: its migration flags (%s) lack stop-copy",
                           flags);
                r = -EINVAL;
        }
        if (caps->uapi != 1 && caps->uapi != 2) {
                errors_add(errors, policy, "$", "unknown migration protocol version %u (1 or 2)", caps->uapi);
                r = -EINVAL;
        }
        if (policy->precopy == TRISTATE_REQUIRED && !(caps->flags & MIG_FLAG_PRE_COPY)) {
                errors_add(errors, policy, "$.precopy",
                           "required, but the device's migration flags (%s) lack pre-copy; use auto or off", flags);
                r = -EINVAL;
        }
        if (policy->p2p == TRISTATE_REQUIRED && !(caps->flags & MIG_FLAG_P2P)) {
                errors_add(errors, policy, "$.p2p",
                           "required, but the device's migration flags (%s) lack p2p; use auto or off", flags);
                r = -EINVAL;
        }
        if (policy->postcopy && caps->uapi == 2) {
                errors_add(errors, policy, "$.postcopy",
                           "post-copy needs the v1 state RESUMING|RUNNING (101), which migration v2 does not have; "
                           "this device speaks migration v2");
                r = -EINVAL;
        }
        if (policy->postcopy && policy->irq_restore == IRQ_RESTORE_AFTER_RESUMING) {
                errors_add(errors, policy, "$.irq_restore",
                           "after-resuming needs a STOP window between RESUMING and RUNNING, which post-copy does "
                           "not have");
                r = -EINVAL;
        }
        return r;
}

static void build_source(Builder *b, const Plan *plan) {
        uint32_t flags = plan->caps.flags;

        builder_start(b, MIG_STATE_RUNNING);
        if (plan->precopy) {
                builder_walk(b, MIG_STATE_PRE_COPY, flags);
                builder_action(b, PLAN_ACTION_OPEN_STREAM);
                builder_action(b, PLAN_ACTION_TRANSFER_PRECOPY);
                builder_walk(b, MIG_STATE_STOP_COPY, flags);
        } else {
                builder_walk(b, MIG_STATE_STOP_COPY, flags);
                builder_action(b, PLAN_ACTION_OPEN_STREAM);
        }
        if (plan->postcopy) {
                /* The destination runs before the rest of the data arrives, so it must own the device first. */
                builder_action(b, PLAN_ACTION_COMMIT);
                builder_action(b, PLAN_ACTION_TRANSFER);
        } else {
                builder_action(b, PLAN_ACTION_TRANSFER);
                builder_action(b, PLAN_ACTION_COMMIT);
        }
        builder_walk(b, MIG_STATE_STOP, flags);
        builder_action(b, PLAN_ACTION_TEARDOWN_IRQS);
        builder_action(b, PLAN_ACTION_RELEASE);
}

static void build_destination(Builder *b, const Plan *plan, IrqRestore irq_restore) {
        uint32_t flags = plan->caps.flags;

        /* The prepare phase brings the reserved target to STOP; the plan starts there. */
        builder_start(b, MIG_STATE_STOP);
        if (irq_restore == IRQ_RESTORE_BEFORE_RESUMING)
                builder_action(b, PLAN_ACTION_SET_IRQS);
        builder_walk(b, MIG_STATE_RESUMING, flags);
        builder_action(b, PLAN_ACTION_OPEN_STREAM);
        if (plan->precopy)
                builder_action(b, PLAN_ACTION_TRANSFER_PRECOPY);

        if (plan->postcopy) {
                if (irq_restore == IRQ_RESTORE_DURING_RESUMING)
                        builder_action(b, PLAN_ACTION_SET_IRQS);
                builder_action(b, PLAN_ACTION_COMMIT);
                builder_arc(b, MIG_STATE_V1_RESUMING_RUNNING);
                builder_action(b, PLAN_ACTION_TRANSFER);
                builder_action(b, PLAN_ACTION_VERIFY);
                builder_arc(b, MIG_STATE_RUNNING);
                return;
        }

        builder_action(b, PLAN_ACTION_TRANSFER);
        /* The digest is checked before the device even parses the data. */
        builder_action(b, PLAN_ACTION_VERIFY);
        if (irq_restore == IRQ_RESTORE_DURING_RESUMING)
                builder_action(b, PLAN_ACTION_SET_IRQS);
        builder_walk(b, MIG_STATE_STOP, flags);
        if (irq_restore == IRQ_RESTORE_AFTER_RESUMING)
                builder_action(b, PLAN_ACTION_SET_IRQS);
        builder_action(b, PLAN_ACTION_COMMIT);
        builder_walk(b, MIG_STATE_RUNNING, flags);
}

int plan_build(const Policy *policy, const MigCaps *caps, Plan **ret, PolicyErrors *errors) {
        _cleanup_(plan_freep) Plan *plan = NULL;
        _cleanup_free_ char *error = NULL;
        Builder builders[_PLAN_ROLE_MAX] = {};
        int r;

        assert(policy);
        assert(caps);
        assert(ret);

        r = plan_check_compatibility(policy, caps, errors);
        if (r < 0)
                return r;

        plan = calloc(1, sizeof(*plan));
        if (!plan)
                return -ENOMEM;
        plan->policy = strdup(policy->name);
        if (!plan->policy)
                return -ENOMEM;
        plan->caps = *caps;
        plan->postcopy = policy->postcopy;
        plan->precopy = policy->precopy != TRISTATE_OFF && (caps->flags & MIG_FLAG_PRE_COPY);
        plan->p2p = policy->p2p != TRISTATE_OFF && (caps->flags & MIG_FLAG_P2P);

        build_source(&builders[PLAN_ROLE_SOURCE], plan);
        build_destination(&builders[PLAN_ROLE_DESTINATION], plan, policy->irq_restore);
        for (PlanRole role = 0; role < _PLAN_ROLE_MAX; role++) {
                plan->steps[role] = builders[role].steps;
                plan->n_steps[role] = builders[role].n;
                if (builders[role].error < 0)
                        r = builders[role].error;
        }
        if (r < 0)
                return r;

        r = plan_check(plan, &error);
        if (r < 0) {
                errors_add(errors, policy, "$", "the plan breaks an invariant: %s", error);
                return r;
        }
        *ret = TAKE_PTR(plan);
        return 0;
}

static bool arc_allowed(const Plan *p, MigState from, MigState to) {
        if (mig_arc_is_legal(from, to, p->caps.flags))
                return true;
        /* The v1 model's post-copy arcs: 100 -> 101 and 101 -> 001. */
        return p->caps.uapi == 1 &&
               ((from == MIG_STATE_RESUMING && to == MIG_STATE_V1_RESUMING_RUNNING) ||
                (from == MIG_STATE_V1_RESUMING_RUNNING && to == MIG_STATE_RUNNING));
}

static int fail(char **ret_error, const char *format, ...) _printf_(2, 3);

static int fail(char **ret_error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, format);
                if (vasprintf(ret_error, format, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

/* Where in a role's steps the milestones fall; SIZE_MAX when absent. */
typedef struct Milestones {
        size_t first_running, commit, set_irqs, verify, transfer, teardown, open_stream;
        unsigned n_commit, n_set_irqs;
        bool running_after_commit;
} Milestones;

static int check_role_steps(const Plan *p, PlanRole role, Milestones *m, char **ret_error) {
        const PlanStep *steps = p->steps[role];
        const char *who = plan_role_to_string(role);
        MigState state;

        *m = (Milestones) { SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX, SIZE_MAX, 0, 0, false };
        if (p->n_steps[role] == 0 || steps[0].kind != PLAN_STEP_STATE)
                return fail(ret_error, "%s: the plan does not start with the device's state", who);
        state = steps[0].to;
        if (mig_state_is_running(state))
                m->first_running = 0;

        for (size_t i = 1; i < p->n_steps[role]; i++) {
                const PlanStep *s = &steps[i];

                switch (s->kind) {
                case PLAN_STEP_STATE:
                        return fail(ret_error, "%s: step %zu restates the device's state mid-plan", who, i);
                case PLAN_STEP_ARC:
                        if (s->from != state)
                                return fail(ret_error, "%s: step %zu starts an arc from %s, but the device is in %s",
                                            who, i, mig_state_to_string(s->from), mig_state_to_string(state));
                        if (!arc_allowed(p, s->from, s->to))
                                return fail(ret_error, "%s: step %zu: %s -> %s is not a legal arc for this device",
                                            who, i, mig_state_to_string(s->from), mig_state_to_string(s->to));
                        state = s->to;
                        if (mig_state_is_running(state)) {
                                if (m->first_running == SIZE_MAX)
                                        m->first_running = i;
                                if (m->commit != SIZE_MAX)
                                        m->running_after_commit = true;
                        }
                        break;
                case PLAN_STEP_ACTION:
                        switch (s->action) {
                        case PLAN_ACTION_SET_IRQS:
                                if (mig_state_is_running(state))
                                        return fail(ret_error, "%s: step %zu: SET_IRQS while the device is %s",
                                                    who, i, mig_state_to_string(state));
                                m->set_irqs = i;
                                m->n_set_irqs++;
                                break;
                        case PLAN_ACTION_COMMIT:
                                m->commit = i;
                                m->n_commit++;
                                break;
                        case PLAN_ACTION_VERIFY:
                                m->verify = i;
                                break;
                        case PLAN_ACTION_TRANSFER:
                                m->transfer = i;
                                break;
                        case PLAN_ACTION_TEARDOWN_IRQS:
                                m->teardown = i;
                                break;
                        case PLAN_ACTION_OPEN_STREAM:
                                if (!mig_state_is_saving(state) && state != MIG_STATE_RESUMING)
                                        return fail(ret_error, "%s: step %zu opens the data stream in %s", who,
                                                    i, mig_state_to_string(state));
                                m->open_stream = i;
                                break;
                        default:
                                break;
                        }
                        break;
                }
        }
        if (m->n_commit != 1)
                return fail(ret_error, "%s: the plan has %u commit points, not one", who, m->n_commit);
        if (m->open_stream == SIZE_MAX || m->transfer == SIZE_MAX)
                return fail(ret_error, "%s: the plan never moves the device's data", who);
        return 0;
}

static int check_destination(const Plan *p, const Milestones *m, char **ret_error) {
        if (m->n_set_irqs != 1)
                return fail(ret_error, "destination: interrupts are restored %u times, not once", m->n_set_irqs);
        if (m->first_running == SIZE_MAX)
                return fail(ret_error, "destination: the device never runs");
        if (m->set_irqs > m->first_running)
                return fail(ret_error, "destination: interrupts are configured after the device first runs");
        if (m->commit > m->first_running)
                return fail(ret_error, "destination: the device runs before the commit point");
        if (m->verify == SIZE_MAX || m->verify < m->transfer)
                return fail(ret_error, "destination: the data is not verified after it is transferred");
        /* Post-copy runs the device while data still flows; only then may verification follow running. */
        if (!p->postcopy && m->verify > m->first_running)
                return fail(ret_error, "destination: the device runs before its data is verified");
        return 0;
}

static int check_source(const Plan *p, const Milestones *m, char **ret_error) {
        const PlanStep *steps = p->steps[PLAN_ROLE_SOURCE];
        MigState state = steps[0].to;

        for (size_t i = 1; i <= m->commit; i++)
                if (steps[i].kind == PLAN_STEP_ARC)
                        state = steps[i].to;
        if (mig_state_is_running(state))
                return fail(ret_error, "source: the device is still %s at the commit point",
                            mig_state_to_string(state));
        if (m->running_after_commit)
                return fail(ret_error, "source: the device runs again after the commit point");
        if (m->teardown == SIZE_MAX || m->teardown < m->commit)
                return fail(ret_error, "source: interrupts are torn down before the commit point");
        if (m->set_irqs != SIZE_MAX)
                return fail(ret_error, "source: SET_IRQS belongs to the destination");
        return 0;
}

int plan_check(const Plan *p, char **ret_error) {
        Milestones source, destination;
        int r;

        assert(p);

        r = check_role_steps(p, PLAN_ROLE_SOURCE, &source, ret_error);
        if (r < 0)
                return r;
        r = check_role_steps(p, PLAN_ROLE_DESTINATION, &destination, ret_error);
        if (r < 0)
                return r;
        if (destination.first_running == 0)
                return fail(ret_error, "destination: the target must not be running when the plan starts");
        r = check_source(p, &source, ret_error);
        if (r < 0)
                return r;
        return check_destination(p, &destination, ret_error);
}

static struct json_object *step_to_json(const PlanStep *s) {
        struct json_object *o = json_object_new_object();
        const char *bits;

        if (!o)
                return NULL;
        if (s->kind == PLAN_STEP_ACTION) {
                json_object_object_add(o, "action", json_object_new_string(plan_action_to_string(s->action)));
                return o;
        }
        json_object_object_add(o, "state", json_object_new_string(mig_state_to_string(s->to)));
        bits = mig_state_to_bits(s->to);
        json_object_object_add(o, "bits", bits ? json_object_new_string(bits) : NULL);
        if (s->kind == PLAN_STEP_ARC)
                json_object_object_add(o, "from", json_object_new_string(mig_state_to_string(s->from)));
        return o;
}

struct json_object *plan_to_json(const Plan *p) {
        _cleanup_json_ struct json_object *o = NULL;
        char flags[MIG_FLAGS_STRING_MAX];

        assert(p);

        o = json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "policy", json_object_new_string(p->policy));
        json_object_object_add(o, "flags",
                               json_object_new_string(mig_flags_to_string(p->caps.flags, flags, sizeof(flags))));
        json_object_object_add(o, "uapi", json_object_new_int((int) p->caps.uapi));
        json_object_object_add(o, "precopy", json_object_new_boolean(p->precopy));
        json_object_object_add(o, "p2p", json_object_new_boolean(p->p2p));
        json_object_object_add(o, "postcopy", json_object_new_boolean(p->postcopy));
        for (PlanRole role = 0; role < _PLAN_ROLE_MAX; role++) {
                struct json_object *a = json_object_new_array();

                if (!a)
                        return NULL;
                json_object_object_add(o, plan_role_to_string(role), a);
                for (size_t i = 0; i < p->n_steps[role]; i++) {
                        struct json_object *step = step_to_json(&p->steps[role][i]);
                        if (!step)
                                return NULL;
                        json_object_array_add(a, step);
                }
        }
        return TAKE_PTR(o);
}
