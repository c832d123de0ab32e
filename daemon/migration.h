/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What D-Bus shows of one migration; the engine (a later issue) fills and updates it. */
#pragma once

#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

typedef struct Migration Migration;
struct Manager;

struct Migration {
        char *id;                  /* unique on this host; the object path's last element (escaped) */
        char *role;                /* "source" or "destination" */
        char *device;              /* device id */
        char *peer;                /* "HOST:PORT" of the other side */
        char *policy;              /* policy name */
        char *phase;               /* mig_phase_to_string() of the current phase */
        uint64_t bytes_total;
        uint64_t bytes_transferred;
        uint64_t rate;             /* bytes per second */
        uint64_t eta_seconds;
        uint64_t downtime_usec;
        char *result;              /* "", "success", "failed", "cancelled", "in-doubt" */
        char *error;               /* "" unless failed */
        char *error_name;          /* "" unless failed: an org.vfiomig.Migd1.Error.* name for programs */
        struct json_object *timeline; /* array of events, owned */

        struct Manager *manager;   /* set by manager_add_migration() */

        /* Set by the engine. Cancel() is refused with NotSupported while it is NULL. */
        int (*cancel)(Migration *m, sd_bus_error *error);
        void *userdata;
};

/* Every string empty, not NULL, so the property getters never see NULL; timeline an empty array. */
int migration_new(const char *id, Migration **ret);
Migration *migration_free(Migration *m);
void migration_freep(Migration **m);
/* Replaces one string field with a copy of value. */
int migration_set_string(char **field, const char *value);
struct json_object *migration_to_json(const Migration *m, const char *object_path);
/* Result, Error and ErrorName together; a failure without a more specific name is MigrationFailed. */
void migration_set_result(Migration *m, const char *result, const char *error, const char *error_name);
