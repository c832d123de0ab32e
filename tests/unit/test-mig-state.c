/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* State model tests: the arc table of the uAPI comment and the kernel's next-state algorithm as oracle. */
#include <errno.h>
#include <glib.h>

#include "mig-state.h"

#define S(x) MIG_STATE_##x
enum { SC = MIG_FLAG_STOP_COPY, P2P = MIG_FLAG_P2P, PRE = MIG_FLAG_PRE_COPY };

/* The four flag sets a real migration driver can have (STOP_COPY is mandatory for v2). */
static const uint32_t flag_sets[] = { SC, SC | P2P, SC | PRE, SC | P2P | PRE };

/* Written from the arc list in include/uapi/linux/vfio.h, one list per flag set, so that a mistake in the
 * library's condensed rules shows up as a difference here. */
typedef struct { MigState from, to; } ArcPair;

static const ArcPair arcs_sc[] = {
        { S(RUNNING), S(STOP) },   { S(STOP), S(RUNNING) },   { S(STOP), S(STOP_COPY) },
        { S(STOP_COPY), S(STOP) }, { S(STOP), S(RESUMING) },  { S(RESUMING), S(STOP) },
};
static const ArcPair arcs_sc_p2p[] = {
        { S(RUNNING), S(RUNNING_P2P) }, { S(RUNNING_P2P), S(RUNNING) }, { S(RUNNING_P2P), S(STOP) },
        { S(STOP), S(RUNNING_P2P) },    { S(STOP), S(STOP_COPY) },      { S(STOP_COPY), S(STOP) },
        { S(STOP), S(RESUMING) },       { S(RESUMING), S(STOP) },
};
static const ArcPair arcs_sc_pre[] = {
        { S(RUNNING), S(STOP) },      { S(STOP), S(RUNNING) },        { S(STOP), S(STOP_COPY) },
        { S(STOP_COPY), S(STOP) },    { S(STOP), S(RESUMING) },       { S(RESUMING), S(STOP) },
        { S(RUNNING), S(PRE_COPY) },  { S(PRE_COPY), S(RUNNING) },    { S(PRE_COPY), S(STOP_COPY) },
};
static const ArcPair arcs_all[] = {
        { S(RUNNING), S(RUNNING_P2P) },       { S(RUNNING_P2P), S(RUNNING) },
        { S(RUNNING_P2P), S(STOP) },          { S(STOP), S(RUNNING_P2P) },
        { S(STOP), S(STOP_COPY) },            { S(STOP_COPY), S(STOP) },
        { S(STOP), S(RESUMING) },             { S(RESUMING), S(STOP) },
        { S(PRE_COPY), S(RUNNING) },          { S(PRE_COPY), S(PRE_COPY_P2P) },
        { S(PRE_COPY_P2P), S(PRE_COPY) },     { S(PRE_COPY_P2P), S(RUNNING_P2P) },
        { S(PRE_COPY_P2P), S(STOP_COPY) },    { S(RUNNING), S(PRE_COPY) },
        { S(RUNNING_P2P), S(PRE_COPY_P2P) },
};

static bool arc_listed(const ArcPair *list, size_t n, MigState from, MigState to) {
        for (size_t i = 0; i < n; i++)
                if (list[i].from == from && list[i].to == to)
                        return true;
        return false;
}

static void check_arc_table(uint32_t flags, const ArcPair *list, size_t n) {
        for (MigState from = 0; from < _MIG_STATE_V2_MAX; from++)
                for (MigState to = 0; to < _MIG_STATE_V2_MAX; to++) {
                        bool want = arc_listed(list, n, from, to);
                        if (mig_arc_is_legal(from, to, flags) != want)
                                g_error("flags 0x%x: arc %s -> %s legal=%d, uAPI says %d", flags,
                                        mig_state_to_string(from), mig_state_to_string(to), !want, want);
                }
}

static void test_arcs(void) {
        check_arc_table(SC, arcs_sc, G_N_ELEMENTS(arcs_sc));
        check_arc_table(SC | P2P, arcs_sc_p2p, G_N_ELEMENTS(arcs_sc_p2p));
        check_arc_table(SC | PRE, arcs_sc_pre, G_N_ELEMENTS(arcs_sc_pre));
        check_arc_table(SC | P2P | PRE, arcs_all, G_N_ELEMENTS(arcs_all));
        /* Without STOP_COPY a device has no migration states at all. */
        for (uint32_t f = 0; f <= (P2P | PRE); f++)
                for (MigState a = 0; a < _MIG_STATE_V2_MAX; a++)
                        for (MigState b = 0; b < _MIG_STATE_V2_MAX; b++)
                                g_assert_false(mig_arc_is_legal(a, b, f & ~SC));
}

