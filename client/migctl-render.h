/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Terminal drawings of plans and timelines, shared by policy explain and (later) timeline. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "plan.h"
#include "policy.h"

typedef struct RenderStyle {
        bool color;
} RenderStyle;

/* One host's lane, top to bottom: states with v2 names and v1 bits, arcs, actions; SET_IRQS stands out. */
void render_plan_lane(FILE *f, const Plan *plan, PlanRole role, const RenderStyle *style);
/* "000 -> 100 -> 000 -> SET_IRQS -> 001": the v1 bits of each state (the v2 name where it has none). */
char *render_plan_summary(const Plan *plan, PlanRole role);
/* Header, both lanes (destination first: that is where the policy matters) and a legend. */
void render_plan(FILE *f, const Plan *plan, const Policy *policy, const RenderStyle *style);
