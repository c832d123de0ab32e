/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging to the journal with structured fields, or to stderr when not run by systemd. */
#pragma once

#include <syslog.h>

#include "util.h"

/* MESSAGE_ID values (128-bit, one per event kind) so journalctl MESSAGE_ID= finds them. */
#define MIGD_MESSAGE_STARTED           "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0001"
#define MIGD_MESSAGE_STOPPING          "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0002"
#define MIGD_MESSAGE_RELOADED          "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0003"
#define MIGD_MESSAGE_RELOAD_FAILED     "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0004"
#define MIGD_MESSAGE_DEVICE_ADDED      "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0005"
#define MIGD_MESSAGE_DEVICE_REMOVED    "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0006"
#define MIGD_MESSAGE_DEVICE_STATE      "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0007"
#define MIGD_MESSAGE_MIGRATION_STARTED "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0008"
#define MIGD_MESSAGE_MIGRATION_PHASE   "6b1b0b1a5e0a4d4f9c2f9c8e2a7d0009"
#define MIGD_MESSAGE_MIGRATION_DONE    "6b1b0b1a5e0a4d4f9c2f9c8e2a7d000a"
#define MIGD_MESSAGE_MIGRATION_FAILED  "6b1b0b1a5e0a4d4f9c2f9c8e2a7d000b"
#define MIGD_MESSAGE_IRQ_WHILE_STOPPED "6b1b0b1a5e0a4d4f9c2f9c8e2a7d000c"
#define MIGD_MESSAGE_INSECURE_PEER     "6b1b0b1a5e0a4d4f9c2f9c8e2a7d000d"

/* Decided once: the journal when stderr is connected to it (JOURNAL_STREAM) or forced, else stderr. */
void log_setup(void);
void log_set_max_level(int level);
void log_force_target_stderr(void);

/* device and migration may be NULL; message_id may be NULL. Returns -abs(error) for `return log_...` use,
 * or 0 when error is 0. */
int log_full(int level, int error, const char *message_id, const char *device, const char *migration,
             const char *format, ...) _printf_(6, 7);

#define log_debug(...) log_full(LOG_DEBUG, 0, NULL, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, 0, NULL, NULL, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, 0, NULL, NULL, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, 0, NULL, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, 0, NULL, NULL, NULL, __VA_ARGS__)
#define log_error_errno(e, ...) log_full(LOG_ERR, (e), NULL, NULL, NULL, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full(LOG_WARNING, (e), NULL, NULL, NULL, __VA_ARGS__)
#define log_device(level, dev, msgid, ...) log_full((level), 0, (msgid), (dev), NULL, __VA_ARGS__)
