/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migctl migrate/status/watch/cancel/resolve/timeline: starting migrations and following them live. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "../daemon/bus-errors.h"
#include "config.h"
#include "migctl-progress.h"
#include "migctl-timeline.h"
#include "migctl.h"
#include "util.h"

#define MANAGER_INTERFACE "org.vfiomig.Migd1.Manager"
#define MIGRATION_INTERFACE "org.vfiomig.Migd1.Migration"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

#define ANSI_BOLD "\033[1m"
#define ANSI_RED "\033[31m"
#define ANSI_GREEN "\033[32m"
#define ANSI_YELLOW "\033[33m"
#define ANSI_RESET "\033[0m"
#define ANSI_CLEAR_LINE "\r\033[K"

/* Polling backs up the PropertiesChanged signals (a lost match, a daemon that coalesces too much). */
#define POLL_USEC 1000000ull
/* Without a terminal, a progress line at most this often besides one per phase. */
#define PLAIN_INTERVAL_USEC 3000000ull
#define SHORT_ID_LEN 8

static void migration_info_donep(MigrationInfo *m) {
        migration_info_done(m);
}
#define _cleanup_migration_info_ _cleanup_(migration_info_donep)

static FILE *out_of(const MigctlContext *ctx) {
        return ctx->out ?: stdout;
}

static const char *col(const MigctlContext *ctx, const char *code) {
        return ctx->color ? code : "";
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ull + (uint64_t) ts.tv_nsec / 1000;
}

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A usage error as a sentence that points at the verb's --help. */
_printf_(2, 3) static int usage_error(const char *verb, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "migctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, " (see migctl %s --help)\n", verb);
        return MIGCTL_EXIT_USAGE;
}

/* getopt's complaint as a sentence; 1 when parsing should go on. */
static int unknown_option(const char *verb, int c, char *argv[]) {
        if (c == '?')
                return usage_error(verb, "unknown option '%s'", argv[optind - 1]);
        return usage_error(verb, "option '%s' needs a value", argv[optind - 1]);
}

/* ListMigrations() as parsed JSON. */
static int list_migrations(sd_bus *bus, struct json_object **ret_json, char **ret_text) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct json_object *j;
        const char *text;
        int r;

        r = sd_bus_call_method(bus, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE, "ListMigrations", &error,
                               &reply, NULL);
        if (r < 0)
                return -migctl_exit_for_bus_error(&error, r, "list migrations");
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0 || !(j = json_tokener_parse(text)) || !json_object_is_type(j, json_type_array)) {
                fprintf(stderr, "migctl: cannot list migrations: migd's reply is malformed\n");
                return -MIGCTL_EXIT_FAILED;
        }
        if (ret_text && !(*ret_text = strdup(text))) {
                json_object_put(j);
                return -MIGCTL_EXIT_FAILED;
        }
        *ret_json = j;
        return 0;
}

static const char *json_id(struct json_object *m) {
        struct json_object *v;

        return json_object_object_get_ex(m, "id", &v) ? json_object_get_string(v) : "";
}

static const char *json_path(struct json_object *m) {
        struct json_object *v;

        return json_object_object_get_ex(m, "object_path", &v) ? json_object_get_string(v) : "";
}

static void print_known_ids(struct json_object *list) {
        size_t n = json_object_array_length(list);

        if (n == 0) {
                fprintf(stderr, " (there are none)");
                return;
        }
        fprintf(stderr, " (known: ");
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, "%s%.*s", i ? ", " : "", SHORT_ID_LEN, json_id(json_object_array_get_idx(list, i)));
        fprintf(stderr, ")");
}

/* MIGRATION is a full id, a unique prefix of one, or an object path. Returns a MIGCTL_EXIT_* code, negated. */
static int find_migration(sd_bus *bus, const char *arg, MigrationInfo *ret) {
        _cleanup_json_ struct json_object *list = NULL;
        struct json_object *match = NULL;
        size_t n_prefix = 0;
        int r;

        r = list_migrations(bus, &list, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                struct json_object *m = json_object_array_get_idx(list, i);

                if (streq(json_id(m), arg) || streq(json_path(m), arg)) {
                        match = m;
                        n_prefix = 1;
                        break;
                }
                if (arg[0] != '/' && startswith(json_id(m), arg)) {
                        match = m;
                        n_prefix++;
                }
        }
        if (n_prefix == 0) {
                fprintf(stderr, "migctl: no migration \"%s\" on this host", arg);
                print_known_ids(list);
                fprintf(stderr, ".\n");
                return -MIGCTL_EXIT_NOT_FOUND;
        }
        if (n_prefix > 1) {
                fprintf(stderr, "migctl: \"%s\" is the start of %zu migrations' ids; give more of it.\n", arg,
                        n_prefix);
                return -MIGCTL_EXIT_USAGE;
        }
        if (migration_info_from_json(ret, match) < 0) {
                migration_info_done(ret);
                fprintf(stderr, "migctl: migd's migration list is malformed\n");
                return -MIGCTL_EXIT_FAILED;
        }
        return 0;
}

