/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.vfiomig.Migd1.Device and org.vfiomig.Migd1.SimDevice on /org/vfiomig/Migd1/device/<id>. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "config.h"
#include "manager.h"

#define MIGD_DEVICE_INTERFACE     "org.vfiomig.Migd1.Device"
#define MIGD_SIM_DEVICE_INTERFACE "org.vfiomig.Migd1.SimDevice"
#define MIGD_DEVICE_PREFIX        MIGD_OBJECT_ROOT "/device"

/* Exported for tests/unit/test-bus-xml.c; the userdata of both is a Device whose userdata is the Manager. */
extern const sd_bus_vtable bus_device_vtable[];
extern const sd_bus_vtable bus_sim_device_vtable[];

int bus_device_path(const Device *d, char **ret);
/* The fallback vtables and the node enumerator under MIGD_DEVICE_PREFIX. */
int bus_device_register(Manager *m);
/* The device JSON of ListDevices() and Device.Describe(). */
struct json_object *bus_device_to_json(Manager *m, Device *d);
/* DeviceAdded/DeviceRemoved and InterfacesAdded/InterfacesRemoved; the device must still be findable. */
void bus_device_emit_added(Manager *m, Device *d);
void bus_device_emit_removed(Manager *m, Device *d);
/* PropertiesChanged for the NULL-terminated property names. */
void bus_device_emit_changed_strv(Manager *m, Device *d, char **properties);
