/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vfio backend: opens devices (group + container, cdev + iommufd, or a VMM's fd) and speaks migration v2. */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/vfio.h>

#include "log.h"
#include "util.h"
#include "vfio.h"

/* Debian 12's linux-libc-dev (6.1) predates these; values from include/uapi/linux/vfio.h and iommufd.h of 6.12.
 * The structures are private copies with the kernel's layout, so a newer header cannot clash with them. */
#ifndef VFIO_MIGRATION_PRE_COPY
#define VFIO_MIGRATION_PRE_COPY (1 << 2)
#endif
#ifndef VFIO_MIG_GET_PRECOPY_INFO
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
#endif
#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif
#ifndef VFIO_DEVICE_BIND_IOMMUFD
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
#endif
#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)
#endif
#define MIGD_IOMMUFD_TYPE ';'
#define MIGD_IOMMU_IOAS_ALLOC _IO(MIGD_IOMMUFD_TYPE, 0x81)

struct migd_vfio_precopy_info {
        uint32_t argsz;
        uint32_t flags;
        uint64_t initial_bytes;
        uint64_t dirty_bytes;
};

struct migd_vfio_device_bind_iommufd {
        uint32_t argsz;
        uint32_t flags;
        int32_t iommufd;
        uint32_t out_devid;
};

struct migd_vfio_device_attach_iommufd_pt {
        uint32_t argsz;
        uint32_t flags;
        uint32_t pt_id;
};

struct migd_iommu_ioas_alloc {
        uint32_t size;
        uint32_t flags;
        uint32_t out_ioas_id;
};

typedef struct VfioBackend {
        char *spec;          /* the configured Path= */
        char *sysfs_root;
        char *sysfs_path;    /* resolved at open; NULL for a handed-over fd without one */
        char *driver_hint;   /* RegisterDevice's "driver" option */
        VfioAccess access;   /* what was asked */
        VfioAccess used;     /* what worked */
        int container_fd;
        int group_fd;
        int iommufd;
        int device_fd;
        bool registered;
} VfioBackend;

static const char *const access_names[_VFIO_ACCESS_MAX] = {
        [VFIO_ACCESS_AUTO] = "auto",
        [VFIO_ACCESS_GROUP] = "group",
        [VFIO_ACCESS_CDEV] = "cdev",
        [VFIO_ACCESS_FD] = "fd",
};

const char *vfio_access_to_string(VfioAccess a) {
        return a >= 0 && a < _VFIO_ACCESS_MAX ? access_names[a] : NULL;
}

VfioAccess vfio_access_from_string(const char *s) {
        for (VfioAccess a = 0; s && a < _VFIO_ACCESS_MAX; a++)
                if (streq(s, access_names[a]))
                        return a;
        return _VFIO_ACCESS_INVALID;
}

int vfio_config_init(VfioConfig *c, const char *name) {
        assert(c);
        *c = (VfioConfig) { .access = VFIO_ACCESS_AUTO };
        c->name = strdup(name);
        return c->name ? 0 : -ENOMEM;
}

void vfio_config_done(VfioConfig *c) {
        if (!c)
                return;
        free(c->name);
        free(c->path);
        *c = (VfioConfig) {};
}

bool vfio_config_equal(const VfioConfig *a, const VfioConfig *b) {
        return streq_ptr(a->name, b->name) && streq_ptr(a->path, b->path) && a->access == b->access &&
               memcmp(a->guest_irq_count, b->guest_irq_count, sizeof(a->guest_irq_count)) == 0;
}

static VfioBackend *backend(Device *d) {
        return d->backend_data;
}

bool device_is_vfio(const Device *d) {
        return d && d->ops == &vfio_backend_ops;
}

bool vfio_device_is_registered(const Device *d) {
        return device_is_vfio(d) && ((VfioBackend *) d->backend_data)->registered;
}

VfioAccess vfio_device_access(const Device *d) {
        return device_is_vfio(d) ? ((VfioBackend *) d->backend_data)->used : _VFIO_ACCESS_INVALID;
}

static const char *state_name(MigState s) {
        return strna(mig_state_to_string(s));
}

/* ---- argument building ---- */

int vfio_feature_new(uint32_t feature, uint32_t flags, const void *data, size_t size, void **ret, size_t *ret_size) {
        struct vfio_device_feature *f;
        size_t n = sizeof(*f) + size;

        assert(ret);
        if (feature > VFIO_DEVICE_FEATURE_MASK || (flags & VFIO_DEVICE_FEATURE_MASK) || size > UINT32_MAX / 2)
                return -EINVAL;
        /* 8-byte aligned payload: the kernel structures behind data[] carry __aligned_u64 fields. */
        f = calloc(1, n + 8);
        if (!f)
                return -ENOMEM;
        f->argsz = (uint32_t) n;
        f->flags = feature | flags;
        if (data && size)
                memcpy(f->data, data, size);
        *ret = f;
        if (ret_size)
                *ret_size = n;
        return 0;
}

int vfio_irq_set_new(IrqIndex index, uint32_t start, uint32_t count, const int *eventfds, void **ret,
                     size_t *ret_size) {
        struct vfio_irq_set *s;
        size_t n;

        assert(ret);
        if (index < 0 || index >= _IRQ_INDEX_MAX || (count > 0 && !eventfds) || count > 2048 ||
            start > UINT32_MAX - count)
                return -EINVAL;
        n = sizeof(*s) + (size_t) count * sizeof(int32_t);
        s = calloc(1, n);
        if (!s)
                return -ENOMEM;
        s->argsz = (uint32_t) n;
        /* count 0 with DATA_NONE is the uAPI's "every vector of this index off". */
        s->flags = (count > 0 ? VFIO_IRQ_SET_DATA_EVENTFD : VFIO_IRQ_SET_DATA_NONE) | VFIO_IRQ_SET_ACTION_TRIGGER;
        s->index = (uint32_t) index;
        s->start = start;
        s->count = count;
        for (uint32_t i = 0; i < count; i++)
                ((int32_t *) s->data)[i] = eventfds[i];
        *ret = s;
        if (ret_size)
                *ret_size = n;
        return 0;
}

/* ---- ioctls, each failure logged with the device and what was asked ---- */

static int device_feature(Device *d, uint32_t feature, uint32_t flags, void *data, size_t size, const char *what) {
        _cleanup_free_ void *f = NULL;
        int r;

        r = vfio_feature_new(feature, flags, data, size, &f, NULL);
        if (r < 0)
                return r;
        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_FEATURE, f) < 0) {
                r = -errno;
                /* Absent optional features are normal; only the caller knows whether this one matters. */
                if (r != -ENOTTY && r != -EOPNOTSUPP && r != -EINVAL)
                        log_full(LOG_ERR, r, NULL, d->id, NULL, "VFIO_DEVICE_FEATURE %s failed: %m", what);
                return r;
        }
        if (data && (flags & VFIO_DEVICE_FEATURE_GET))
                memcpy(data, ((struct vfio_device_feature *) f)->data, size);
        return 0;
}