static int get_all(sd_bus *bus, const char *path, MigrationInfo *m, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, MIGD_BUS_NAME, path, PROPERTIES_INTERFACE, "GetAll", error, &reply, "s",
                               MIGRATION_INTERFACE);
        if (r < 0)
                return r;
        return migration_info_update_from_message(m, reply);
}

/* Connects and resolves MIGRATION; the usual start of every verb that names one. */
static int open_migration(const MigctlContext *ctx, const char *arg, sd_bus **ret_bus, MigrationInfo *ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (migctl_bus_open(ctx, &bus) < 0)
                return -MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = find_migration(bus, arg, ret);
        if (r < 0)
                return r;
        *ret_bus = TAKE_PTR(bus);
        return 0;
}

/* The exit code a finished migration stands for: its ErrorName says why it failed. */
static int exit_for_result(const MigrationInfo *m) {
        if (streq_ptr(m->result, "success"))
                return MIGCTL_EXIT_OK;
        if (streq_ptr(m->result, "failed"))
                return migctl_exit_for_error_name(m->error_name);
        return MIGCTL_EXIT_FAILED;
}

/* First event to the result, by the hosts' clocks; 0 when the timeline cannot say. */
static uint64_t timeline_duration(sd_bus *bus, const char *path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_json_ struct json_object *events = NULL;
        int64_t first = INT64_MAX, end = 0;
        const char *text;

        if (sd_bus_call_method(bus, MIGD_BUS_NAME, path, MIGRATION_INTERFACE, "GetTimeline", NULL, &reply, NULL) < 0 ||
            sd_bus_message_read(reply, "s", &text) < 0)
                return 0;
        events = json_tokener_parse(text);
        if (!events || !json_object_is_type(events, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(events); i++) {
                struct json_object *e = json_object_array_get_idx(events, i), *rt, *kind;
                int64_t t;

                if (!json_object_object_get_ex(e, "rt_usec", &rt))
                        continue;
                t = json_object_get_int64(rt);
                if (t < first)
                        first = t;
                if (json_object_object_get_ex(e, "event", &kind) && streq(json_object_get_string(kind), "result"))
                        end = t;
        }
        return end > first ? (uint64_t) (end - first) : 0;
}

/* "Migrated gpu0 to 127.0.0.1:17482 in 1.2 s, downtime 3.1 ms (policy stop-window)" or the failure sentence. */
static int print_result(const MigctlContext *ctx, sd_bus *bus, const MigrationInfo *m, uint64_t fallback_usec) {
        bool source = !streq_ptr(m->role, "destination");
        uint64_t took = timeline_duration(bus, m->object_path) ?: fallback_usec;
        char duration[32], downtime[32];
        FILE *f = out_of(ctx);

        format_usec(duration, sizeof(duration), took);
        format_usec(downtime, sizeof(downtime), m->downtime_usec);
        if (streq_ptr(m->result, "success")) {
                fprintf(f, "%s%s %s %s %s in %s", col(ctx, ANSI_GREEN ANSI_BOLD), source ? "Migrated" : "Received",
                        m->device, source ? "to" : "from", m->peer, duration);
                if (m->downtime_usec > 0)
                        fprintf(f, ", downtime %s", downtime);
                fprintf(f, "%s (policy %s)\n", col(ctx, ANSI_RESET), m->policy);
        } else if (streq_ptr(m->result, "cancelled"))
                fprintf(f, "Cancelled the migration of %s %s %s; %s\n", m->device,
                        source ? "to" : "from", m->peer,
                        source ? "the device runs on the source again." : "the source keeps the device.");
        else if (streq_ptr(m->result, "in-doubt"))
                fprintf(stderr,
                        "migctl: The migration of %s to %s is in doubt: %s\n"
                        "Decide it with \"migctl resolve %s --commit\" if %s runs the device, else --abort.\n",
                        m->device, m->peer, m->error && m->error[0] ? m->error : "the destination did not answer",
                        m->id, m->peer);
        else
                fprintf(stderr, "migctl: Migration of %s %s %s failed: %s\n", m->device, source ? "to" : "from",
                        m->peer, m->error && m->error[0] ? m->error : "no reason given");
        return exit_for_result(m);
}

static int print_migration_json(const MigctlContext *ctx, const MigrationInfo *m) {
        _cleanup_json_ struct json_object *j = migration_info_to_json(m);

        if (!j)
                return MIGCTL_EXIT_FAILED;
        fprintf(out_of(ctx), "%s\n",
                json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        return MIGCTL_EXIT_OK;
}

/* Following a migration until it ends: the state shared by the signal, timer, SIGINT and stdin handlers. */
typedef struct Watch {
        const MigctlContext *ctx;
        sd_bus *bus;
        sd_event *event;
        MigrationInfo info;
        bool bar;              /* redraw one line in place (stdout is a terminal) */
        bool interactive;      /* Ctrl-C may ask (stdin and stdout are terminals) */
        bool owner;            /* migctl migrate started it: Ctrl-C offers to cancel */
        bool quiet;            /* no progress at all (cancel, --json) */
        bool prompting;
        bool cancel_requested;
        bool detached;
        bool bar_on_screen;
        char *shown_phase;
        uint64_t started_usec;
        uint64_t plain_usec;
        sd_event_source *stdin_source;
        int failure;           /* a MIGCTL_EXIT_* code when following broke off */
} Watch;

static size_t terminal_width(void) {
        struct winsize ws;

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col < 40)
                return 80;
        /* One column short: writing the last one wraps on some terminals. */
        return ws.ws_col - 1;
}

static void draw(Watch *w) {
        _cleanup_free_ char *line = NULL;
        FILE *f = out_of(w->ctx);
        const char *phase = w->info.phase && w->info.phase[0] ? w->info.phase : w->info.result;

        if (w->quiet || w->prompting || w->detached)
                return;
        if (w->bar) {
                line = progress_line(&w->info, terminal_width(), w->ctx->color);
                if (!line)
                        return;
                fprintf(f, ANSI_CLEAR_LINE "%s", line);
                fflush(f);
                w->bar_on_screen = true;
                return;
        }
        /* Plain: on each phase change, and every few seconds while data moves. */
        if (streq_ptr(phase, w->shown_phase) && now_usec() < w->plain_usec + PLAIN_INTERVAL_USEC)
                return;
        if (migration_info_ended(&w->info) && !w->info.phase[0])
                return;
        line = progress_plain(&w->info);
        if (!line)
                return;
        fprintf(f, "%s\n", line);
        fflush(f);
        free(w->shown_phase);
        w->shown_phase = strdup(phase ?: "");
        w->plain_usec = now_usec();
}

/* Leaves the bar's last state on screen and moves below it. */
static void end_bar(Watch *w) {
        if (!w->bar_on_screen)
                return;
        fputc('\n', out_of(w->ctx));
        w->bar_on_screen = false;
}

static void check_end(Watch *w) {
        if (!migration_info_ended(&w->info))
                return;
        draw(w);
        end_bar(w);
        (void) sd_event_exit(w->event, 0);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Watch *w = userdata;
        const char *interface;

        if (sd_bus_message_read(m, "s", &interface) < 0 || !streq(interface, MIGRATION_INTERFACE))
                return 0;
        if (migration_info_update_from_message(&w->info, m) < 0)
                return 0;
        draw(w);
        check_end(w);
        return 0;
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        Watch *w = userdata;
        int r;

        r = get_all(w->bus, w->info.object_path, &w->info, &error);
        if (r < 0) {
                end_bar(w);
                w->failure = migctl_exit_for_bus_error(&error, r, "follow the migration");
                return sd_event_exit(w->event, 0);
        }
        draw(w);
        check_end(w);
        if (sd_event_source_set_time_relative(s, POLL_USEC) < 0)
                return 0;
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void request_cancel(Watch *w) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(w->bus, MIGD_BUS_NAME, w->info.object_path, MIGRATION_INTERFACE, "Cancel", &error,
                               NULL, NULL);
        if (r < 0) {
                /* PastCommitPoint, or it ended meanwhile: say why and keep following it to its end. */
                (void) migctl_exit_for_bus_error(&error, r, "cancel the migration");
                return;
        }
        w->cancel_requested = true;
        fprintf(stderr, "Cancelling migration %.*s; waiting for %s to run on the source again…\n", SHORT_ID_LEN,
                w->info.id, w->info.device);
}

static void detach(Watch *w) {
        end_bar(w);
        fprintf(stderr, "\nDetached; migration %s goes on. Follow it with: migctl watch %.*s\n", w->info.id,
                SHORT_ID_LEN, w->info.id);
        w->detached = true;
        (void) sd_event_exit(w->event, 0);
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Watch *w = userdata;
        char answer[64] = "";
        ssize_t n;

        n = read(fd, answer, sizeof(answer) - 1);
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        w->prompting = false;
        if (n > 0 && (answer[0] == 'y' || answer[0] == 'Y'))
                request_cancel(w);
        else
                fprintf(stderr, "Not cancelled; the migration goes on.\n");
        draw(w);
        check_end(w);
        return 0;
}

static int on_sigint(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Watch *w = userdata;
        int r;

        /* Only the migrate verb owns the migration; elsewhere Ctrl-C only stops following it. A second Ctrl-C
         * (at the question, or while the cancellation runs) leaves it running. */
        if (!w->owner || w->prompting || w->cancel_requested) {
                detach(w);
                return 0;
        }
        if (!w->interactive) {
                end_bar(w);
                request_cancel(w);
                if (!w->cancel_requested)
                        detach(w);
                return 0;
        }
        if (w->bar_on_screen)
                fputs(ANSI_CLEAR_LINE, out_of(w->ctx));
        w->bar_on_screen = false;
        fflush(out_of(w->ctx));
        fprintf(stderr, "Cancel the migration? [y/N] ");
        fflush(stderr);
        w->prompting = true;
        if (!w->stdin_source) {
                r = sd_event_add_io(w->event, &w->stdin_source, STDIN_FILENO, EPOLLIN, on_stdin, w);
                if (r < 0) {
                        detach(w);
                        return 0;
                }
        }
        return sd_event_source_set_enabled(w->stdin_source, SD_EVENT_ON);
}

static int watch_setup(Watch *w, sd_event_source **ret_poll, sd_event_source **ret_sigint, sd_bus_slot **ret_slot) {
        sigset_t mask;
        int r;

        r = sd_event_new(&w->event);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(w->bus, w->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        /* Match on the object only: the sender is migd's unique name, which sd-bus would not equate with
         * the well-known one. */
        r = sd_bus_match_signal(w->bus, ret_slot, NULL, w->info.object_path, PROPERTIES_INTERFACE,
                                "PropertiesChanged", on_properties_changed, w);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(w->event, ret_poll, CLOCK_MONOTONIC, POLL_USEC, 0, on_poll, w);
        if (r < 0)
                return r;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        /* sd-event takes signals through a signalfd, which needs them blocked. */
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        return sd_event_add_signal(w->event, ret_sigint, SIGINT, on_sigint, w);
}

/* Follows w->info (object_path set) until it ends or the user detaches; returns a MIGCTL_EXIT_* code. */
static int watch_run(Watch *w) {
        _cleanup_(sd_event_source_unrefp) sd_event_source *poll = NULL, *sigint = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r;

        r = watch_setup(w, &poll, &sigint, &slot);
        event = w->event;
        if (r < 0) {
                fprintf(stderr, "migctl: cannot follow the migration: %s\n", strerror(-r));
                return MIGCTL_EXIT_FAILED;
        }
        /* Read the properties once the match is in place, so that no change falls between the two. */
        r = get_all(w->bus, w->info.object_path, &w->info, &error);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, "follow the migration");
        draw(w);
        check_end(w);
        if (!migration_info_ended(&w->info)) {
                r = sd_event_loop(w->event);
                if (r < 0) {
                        end_bar(w);
                        fprintf(stderr, "migctl: lost the connection to migd while following the migration: %s\n",
                                strerror(-r));
                        r = MIGCTL_EXIT_DAEMON_UNREACHABLE;
                        goto finish;
                }
        }
        if (w->failure)
                r = w->failure;
        else if (w->detached)
                r = MIGCTL_EXIT_OK;
        else if (w->ctx->json)
                r = print_migration_json(w->ctx, &w->info) ?: exit_for_result(&w->info);
        else
                r = print_result(w->ctx, w->bus, &w->info, now_usec() - w->started_usec);
finish:
        w->stdin_source = sd_event_source_unref(w->stdin_source);
        (void) sd_bus_detach_event(w->bus);
        free(w->shown_phase);
        w->shown_phase = NULL;
        return r;
}

static void watch_init(Watch *w, const MigctlContext *ctx, sd_bus *bus, bool owner) {
        *w = (Watch) {
                .ctx = ctx,
                .bus = bus,
                .bar = isatty(STDOUT_FILENO) && !ctx->json,
                .interactive = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO),
                .owner = owner,
                .quiet = ctx->json,
                .started_usec = now_usec(),
        };
}