/* vfio_from_fsm_table as a fact: for each (current, target) the next state before skipping unsupported ones. */
static const MigState kernel_table[_MIG_STATE_V2_MAX][_MIG_STATE_V2_MAX] = {
        [S(STOP)] = { [S(STOP)] = S(STOP), [S(RUNNING)] = S(RUNNING_P2P), [S(PRE_COPY)] = S(RUNNING_P2P),
                      [S(PRE_COPY_P2P)] = S(RUNNING_P2P), [S(STOP_COPY)] = S(STOP_COPY),
                      [S(RESUMING)] = S(RESUMING), [S(RUNNING_P2P)] = S(RUNNING_P2P), [S(ERROR)] = S(ERROR) },
        [S(RUNNING)] = { [S(STOP)] = S(RUNNING_P2P), [S(RUNNING)] = S(RUNNING), [S(PRE_COPY)] = S(PRE_COPY),
                         [S(PRE_COPY_P2P)] = S(RUNNING_P2P), [S(STOP_COPY)] = S(RUNNING_P2P),
                         [S(RESUMING)] = S(RUNNING_P2P), [S(RUNNING_P2P)] = S(RUNNING_P2P),
                         [S(ERROR)] = S(ERROR) },
        [S(PRE_COPY)] = { [S(STOP)] = S(RUNNING), [S(RUNNING)] = S(RUNNING), [S(PRE_COPY)] = S(PRE_COPY),
                          [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P), [S(STOP_COPY)] = S(PRE_COPY_P2P),
                          [S(RESUMING)] = S(RUNNING), [S(RUNNING_P2P)] = S(RUNNING), [S(ERROR)] = S(ERROR) },
        [S(PRE_COPY_P2P)] = { [S(STOP)] = S(RUNNING_P2P), [S(RUNNING)] = S(RUNNING_P2P),
                              [S(PRE_COPY)] = S(PRE_COPY), [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P),
                              [S(STOP_COPY)] = S(STOP_COPY), [S(RESUMING)] = S(RUNNING_P2P),
                              [S(RUNNING_P2P)] = S(RUNNING_P2P), [S(ERROR)] = S(ERROR) },
        [S(STOP_COPY)] = { [S(STOP)] = S(STOP), [S(RUNNING)] = S(STOP), [S(PRE_COPY)] = S(ERROR),
                           [S(PRE_COPY_P2P)] = S(ERROR), [S(STOP_COPY)] = S(STOP_COPY), [S(RESUMING)] = S(STOP),
                           [S(RUNNING_P2P)] = S(STOP), [S(ERROR)] = S(ERROR) },
        [S(RESUMING)] = { [S(STOP)] = S(STOP), [S(RUNNING)] = S(STOP), [S(PRE_COPY)] = S(STOP),
                          [S(PRE_COPY_P2P)] = S(STOP), [S(STOP_COPY)] = S(STOP), [S(RESUMING)] = S(RESUMING),
                          [S(RUNNING_P2P)] = S(STOP), [S(ERROR)] = S(ERROR) },
        [S(RUNNING_P2P)] = { [S(STOP)] = S(STOP), [S(RUNNING)] = S(RUNNING), [S(PRE_COPY)] = S(RUNNING),
                             [S(PRE_COPY_P2P)] = S(PRE_COPY_P2P), [S(STOP_COPY)] = S(STOP),
                             [S(RESUMING)] = S(STOP), [S(RUNNING_P2P)] = S(RUNNING_P2P), [S(ERROR)] = S(ERROR) },
        [S(ERROR)] = { [S(STOP)] = S(ERROR), [S(RUNNING)] = S(ERROR), [S(PRE_COPY)] = S(ERROR),
                       [S(PRE_COPY_P2P)] = S(ERROR), [S(STOP_COPY)] = S(ERROR), [S(RESUMING)] = S(ERROR),
                       [S(RUNNING_P2P)] = S(ERROR), [S(ERROR)] = S(ERROR) },
};

static uint32_t kernel_state_flags(MigState s) {
        switch (s) {
        case S(RUNNING_P2P):
                return SC | P2P;
        case S(PRE_COPY):
                return SC | PRE;
        case S(PRE_COPY_P2P):
                return SC | P2P | PRE;
        case S(ERROR):
                return ~0u;
        default:
                return SC;
        }
}

static bool kernel_supported(MigState s, uint32_t flags) {
        return (kernel_state_flags(s) & flags) == kernel_state_flags(s);
}

