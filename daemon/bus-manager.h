/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.vfiomig.Migd1.Manager on /org/vfiomig/Migd1, and every object below it. */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

#define MIGD_MANAGER_INTERFACE "org.vfiomig.Migd1.Manager"

/* Exported for tests/unit/test-bus-xml.c; the userdata is the Manager. */
extern const sd_bus_vtable bus_manager_vtable[];

/* The Manager object, the object manager and the device and migration objects. */
int bus_manager_register(Manager *m);
/* PropertiesChanged on the root object for the NULL-terminated property names. */
void bus_manager_emit_changed_strv(Manager *m, char **properties);