static int add_option(sd_bus_message *m, const char *key, const char *value) {
        if (!value)
                return 0;
        return sd_bus_message_append(m, "{sv}", key, "s", value);
}

static int start_migration(sd_bus *bus, const char *device, const char *to, const char *target, const char *policy,
                           const char *precopy, char **ret_path) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *what = NULL;
        const char *path;
        int r;

        if (asprintf(&what, "migrate %s to %s", device, to) < 0)
                return -MIGCTL_EXIT_FAILED;
        r = sd_bus_message_new_method_call(bus, &call, MIGD_BUS_NAME, MIGD_OBJECT_ROOT, MANAGER_INTERFACE,
                                           "StartMigration");
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", device, to);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{sv}");
        if (r >= 0)
                r = add_option(call, "target", target);
        if (r >= 0)
                r = add_option(call, "policy", policy);
        if (r >= 0)
                r = add_option(call, "precopy", precopy);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r < 0) {
                fprintf(stderr, "migctl: cannot %s: %s\n", what, strerror(-r));
                return -MIGCTL_EXIT_FAILED;
        }
        r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0)
                return -migctl_exit_for_bus_error(&error, r, what);
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0 || !(*ret_path = strdup(path)))
                return -MIGCTL_EXIT_FAILED;
        return 0;
}

