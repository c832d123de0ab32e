/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The simulated device: a VFIO migration v2 driver model with quirks, records and real fds. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "device.h"

#define SIM_MAX_ARC_QUIRKS 8

typedef struct SimArcQuirk {
        MigState from, to;
        uint32_t delay_ms; /* slow-arc only */
} SimArcQuirk;

typedef struct SimConfig {
        char *name;
        char *driver;         /* default "migd-sim" */
        uint16_t vendor_id;   /* default 0x1b36 */
        uint16_t device_id;   /* default 0x0101 */
        char *mdev_type;      /* NULL: not an mdev */
        uint32_t mig_flags;   /* default stop-copy|p2p|pre-copy, like mtty */
        unsigned uapi;        /* 2 (default) or 1: the v1 model, which alone has RESUMING|RUNNING */
        uint64_t state_size;  /* bytes of device state in the stream, default 4096 */
        uint64_t dirty_rate;  /* bytes per second dirtied while PRE_COPY, default 0 */
        uint32_t irq_count[_IRQ_INDEX_MAX]; /* default intx 1, msi 1, msix 4 */
        /* Vectors a guest driver had enabled when migd took the device over; migd plays the VMM and owns their
         * eventfds (daemon only; the device model itself ignores this). Default none: an idle spare. */
        uint32_t guest_irq_count[_IRQ_INDEX_MAX];
        /* quirks, all off by default */
        bool irq_in_stream;
        bool irq_while_stopped;
        SimArcQuirk fail_arcs[SIM_MAX_ARC_QUIRKS];
        unsigned n_fail_arcs;
        SimArcQuirk slow_arcs[SIM_MAX_ARC_QUIRKS];
        unsigned n_slow_arcs;
} SimConfig;

/* Defaults as documented above; name is copied. */
int sim_config_init(SimConfig *c, const char *name);
void sim_config_done(SimConfig *c);
/* "irq-in-stream,irq-while-stopped,fail-arc=RESUMING->STOP,slow-arc=STOP->RUNNING:50". On -EINVAL
 * *ret_bad_word (if given) gets a copy of the word that is wrong. */
int sim_config_parse_quirks(SimConfig *c, const char *s, char **ret_bad_word);

extern const BackendOps sim_backend_ops;

/* record_dir: where the device keeps its state file and its JSON-lines record, so that they survive
 * a daemon restart (as a real device would); NULL keeps both in memory only. */
int sim_device_new(const SimConfig *c, sd_event *event, const char *record_dir, Device **ret);

/* Test hooks. The device raises an interrupt on a vector, as its hardware would. */
int sim_device_raise_irq(Device *d, IrqIndex index, uint32_t vector);
/* Writes guest-visible registers (like mtty's scratch/line-control), carried in the migration stream. */
int sim_device_write_register(Device *d, uint32_t offset, uint8_t value);
int sim_device_read_register(Device *d, uint32_t offset, uint8_t *ret);
/* Every event so far: [{"t_usec":…, "event":"arc", …}, …]. Caller owns the result. */
struct json_object *sim_device_get_record(Device *d);
