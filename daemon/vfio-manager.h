/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vfio devices in the daemon: from [VfioDevice] sections or RegisterDevice, their D-Bus face, and Qualify. */
#pragma once

#include <json-c/json.h>
#include <systemd/sd-bus.h>

#include "manager.h"

#define MIGD_VFIO_DEVICE_INTERFACE "org.vfiomig.Migd1.VfioDevice"

/* Adds, keeps or removes configured vfio devices after a (re)load; registered devices stay. */
void vfio_apply_devices(Manager *m, const Config *old);

/* Manager methods (in bus_manager_vtable): RegisterDevice, UnregisterDevice, DiscoverDevices, QualifyDevice. */
int vfio_method_register_device(sd_bus_message *message, void *userdata, sd_bus_error *error);
int vfio_method_unregister_device(sd_bus_message *message, void *userdata, sd_bus_error *error);
int vfio_method_discover_devices(sd_bus_message *message, void *userdata, sd_bus_error *error);
int vfio_method_qualify_device(sd_bus_message *message, void *userdata, sd_bus_error *error);

/* org.vfiomig.Migd1.VfioDevice on vfio device objects: region access and interrupt counts for tests. */
extern const sd_bus_vtable bus_vfio_device_vtable[];
int vfio_bus_register(Manager *m);

/* The qualification run behind QualifyDevice (daemon/vfio-qualify.c): walks every arc of the device's state
 * machine and checks interrupts, a save/load round trip and pre-copy info. The device must be idle. */
int device_qualify(Manager *m, Device *d, struct json_object **ret);