static void help_migrate(void) {
        printf("Usage: migctl migrate DEVICE --to HOST[:PORT] [OPTIONS...]\n\n"
               "Migrate DEVICE to the migd on HOST (port 7480 unless given) and follow it to the end.\n"
               "On a terminal a progress bar is redrawn in place; otherwise a line per phase and every\n"
               "few seconds. Ctrl-C asks whether to cancel; a second Ctrl-C detaches (the migration\n"
               "goes on; follow it with migctl watch). Without a terminal Ctrl-C cancels.\n\n"
               "Options:\n"
               "  -h --help                 Show this help\n"
               "     --to HOST[:PORT]       Destination migd (required)\n"
               "     --target DEVICE        The destination's device (default: the first idle match)\n"
               "     --policy NAME          Policy to use (default: the one that matches DEVICE)\n"
               "     --precopy off|auto|required  Override the policy's pre-copy setting\n"
               "     --no-wait              Print the migration's id and return at once\n"
               "     --json                 With --no-wait: {\"migration\":ID,\"object_path\":PATH};\n"
               "                            otherwise no progress, the final migration JSON\n");
}

int verb_migrate(int argc, char *argv[], MigctlContext *ctx) {
        enum { ARG_TO = 0x100, ARG_TARGET, ARG_POLICY, ARG_PRECOPY, ARG_NO_WAIT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },           { "to", required_argument, NULL, ARG_TO },
                { "target", required_argument, NULL, ARG_TARGET }, { "policy", required_argument, NULL, ARG_POLICY },
                { "precopy", required_argument, NULL, ARG_PRECOPY }, { "no-wait", no_argument, NULL, ARG_NO_WAIT },
                {},
        };
        const char *to = NULL, *target = NULL, *policy = NULL, *precopy = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_migration_info_ MigrationInfo info = {};
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *path = NULL;
        bool no_wait = false;
        Watch w;
        int c, r;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help_migrate();
                        return MIGCTL_EXIT_OK;
                case ARG_TO:
                        to = optarg;
                        break;
                case ARG_TARGET:
                        target = optarg;
                        break;
                case ARG_POLICY:
                        policy = optarg;
                        break;
                case ARG_PRECOPY:
                        if (!streq(optarg, "off") && !streq(optarg, "auto") && !streq(optarg, "required"))
                                return usage_error("migrate", "--precopy takes off, auto or required, not \"%s\"",
                                                   optarg);
                        precopy = optarg;
                        break;
                case ARG_NO_WAIT:
                        no_wait = true;
                        break;
                default:
                        return unknown_option("migrate", c, argv);
                }
        if (optind >= argc)
                return usage_error("migrate", "%s needs a DEVICE", "migrate");
        if (optind + 1 < argc)
                return usage_error("migrate", "migrate takes one DEVICE, got also \"%s\"", argv[optind + 1]);
        if (!to)
                return usage_error("migrate", "%s needs --to HOST[:PORT]", "migrate");

        if (migctl_bus_open(ctx, &bus) < 0)
                return MIGCTL_EXIT_DAEMON_UNREACHABLE;
        r = start_migration(bus, argv[optind], to, target, policy, precopy, &path);
        if (r < 0)
                return -r;
        info.object_path = TAKE_PTR(path);
        r = get_all(bus, info.object_path, &info, &error);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, "read the new migration");

        if (no_wait) {
                if (ctx->json)
                        fprintf(out_of(ctx), "{\"migration\":\"%s\",\"object_path\":\"%s\"}\n", info.id,
                                info.object_path);
                else
                        fprintf(out_of(ctx), "%s\n", info.id);
                return MIGCTL_EXIT_OK;
        }
        if (!ctx->json)
                fprintf(out_of(ctx), "Migrating %s%s%s to %s with policy %s (migration %s)\n", col(ctx, ANSI_BOLD),
                        info.device, col(ctx, ANSI_RESET), info.peer, info.policy, info.id);
        watch_init(&w, ctx, bus, true);
        w.info = info;
        info = (MigrationInfo) {};
        r = watch_run(&w);
        migration_info_done(&w.info);
        return r;
}

