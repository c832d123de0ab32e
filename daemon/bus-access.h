/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may call migd's mutating methods: root, migd's own user, members of AdminGroup=. */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

/* 0 when the caller of message may do action ("Changing the state of sim0"), else NotPermitted in error
 * with a sentence naming what would be needed, and a negative return. */
int bus_verify_admin(Manager *m, sd_bus_message *message, const char *action, sd_bus_error *error);
