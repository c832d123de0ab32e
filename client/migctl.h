/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl's shared context, exit codes and verb entry points. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

/* Documented in migctl(1); tests assert them. */
enum {
        MIGCTL_EXIT_OK = 0,
        MIGCTL_EXIT_FAILED = 1,
        MIGCTL_EXIT_USAGE = 2,
        MIGCTL_EXIT_POLICY = 3,           /* policy invalid or violated */
        MIGCTL_EXIT_PEER_UNREACHABLE = 4,
        MIGCTL_EXIT_NOT_PERMITTED = 5,
        MIGCTL_EXIT_NOT_FOUND = 6,        /* no such device, migration or policy */
        MIGCTL_EXIT_DAEMON_UNREACHABLE = 7,
};

typedef struct MigctlContext {
        bool json;
        bool color;            /* stdout is a terminal and NO_COLOR is unset */
        const char *bus_address; /* --bus ADDRESS */
        bool user_bus;         /* --user */
        const char *host;      /* -H [USER@]HOST */
        FILE *out;
} MigctlContext;

/* Each verb gets argv with argv[0] the verb itself and returns a MIGCTL_EXIT_* code. */
int verb_policy(int argc, char *argv[], MigctlContext *ctx);   /* policy show|check|explain */
int verb_devices(int argc, char *argv[], MigctlContext *ctx);
int verb_show(int argc, char *argv[], MigctlContext *ctx);
int verb_policies(int argc, char *argv[], MigctlContext *ctx);
int verb_reload(int argc, char *argv[], MigctlContext *ctx);
int verb_migrate(int argc, char *argv[], MigctlContext *ctx);
int verb_status(int argc, char *argv[], MigctlContext *ctx);
int verb_watch(int argc, char *argv[], MigctlContext *ctx);
int verb_cancel(int argc, char *argv[], MigctlContext *ctx);
int verb_resolve(int argc, char *argv[], MigctlContext *ctx);
int verb_timeline(int argc, char *argv[], MigctlContext *ctx);

/* Connects as the context says: --bus ADDRESS, --user, -H HOST, else the system bus. */
int migctl_bus_open(const MigctlContext *ctx, sd_bus **ret);
/* Prints a D-Bus error as a sentence on stderr and maps it to an exit code. */
int migctl_exit_for_bus_error(const sd_bus_error *e, int r, const char *what);
/* The exit code for an org.vfiomig.Migd1.Error.* (or D-Bus) error name; MIGCTL_EXIT_FAILED for others. */
int migctl_exit_for_error_name(const char *name);
