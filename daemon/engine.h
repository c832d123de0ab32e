/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migration engine: phases, the commit protocol and recovery, the same for every device backend. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "device.h"

struct Manager;
typedef struct Engine Engine;

int engine_new(struct Manager *m, Engine **ret);
/* Cancels what runs, waits for the workers and frees. */
Engine *engine_free(Engine *e);
void engine_freep(Engine **e);

/* Listens for peers on the configured address (or a socket systemd passed, LISTEN_FDS). */
int engine_listen(Engine *e);
/* Finishes what the journal says was under way when migd last stopped; at start-up, before READY=1. */
int engine_recover(Engine *e);

/* StartMigration(): options may hold "target", "policy", "precopy" (strings). Refusals a caller can act on
 * (no such device or policy, busy, policy not possible for the device) come back as named errors. */
int engine_start_migration(Engine *e, const char *device_id, const char *destination, struct json_object *options,
                           char **ret_object_path, sd_bus_error *error);
/* For an in-doubt migration (after the commit decision, the peer unreachable): commit finishes the source's
 * clean-up and leaves its device stopped; abort runs the source device again. */
int engine_resolve(Engine *e, const char *migration_id, bool commit, sd_bus_error *error);
/* Plays the VMM for a simulated device: eventfds for `count` vectors of index, set on the device and watched. */
int engine_configure_guest_interrupts(Engine *e, Device *d, IrqIndex index, uint32_t count);
/* Signals counted on a device's watched eventfds; returns 0 when none are watched for that index. */
int engine_irq_signals(Engine *e, const char *device_id, IrqIndex index, uint64_t *ret);
/* Whether a worker owns this device right now (Reload must not remove it). */
bool engine_device_in_use(Engine *e, const char *device_id);
