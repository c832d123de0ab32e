/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The libvirt backend: devices that are VFIO hostdevs of libvirt domains, libvirt-run migrations, hook checks. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "bus-errors.h"
#include "config.h"
#include "daemon-config.h"
#include "device.h"
#include "policy.h"

struct Manager;

/* Whether QEMU (7.2, the vfio-pci v1 migration code) can honour policy p for a device whose data may or may not
 * carry its interrupt state. Returns true when it can; *ret_reason (always set, caller frees) says why or why not.
 * Needs no libvirt: the hook's verdict and StartMigration's refusal come from this one function. */
bool libvirt_policy_honourable(const Policy *p, bool irq_state_in_data, char **ret_reason);

#if HAVE_LIBVIRT

extern const BackendOps libvirt_backend_ops;

static inline bool device_is_libvirt(const Device *d) {
        return d && d->ops == &libvirt_backend_ops;
}

/* Adds the [LibvirtDevice] sections' devices (Backends= must list libvirt), removes those that went away or
 * changed. old is the configuration before a reload, NULL at start. */
void libvirt_apply_devices(struct Manager *m, const Config *old);
/* Cancels and joins every libvirt job; before devices and migrations are freed. */
void libvirt_backend_shutdown(struct Manager *m);
/* StartMigration() for a libvirt device: destination is a libvirt URI (qemu+tls://host/system, …). */
int libvirt_start_migration(struct Manager *m, Device *d, const char *destination, struct json_object *options,
                            char **ret_object_path, sd_bus_error *error);
/* CheckLibvirtHostdevs(): the hook's question at the destination's "migrate begin". */
int libvirt_check_hostdevs(struct Manager *m, const char *domain, const char *hostdevs_json, char **ret_json,
                           sd_bus_error *error);
/* RecordLibvirtEvent(): the hook's prepare/start/started/stopped/release. *ret_outcome is static text. */
int libvirt_record_event(struct Manager *m, const char *domain, const char *operation, const char *sub_operation,
                         const char *extra, const char **ret_outcome, sd_bus_error *error);

#else

static inline bool device_is_libvirt(const Device *d) {
        return false;
}
static inline void libvirt_apply_devices(struct Manager *m, const Config *old) {
}
static inline void libvirt_backend_shutdown(struct Manager *m) {
}
static inline int libvirt_start_migration(struct Manager *m, Device *d, const char *destination,
                                          struct json_object *options, char **ret_object_path, sd_bus_error *error) {
        return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "migd was built without the libvirt backend.");
}
static inline int libvirt_check_hostdevs(struct Manager *m, const char *domain, const char *hostdevs_json,
                                         char **ret_json, sd_bus_error *error) {
        return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "migd was built without the libvirt backend.");
}
static inline int libvirt_record_event(struct Manager *m, const char *domain, const char *operation,
                                       const char *sub_operation, const char *extra, const char **ret_outcome,
                                       sd_bus_error *error) {
        return sd_bus_error_setf(error, MIGD_ERROR_NOT_SUPPORTED, "migd was built without the libvirt backend.");
}

#endif
