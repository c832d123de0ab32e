/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Policy documents: where the destination restores interrupts, and the rest of a migration's rules. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

typedef enum IrqRestore {
        IRQ_RESTORE_BEFORE_RESUMING,  /* in STOP, before STOP -> RESUMING */
        IRQ_RESTORE_DURING_RESUMING,  /* data written, RESUMING not yet left (QEMU today) */
        IRQ_RESTORE_AFTER_RESUMING,   /* in the STOP window after RESUMING -> STOP, before RUNNING */
        _IRQ_RESTORE_MAX,
        _IRQ_RESTORE_INVALID = -1,
} IrqRestore;

typedef enum Tristate {
        TRISTATE_OFF,
        TRISTATE_AUTO,
        TRISTATE_REQUIRED,
        _TRISTATE_MAX,
        _TRISTATE_INVALID = -1,
} Tristate;

typedef enum IrqWhileStopped {
        IRQ_WHILE_STOPPED_FAIL,
        IRQ_WHILE_STOPPED_WARN,
        IRQ_WHILE_STOPPED_IGNORE,
        _IRQ_WHILE_STOPPED_MAX,
        _IRQ_WHILE_STOPPED_INVALID = -1,
} IrqWhileStopped;

typedef enum MigPhase {
        MIG_PHASE_PREFLIGHT,
        MIG_PHASE_PREPARE,
        MIG_PHASE_PRECOPY,
        MIG_PHASE_STOP_COPY,
        MIG_PHASE_LOAD,
        MIG_PHASE_IRQ_RESTORE,
        MIG_PHASE_VERIFY,
        MIG_PHASE_COMMIT,
        MIG_PHASE_START,
        MIG_PHASE_CLEANUP,
        MIG_PHASE_ROLLBACK,
        _MIG_PHASE_MAX,
        _MIG_PHASE_INVALID = -1,
} MigPhase;

/* Match rules: every rule that is set must match; an empty rule set matches every device. */
typedef struct PolicyMatch {
        char **drivers;    /* exact driver names, any of them (NULL: any driver) */
        bool has_vendor_id;
        uint16_t vendor_id;
        bool has_device_id;
        uint16_t device_id;
        char **mdev_types; /* exact mdev type names, any of them */
        char **names;      /* fnmatch(3) globs on the device name, any of them */
} PolicyMatch;

typedef struct Policy {
        char *name;
        char *description;
        char *source; /* the file it came from, or "built-in" */
        PolicyMatch match;
        int priority; /* higher wins when several match; ties broken by name */
        IrqRestore irq_restore;
        bool postcopy;
        Tristate precopy;
        Tristate p2p;
        uint32_t downtime_limit_ms;
        uint32_t timeout_ms[_MIG_PHASE_MAX]; /* per phase; 0 never appears after defaults are applied */
        IrqWhileStopped on_irq_while_stopped;
} Policy;

/* One problem found in a policy file, precise enough to fix it without reading migd's code. */
typedef struct PolicyError {
        char *file;      /* path, or "built-in" */
        char *json_path; /* "$.match.vendor_id"; "$" for the whole document */
        char *message;   /* what is wrong and what is allowed */
} PolicyError;

typedef struct PolicyErrors {
        PolicyError *items;
        size_t n;
} PolicyErrors;

typedef struct PolicySet {
        Policy **items; /* sorted by priority (descending), then name */
        size_t n;
} PolicySet;

/* What a device offers, as the policy matcher and the planner need it. */
typedef struct DeviceDescription {
        const char *name;      /* device id, e.g. "sim0" or "0000:00:04.0" */
        const char *driver;    /* e.g. "mtty", "vfio-pci", "mlx5_vfio_pci" */
        uint16_t vendor_id;
        uint16_t device_id;
        const char *mdev_type; /* NULL when not an mdev */
} DeviceDescription;

const char *irq_restore_to_string(IrqRestore v);
IrqRestore irq_restore_from_string(const char *s);
const char *tristate_to_string(Tristate v);
Tristate tristate_from_string(const char *s);
const char *irq_while_stopped_to_string(IrqWhileStopped v);
IrqWhileStopped irq_while_stopped_from_string(const char *s);
const char *mig_phase_to_string(MigPhase v);
MigPhase mig_phase_from_string(const char *s);

Policy *policy_free(Policy *p);
void policy_freep(Policy **p);
Policy *policy_dup(const Policy *p);
/* A policy with every documented default and the given name. */
int policy_new_default(const char *name, Policy **ret);

void policy_errors_clear(PolicyErrors *e);
void policy_errors_clearp(PolicyErrors *e);
/* "FILE: JSON_PATH: MESSAGE" */
char *policy_error_format(const PolicyError *e);

/* Parses and validates one document. file names the source in messages. On failure returns -EINVAL and
 * appends every problem found (not only the first) to errors. */
int policy_parse_json(const char *text, const char *file, Policy **ret, PolicyErrors *errors);
int policy_parse_file(const char *path, Policy **ret, PolicyErrors *errors);
/* The document form of a policy, every key present (defaults included). */
struct json_object *policy_to_json(const Policy *p);

/* The four policies migd always has: qemu-compatible, stop-window, early-irqs, postcopy. */
int policy_set_new_builtin(PolicySet **ret);
/* Built-ins plus every *.json in dir (sorted). A file may shadow a built-in of the same name; two files with
 * one name are an error. Any error: -EINVAL, nothing returned, errors filled, so the caller keeps its last
 * good set. A missing dir is not an error. */
int policy_set_load_dir(const char *dir, PolicySet **ret, PolicyErrors *errors);
/* Like policy_set_load_dir() for an explicit list of files (migctl policy check), built-ins optional. */
int policy_set_load_files(char *const *paths, bool with_builtins, PolicySet **ret, PolicyErrors *errors);
PolicySet *policy_set_free(PolicySet *s);
void policy_set_freep(PolicySet **s);
const Policy *policy_set_find(const PolicySet *s, const char *name);
/* The matching policy of highest priority, or NULL when none matches. */
const Policy *policy_set_resolve(const PolicySet *s, const DeviceDescription *d);
bool policy_matches(const Policy *p, const DeviceDescription *d);
