/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vfio backend: real VFIO migration v2 devices through the kernel's uAPI (docs/vfio.md). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "device.h"

/* How a device named by its sysfs path is opened. */
typedef enum VfioAccess {
        VFIO_ACCESS_AUTO,  /* the cdev with iommufd where the kernel has it, else group + container */
        VFIO_ACCESS_GROUP, /* /dev/vfio/GROUP + /dev/vfio/vfio, VFIO_GROUP_GET_DEVICE_FD */
        VFIO_ACCESS_CDEV,  /* /dev/vfio/devices/vfioX + /dev/iommu */
        VFIO_ACCESS_FD,    /* handed over by a VMM (Manager.RegisterDevice) */
        _VFIO_ACCESS_MAX,
        _VFIO_ACCESS_INVALID = -1,
} VfioAccess;

const char *vfio_access_to_string(VfioAccess a);
VfioAccess vfio_access_from_string(const char *s);

/* A [VfioDevice NAME] section of migd.conf. */
typedef struct VfioConfig {
        char *name;
        char *path;       /* as written: a sysfs path, a PCI address or an mdev UUID */
        VfioAccess access; /* auto, group or cdev */
        /* Vectors a guest driver had enabled when migd took the device over; migd plays the VMM and owns their
         * eventfds, as for [SimDevice]. */
        uint32_t guest_irq_count[_IRQ_INDEX_MAX];
} VfioConfig;

int vfio_config_init(VfioConfig *c, const char *name);
void vfio_config_done(VfioConfig *c);
bool vfio_config_equal(const VfioConfig *a, const VfioConfig *b);

extern const BackendOps vfio_backend_ops;

/* The sysfs directory of spec ("/sys/bus/pci/devices/0000:00:03.0", "0000:00:03.0", "03.0" is not accepted,
 * or an mdev UUID) under sysfs_root ("/sys" but in tests). -ENOENT when nothing matches. */
int vfio_resolve_path(const char *sysfs_root, const char *spec, char **ret_sysfs_path);
/* A device from configuration; opened by device_open(). */
int vfio_device_new(const VfioConfig *c, const char *sysfs_root, sd_event *event, Device **ret);
/* A device fd a VMM opened and hands over (Manager.RegisterDevice). Takes fd, closing it on failure too.
 * driver and sysfs_path may be NULL; they only describe the device. */
int vfio_device_new_from_fd(const char *name, int fd, const char *driver, const char *sysfs_path, sd_event *event,
                            Device **ret);
bool device_is_vfio(const Device *d);
/* True for devices handed over by RegisterDevice (a Reload keeps them). */
bool vfio_device_is_registered(const Device *d);
/* How the device was opened, after device_open(). */
VfioAccess vfio_device_access(const Device *d);

/* Region access with pread/pwrite at VFIO_DEVICE_GET_REGION_INFO's offset (mtty's UARTs are BAR0 and BAR1). */
int vfio_device_region_read(Device *d, uint32_t index, uint64_t offset, void *buf, size_t size);
int vfio_device_region_write(Device *d, uint32_t index, uint64_t offset, const void *buf, size_t size);
/* VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE without migd's one-arc check, to see what the driver itself does. */
int vfio_device_set_state_raw(Device *d, MigState to, int *ret_data_fd);

/* VFIO devices under sysfs_root: PCI devices bound to vfio-pci or a variant driver, and mdevs.
 * A JSON array of {"path","name","bus","driver","vendor_id","device_id","mdev_type","iommu_group","cdev"}. */
int vfio_discover(const char *sysfs_root, struct json_object **ret);

/* Argument building, exposed for tests/unit/test-vfio.c. Both return malloc'd structures and their argsz. */
int vfio_irq_set_new(IrqIndex index, uint32_t start, uint32_t count, const int *eventfds, void **ret,
                     size_t *ret_size);
int vfio_feature_new(uint32_t feature, uint32_t flags, const void *data, size_t size, void **ret, size_t *ret_size);
/* True for a driver name vfio-pci or one of its variants ("mlx5_vfio_pci", "hisi_acc_vfio_pci", ...). */
bool vfio_pci_driver_name(const char *driver);
