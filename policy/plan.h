/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The planner: a policy plus a device's migration capabilities become the exact steps on both hosts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "mig-state.h"
#include "policy.h"

typedef enum PlanRole {
        PLAN_ROLE_SOURCE,
        PLAN_ROLE_DESTINATION,
        _PLAN_ROLE_MAX,
        _PLAN_ROLE_INVALID = -1,
} PlanRole;

typedef enum PlanAction {
        PLAN_ACTION_OPEN_STREAM,      /* take the data_fd the previous arc returned */
        PLAN_ACTION_TRANSFER_PRECOPY, /* iterate PRE_COPY data until the threshold or the downtime limit */
        PLAN_ACTION_TRANSFER,         /* the rest of the stream: source sends, destination writes */
        PLAN_ACTION_VERIFY,           /* destination: whole-stream digest matches before the device may run */
        PLAN_ACTION_SET_IRQS,         /* destination: VFIO_DEVICE_SET_IRQS for INTx/MSI/MSI-X */
        PLAN_ACTION_COMMIT,           /* the point of no return: from here the destination owns the device */
        PLAN_ACTION_TEARDOWN_IRQS,    /* source: interrupts disabled after the commit */
        PLAN_ACTION_RELEASE,          /* source: the device is released */
        _PLAN_ACTION_MAX,
        _PLAN_ACTION_INVALID = -1,
} PlanAction;

typedef enum PlanStepKind {
        PLAN_STEP_STATE,  /* the state the plan starts in (first step only) */
        PLAN_STEP_ARC,    /* one single-step arc, from -> to */
        PLAN_STEP_ACTION,
} PlanStepKind;

typedef struct PlanStep {
        PlanStepKind kind;
        MigState from; /* ARC only */
        MigState to;   /* STATE and ARC: the state after the step */
        PlanAction action;
} PlanStep;

/* What the planner needs to know about a device. */
typedef struct MigCaps {
        uint32_t flags;       /* MIG_FLAG_* */
        unsigned uapi;        /* 2 for the kernel's migration v2; 1 for a v1-model device (sim only) */
} MigCaps;

typedef struct Plan {
        char *policy;
        MigCaps caps;
        bool precopy; /* resolved from the policy's off/auto/required and the flags */
        bool p2p;
        bool postcopy; /* the destination runs in RESUMING|RUNNING (v1 only) */
        PlanStep *steps[_PLAN_ROLE_MAX];
        size_t n_steps[_PLAN_ROLE_MAX];
} Plan;

const char *plan_role_to_string(PlanRole r);
PlanRole plan_role_from_string(const char *s);
const char *plan_action_to_string(PlanAction a);
PlanAction plan_action_from_string(const char *s);

/* Builds both hosts' steps and checks them with plan_check(). Policy/device combinations that cannot work
 * (precopy or p2p required without the flag, postcopy on migration v2, ...) return -EINVAL and append a
 * message naming the policy's file and key to errors. */
int plan_build(const Policy *policy, const MigCaps *caps, Plan **ret, PolicyErrors *errors);
Plan *plan_free(Plan *p);
void plan_freep(Plan **p);

/* Invariants: only legal arcs; destination interrupts configured and data verified and committed before
 * the first running state (verify may follow it only for post-copy); no SET_IRQS while running; the source
 * is stopped before the commit and tears interrupts down only after it. -EINVAL with a sentence on failure. */
int plan_check(const Plan *p, char **ret_error);

/* {"policy": NAME, "source": [...], "destination": [...]}: each step {"state": V2, "bits": V1|null} or
 * {"action": NAME}; arcs carry "from" too. */
struct json_object *plan_to_json(const Plan *p);
