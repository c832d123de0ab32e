/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The four policies migd always has, written as documents and read by the parser that reads policy files. */
#include "policy.h"
#include "util.h"

/* Listed by priority, highest first, which is the order a PolicySet keeps. Every one matches every device;
 * the priorities are negative so that any matching file policy of priority -99 or more wins, and
 * stop-window is what a device gets when nothing else is said about it. */
static const char *const builtin_documents[] = {
        "{"
        "  \"name\": \"stop-window\","
        "  \"description\": \"Restore interrupts in the STOP window after RESUMING, before RUNNING"
        " (000 -> 100 -> 000 -> 001); safe whether or not the device data carries interrupt state\","
        "  \"priority\": -100,"
        "  \"irq_restore\": \"after-resuming\""
        "}",

        "{"
        "  \"name\": \"qemu-compatible\","
        "  \"description\": \"Restore interrupts once the device data is written, before RESUMING ends,"
        " as QEMU does today\","
        "  \"priority\": -200,"
        "  \"irq_restore\": \"during-resuming\""
        "}",

        "{"
        "  \"name\": \"early-irqs\","
        "  \"description\": \"Restore interrupts in STOP before RESUMING, for devices whose data load needs"
        " its interrupts already set up\","
        "  \"priority\": -300,"
        "  \"irq_restore\": \"before-resuming\""
        "}",

        "{"
        "  \"name\": \"postcopy\","
        "  \"description\": \"Run the device while it is still resuming (v1 101, migration v1 only),"
        " restoring interrupts during RESUMING\","
        "  \"priority\": -400,"
        "  \"irq_restore\": \"during-resuming\","
        "  \"postcopy\": true"
        "}",
};

int policy_set_new_builtin(PolicySet **ret) {
        _cleanup_(policy_set_freep) PolicySet *s = NULL;
        int r;

        assert(ret);

        s = calloc(1, sizeof(PolicySet));
        if (!s)
                return -ENOMEM;
        s->items = calloc(ELEMENTSOF(builtin_documents), sizeof(Policy *));
        if (!s->items)
                return -ENOMEM;

        for (size_t i = 0; i < ELEMENTSOF(builtin_documents); i++) {
                /* Errors are not collected: a built-in that does not parse is a bug the unit test catches. */
                r = policy_parse_json(builtin_documents[i], "built-in", &s->items[i], NULL);
                if (r < 0)
                        return r;
                s->n++;
                assert(i == 0 || s->items[i - 1]->priority > s->items[i]->priority);
        }

        *ret = TAKE_PTR(s);
        return 0;
}
