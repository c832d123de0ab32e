/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl: global options and verb dispatch. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "migctl.h"
#include "util.h"

typedef struct Verb {
        const char *name;
        int (*run)(int argc, char *argv[], MigctlContext *ctx);
        const char *summary;
} Verb;

static int verb_version(int argc, char *argv[], MigctlContext *ctx) {
        fprintf(ctx->out, "migctl %s\n", MIGD_VERSION);
        return MIGCTL_EXIT_OK;
}

int verb_qualify(int argc, char *argv[], MigctlContext *ctx); /* client/migctl-qualify.c */

static const Verb verbs[] = {
        { "devices", verb_devices, "List the devices migd manages" },
        { "show", verb_show, "Show one device's properties" },
        { "policies", verb_policies, "List the policies the daemon has loaded" },
        { "policy", verb_policy, "show|check|explain a policy (works without the daemon)" },
        { "migrate", verb_migrate, "Migrate a device to another host, with live progress" },
        { "status", verb_status, "List migrations, or show one" },
        { "watch", verb_watch, "Follow a migration's progress to its end" },
        { "cancel", verb_cancel, "Cancel a migration before its commit point" },
        { "resolve", verb_resolve, "Decide an in-doubt migration: --commit or --abort" },
        { "timeline", verb_timeline, "Draw what happened during a migration, both hosts in time" },
        { "qualify", verb_qualify, "Check a device's migration state machine and interrupts (driver authors)" },
        { "reload", verb_reload, "Make migd re-read its configuration and policies" },
        { "version", verb_version, "Print migctl's version" },
};

static void help(FILE *f) {
        fprintf(f,
                "Usage: migctl [OPTIONS...] COMMAND [ARGS...]\n"
                "\n"
                "Inspect and drive migd, the VFIO device migration daemon.\n"
                "\n"
                "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f,
                "\n"
                "Options:\n"
                "  -h --help            Show this help (COMMAND --help for a command's own)\n"
                "     --version         Print the version\n"
                "     --json            Print machine-readable JSON\n"
                "     --bus ADDRESS     Talk to migd on this D-Bus address instead of the system bus\n"
                "     --user            Talk to migd on the user bus\n"
                "  -H --host [USER@]HOST  Talk to migd on HOST over ssh\n"
                "     --no-color        Never colour the output (also: NO_COLOR set)\n"
                "\n"
                "Exit status: 0 ok, 1 failed, 2 usage, 3 policy invalid or violated, 4 peer unreachable,\n"
                "5 not permitted, 6 no such device/migration/policy, 7 migd not reachable. See migctl(1).\n");
}

/* Options may stand anywhere on the line; getopt stops at the verb ("+") and verbs parse their own. */
static int parse_global_options(int argc, char *argv[], MigctlContext *ctx, int *ret_verb_index) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_BUS, ARG_USER, ARG_NO_COLOR };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },         { "version", no_argument, NULL, ARG_VERSION },
                { "json", no_argument, NULL, ARG_JSON },    { "bus", required_argument, NULL, ARG_BUS },
                { "user", no_argument, NULL, ARG_USER },    { "host", required_argument, NULL, 'H' },
                { "no-color", no_argument, NULL, ARG_NO_COLOR }, {},
        };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "+hH:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help(stdout);
                        return 0;
                case ARG_VERSION:
                        (void) verb_version(0, NULL, ctx);
                        return 0;
                case ARG_JSON:
                        ctx->json = true;
                        break;
                case ARG_BUS:
                        ctx->bus_address = optarg;
                        break;
                case ARG_USER:
                        ctx->user_bus = true;
                        break;
                case 'H':
                        ctx->host = optarg;
                        break;
                case ARG_NO_COLOR:
                        ctx->color = false;
                        break;
                case '?':
                        fprintf(stderr, "migctl: unknown option '%s' (see migctl --help)\n", argv[optind - 1]);
                        return -EINVAL;
                default:
                        fprintf(stderr, "migctl: option '%s' needs a value\n", argv[optind - 1]);
                        return -EINVAL;
                }
        *ret_verb_index = optind;
        return 1;
}

/* Verbs take --json after the verb too ("migctl devices --json"); strip the global flags we know. */
static int strip_late_globals(int argc, char *argv[], MigctlContext *ctx) {
        int n = 0;

        for (int i = 0; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        ctx->json = true;
                else if (streq(argv[i], "--no-color"))
                        ctx->color = false;
                else if (streq(argv[i], "--bus") && i + 1 < argc)
                        ctx->bus_address = argv[++i];
                else if (streq(argv[i], "--user"))
                        ctx->user_bus = true;
                else
                        argv[n++] = argv[i];
        }
        argv[n] = NULL;
        return n;
}

int main(int argc, char *argv[]) {
        MigctlContext ctx = {
                .out = stdout,
                .color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR"),
        };
        int verb_index = 0, r;

        r = parse_global_options(argc, argv, &ctx, &verb_index);
        if (r < 0)
                return MIGCTL_EXIT_USAGE;
        if (r == 0)
                return MIGCTL_EXIT_OK;
        if (verb_index >= argc) {
                help(stderr);
                return MIGCTL_EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[verb_index], verbs[i].name)) {
                        int n = strip_late_globals(argc - verb_index, argv + verb_index, &ctx);
                        optind = 0; /* verbs run getopt afresh */
                        return verbs[i].run(n, argv + verb_index, &ctx);
                }
        if (streq(argv[verb_index], "help")) {
                help(stdout);
                return MIGCTL_EXIT_OK;
        }
        fprintf(stderr, "migctl: unknown command '%s' (see migctl --help)\n", argv[verb_index]);
        return MIGCTL_EXIT_USAGE;
}
