/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.vfiomig.Migd1.Migration on /org/vfiomig/Migd1/migration/<id>. */
#pragma once

#include <systemd/sd-bus.h>

#include "config.h"
#include "manager.h"
#include "migration.h"

#define MIGD_MIGRATION_INTERFACE "org.vfiomig.Migd1.Migration"
#define MIGD_MIGRATION_PREFIX    MIGD_OBJECT_ROOT "/migration"

/* Exported for tests/unit/test-bus-xml.c; the userdata is a Migration whose userdata is the Manager. */
extern const sd_bus_vtable bus_migration_vtable[];

int bus_migration_path(const Migration *mig, char **ret);
int bus_migration_register(Manager *m);
void bus_migration_emit_added(Manager *m, Migration *mig);
void bus_migration_emit_removed(Manager *m, Migration *mig);
/* For the engine: PropertiesChanged for the NULL-terminated property names. */
void bus_migration_emit_changed_strv(Manager *m, Migration *mig, char **properties);
