/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Draws plans for people: vertical lanes with state, v1 bits, arcs and the interrupt-restore marker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migctl-render.h"
#include "util.h"

#define ANSI_BOLD "\033[1m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_CYAN "\033[36m"
#define ANSI_GREY "\033[90m"
#define ANSI_RESET "\033[0m"

static const char *c(const RenderStyle *style, const char *code) {
        return style->color ? code : "";
}

static const char *bits_or_dashes(MigState s) {
        return mig_state_to_bits(s) ?: "---";
}

static const char *action_label(PlanAction a) {
        switch (a) {
        case PLAN_ACTION_OPEN_STREAM:
                return "open data stream (data_fd)";
        case PLAN_ACTION_TRANSFER_PRECOPY:
                return "transfer pre-copy data while the device runs";
        case PLAN_ACTION_TRANSFER:
                return "transfer device data";
        case PLAN_ACTION_VERIFY:
                return "verify the stream's SHA-256 digest";
        case PLAN_ACTION_SET_IRQS:
                return "SET_IRQS: restore INTx/MSI/MSI-X";
        case PLAN_ACTION_COMMIT:
                return "commit point: the destination owns the device from here";
        case PLAN_ACTION_TEARDOWN_IRQS:
                return "tear down source interrupts";
        case PLAN_ACTION_RELEASE:
                return "release the source device";
        default:
                return "?";
        }
}

static void render_state_line(FILE *f, MigState s, const RenderStyle *style) {
        const char *reason = mig_state_no_bits_reason(s);

        fprintf(f, "  %s%s%s  %s%s%s", c(style, ANSI_BOLD), bits_or_dashes(s), c(style, ANSI_RESET),
                c(style, mig_state_is_running(s) ? ANSI_GREEN : ANSI_CYAN), mig_state_to_string(s),
                c(style, ANSI_RESET));
        if (reason)
                fprintf(f, "%*s %s(%s)%s", (int) (16 - strlen(mig_state_to_string(s))), "", c(style, ANSI_GREY),
                        reason, c(style, ANSI_RESET));
        fputc('\n', f);
}

void render_plan_lane(FILE *f, const Plan *plan, PlanRole role, const RenderStyle *style) {
        for (size_t i = 0; i < plan->n_steps[role]; i++) {
                const PlanStep *s = &plan->steps[role][i];

                switch (s->kind) {
                case PLAN_STEP_STATE:
                        render_state_line(f, s->to, style);
                        break;
                case PLAN_STEP_ARC:
                        fprintf(f, "   %s│  arc %s -> %s%s\n", c(style, ANSI_GREY), mig_state_to_string(s->from),
                                mig_state_to_string(s->to), c(style, ANSI_RESET));
                        render_state_line(f, s->to, style);
                        break;
                case PLAN_STEP_ACTION:
                        if (s->action == PLAN_ACTION_SET_IRQS)
                                fprintf(f, "   ├─ %s%s%s  <== interrupts restored here\n",
                                        c(style, ANSI_YELLOW ANSI_BOLD), action_label(s->action),
                                        c(style, ANSI_RESET));
                        else
                                fprintf(f, "   ├─ %s\n", action_label(s->action));
                        break;
                }
        }
}

char *render_plan_summary(const Plan *plan, PlanRole role) {
        _cleanup_strv_free_ char **tokens = NULL;

        for (size_t i = 0; i < plan->n_steps[role]; i++) {
                const PlanStep *s = &plan->steps[role][i];
                const char *token;

                if (s->kind == PLAN_STEP_ACTION)
                        token = s->action == PLAN_ACTION_SET_IRQS ? "SET_IRQS" : NULL;
                else
                        token = mig_state_to_bits(s->to) ?: mig_state_to_string(s->to);
                if (token && strv_extend(&tokens, token) < 0)
                        return NULL;
        }
        return strv_join(tokens, " -> ");
}

static const char *irq_restore_explanation(IrqRestore v) {
        switch (v) {
        case IRQ_RESTORE_BEFORE_RESUMING:
                return "in STOP, before the device enters RESUMING";
        case IRQ_RESTORE_DURING_RESUMING:
                return "while RESUMING, after the data is written (as QEMU does)";
        case IRQ_RESTORE_AFTER_RESUMING:
                return "in the STOP window after RESUMING, before RUNNING";
        default:
                return "?";
        }
}

void render_plan(FILE *f, const Plan *plan, const Policy *policy, const RenderStyle *style) {
        char flags[MIG_FLAGS_STRING_MAX];

        fprintf(f, "%sPolicy %s%s (%s)\n", c(style, ANSI_BOLD), policy->name, c(style, ANSI_RESET),
                policy->source ?: "built-in");
        if (policy->description && policy->description[0])
                fprintf(f, "  %s\n", policy->description);
        fprintf(f, "  Interrupts restored %s%s.\n", irq_restore_explanation(policy->irq_restore),
                policy->postcopy ? "; post-copy: the device runs while still resuming" : "");
        fprintf(f, "  Device model: migration v%u, flags %s; pre-copy %s, p2p %s\n\n", plan->caps.uapi,
                mig_flags_to_string(plan->caps.flags, flags, sizeof(flags)), plan->precopy ? "on" : "off",
                plan->p2p ? "on" : "off");

        for (PlanRole role = _PLAN_ROLE_MAX; role-- > 0;) {
                _cleanup_free_ char *summary = render_plan_summary(plan, role);

                fprintf(f, "%s%s%s  (v1 bits RESUMING SAVING RUNNING)\n", c(style, ANSI_BOLD),
                        role == PLAN_ROLE_DESTINATION ? "Destination" : "Source", c(style, ANSI_RESET));
                render_plan_lane(f, plan, role, style);
                fprintf(f, "  %s\n\n", strna(summary));
        }
}