static int one_migration_argument(const char *verb, int argc, char *argv[]) {
        if (optind >= argc)
                return usage_error(verb, "%s needs a MIGRATION (an id, a unique start of one, or a path)", verb);
        if (optind + 1 < argc)
                return usage_error(verb, "one MIGRATION only, got also \"%s\"", argv[optind + 1]);
        return 0;
}

/* The options of verbs that take only --help (and the global --json). */
static int parse_help_only(const char *verb, int argc, char *argv[], void (*help)(void)) {
        static const struct option options[] = { { "help", no_argument, NULL, 'h' }, {} };
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c == 'h') {
                        help();
                        return 0;
                }
                return -unknown_option(verb, c, argv);
        }
        return 1;
}

static void help_watch(void) {
        printf("Usage: migctl watch MIGRATION\n\n"
               "Follow a migration to its end, drawing its progress as migctl migrate does, and exit\n"
               "with the code its result stands for. Ctrl-C stops watching; the migration goes on.\n"
               "MIGRATION is its id, a unique start of it, or its object path.\n\n"
               "Options:\n"
               "  -h --help     Show this help\n"
               "     --json     No progress; print the final migration JSON\n");
}

int verb_watch(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        Watch w;
        int r;

        r = parse_help_only("watch", argc, argv, help_watch);
        if (r <= 0)
                return -r;
        r = one_migration_argument("watch", argc, argv);
        if (r > 0)
                return r;
        watch_init(&w, ctx, NULL, false);
        r = open_migration(ctx, argv[optind], &bus, &w.info);
        if (r < 0)
                return -r;
        w.bus = bus;
        r = watch_run(&w);
        migration_info_done(&w.info);
        return r;
}

