/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl qualify DEVICE: runs migd's qualification of one device and prints what a driver author can act on. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "config.h"
#include "migctl.h"
#include "util.h"

/* Declared here and in migctl.c's verb table; migctl.h belongs to the verbs every client build has. */
int verb_qualify(int argc, char *argv[], MigctlContext *ctx);

#define QUALIFY_TIMEOUT_USEC (300ULL * 1000000ULL)

static const char *get(struct json_object *o, const char *key) {
        return json_object_get_string(json_object_object_get(o, key));
}

static void print_group(FILE *f, struct json_object *checks, const char *group, const char *title) {
        size_t n = json_object_array_length(checks), shown = 0, passed = 0;

        for (size_t i = 0; i < n; i++) {
                struct json_object *c = json_object_array_get_idx(checks, i);
                if (streq_ptr(get(c, "group"), group))
                        passed += streq_ptr(get(c, "result"), "pass");
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *c = json_object_array_get_idx(checks, i);
                const char *result = get(c, "result");

                if (!streq_ptr(get(c, "group"), group))
                        continue;
                if (shown++ == 0)
                        fprintf(f, "\n%s\n", title);
                /* Passing arcs are many and alike: one line for them, every other result in full. */
                if (streq_ptr(result, "pass") && (streq(group, "arcs") || streq(group, "forbidden") ||
                                                  streq(group, "kernel")))
                        continue;
                fprintf(f, "  %-4s  %-34s %s\n", streq_ptr(result, "pass") ? "ok" : result, get(c, "name"),
                        strna(get(c, "detail")));
                if (get(c, "hint"))
                        fprintf(f, "        -> %s\n", get(c, "hint"));
        }
        if (shown && (streq(group, "arcs") || streq(group, "forbidden") || streq(group, "kernel")))
                fprintf(f, "  %zu of %zu passed\n", passed, shown);
}

static void print_report(FILE *f, struct json_object *r) {
        struct json_object *s = json_object_object_get(r, "summary"), *checks = json_object_object_get(r, "checks");

        fprintf(f, "Device %s: %s backend, driver %s, %s%s%s, migration flags %s\n", get(r, "device"),
                get(r, "backend"), get(r, "driver"), get(r, "ids"), get(r, "mdev_type") ? ", mdev type " : "",
                get(r, "mdev_type") ?: "", get(r, "migration_flags"));
        print_group(f, checks, "data", "Device data (STOP_COPY, RESUMING, MIG_DATA_SIZE)");
        print_group(f, checks, "arcs", "Legal arcs (each must succeed, report the new state, and give a data_fd exactly when the uAPI says)");
        print_group(f, checks, "forbidden", "Forbidden arcs through migd (EINVAL, state unchanged)");
        print_group(f, checks, "kernel", "Forbidden arcs asked of the driver directly (combination arcs walked, unreachable ones EINVAL)");
        print_group(f, checks, "precopy", "Pre-copy (VFIO_MIG_GET_PRECOPY_INFO)");
        print_group(f, checks, "interrupts", "Interrupts (SET_IRQS, silence while not RUNNING)");
        print_group(f, checks, "reset", "Reset");
        fprintf(f, "\n%s: %d passed, %d failed, %d warnings, %d skipped (%.1f s)\n", get(s, "verdict"),
                json_object_get_int(json_object_object_get(s, "passed")),
                json_object_get_int(json_object_object_get(s, "failed")),
                json_object_get_int(json_object_object_get(s, "warnings")),
                json_object_get_int(json_object_object_get(s, "skipped")),
                (double) json_object_get_int64(json_object_object_get(r, "duration_usec")) / 1e6);
}

int verb_qualify(int argc, char *argv[], MigctlContext *ctx) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_json_ struct json_object *report = NULL;
        const char *text;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        fprintf(ctx->out, "migctl qualify DEVICE [--json]\n\n"
                                "Walks every arc of the device's migration state machine, checks that forbidden arcs "
                                "are refused,\nthat no interrupt arrives while the device is stopped, that its data "
                                "survives save and load,\nand pre-copy info. The device must be idle: no migration, no "
                                "guest interrupts. Exit 1 when a check fails.\n");
                        return MIGCTL_EXIT_OK;
                default:
                        return MIGCTL_EXIT_USAGE;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "migctl qualify: expected one DEVICE (see migctl qualify --help)\n");
                return MIGCTL_EXIT_USAGE;
        }
        r = migctl_bus_open(ctx, &bus);
        if (r < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = sd_bus_message_new_method_call(bus, &m, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, "org.vfiomig.Migd1.Manager",
                                           "QualifyDevice");
        if (r >= 0)
                r = sd_bus_message_append(m, "sa{sv}", argv[optind], 0);
        if (r < 0)
                return MIGCTL_EXIT_FAILED;
        r = sd_bus_call(bus, m, QUALIFY_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, "qualify");
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0)
                return MIGCTL_EXIT_FAILED;
        report = json_tokener_parse(text);
        if (!report) {
                fprintf(stderr, "migctl qualify: migd's report is not JSON\n");
                return MIGCTL_EXIT_FAILED;
        }
        if (ctx->json)
                fprintf(ctx->out, "%s\n", json_object_to_json_string_ext(report, JSON_C_TO_STRING_PRETTY |
                                                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
        else
                print_report(ctx->out, report);
        return json_object_get_int(json_object_object_get(json_object_object_get(report, "summary"), "failed")) > 0
                       ? MIGCTL_EXIT_FAILED
                       : MIGCTL_EXIT_OK;
}
