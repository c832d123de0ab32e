/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared between the engine's main-loop half (engine.c) and its worker half (engine-run.c). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "device.h"
#include "engine.h"
#include "peer.h"
#include "plan.h"
#include "policy.h"

#define ENGINE_MAX_VECTORS 64
#define ENGINE_HISTORY_MAX 32

typedef struct Run Run;

struct Engine {
        struct Manager *manager;
        sd_event_source *listen_source;
        int listen_fd;
        sd_event_source *queue_source;
        int queue_fd;                 /* eventfd: workers wake the main loop */
        pthread_mutex_t lock;         /* guards queue and runs */
        struct json_object *queue;    /* array of updates posted by workers */
        Run **runs;
        size_t n_runs;
        /* Copied from the configuration when a run starts, so workers never read what Reload replaces. */
        char *journal_dir;
        char *hostname;
        sd_event_source *flush_timer; /* bounds the rate of progress PropertiesChanged */
        struct json_object *pending_changes; /* {migration id: true} waiting for the timer */
        uint64_t last_flush_usec;
};

/* One migration's worker. Only the worker touches the device, the connection and the data fd. */
struct Run {
        Engine *engine;
        char *id;
        PlanRole role;
        char *device_id;
        Device *device;                /* borrowed; busy while the run owns it */
        char *peer_host;
        uint16_t peer_port;
        char *local_name;
        PeerTls tls;
        uint64_t silence_usec;
        Policy *policy;
        Plan *plan;
        PeerConn *conn;
        int accepted_fd;               /* destination: the connection to accept, -1 once taken */
        int data_fd;
        bool stream_complete;          /* destination: data-end arrived and checked */
        struct json_object *options;
        pthread_t thread;
        bool thread_started;
        atomic_bool cancel;            /* Cancel() or shutdown */
        atomic_bool past_commit;       /* the commit decision is durable */
        atomic_bool finished;          /* the worker posted its result */
        bool reapable;                 /* main loop only: finished when the loop last took the queue */
        bool device_released;          /* main loop only: its result applied; the worker may still talk */
        bool recovery;                 /* a run started by engine_recover() */
        struct json_object *journal;   /* this run's durable record */
        struct json_object *timeline;  /* this host's events, sent to the source at the end (destination) */
        /* destination: interrupts to restore, as the source had them */
        uint32_t irq_count[_IRQ_INDEX_MAX];
        int claim_error;               /* destination: why the main loop found no target (-ENODEV, -EBUSY, -ENOENT) */
        /* progress */
        uint64_t bytes_total;
        uint64_t bytes_done;
        uint64_t transfer_start_usec;
        uint64_t last_progress_usec;
        uint64_t stop_rt_usec;         /* source: the device left its running states */
        uint64_t run_rt_usec;          /* destination: the device ran again */
        char error[512];
        const char *error_name;        /* static MIGD_ERROR_* for error[], NULL for the generic MigrationFailed */
};

/* Main-loop half, callable from workers. */
void engine_post(Engine *e, struct json_object *update); /* takes ownership */
void engine_post_last(Engine *e, Run *run, struct json_object *update); /* takes ownership; marks run finished */

/* Worker half. */
void *run_source_main(void *userdata);
void *run_destination_main(void *userdata);
void *run_resolve_main(void *userdata);
/* The durable record's fixed part: who, what, where, and the interrupts a restart must restore. */
void run_journal_init(Run *r);
Run *run_free(Run *r);
void run_freep(Run **r);
/* Events for the timeline (and the journal where it matters), stamped with both clocks. */
struct json_object *run_event_new(Run *r, const char *kind);
void run_emit(Run *r, struct json_object *event);
uint64_t now_usec(clockid_t clock);
/* Answers a resolve-query from the durable journal (destination side). */
const char *engine_resolve_answer(Engine *e, const char *migration_id);
/* Drops a finished, committed destination record once its source has dropped its own. */
void engine_forget(Engine *e, const char *migration_id);
