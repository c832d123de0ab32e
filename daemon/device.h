/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A device migd manages and the one ops table every backend (sim, vfio, libvirt) implements. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "mig-state.h"

/* Values equal VFIO_PCI_INTX_IRQ_INDEX, _MSI_ and _MSIX_. */
typedef enum IrqIndex {
        IRQ_INDEX_INTX = 0,
        IRQ_INDEX_MSI = 1,
        IRQ_INDEX_MSIX = 2,
        _IRQ_INDEX_MAX,
        _IRQ_INDEX_INVALID = -1,
} IrqIndex;

const char *irq_index_to_string(IrqIndex i); /* "intx", "msi", "msix" */
IrqIndex irq_index_from_string(const char *s);

typedef struct DeviceInfo {
        char *driver;
        uint16_t vendor_id;
        uint16_t device_id;
        char *mdev_type;                     /* NULL unless an mdev */
        uint32_t mig_flags;                  /* MIG_FLAG_* */
        unsigned uapi;                       /* 2: migration v2; 1: v1 model (sim only) */
        uint32_t irq_count[_IRQ_INDEX_MAX];  /* vectors per index, 0 when the index is absent */
        uint64_t state_size;                 /* expected stop-copy bytes, 0 when unknown */
} DeviceInfo;

void device_info_done(DeviceInfo *i);

typedef struct Device Device;

/* Every call is synchronous from the engine's view; long data movement happens on the data fd. Functions
 * return negative errno. A refused arc leaves the device in the state it was in. */
typedef struct BackendOps {
        const char *name; /* "sim", "vfio", "libvirt" */
        int (*open)(Device *d);
        void (*close)(Device *d);
        int (*get_info)(Device *d, DeviceInfo *ret);
        int (*get_state)(Device *d, MigState *ret);
        /* Exactly one arc. *ret_data_fd gets the arc's data fd (caller owns it) or -1 when it gives none. */
        int (*set_state)(Device *d, MigState to, int *ret_data_fd);
        /* VFIO_MIG_GET_PRECOPY_INFO on the open saving data fd; -ENOMSG: nothing now, more may come. */
        int (*get_precopy_info)(Device *d, int data_fd, uint64_t *ret_initial_bytes, uint64_t *ret_dirty_bytes);
        /* VFIO_DEVICE_FEATURE_MIG_DATA_SIZE; -EOPNOTSUPP where the device cannot tell. */
        int (*get_data_size)(Device *d, uint64_t *ret_bytes);
        /* SET_IRQS DATA_EVENTFD|ACTION_TRIGGER for vectors start..start+count-1; an fd of -1 disables one. */
        int (*set_irqs)(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds);
        /* SET_IRQS DATA_NONE|ACTION_TRIGGER with count 0: every vector of the index off. */
        int (*disable_irqs)(Device *d, IrqIndex index);
        int (*reset)(Device *d);
} BackendOps;

typedef void (*DeviceStateChanged)(Device *d, MigState old_state, MigState new_state, void *userdata);

struct Device {
        char *id;                 /* unique on this host; also the D-Bus object path's last element (escaped) */
        const BackendOps *ops;
        void *backend_data;       /* owned by the backend, freed by ops->close */
        sd_event *event;
        DeviceInfo info;          /* filled by device_open() */
        MigState state;           /* last state the backend reported or reached */
        bool busy;                /* a migration owns the device */
        uint32_t irq_enabled[_IRQ_INDEX_MAX]; /* vectors with a trigger, as the last set_irqs/disable left them */
        /* Eventfds a VMM handed with an idle target (RegisterDevice, interrupts_at=restore): the interrupt restore
         * of the next incoming migration sets these, at the point the plan puts it, instead of new ones. */
        int *restore_fds[_IRQ_INDEX_MAX];
        uint32_t n_restore_fds[_IRQ_INDEX_MAX];
        DeviceStateChanged on_state_changed;
        DeviceStateChanged saved_on_state_changed; /* the owner's hook while a migration worker holds the device */
        void *userdata;
};

/* Takes a new reference on event. id is copied. */
int device_new(const char *id, const BackendOps *ops, void *backend_data, sd_event *event, Device **ret);
Device *device_free(Device *d);
void device_freep(Device **d);
/* ops->open, then get_info and get_state into the cached fields. */
int device_open(Device *d);
/* One arc through the backend; updates d->state and calls on_state_changed. */
int device_set_state(Device *d, MigState to, int *ret_data_fd);
/* The whole path to target, one arc at a time (as the kernel would walk it). The data fd of the last arc
 * that returned one is handed back. */
int device_walk_to(Device *d, MigState target, int *ret_data_fd);
/* SET_IRQS through the backend, remembering how many vectors have triggers (VFIO cannot be asked). */
int device_set_irqs(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds);
int device_disable_irqs(Device *d, IrqIndex index);
/* Takes ownership of the count fds (a VMM's eventfds for the next interrupt restore of index). */
int device_set_restore_fds(Device *d, IrqIndex index, int *fds, uint32_t count);
bool device_has_restore_fds(const Device *d);
void device_drop_restore_fds(Device *d);
/* VFIO_DEVICE_RESET: the way out of ERROR. Interrupts are off afterwards. */
int device_reset(Device *d);
/* Re-reads the state from the backend (after an error the device may be in ERROR). */
int device_refresh_state(Device *d);