/* The kernel's loop; ERROR (never supported) ends it where the kernel would answer -EINVAL. */
static int kernel_next_state(MigState cur, MigState target, uint32_t flags, MigState *ret) {
        MigState next;

        if (!kernel_supported(cur, flags) || !kernel_supported(target, flags))
                return -EINVAL;
        next = kernel_table[cur][target];
        while (next != S(ERROR) && !kernel_supported(next, flags))
                next = kernel_table[next][target];
        if (next == S(ERROR))
                return -EINVAL;
        *ret = next;
        return 0;
}

static void test_path_finder_equals_kernel(void) {
        unsigned compared = 0, refused = 0;

        for (uint32_t flags = 0; flags <= _MIG_FLAGS_ALL; flags++)
                for (MigState cur = 0; cur < _MIG_STATE_V2_MAX; cur++)
                        for (MigState target = 0; target < _MIG_STATE_V2_MAX; target++) {
                                MigState ours = _MIG_STATE_INVALID, theirs = _MIG_STATE_INVALID;
                                int r_ours = mig_next_state(cur, target, flags, &ours);
                                int r_theirs = kernel_next_state(cur, target, flags, &theirs);

                                if (r_ours != r_theirs || (r_ours == 0 && ours != theirs))
                                        g_error("flags 0x%x %s -> %s: ours %d/%s, kernel %d/%s", flags,
                                                mig_state_to_string(cur), mig_state_to_string(target), r_ours,
                                                r_ours == 0 ? mig_state_to_string(ours) : "-",
                                                r_theirs, r_theirs == 0 ? mig_state_to_string(theirs) : "-");
                                compared++;
                                refused += r_ours < 0;
                        }
        g_assert_cmpuint(compared, ==, 8 * 8 * 8);
        /* Half of the flag sets lack STOP_COPY and refuse all 64 pairs; the rest refuse ERROR and blocked ones. */
        g_assert_cmpuint(refused, >, 4 * 64);
}

/* Walking next states to the end gives the path; every step must be a legal arc. */
static void test_paths_walk_legal_arcs(void) {
        for (size_t f = 0; f < G_N_ELEMENTS(flag_sets); f++)
                for (MigState cur = 0; cur < _MIG_STATE_V2_MAX; cur++)
                        for (MigState target = 0; target < _MIG_STATE_V2_MAX; target++) {
                                MigState path[MIG_PATH_MAX], prev = cur;
                                size_t n;

                                if (mig_path(cur, target, flag_sets[f], path, &n) < 0)
                                        continue;
                                for (size_t i = 0; i < n; i++) {
                                        g_assert_true(mig_arc_is_legal(prev, path[i], flag_sets[f]));
                                        prev = path[i];
                                }
                                g_assert_cmpint(prev, ==, target);
                        }
}

static void assert_path(uint32_t flags, MigState cur, MigState target, const MigState *want, size_t n_want) {
        MigState path[MIG_PATH_MAX];
        size_t n;

        g_assert_cmpint(mig_path(cur, target, flags, path, &n), ==, 0);
        g_assert_cmpuint(n, ==, n_want);
        for (size_t i = 0; i < n; i++)
                g_assert_cmpstr(mig_state_to_string(path[i]), ==, mig_state_to_string(want[i]));
}

/* A few of the combination paths the uAPI comment spells out. */
static void test_documented_paths(void) {
        uint32_t all = SC | P2P | PRE;
        MigState p1[] = { S(RUNNING), S(RUNNING_P2P), S(STOP), S(RESUMING) };
        MigState p2[] = { S(PRE_COPY_P2P), S(STOP_COPY) };
        MigState p3[] = { S(STOP), S(RUNNING_P2P), S(RUNNING), S(PRE_COPY) };
        MigState p4[] = { S(STOP), S(RUNNING) };
        MigState p5[] = { S(STOP), S(RESUMING) };
        MigState path[MIG_PATH_MAX];
        size_t n;

        assert_path(all, S(PRE_COPY), S(RESUMING), p1, G_N_ELEMENTS(p1));
        assert_path(all, S(PRE_COPY), S(STOP_COPY), p2, G_N_ELEMENTS(p2));
        assert_path(all, S(RESUMING), S(PRE_COPY), p3, G_N_ELEMENTS(p3));
        assert_path(SC, S(RESUMING), S(RUNNING), p4, G_N_ELEMENTS(p4));
        assert_path(SC, S(RUNNING), S(RESUMING), p5, G_N_ELEMENTS(p5));
        g_assert_cmpint(mig_path(S(STOP_COPY), S(PRE_COPY), all, path, &n), ==, -EINVAL);
        g_assert_cmpint(mig_path(S(STOP_COPY), S(PRE_COPY_P2P), all, path, &n), ==, -EINVAL);
        g_assert_cmpint(mig_path(S(STOP), S(ERROR), all, path, &n), ==, -EINVAL);
        g_assert_cmpint(mig_path(S(STOP), S(RUNNING_P2P), SC, path, &n), ==, -EINVAL);
        g_assert_cmpint(mig_path(S(STOP), S(STOP), SC, path, &n), ==, 0);
        g_assert_cmpuint(n, ==, 0);
}

