/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VFIO migration v2 arcs and the shortest-path rule of the uAPI, derived from the arc list, not a copied table. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mig-state.h"
#include "util.h"

static const char *const state_names[_MIG_STATE_MAX] = {
        [MIG_STATE_ERROR] = "ERROR",
        [MIG_STATE_STOP] = "STOP",
        [MIG_STATE_RUNNING] = "RUNNING",
        [MIG_STATE_STOP_COPY] = "STOP_COPY",
        [MIG_STATE_RESUMING] = "RESUMING",
        [MIG_STATE_RUNNING_P2P] = "RUNNING_P2P",
        [MIG_STATE_PRE_COPY] = "PRE_COPY",
        [MIG_STATE_PRE_COPY_P2P] = "PRE_COPY_P2P",
        [MIG_STATE_V1_RESUMING_RUNNING] = "RESUMING_RUNNING",
};

static const char *const state_bits[_MIG_STATE_MAX] = {
        [MIG_STATE_STOP] = "000",
        [MIG_STATE_RUNNING] = "001",
        [MIG_STATE_STOP_COPY] = "010",
        [MIG_STATE_PRE_COPY] = "011",
        [MIG_STATE_RESUMING] = "100",
        [MIG_STATE_V1_RESUMING_RUNNING] = "101",
};

static bool state_valid(MigState s) {
        return s >= 0 && s < _MIG_STATE_MAX;
}

const char *mig_state_to_string(MigState s) {
        return state_valid(s) ? state_names[s] : NULL;
}

MigState mig_state_from_string(const char *s) {
        if (!s)
                return _MIG_STATE_INVALID;
        for (MigState i = 0; i < _MIG_STATE_MAX; i++)
                if (strcasecmp(s, state_names[i]) == 0)
                        return i;
        return _MIG_STATE_INVALID;
}

const char *mig_state_to_bits(MigState s) {
        return state_valid(s) ? state_bits[s] : NULL;
}

const char *mig_state_no_bits_reason(MigState s) {
        switch (s) {
        case MIG_STATE_RUNNING_P2P:
        case MIG_STATE_PRE_COPY_P2P:
                return "P2P states have no v1 form";
        case MIG_STATE_ERROR:
                return "ERROR has no v1 bit pattern (v1 used 110 as invalid)";
        default:
                return NULL;
        }
}

bool mig_state_is_running(MigState s) {
        return s == MIG_STATE_RUNNING || s == MIG_STATE_RUNNING_P2P || s == MIG_STATE_PRE_COPY ||
               s == MIG_STATE_PRE_COPY_P2P || s == MIG_STATE_V1_RESUMING_RUNNING;
}

bool mig_state_is_saving(MigState s) {
        return s == MIG_STATE_STOP_COPY || s == MIG_STATE_PRE_COPY || s == MIG_STATE_PRE_COPY_P2P;
}

static uint32_t state_required_flags(MigState s) {
        switch (s) {
        case MIG_STATE_STOP:
        case MIG_STATE_RUNNING:
        case MIG_STATE_STOP_COPY:
        case MIG_STATE_RESUMING:
                return MIG_FLAG_STOP_COPY;
        case MIG_STATE_RUNNING_P2P:
                return MIG_FLAG_STOP_COPY | MIG_FLAG_P2P;
        case MIG_STATE_PRE_COPY:
                return MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY;
        case MIG_STATE_PRE_COPY_P2P:
                return MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY;
        default:
                /* ERROR can only be entered by a failing driver, and RESUMING|RUNNING is not a v2 state. */
                return UINT32_MAX;
        }
}

bool mig_state_supported(MigState s, uint32_t flags) {
        uint32_t need = state_required_flags(s);
        return need != UINT32_MAX && (flags & need) == need;
}

typedef struct Arc {
        MigState from, to;
        uint32_t needs;    /* flags that must all be present */
        uint32_t excludes; /* flags that must all be absent */
} Arc;

/* The arc list of the uAPI comment above struct vfio_device_feature_mig_state. */
static const Arc arcs[] = {
        /* Every migration driver. */
        { MIG_STATE_RESUMING, MIG_STATE_STOP, MIG_FLAG_STOP_COPY, 0 },
        { MIG_STATE_STOP, MIG_STATE_RESUMING, MIG_FLAG_STOP_COPY, 0 },
        { MIG_STATE_STOP, MIG_STATE_STOP_COPY, MIG_FLAG_STOP_COPY, 0 },
        { MIG_STATE_STOP_COPY, MIG_STATE_STOP, MIG_FLAG_STOP_COPY, 0 },
        /* With P2P. */
        { MIG_STATE_RUNNING, MIG_STATE_RUNNING_P2P, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, 0 },
        { MIG_STATE_RUNNING_P2P, MIG_STATE_RUNNING, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, 0 },
        { MIG_STATE_RUNNING_P2P, MIG_STATE_STOP, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, 0 },
        { MIG_STATE_STOP, MIG_STATE_RUNNING_P2P, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P, 0 },
        /* Without P2P. */
        { MIG_STATE_RUNNING, MIG_STATE_STOP, MIG_FLAG_STOP_COPY, MIG_FLAG_P2P },
        { MIG_STATE_STOP, MIG_STATE_RUNNING, MIG_FLAG_STOP_COPY, MIG_FLAG_P2P },
        /* With pre-copy. */
        { MIG_STATE_RUNNING, MIG_STATE_PRE_COPY, MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY, 0 },
        { MIG_STATE_PRE_COPY, MIG_STATE_RUNNING, MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY, 0 },
        /* Pre-copy without P2P. */
        { MIG_STATE_PRE_COPY, MIG_STATE_STOP_COPY, MIG_FLAG_STOP_COPY | MIG_FLAG_PRE_COPY, MIG_FLAG_P2P },
        /* Pre-copy with P2P. */
        { MIG_STATE_PRE_COPY, MIG_STATE_PRE_COPY_P2P, _MIG_FLAGS_ALL, 0 },
        { MIG_STATE_PRE_COPY_P2P, MIG_STATE_PRE_COPY, _MIG_FLAGS_ALL, 0 },
        { MIG_STATE_PRE_COPY_P2P, MIG_STATE_RUNNING_P2P, _MIG_FLAGS_ALL, 0 },
        { MIG_STATE_PRE_COPY_P2P, MIG_STATE_STOP_COPY, _MIG_FLAGS_ALL, 0 },
        { MIG_STATE_RUNNING_P2P, MIG_STATE_PRE_COPY_P2P, _MIG_FLAGS_ALL, 0 },
};

