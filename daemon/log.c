/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Structured logging: journal fields when systemd runs us, one readable line on stderr otherwise. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static bool to_journal = false;

void log_setup(void) {
        const char *e = getenv("MIGD_LOG_LEVEL");

        /* JOURNAL_STREAM is set by systemd when stderr goes to the journal: then send fields natively. */
        to_journal = getenv("JOURNAL_STREAM") != NULL;
        if (e && streq(e, "debug"))
                max_level = LOG_DEBUG;
}

void log_set_max_level(int level) {
        max_level = level;
}

void log_force_target_stderr(void) {
        to_journal = false;
}

int log_full(int level, int error, const char *message_id, const char *device, const char *migration,
             const char *format, ...) {
        char message[2048];
        va_list ap;
        int saved_errno = errno;

        if (error < 0)
                error = -error;
        if (level > max_level)
                goto out;

        va_start(ap, format);
        errno = error;
        vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (to_journal) {
                char prio[16], id[64], dev[512], mig[512], err[32];

                snprintf(prio, sizeof(prio), "PRIORITY=%d", level);
                snprintf(id, sizeof(id), "MESSAGE_ID=%s", message_id ?: "");
                snprintf(dev, sizeof(dev), "MIGD_DEVICE=%s", device ?: "");
                snprintf(mig, sizeof(mig), "MIGD_MIGRATION=%s", migration ?: "");
                snprintf(err, sizeof(err), "ERRNO=%d", error);
                /* Empty fields are harmless and keep this one call instead of eight variants. */
                sd_journal_send("MESSAGE=%s", message, prio, id, dev, mig, err, "SYSLOG_IDENTIFIER=migd", NULL);
        } else {
                fprintf(stderr, "migd[%s]%s%s%s%s: %s\n",
                        level <= LOG_ERR       ? "error"
                        : level <= LOG_WARNING ? "warning"
                        : level <= LOG_INFO    ? "info"
                                               : "debug",
                        device ? " device=" : "", device ?: "", migration ? " migration=" : "", migration ?: "",
                        message);
        }
out:
        errno = saved_errno;
        return error ? -error : 0;
}