static void help_cancel(void) {
        printf("Usage: migctl cancel MIGRATION [--no-wait]\n\n"
               "Cancel a migration before its commit point: the source device runs again with its\n"
               "interrupts. Waits until the migration has ended unless --no-wait.\n\n"
               "Options:\n"
               "  -h --help      Show this help\n"
               "     --no-wait   Return once migd has accepted the request\n");
}

int verb_cancel(int argc, char *argv[], MigctlContext *ctx) {
        enum { ARG_NO_WAIT = 0x100 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' }, { "no-wait", no_argument, NULL, ARG_NO_WAIT }, {},
        };
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *what = NULL;
        bool no_wait = false;
        Watch w;
        int c, r;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help_cancel();
                        return MIGCTL_EXIT_OK;
                case ARG_NO_WAIT:
                        no_wait = true;
                        break;
                default:
                        return unknown_option("cancel", c, argv);
                }
        r = one_migration_argument("cancel", argc, argv);
        if (r > 0)
                return r;
        watch_init(&w, ctx, NULL, false);
        r = open_migration(ctx, argv[optind], &bus, &w.info);
        if (r < 0)
                return -r;
        w.bus = bus;
        if (asprintf(&what, "cancel migration %.*s", SHORT_ID_LEN, w.info.id) < 0) {
                migration_info_done(&w.info);
                return MIGCTL_EXIT_FAILED;
        }
        r = sd_bus_call_method(bus, MIGD_BUS_NAME, w.info.object_path, MIGRATION_INTERFACE, "Cancel", &error, NULL,
                               NULL);
        if (r < 0) {
                migration_info_done(&w.info);
                return migctl_exit_for_bus_error(&error, r, what);
        }
        if (no_wait) {
                migration_info_done(&w.info);
                return MIGCTL_EXIT_OK;
        }
        w.quiet = true;
        r = watch_run(&w);
        /* The cancellation is what was asked for: reaching it is success. */
        if (r == MIGCTL_EXIT_FAILED && streq_ptr(w.info.result, "cancelled"))
                r = MIGCTL_EXIT_OK;
        migration_info_done(&w.info);
        return r;
}

static void help_resolve(void) {
        printf("Usage: migctl resolve MIGRATION --commit|--abort\n\n"
               "Decide a migration that is in doubt (the source decided to commit but cannot learn\n"
               "whether the destination did).\n\n"
               "Options:\n"
               "  -h --help     Show this help\n"
               "     --commit   The destination runs the device: tear down the source's interrupts and\n"
               "                leave its device stopped (result success)\n"
               "     --abort    The destination does not run it: run the source device again (failed)\n");
}

int verb_resolve(int argc, char *argv[], MigctlContext *ctx) {
        enum { ARG_COMMIT = 0x100, ARG_ABORT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "commit", no_argument, NULL, ARG_COMMIT },
                { "abort", no_argument, NULL, ARG_ABORT },
                {},
        };
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_migration_info_ MigrationInfo info = {};
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *what = NULL;
        const char *decision = NULL;
        int c, r;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help_resolve();
                        return MIGCTL_EXIT_OK;
                case ARG_COMMIT:
                case ARG_ABORT:
                        if (decision)
                                return usage_error("resolve", "%s", "give one of --commit and --abort");
                        decision = c == ARG_COMMIT ? "commit" : "abort";
                        break;
                default:
                        return unknown_option("resolve", c, argv);
                }
        r = one_migration_argument("resolve", argc, argv);
        if (r > 0)
                return r;
        if (!decision)
                return usage_error("resolve", "%s", "resolve needs --commit or --abort");
        r = open_migration(ctx, argv[optind], &bus, &info);
        if (r < 0)
                return -r;
        if (asprintf(&what, "resolve migration %.*s", SHORT_ID_LEN, info.id) < 0)
                return MIGCTL_EXIT_FAILED;
        r = sd_bus_call_method(bus, MIGD_BUS_NAME, info.object_path, MIGRATION_INTERFACE, "Resolve", &error, NULL,
                               "s", decision);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, what);
        if (streq(decision, "commit"))
                fprintf(out_of(ctx), "Resolved migration %s: committed; %s stays stopped here and runs on %s.\n",
                        info.id, info.device, info.peer);
        else
                fprintf(out_of(ctx), "Resolved migration %s: aborted; %s runs here again.\n", info.id, info.device);
        return MIGCTL_EXIT_OK;
}