static void test_names_and_bits(void) {
        static const struct {
                MigState s;
                const char *name, *bits;
        } table[] = {
                { S(ERROR), "ERROR", NULL },           { S(STOP), "STOP", "000" },
                { S(RUNNING), "RUNNING", "001" },      { S(STOP_COPY), "STOP_COPY", "010" },
                { S(RESUMING), "RESUMING", "100" },    { S(RUNNING_P2P), "RUNNING_P2P", NULL },
                { S(PRE_COPY), "PRE_COPY", "011" },    { S(PRE_COPY_P2P), "PRE_COPY_P2P", NULL },
                { S(V1_RESUMING_RUNNING), "RESUMING_RUNNING", "101" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                g_assert_cmpstr(mig_state_to_string(table[i].s), ==, table[i].name);
                g_assert_cmpstr(mig_state_to_bits(table[i].s), ==, table[i].bits);
                g_assert_cmpint(mig_state_from_string(table[i].name), ==, table[i].s);
        }
        /* Kernel enum values: the daemon passes them to VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE unchanged. */
        g_assert_cmpint(S(ERROR), ==, 0);
        g_assert_cmpint(S(STOP), ==, 1);
        g_assert_cmpint(S(RUNNING), ==, 2);
        g_assert_cmpint(S(STOP_COPY), ==, 3);
        g_assert_cmpint(S(RESUMING), ==, 4);
        g_assert_cmpint(S(RUNNING_P2P), ==, 5);
        g_assert_cmpint(S(PRE_COPY), ==, 6);
        g_assert_cmpint(S(PRE_COPY_P2P), ==, 7);
        g_assert_cmpint(mig_state_from_string("stop_copy"), ==, S(STOP_COPY));
        g_assert_cmpint(mig_state_from_string("BOGUS"), ==, _MIG_STATE_INVALID);
        g_assert_cmpstr(mig_state_no_bits_reason(S(RUNNING_P2P)), ==, "P2P states have no v1 form");
        g_assert_null(mig_state_no_bits_reason(S(STOP)));
        g_assert_false(mig_state_supported(S(V1_RESUMING_RUNNING), SC | P2P | PRE));
        g_assert_true(mig_state_is_running(S(V1_RESUMING_RUNNING)));
        g_assert_true(mig_state_is_running(S(PRE_COPY_P2P)));
        g_assert_false(mig_state_is_running(S(STOP_COPY)));
        g_assert_true(mig_state_is_saving(S(PRE_COPY)));
        g_assert_false(mig_state_is_saving(S(RESUMING)));
}

static void test_flags_strings(void) {
        char buf[MIG_FLAGS_STRING_MAX];
        uint32_t f = 0;

        g_assert_cmpint(mig_flags_from_string("stop-copy,p2p,pre-copy", &f), ==, 0);
        g_assert_cmpuint(f, ==, SC | P2P | PRE);
        g_assert_cmpstr(mig_flags_to_string(f, buf, sizeof(buf)), ==, "stop-copy,p2p,pre-copy");
        g_assert_cmpint(mig_flags_from_string("p2p stop-copy", &f), ==, 0);
        g_assert_cmpuint(f, ==, SC | P2P);
        g_assert_cmpstr(mig_flags_to_string(0, buf, sizeof(buf)), ==, "none");
        f = 42;
        g_assert_cmpint(mig_flags_from_string("stop-copy,dirty-tracking", &f), ==, -EINVAL);
        g_assert_cmpuint(f, ==, 42);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/mig-state/arcs-equal-uapi-comment", test_arcs);
        g_test_add_func("/mig-state/path-finder-equals-kernel", test_path_finder_equals_kernel);
        g_test_add_func("/mig-state/paths-walk-legal-arcs", test_paths_walk_legal_arcs);
        g_test_add_func("/mig-state/documented-paths", test_documented_paths);
        g_test_add_func("/mig-state/names-and-bits", test_names_and_bits);
        g_test_add_func("/mig-state/flags-strings", test_flags_strings);
        return g_test_run();
}