bool mig_arc_is_legal(MigState from, MigState to, uint32_t flags) {
        for (size_t i = 0; i < ELEMENTSOF(arcs); i++)
                if (arcs[i].from == from && arcs[i].to == to && (flags & arcs[i].needs) == arcs[i].needs &&
                    (flags & arcs[i].excludes) == 0)
                        return true;
        return false;
}

/* The uAPI blocks these outright: the saving group's data stream cannot restart once STOP_COPY began. */
static bool transition_blocked(MigState cur, MigState target) {
        return cur == MIG_STATE_STOP_COPY && (target == MIG_STATE_PRE_COPY || target == MIG_STATE_PRE_COPY_P2P);
}

/* The uAPI's second rule: saving states may not be interior steps, except inside a path that never leaves
 * the saving group (PRE_COPY -> PRE_COPY_P2P -> STOP_COPY keeps one data stream going). */
static bool interior_allowed(MigState cur, MigState via, MigState target) {
        if (!mig_state_is_saving(via))
                return true;
        return mig_state_is_saving(cur) && mig_state_is_saving(target);
}

/* Breadth-first search over legal arcs; arcs[] order breaks ties, and the unit tests prove that the result
 * equals the kernel's table for every flag combination. */
int mig_path(MigState cur, MigState target, uint32_t flags, MigState ret_path[static MIG_PATH_MAX], size_t *ret_n) {
        MigState prev[_MIG_STATE_V2_MAX], queue[_MIG_STATE_V2_MAX], path[MIG_PATH_MAX];
        bool seen[_MIG_STATE_V2_MAX] = {};
        size_t head = 0, tail = 0, n = 0;

        assert(ret_path);
        assert(ret_n);

        if (!mig_state_supported(cur, flags) || !mig_state_supported(target, flags))
                return -EINVAL;
        if (transition_blocked(cur, target))
                return -EINVAL;
        if (cur == target) {
                *ret_n = 0;
                return 0;
        }

        seen[cur] = true;
        queue[tail++] = cur;
        while (head < tail) {
                MigState s = queue[head++];

                if (s == target)
                        break;
                if (s != cur && !interior_allowed(cur, s, target))
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(arcs); i++) {
                        MigState to = arcs[i].to;

                        if (arcs[i].from != s || seen[to] || !mig_arc_is_legal(s, to, flags))
                                continue;
                        seen[to] = true;
                        prev[to] = s;
                        queue[tail++] = to;
                }
        }
        if (!seen[target])
                return -EINVAL;

        for (MigState s = target; s != cur; s = prev[s])
                path[n++] = s;
        assert(n <= MIG_PATH_MAX);
        for (size_t i = 0; i < n; i++)
                ret_path[i] = path[n - 1 - i];
        *ret_n = n;
        return 0;
}

int mig_next_state(MigState cur, MigState target, uint32_t flags, MigState *ret_next) {
        MigState path[MIG_PATH_MAX];
        size_t n;
        int r;

        assert(ret_next);

        r = mig_path(cur, target, flags, path, &n);
        if (r < 0)
                return r;
        *ret_next = n > 0 ? path[0] : cur;
        return 0;
}

static const struct {
        uint32_t flag;
        const char *name;
} flag_names[] = {
        { MIG_FLAG_STOP_COPY, "stop-copy" },
        { MIG_FLAG_P2P, "p2p" },
        { MIG_FLAG_PRE_COPY, "pre-copy" },
};

int mig_flags_from_string(const char *s, uint32_t *ret) {
        _cleanup_strv_free_ char **words = NULL;
        uint32_t flags = 0;
        int r;

        assert(s);
        assert(ret);

        r = strv_split(s, ", ", &words);
        if (r < 0)
                return r;
        for (char **w = words; *w; w++) {
                size_t i;

                if (streq(*w, "none"))
                        continue;
                for (i = 0; i < ELEMENTSOF(flag_names); i++)
                        if (streq(*w, flag_names[i].name))
                                break;
                if (i == ELEMENTSOF(flag_names))
                        return -EINVAL;
                flags |= flag_names[i].flag;
        }
        *ret = flags;
        return 0;
}

char *mig_flags_to_string(uint32_t flags, char *buf, size_t size) {
        size_t used = 0;

        assert(buf);
        assert(size > 0);

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(flag_names); i++)
                if (flags & flag_names[i].flag)
                        used += snprintf(buf + used, used < size ? size - used : 0, "%s%s", used ? "," : "",
                                         flag_names[i].name);
        if (used == 0)
                snprintf(buf, size, "none");
        return buf;
}
