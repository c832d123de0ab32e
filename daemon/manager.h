/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The daemon's state: configuration, policy set, devices, migrations and the bus connection. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "daemon-config.h"
#include "device.h"
#include "migration.h"
#include "policy.h"

typedef struct Manager {
        sd_event *event;
        sd_bus *bus;

        char *config_file;      /* --config, or the default */
        bool config_file_given; /* only the default file may be missing */
        char *arg_state_dir;    /* --state-dir, overrides StateDirectory= */
        char *arg_policy_dir;   /* --policy-dir, overrides PolicyDirectory= */

        Config *config;
        PolicySet *policies;
        Device **devices;
        size_t n_devices;
        Migration **migrations;
        size_t n_migrations;

        char *hostname;
        struct Engine *engine;
} Manager;

int manager_new(sd_event *event, Manager **ret);
Manager *manager_free(Manager *m);
void manager_freep(Manager **m);

/* First load of configuration, policies and devices. On a bad config or policy file returns -EINVAL and
 * *ret_error gets the sentence to print. */
int manager_startup(Manager *m, char **ret_error);
/* --bus ADDRESS when address is set, the user bus when user, else the system bus; registers every object. */
int manager_connect_bus(Manager *m, const char *address, bool user);
/* Requests MIGD_BUS_NAME; -EEXIST when another migd has it. */
int manager_request_name(Manager *m);
/* SIGHUP and Reload(): all or nothing. On failure the running configuration and policies stay, the reason is
 * logged and put in error (InvalidConfig or InvalidPolicy). */
int manager_reload(Manager *m, sd_bus_error *error);
/* Sends STATUS= to the service manager. */
void manager_notify_status(Manager *m);

Device *manager_find_device(Manager *m, const char *id);
/* For every backend. Takes d, also on failure: hooks its state changes to the bus, appends it, announces it. */
int manager_add_device(Manager *m, Device *d);
/* Announces the removal while the object can still be found, then frees the device. */
void manager_remove_device(Manager *m, size_t i);
/* A device whose configuration went or changed: removed, unless a migration owns it (then kept, and said). */
void manager_retire_device(Manager *m, size_t i);
/* Whether Backends= lists backend; when not, says how many [SECTION] sections are ignored. */
bool manager_backend_enabled(Manager *m, const char *backend, const char *section, size_t n_sections);
Migration *manager_find_migration(Manager *m, const char *id);
/* The policy the device gets now, NULL when no policy matches. */
const Policy *manager_device_policy(Manager *m, Device *d);
/* For the engine: marks a device owned by a migration and tells the bus. */
void manager_device_set_busy(Manager *m, Device *d, bool busy);
/* For the engine: takes ownership, exports the object and sends MigrationAdded. */
int manager_add_migration(Manager *m, Migration *mig);
/* Unexports, sends MigrationRemoved and frees. */
void manager_remove_migration(Manager *m, Migration *mig);