static void help_timeline(void) {
        printf("Usage: migctl timeline MIGRATION\n\n"
               "Draw what happened during a migration: one lane per host, lined up in time; the device's\n"
               "states (v2 names, v1 bits), arcs, SET_IRQS, interrupts seen while stopped, phases, and\n"
               "the downtime from the source stopping the device to the device running again.\n\n"
               "Options:\n"
               "  -h --help     Show this help\n"
               "     --json     Print the events (migd's GetTimeline() JSON)\n");
}

int verb_timeline(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_migration_info_ MigrationInfo info = {};
        _cleanup_json_ struct json_object *events = NULL;
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *title = NULL;
        TimelineStyle style = { .color = ctx->color, .width = 100 };
        const char *text;
        int r;

        r = parse_help_only("timeline", argc, argv, help_timeline);
        if (r <= 0)
                return -r;
        r = one_migration_argument("timeline", argc, argv);
        if (r > 0)
                return r;
        r = open_migration(ctx, argv[optind], &bus, &info);
        if (r < 0)
                return -r;
        r = sd_bus_call_method(bus, MIGD_BUS_NAME, info.object_path, MIGRATION_INTERFACE, "GetTimeline", &error,
                               &reply, NULL);
        if (r < 0)
                return migctl_exit_for_bus_error(&error, r, "read the timeline");
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0 || !(events = json_tokener_parse(text))) {
                fprintf(stderr, "migctl: cannot read the timeline: migd's reply is not JSON\n");
                return MIGCTL_EXIT_FAILED;
        }
        if (ctx->json) {
                fprintf(out_of(ctx), "%s\n", text);
                return MIGCTL_EXIT_OK;
        }
        if (asprintf(&title, "Migration %s: %s %s %s, policy %s, %s", info.id, info.device,
                     streq_ptr(info.role, "destination") ? "from" : "to", info.peer, info.policy,
                     migration_info_ended(&info) ? info.result : "running") < 0)
                return MIGCTL_EXIT_FAILED;
        style.title = title;
        r = timeline_render(out_of(ctx), events, &style);
        if (r < 0) {
                fprintf(stderr, "migctl: cannot draw the timeline: %s\n",
                        r == -EBADMSG ? "migd's events are malformed" : strerror(-r));
                return MIGCTL_EXIT_FAILED;
        }
        return MIGCTL_EXIT_OK;
}

static void help_status(void) {
        printf("Usage: migctl status [MIGRATION]\n\n"
               "Without MIGRATION: a table of the running migrations and the last ones that ended.\n"
               "With one: all about it.\n\n"
               "Options:\n"
               "  -h --help     Show this help\n"
               "     --json     Print migd's migration JSON (an array, or the one object)\n");
}

static const char *result_color(const char *state) {
        if (streq(state, "success"))
                return ANSI_GREEN;
        if (streq(state, "failed") || streq(state, "in-doubt"))
                return ANSI_RED;
        if (streq(state, "cancelled"))
                return ANSI_YELLOW;
        return ANSI_BOLD;
}

static void progress_cell(const MigrationInfo *m, char *buf, size_t size) {
        char total[32];
        int p = migration_info_percent(m);

        if (p < 0)
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%d%% of %s", p, format_bytes(total, sizeof(total), m->bytes_total));
}

enum { STATUS_COLUMNS = 7 };

static void print_status_table(const MigctlContext *ctx, MigrationInfo *rows, size_t n) {
        static const char *const header[STATUS_COLUMNS] = { "ID", "ROLE", "DEVICE", "PEER", "POLICY",
                                                            "PHASE/RESULT", "PROGRESS" };
        _cleanup_free_ char (*progress)[48] = calloc(n, sizeof(*progress));
        size_t width[STATUS_COLUMNS];
        FILE *f = out_of(ctx);

        if (!progress)
                return;
        for (size_t i = 0; i < STATUS_COLUMNS; i++)
                width[i] = strlen(header[i]);
        for (size_t i = 0; i < n; i++) {
                const char *cells[STATUS_COLUMNS] = { "12345678", rows[i].role, rows[i].device, rows[i].peer,
                                                      rows[i].policy,
                                                      migration_info_ended(&rows[i]) ? rows[i].result : rows[i].phase };

                for (size_t k = 0; k < STATUS_COLUMNS - 1; k++)
                        if (strlen(cells[k] ?: "") > width[k])
                                width[k] = strlen(cells[k] ?: "");
                progress_cell(&rows[i], progress[i], sizeof(progress[i]));
        }
        fprintf(f, "%s", col(ctx, ANSI_BOLD));
        for (size_t k = 0; k + 1 < STATUS_COLUMNS; k++)
                fprintf(f, "%-*s ", (int) width[k], header[k]);
        fprintf(f, "%s%s\n", header[STATUS_COLUMNS - 1], col(ctx, ANSI_RESET));
        for (size_t i = 0; i < n; i++) {
                const MigrationInfo *m = &rows[i];
                const char *state = migration_info_ended(m) ? m->result : strna(m->phase);

                fprintf(f, "%-*.*s %-*s %-*s %-*s %-*s %s%-*s%s %s\n", (int) width[0], SHORT_ID_LEN, m->id,
                        (int) width[1], m->role, (int) width[2], m->device, (int) width[3], m->peer, (int) width[4],
                        m->policy, col(ctx, result_color(state)), (int) width[5], state, col(ctx, ANSI_RESET),
                        progress[i]);
        }
}

