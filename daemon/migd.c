/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migd's main: command line, signals, the bus and the event loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "bus-errors.h"
#include "config.h"
#include "log.h"
#include "manager.h"
#include "engine.h"
#include "util.h"

typedef struct Arguments {
        const char *config_file;
        const char *bus_address;
        bool user_bus;
        const char *state_dir;
        const char *policy_dir;
} Arguments;

static void help(void) {
        printf("Usage: migd [OPTIONS...]\n\n"
               "Coordinates live migration of VFIO devices between hosts.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --config FILE       Read FILE instead of %s\n"
               "     --bus ADDRESS       Connect to the bus at ADDRESS instead of the system bus\n"
               "     --user              Connect to the user bus instead of the system bus\n"
               "     --state-dir DIR     Keep state in DIR (overrides StateDirectory=)\n"
               "     --policy-dir DIR    Read policies from DIR (overrides PolicyDirectory=)\n",
               MIGD_CONF_FILE);
}

/* 1: go on; 0: done (help, version); -EINVAL: usage error, already reported. */
static int parse_argv(int argc, char *argv[], Arguments *args) {
        enum {
                ARG_VERSION = 0x100,
                ARG_CONFIG,
                ARG_BUS,
                ARG_USER,
                ARG_STATE_DIR,
                ARG_POLICY_DIR,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "bus", required_argument, NULL, ARG_BUS },
                { "user", no_argument, NULL, ARG_USER },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "policy-dir", required_argument, NULL, ARG_POLICY_DIR },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("migd %s\n", MIGD_VERSION);
                        return 0;
                case ARG_CONFIG:
                        args->config_file = optarg;
                        break;
                case ARG_BUS:
                        args->bus_address = optarg;
                        break;
                case ARG_USER:
                        args->user_bus = true;
                        break;
                case ARG_STATE_DIR:
                        args->state_dir = optarg;
                        break;
                case ARG_POLICY_DIR:
                        args->policy_dir = optarg;
                        break;
                case '?':
                        /* getopt already said what was wrong. */
                        return -EINVAL;
                default:
                        assert(false);
                }

        if (optind < argc) {
                fprintf(stderr, "migd: unexpected argument \"%s\"; migd takes options only (see --help).\n",
                        argv[optind]);
                return -EINVAL;
        }
        if (args->bus_address && args->user_bus) {
                fprintf(stderr, "migd: --bus and --user exclude each other.\n");
                return -EINVAL;
        }
        if ((args->state_dir && !args->state_dir[0]) || (args->policy_dir && !args->policy_dir[0]) ||
            (args->config_file && !args->config_file[0])) {
                fprintf(stderr, "migd: --config, --state-dir and --policy-dir need a non-empty path.\n");
                return -EINVAL;
        }
        return 1;
}

static int manager_apply_arguments(Manager *m, const Arguments *args) {
        if (args->config_file) {
                free(m->config_file);
                m->config_file = strdup(args->config_file);
                if (!m->config_file)
                        return -ENOMEM;
                m->config_file_given = true;
        }
        if (args->state_dir && !(m->arg_state_dir = strdup(args->state_dir)))
                return -ENOMEM;
        if (args->policy_dir && !(m->arg_policy_dir = strdup(args->policy_dir)))
                return -ENOMEM;
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_full(LOG_INFO, 0, MIGD_MESSAGE_STOPPING, NULL, NULL, "Received SIG%s, stopping.",
                 sigabbrev_np((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        /* The reason is logged by manager_reload(); SIGHUP has nobody else to tell. */
        (void) manager_reload(userdata, NULL);
        return 0;
}

static int setup_signals(sd_event *e, Manager *m) {
        sigset_t mask;
        int r;

        /* sd_event_add_signal() needs them blocked, or the default action would kill us first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;

        r = sd_event_add_signal(e, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(e, NULL, SIGHUP, on_reload_signal, m);
        return r;
}

static int run(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *why = NULL;
        Arguments args = {};
        int r;

        log_setup();

        r = parse_argv(argc, argv, &args);
        if (r == -EINVAL)
                return 2;
        if (r <= 0)
                return r < 0 ? 1 : 0;

        r = bus_errors_register();
        if (r < 0)
                return log_error_errno(r, "Cannot register the D-Bus error map: %m"), 1;
        r = sd_event_default(&e);
        if (r < 0)
                return log_error_errno(r, "Cannot create the event loop: %m"), 1;
        r = manager_new(e, &m);
        if (r < 0)
                return log_error_errno(r, "Cannot set up: %m"), 1;
        r = manager_apply_arguments(m, &args);
        if (r < 0)
                return log_error_errno(r, "Cannot set up: %m"), 1;

        /* A device's data fd whose reader went away must give EPIPE to the worker, not kill the daemon. */
        (void) signal(SIGPIPE, SIG_IGN);
        r = setup_signals(e, m);
        if (r < 0)
                return log_error_errno(r, "Cannot set up signal handling: %m"), 1;
        r = sd_event_set_watchdog(e, true);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the watchdog: %m"), 1;

        r = manager_startup(m, &why);
        if (r < 0) {
                if (why)
                        log_error("%s", why);
                else
                        log_error_errno(r, "Cannot start: %m");
                return 1;
        }
        r = manager_connect_bus(m, args.bus_address, args.user_bus);
        if (r < 0)
                return 1;
        /* The name first: a second migd must stop before it touches the journal or the peer port. Calls that
         * arrive meanwhile wait in the queue until recovery is done and the loop runs. */
        r = manager_request_name(m);
        if (r < 0)
                return 1;
        r = engine_recover(m->engine);
        if (r < 0)
                return 1;
        r = engine_listen(m->engine);
        if (r < 0)
                return 1;

        (void) sd_notify(false, "READY=1");
        manager_notify_status(m);
        log_full(LOG_INFO, 0, MIGD_MESSAGE_STARTED, NULL, NULL, "migd %s started on %s: %zu devices, %zu policies.",
                 MIGD_VERSION, m->hostname, m->n_devices, m->policies->n);

        r = sd_event_loop(e);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), 1;
        return r;
}

int main(int argc, char *argv[]) {
        return run(argc, argv);
}
