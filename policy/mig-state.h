/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The VFIO migration v2 state model: states, v1 bit notation, legal arcs and the kernel's path finder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values equal enum vfio_device_mig_state in include/uapi/linux/vfio.h, so they go to the kernel as is. */
typedef enum MigState {
        MIG_STATE_ERROR = 0,
        MIG_STATE_STOP = 1,
        MIG_STATE_RUNNING = 2,
        MIG_STATE_STOP_COPY = 3,
        MIG_STATE_RESUMING = 4,
        MIG_STATE_RUNNING_P2P = 5,
        MIG_STATE_PRE_COPY = 6,
        MIG_STATE_PRE_COPY_P2P = 7,
        _MIG_STATE_V2_MAX,
        /* RESUMING|RUNNING (v1 bits 101): post-copy. Exists only in the v1 protocol, never sent to a v2 kernel. */
        MIG_STATE_V1_RESUMING_RUNNING = _MIG_STATE_V2_MAX,
        _MIG_STATE_MAX,
        _MIG_STATE_INVALID = -1,
} MigState;

/* Values equal VFIO_MIGRATION_STOP_COPY / _P2P / _PRE_COPY. */
enum {
        MIG_FLAG_STOP_COPY = 1u << 0,
        MIG_FLAG_P2P = 1u << 1,
        MIG_FLAG_PRE_COPY = 1u << 2,
        _MIG_FLAGS_ALL = MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY,
};

/* Longest shortest path between two v2 states: PRE_COPY -> RUNNING -> RUNNING_P2P -> STOP -> RESUMING. */
#define MIG_PATH_MAX 8

const char *mig_state_to_string(MigState s);
MigState mig_state_from_string(const char *s);

/* The v1 device_state bits RESUMING SAVING RUNNING ("000" for STOP), or NULL where a state has no v1 form. */
const char *mig_state_to_bits(MigState s);
/* Why a state has no v1 form, for people reading a timeline; NULL when it has one. */
const char *mig_state_no_bits_reason(MigState s);

/* True for states in which the device may run and raise interrupts (RUNNING, RUNNING_P2P, PRE_COPY...). */
bool mig_state_is_running(MigState s);
/* True for the saving group: STOP_COPY, PRE_COPY, PRE_COPY_P2P. */
bool mig_state_is_saving(MigState s);
/* Whether a device with these migration flags has this state at all. */
bool mig_state_supported(MigState s, uint32_t flags);

/* Single-step arcs a driver implements for these flags, as the uAPI comment in vfio.h lists them. */
bool mig_arc_is_legal(MigState from, MigState to, uint32_t flags);

/* The next single arc from cur toward target, as vfio_mig_get_next_state() picks it.
 * -EINVAL when a state is unsupported or the target is unreachable (ERROR, STOP_COPY -> PRE_COPY). */
int mig_next_state(MigState cur, MigState target, uint32_t flags, MigState *ret_next);
/* The whole path from cur to target, cur excluded, target included; *ret_n is 0 when cur == target. */
int mig_path(MigState cur, MigState target, uint32_t flags, MigState ret_path[static MIG_PATH_MAX], size_t *ret_n);

/* "stop-copy,p2p,pre-copy" <-> flags. Parsing rejects unknown words with -EINVAL. */
int mig_flags_from_string(const char *s, uint32_t *ret);
/* Writes into buf, always NUL-terminated; returns buf. "none" for 0. */
char *mig_flags_to_string(uint32_t flags, char *buf, size_t size);
#define MIG_FLAGS_STRING_MAX 32