static int read_sysfs_string(const char *dir, const char *file, char **ret) {
        _cleanup_free_ char *path = NULL;
        char buf[256];
        ssize_t n;
        int fd;

        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* The last element of the symlink dir/link points to ("vfio-pci", "12", "mtty-2"). */
static int read_link_name(const char *dir, const char *link, char **ret) {
        _cleanup_free_ char *path = NULL;
        char target[PATH_MAX];
        const char *slash;
        ssize_t n;

        if (asprintf(&path, "%s/%s", dir, link) < 0)
                return -ENOMEM;
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = '\0';
        slash = strrchr(target, '/');
        *ret = strdup(slash ? slash + 1 : target);
        return *ret ? 0 : -ENOMEM;
}

static int read_sysfs_hex16(const char *dir, const char *file, uint16_t *ret) {
        _cleanup_free_ char *s = NULL;
        unsigned long v;
        char *end;
        int r;

        r = read_sysfs_string(dir, file, &s);
        if (r < 0)
                return r;
        errno = 0;
        v = strtoul(s, &end, 16);
        if (errno != 0 || end == s || v > UINT16_MAX)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

static int cmp_strp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool is_uuid(const char *s) {
        static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

        if (strlen(s) != sizeof(shape) - 1)
                return false;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == '-' ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        return true;
}

/* "0000:00:03.0": domain, bus, device, function in the kernel's spelling. */
static bool is_pci_address(const char *s) {
        unsigned dom, bus, dev, fn;
        int end = 0;

        return sscanf(s, "%4x:%2x:%2x.%1x%n", &dom, &bus, &dev, &fn, &end) == 4 && (size_t) end == strlen(s) &&
               strlen(s) == 12;
}

int vfio_resolve_path(const char *sysfs_root, const char *spec, char **ret_sysfs_path) {
        _cleanup_free_ char *path = NULL;
        char *real;

        assert(sysfs_root);
        assert(spec);
        assert(ret_sysfs_path);

        if (spec[0] == '/') {
                path = strdup(spec);
                if (!path)
                        return -ENOMEM;
        } else if (is_pci_address(spec)) {
                if (asprintf(&path, "%s/bus/pci/devices/%s", sysfs_root, spec) < 0)
                        return -ENOMEM;
        } else if (is_uuid(spec)) {
                if (asprintf(&path, "%s/bus/mdev/devices/%s", sysfs_root, spec) < 0)
                        return -ENOMEM;
        } else
                return -EINVAL;
        /* The canonical directory: the device's name is its last element, and links below it resolve. */
        real = realpath(path, NULL);
        if (!real)
                return -errno;
        *ret_sysfs_path = real;
        return 0;
}

static void backend_close_fds(VfioBackend *b) {
        closep(&b->device_fd);
        closep(&b->group_fd);
        closep(&b->container_fd);
        closep(&b->iommufd);
}

static void backend_free(VfioBackend *b) {
        if (!b)
                return;
        backend_close_fds(b);
        free(b->spec);
        free(b->sysfs_root);
        free(b->sysfs_path);
        free(b->driver_hint);
        free(b);
}

static void backend_freep(VfioBackend **b) {
        backend_free(*b);
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static int open_by_group(Device *d, VfioBackend *b, const char *name) {
        struct vfio_group_status status = { .argsz = sizeof(status) };
        _cleanup_free_ char *group = NULL, *node = NULL;
        int type, r;

        r = read_link_name(b->sysfs_path, "iommu_group", &group);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, d->id, NULL, "%s has no IOMMU group: %m", b->sysfs_path);
        if (asprintf(&node, "/dev/vfio/%s", group) < 0)
                return -ENOMEM;
        b->group_fd = open(node, O_RDWR | O_CLOEXEC);
        if (b->group_fd < 0 && errno == ENOENT) {
                /* A no-IOMMU group (vfio.enable_unsafe_noiommu_mode) has its own node name. */
                free(node);
                if (asprintf(&node, "/dev/vfio/noiommu-%s", group) < 0)
                        return -ENOMEM;
                b->group_fd = open(node, O_RDWR | O_CLOEXEC);
        }
        if (b->group_fd < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "Cannot open VFIO group %s: %m", node);
        if (ioctl(b->group_fd, VFIO_GROUP_GET_STATUS, &status) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_GROUP_GET_STATUS on %s failed: %m", node);
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return log_full(LOG_ERR, -EBUSY, NULL, d->id, NULL,
                                "VFIO group %s is not viable: another device in it is bound to a host driver", node);

        b->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (b->container_fd < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "Cannot open /dev/vfio/vfio: %m");
        if (ioctl(b->container_fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
                return log_full(LOG_ERR, -EPROTO, NULL, d->id, NULL, "/dev/vfio/vfio speaks another VFIO API version");
        if (ioctl(b->group_fd, VFIO_GROUP_SET_CONTAINER, &b->container_fd) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_GROUP_SET_CONTAINER for group %s failed: %m",
                                group);
        /* Type1v2 serves IOMMU groups and mdevs' emulated groups alike; no-IOMMU groups need their own type. */
        type = ioctl(b->container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0 ? VFIO_TYPE1v2_IOMMU
             : ioctl(b->container_fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) > 0  ? VFIO_TYPE1_IOMMU
                                                                                    : VFIO_NOIOMMU_IOMMU;
        if (ioctl(b->container_fd, VFIO_SET_IOMMU, type) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_SET_IOMMU (type %d) for group %s failed: %m",
                                type, group);
        b->device_fd = ioctl(b->group_fd, VFIO_GROUP_GET_DEVICE_FD, name);
        if (b->device_fd < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_GROUP_GET_DEVICE_FD %s (group %s) failed: %m",
                                name, group);
        b->used = VFIO_ACCESS_GROUP;
        return 0;
}

static int open_by_cdev(Device *d, VfioBackend *b) {
        struct migd_vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
        struct migd_iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
        struct migd_vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
        _cleanup_free_ char *dir = NULL, *node = NULL;
        _cleanup_(closedirp) DIR *dd = NULL;
        struct dirent *de;

        if (asprintf(&dir, "%s/vfio-dev", b->sysfs_path) < 0)
                return -ENOMEM;
        dd = opendir(dir);
        while (dd && (de = readdir(dd)))
                if (strncmp(de->d_name, "vfio", 4) == 0)
                        break;
        if (!dd || !de)
                return log_full(LOG_ERR, -ENODEV, NULL, d->id, NULL,
                                "%s has no VFIO cdev (kernel without CONFIG_VFIO_DEVICE_CDEV?)", b->sysfs_path);
        if (asprintf(&node, "/dev/vfio/devices/%s", de->d_name) < 0)
                return -ENOMEM;
        b->device_fd = open(node, O_RDWR | O_CLOEXEC);
        if (b->device_fd < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "Cannot open %s: %m", node);
        b->iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        if (b->iommufd < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "Cannot open /dev/iommu: %m");
        bind.iommufd = b->iommufd;
        if (ioctl(b->device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_DEVICE_BIND_IOMMUFD of %s failed: %m", node);
        if (ioctl(b->iommufd, MIGD_IOMMU_IOAS_ALLOC, &ioas) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "IOMMU_IOAS_ALLOC for %s failed: %m", node);
        attach.pt_id = ioas.out_ioas_id;
        if (ioctl(b->device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_DEVICE_ATTACH_IOMMUFD_PT of %s failed: %m",
                                node);
        b->used = VFIO_ACCESS_CDEV;
        return 0;
}

static bool has_cdev(const VfioBackend *b) {
        _cleanup_free_ char *dir = NULL;

        return asprintf(&dir, "%s/vfio-dev", b->sysfs_path) >= 0 && access(dir, F_OK) >= 0 &&
               access("/dev/iommu", F_OK) >= 0;
}

static int vfio_open(Device *d) {
        VfioBackend *b = backend(d);
        const char *name;
        int r;

        if (b->registered)
                return 0;
        backend_close_fds(b);
        free(b->sysfs_path);
        b->sysfs_path = NULL;
        r = vfio_resolve_path(b->sysfs_root, b->spec, &b->sysfs_path);
        if (r == -EINVAL)
                return log_full(LOG_ERR, r, NULL, d->id, NULL,
                                "Path=%s is neither an absolute sysfs path, a PCI address (0000:00:03.0) nor an mdev "
                                "UUID", b->spec);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, d->id, NULL, "No device %s in sysfs: %m", b->spec);
        name = strrchr(b->sysfs_path, '/') + 1;

        if (b->access == VFIO_ACCESS_CDEV || (b->access == VFIO_ACCESS_AUTO && has_cdev(b))) {
                r = open_by_cdev(d, b);
        } else
                r = open_by_group(d, b, name);
        if (r < 0) {
                backend_close_fds(b);
                return r;
        }
        log_full(LOG_INFO, 0, NULL, d->id, NULL, "Opened %s through the %s interface.", b->sysfs_path,
                 vfio_access_to_string(b->used));
        return 0;
}

static void vfio_close(Device *d) {
        VfioBackend *b = backend(d);

        backend_free(b);
        d->backend_data = NULL;
}

static int region_info(Device *d, uint32_t index, struct vfio_region_info *ret) {
        struct vfio_region_info info = { .argsz = sizeof(info), .index = index };

        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_DEVICE_GET_REGION_INFO region %" PRIu32
                                " failed: %m", index);
        *ret = info;
        return 0;
}

static int region_access(Device *d, uint32_t index, uint64_t offset, void *buf, size_t size, bool write) {
        struct vfio_region_info info = {};
        ssize_t n;
        int r;

        if (!device_is_vfio(d))
                return -EOPNOTSUPP;
        r = region_info(d, index, &info);
        if (r < 0)
                return r;
        if (offset > info.size || size > info.size - offset)
                return -ERANGE;
        if (!(info.flags & (write ? VFIO_REGION_INFO_FLAG_WRITE : VFIO_REGION_INFO_FLAG_READ)))
                return -EPERM;
        n = write ? pwrite(backend(d)->device_fd, buf, size, (off_t) (info.offset + offset))
                  : pread(backend(d)->device_fd, buf, size, (off_t) (info.offset + offset));
        if (n < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "%s of %zu bytes at region %" PRIu32 " offset 0x%"
                                PRIx64 " failed: %m", write ? "pwrite" : "pread", size, index, offset);
        return (size_t) n == size ? 0 : -EIO;
}

int vfio_device_region_read(Device *d, uint32_t index, uint64_t offset, void *buf, size_t size) {
        return region_access(d, index, offset, buf, size, false);
}

int vfio_device_region_write(Device *d, uint32_t index, uint64_t offset, const void *buf, size_t size) {
        return region_access(d, index, offset, (void *) buf, size, true);
}

/* Driver, ids and mdev type: sysfs says them best; config space is the fallback for a handed-over fd. */
static int describe(Device *d, DeviceInfo *info) {
        VfioBackend *b = backend(d);
        uint16_t ids[2];
        int r;

        if (b->sysfs_path) {
                (void) read_link_name(b->sysfs_path, "driver", &info->driver);
                (void) read_link_name(b->sysfs_path, "mdev_type", &info->mdev_type);
                if (read_sysfs_hex16(b->sysfs_path, "vendor", &info->vendor_id) >= 0 &&
                    read_sysfs_hex16(b->sysfs_path, "device", &info->device_id) >= 0)
                        goto driver;
        }
        r = vfio_device_region_read(d, VFIO_PCI_CONFIG_REGION_INDEX, 0, ids, sizeof(ids));
        if (r >= 0) {
                info->vendor_id = le16toh(ids[0]);
                info->device_id = le16toh(ids[1]);
        }
driver:
        if (b->driver_hint) {
                free(info->driver);
                info->driver = strdup(b->driver_hint);
        }
        if (!info->driver)
                info->driver = strdup("vfio");
        return info->driver ? 0 : -ENOMEM;
}

static int vfio_get_info(Device *d, DeviceInfo *ret) {
        struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
        struct vfio_device_feature_migration mig = {};
        DeviceInfo info = { .uapi = 2 };
        uint64_t size;
        int r;

        /* First, before anything else: some drivers (mtty) set up their interrupt table here. */
        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_GET_INFO, &dinfo) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_DEVICE_GET_INFO failed: %m");
        r = describe(d, &info);
        if (r < 0)
                goto fail;
        r = device_feature(d, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_GET, &mig, sizeof(mig),
                           "MIGRATION");
        if (r >= 0)
                info.mig_flags = (uint32_t) mig.flags & _MIG_FLAGS_ALL;
        else
                log_full(LOG_WARNING, r, NULL, d->id, NULL,
                         "The driver has no VFIO migration support (VFIO_DEVICE_FEATURE MIGRATION: %m).");
        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX && i < (IrqIndex) dinfo.num_irqs; i++) {
                struct vfio_irq_info irq = { .argsz = sizeof(irq), .index = (uint32_t) i };

                if (ioctl(backend(d)->device_fd, VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0) {
                        /* mtty has no MSI-X: an absent index is EINVAL, not a failure of the device. */
                        if (errno != EINVAL)
                                log_full(LOG_WARNING, -errno, NULL, d->id, NULL,
                                         "VFIO_DEVICE_GET_IRQ_INFO %s failed: %m", irq_index_to_string(i));
                        continue;
                }
                info.irq_count[i] = (irq.flags & VFIO_IRQ_INFO_EVENTFD) ? irq.count : 0;
        }
        if (info.mig_flags && device_feature(d, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_GET, &size,
                                             sizeof(size), "MIG_DATA_SIZE") >= 0)
                info.state_size = size;
        *ret = info;
        return 0;
fail:
        device_info_done(&info);
        return r;
}

static int vfio_get_state(Device *d, MigState *ret) {
        struct vfio_device_feature_mig_state s = {};
        int r;

        r = device_feature(d, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_GET, &s, sizeof(s),
                           "MIG_DEVICE_STATE (get)");
        if (r == -ENOTTY || r == -EOPNOTSUPP || r == -EINVAL) {
                /* A device without migration support runs; there is no other state it could be in. */
                *ret = MIG_STATE_RUNNING;
                return 0;
        }
        if (r < 0)
                return r;
        if (s.device_state >= _MIG_STATE_V2_MAX)
                return log_full(LOG_ERR, -EPROTO, NULL, d->id, NULL, "Kernel reports unknown migration state %" PRIu32,
                                s.device_state);
        *ret = (MigState) s.device_state;
        return 0;
}

int vfio_device_set_state_raw(Device *d, MigState to, int *ret_data_fd) {
        struct vfio_device_feature_mig_state s = { .device_state = (uint32_t) to, .data_fd = -1 };
        _cleanup_free_ void *f = NULL;
        int r;

        assert(device_is_vfio(d));

        if (to < 0 || to >= _MIG_STATE_V2_MAX)
                return -EINVAL;
        r = vfio_feature_new(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, &s, sizeof(s), &f, NULL);
        if (r < 0)
                return r;
        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_FEATURE, f) < 0)
                return -errno;
        memcpy(&s, ((struct vfio_device_feature *) f)->data, sizeof(s));
        if (ret_data_fd)
                *ret_data_fd = s.data_fd;
        else if (s.data_fd >= 0)
                close(s.data_fd);
        return 0;
}

static int vfio_set_state(Device *d, MigState to, int *ret_data_fd) {
        MigState from = d->state;
        int fd = -1, r;

        /* One arc per call, as the engine plans it: the kernel would walk a longer path silently. */
        if (!mig_arc_is_legal(from, to, d->info.mig_flags)) {
                log_full(LOG_ERR, -EINVAL, NULL, d->id, NULL,
                         "Refused %s -> %s: not a single arc for a device with these migration flags", state_name(from),
                         state_name(to));
                return -EINVAL;
        }
        r = vfio_device_set_state_raw(d, to, &fd);
        if (r < 0)
                return log_full(LOG_ERR, r, NULL, d->id, NULL, "VFIO_DEVICE_FEATURE MIG_DEVICE_STATE arc %s -> %s "
                                "failed: %m", state_name(from), state_name(to));
        if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                log_full(LOG_WARNING, -errno, NULL, d->id, NULL, "Cannot make the data fd close-on-exec: %m");
        *ret_data_fd = fd;
        return 0;
}

static int vfio_get_precopy_info(Device *d, int data_fd, uint64_t *ret_initial_bytes, uint64_t *ret_dirty_bytes) {
        struct migd_vfio_precopy_info info = { .argsz = sizeof(info) };
        int r;

        if (ioctl(data_fd, VFIO_MIG_GET_PRECOPY_INFO, &info) < 0) {
                r = -errno;
                /* ENOMSG: nothing to send right now, more may come; not a failure. */
                if (r != -ENOMSG)
                        log_full(LOG_ERR, r, NULL, d->id, NULL, "VFIO_MIG_GET_PRECOPY_INFO in %s failed: %m",
                                 state_name(d->state));
                return r;
        }
        *ret_initial_bytes = info.initial_bytes;
        *ret_dirty_bytes = info.dirty_bytes;
        return 0;
}

static int vfio_get_data_size(Device *d, uint64_t *ret_bytes) {
        uint64_t size;
        int r;

        r = device_feature(d, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_GET, &size, sizeof(size),
                           "MIG_DATA_SIZE");
        if (r == -ENOTTY || r == -EINVAL)
                return -EOPNOTSUPP;
        if (r < 0)
                return r;
        *ret_bytes = size;
        return 0;
}

static int irq_set(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds) {
        _cleanup_free_ void *s = NULL;
        int r;

        r = vfio_irq_set_new(index, start, count, eventfds, &s, NULL);
        if (r < 0)
                return r;
        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_SET_IRQS, s) < 0) {
                r = -errno;
                if (count > 0)
                        log_full(LOG_ERR, r, NULL, d->id, NULL, "VFIO_DEVICE_SET_IRQS %s vectors %" PRIu32 "..%" PRIu32
                                 " (eventfds) in %s failed: %m", irq_index_to_string(index), start, start + count - 1,
                                 state_name(d->state));
                else
                        log_full(LOG_ERR, r, NULL, d->id, NULL, "VFIO_DEVICE_SET_IRQS %s off in %s failed: %m",
                                 irq_index_to_string(index), state_name(d->state));
                return r;
        }
        return 0;
}

static int vfio_set_irqs(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds) {
        if (count == 0 || start + count > d->info.irq_count[index] || start + count < start)
                return -EINVAL;
        return irq_set(d, index, start, count, eventfds);
}

static int vfio_disable_irqs(Device *d, IrqIndex index) {
        if (d->info.irq_count[index] == 0)
                return 0;
        return irq_set(d, index, 0, 0, NULL);
}

static int vfio_reset(Device *d) {
        if (ioctl(backend(d)->device_fd, VFIO_DEVICE_RESET) < 0)
                return log_full(LOG_ERR, -errno, NULL, d->id, NULL, "VFIO_DEVICE_RESET in %s failed: %m",
                                state_name(d->state));
        /* The uAPI: a reset device is RUNNING; its interrupt triggers are gone with it. */
        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX; i++)
                if (d->info.irq_count[i] > 0)
                        (void) irq_set(d, i, 0, 0, NULL);
        return 0;
}

const BackendOps vfio_backend_ops = {
        .name = "vfio",
        .open = vfio_open,
        .close = vfio_close,
        .get_info = vfio_get_info,
        .get_state = vfio_get_state,
        .set_state = vfio_set_state,
        .get_precopy_info = vfio_get_precopy_info,
        .get_data_size = vfio_get_data_size,
        .set_irqs = vfio_set_irqs,
        .disable_irqs = vfio_disable_irqs,
        .reset = vfio_reset,
};

static int backend_new(VfioBackend **ret) {
        VfioBackend *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        b->container_fd = b->group_fd = b->iommufd = b->device_fd = -1;
        *ret = b;
        return 0;
}

/* Hands b to a new Device; on failure b is freed here. */
static int device_new_with(const char *name, VfioBackend *b, sd_event *event, Device **ret) {
        int r;

        r = device_new(name, &vfio_backend_ops, b, event, ret);
        if (r < 0)
                backend_free(b);
        return r;
}

int vfio_device_new(const VfioConfig *c, const char *sysfs_root, sd_event *event, Device **ret) {
        _cleanup_(backend_freep) VfioBackend *b = NULL;
        int r;

        assert(c);
        assert(ret);

        if (!c->name || !c->name[0] || strchr(c->name, '/') || !c->path || !c->path[0] ||
            c->access == VFIO_ACCESS_FD || c->access < 0)
                return -EINVAL;
        r = backend_new(&b);
        if (r < 0)
                return r;
        b->access = c->access;
        b->spec = strdup(c->path);
        b->sysfs_root = strdup(sysfs_root ?: "/sys");
        if (!b->spec || !b->sysfs_root)
                return -ENOMEM;
        return device_new_with(c->name, TAKE_PTR(b), event, ret);
}

int vfio_device_new_from_fd(const char *name, int fd, const char *driver, const char *sysfs_path, sd_event *event,
                            Device **ret) {
        struct vfio_device_info dinfo = { .argsz = sizeof(dinfo) };
        _cleanup_(backend_freep) VfioBackend *b = NULL;
        _cleanup_close_ int owned = fd;
        int r;

        assert(ret);

        if (!name || !name[0] || strchr(name, '/') || fd < 0)
                return -EINVAL;
        /* Anything but a VFIO device fd fails here, before migd relies on it. */
        if (ioctl(fd, VFIO_DEVICE_GET_INFO, &dinfo) < 0)
                return errno == ENOTTY ? -EBADF : -errno;
        r = backend_new(&b);
        if (r < 0)
                return r;
        b->device_fd = TAKE_FD(owned);
        b->registered = true;
        b->access = b->used = VFIO_ACCESS_FD;
        if ((driver && !(b->driver_hint = strdup(driver))) || (sysfs_path && !(b->sysfs_path = strdup(sysfs_path))) ||
            !(b->spec = strdup(sysfs_path ?: "fd")))
                return -ENOMEM;
        return device_new_with(name, TAKE_PTR(b), event, ret);
}

/* ---- discovery ---- */

bool vfio_pci_driver_name(const char *driver) {
        size_t n;

        if (!driver)
                return false;
        if (streq(driver, "vfio-pci"))
                return true;
        /* Variant drivers are named <vendor>_vfio_pci (mlx5_vfio_pci, hisi_acc_vfio_pci, pds_vfio_pci, ...). */
        n = strlen(driver);
        return n > 9 && (streq(driver + n - 9, "_vfio_pci") || streq(driver + n - 9, "-vfio-pci"));
}

static int discovered_add(struct json_object *a, const char *dir, const char *bus, const char *name) {
        _cleanup_free_ char *driver = NULL, *group = NULL, *mdev_type = NULL, *path = NULL, *cdev_dir = NULL;
        _cleanup_(closedirp) DIR *cd = NULL;
        struct json_object *o;
        uint16_t vendor = 0, device = 0;
        char hex[8];
        struct dirent *de = NULL;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        {
                /* The canonical path, as vfio_resolve_path() gives it, so callers can compare the two. */
                char *real = realpath(path, NULL);
                if (real) {
                        free(path);
                        path = real;
                }
        }
        (void) read_link_name(path, "driver", &driver);
        if (streq(bus, "pci") && !vfio_pci_driver_name(driver))
                return 0;
        (void) read_link_name(path, "iommu_group", &group);
        (void) read_link_name(path, "mdev_type", &mdev_type);
        (void) read_sysfs_hex16(path, "vendor", &vendor);
        (void) read_sysfs_hex16(path, "device", &device);
        if (asprintf(&cdev_dir, "%s/vfio-dev", path) < 0)
                return -ENOMEM;
        cd = opendir(cdev_dir);
        while (cd && (de = readdir(cd)))
                if (strncmp(de->d_name, "vfio", 4) == 0)
                        break;

        o = json_object_new_object();
        if (!o || json_object_array_add(a, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        json_object_object_add(o, "path", json_object_new_string(path));
        json_object_object_add(o, "name", json_object_new_string(name));
        json_object_object_add(o, "bus", json_object_new_string(bus));
        json_object_object_add(o, "driver", driver ? json_object_new_string(driver) : NULL);
        snprintf(hex, sizeof(hex), "0x%04x", vendor);
        json_object_object_add(o, "vendor_id", streq(bus, "pci") ? json_object_new_string(hex) : NULL);
        snprintf(hex, sizeof(hex), "0x%04x", device);
        json_object_object_add(o, "device_id", streq(bus, "pci") ? json_object_new_string(hex) : NULL);
        json_object_object_add(o, "mdev_type", mdev_type ? json_object_new_string(mdev_type) : NULL);
        json_object_object_add(o, "iommu_group", group ? json_object_new_string(group) : NULL);
        json_object_object_add(o, "cdev", cd && de ? json_object_new_string(de->d_name) : NULL);
        return 0;
}

static int discover_bus(struct json_object *a, const char *sysfs_root, const char *bus) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_(closedirp) DIR *dd = NULL;
        _cleanup_strv_free_ char **names = NULL;
        struct dirent *de;
        int r;

        if (asprintf(&dir, "%s/bus/%s/devices", sysfs_root, bus) < 0)
                return -ENOMEM;
        dd = opendir(dir);
        if (!dd)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(dd)))
                if (de->d_name[0] != '.' && strv_extend(&names, de->d_name) < 0)
                        return -ENOMEM;
        /* readdir order is the file system's; listings should not change between calls. */
        if (names)
                qsort(names, strv_length(names), sizeof(char *), cmp_strp);
        for (char **n = names; n && *n; n++) {
                r = discovered_add(a, dir, bus, *n);
                if (r < 0)
                        return r;
        }
        return 0;
}

int vfio_discover(const char *sysfs_root, struct json_object **ret) {
        _cleanup_json_ struct json_object *a = json_object_new_array();
        int r;

        assert(ret);
        if (!a)
                return -ENOMEM;
        r = discover_bus(a, sysfs_root ?: "/sys", "pci");
        if (r >= 0)
                r = discover_bus(a, sysfs_root ?: "/sys", "mdev");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(a);
        return 0;
}