static int status_all(const MigctlContext *ctx, sd_bus *bus) {
        _cleanup_json_ struct json_object *list = NULL;
        _cleanup_free_ MigrationInfo *rows = NULL;
        _cleanup_free_ char *text = NULL;
        size_t n;
        int r;

        r = list_migrations(bus, &list, &text);
        if (r < 0)
                return -r;
        if (ctx->json) {
                fprintf(out_of(ctx), "%s\n", text);
                return MIGCTL_EXIT_OK;
        }
        n = json_object_array_length(list);
        if (n == 0) {
                fprintf(out_of(ctx), "No migrations.\n");
                return MIGCTL_EXIT_OK;
        }
        rows = calloc(n, sizeof(MigrationInfo));
        if (!rows)
                return MIGCTL_EXIT_FAILED;
        r = 0;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = migration_info_from_json(&rows[i], json_object_array_get_idx(list, i));
        if (r >= 0)
                print_status_table(ctx, rows, n);
        for (size_t i = 0; i < n; i++)
                migration_info_done(&rows[i]);
        return r < 0 ? MIGCTL_EXIT_FAILED : MIGCTL_EXIT_OK;
}

static void print_status_block(const MigctlContext *ctx, const MigrationInfo *m) {
        char progress[96], total[32], done[32], rate[32], eta[32], downtime[32];
        const char *state = migration_info_ended(m) ? m->result : "running";
        int p = migration_info_percent(m);
        FILE *f = out_of(ctx);

        format_bytes(done, sizeof(done), m->bytes_transferred);
        format_bytes(total, sizeof(total), m->bytes_total);
        if (p >= 0)
                snprintf(progress, sizeof(progress), "%d%% (%s of %s)", p, done, total);
        else
                snprintf(progress, sizeof(progress), "not started");
        fprintf(f, "%13s: %s\n", "ID", m->id);
        fprintf(f, "%13s: %s\n", "Object Path", m->object_path);
        fprintf(f, "%13s: %s\n", "Role", m->role);
        fprintf(f, "%13s: %s\n", "Device", m->device);
        fprintf(f, "%13s: %s\n", "Peer", m->peer);
        fprintf(f, "%13s: %s\n", "Policy", m->policy);
        fprintf(f, "%13s: %s%s%s\n", "Result", col(ctx, result_color(state)), state, col(ctx, ANSI_RESET));
        if (!migration_info_ended(m))
                fprintf(f, "%13s: %s\n", "Phase", strna(m->phase));
        fprintf(f, "%13s: %s\n", "Progress", progress);
        if (!migration_info_ended(m)) {
                fprintf(f, "%13s: %s/s\n", "Rate", format_bytes(rate, sizeof(rate), m->rate));
                fprintf(f, "%13s: %s\n", "ETA",
                        m->eta_seconds ? format_seconds(eta, sizeof(eta), m->eta_seconds) : "-");
        }
        fprintf(f, "%13s: %s\n", "Downtime",
                m->downtime_usec ? format_usec(downtime, sizeof(downtime), m->downtime_usec) : "-");
        if (m->error && m->error[0])
                fprintf(f, "%13s: %s\n", "Error", m->error);
}

int verb_status(int argc, char *argv[], MigctlContext *ctx) {
        _cleanup_migration_info_ MigrationInfo info = {};
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        r = parse_help_only("status", argc, argv, help_status);
        if (r <= 0)
                return -r;
        if (optind + 1 < argc)
                return usage_error("status", "one MIGRATION only, got also \"%s\"", argv[optind + 1]);
        if (optind >= argc) {
                if (migctl_bus_open(ctx, &bus) < 0)
                        return MIGCTL_EXIT_DAEMON_UNREACHABLE;
                return status_all(ctx, bus);
        }
        r = open_migration(ctx, argv[optind], &bus, &info);
        if (r < 0)
                return -r;
        if (ctx->json)
                return print_migration_json(ctx, &info);
        print_status_block(ctx, &info);
        return MIGCTL_EXIT_OK;
}
