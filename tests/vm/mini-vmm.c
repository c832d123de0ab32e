/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A VMM's part in the VM tier: owns an mtty device through group + container and its MSI eventfds, hands
 * both to migd (Manager.RegisterDevice, fd passing) and counts what arrives on its own eventfds. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/vfio.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#define MAX_VECTORS 8

typedef struct Vmm {
        const char *bus_address;
        const char *name;
        const char *mdev;
        const char *count_file;
        const char *interrupts_at;
        unsigned n_msi;
        int container_fd;
        int group_fd;
        int device_fd;
        int msi_fds[MAX_VECTORS];
        uint64_t signals;
} Vmm;

static int fail(const char *what) {
        int r = -errno;

        fprintf(stderr, "mini-vmm: %s: %s\n", what, strerror(errno));
        return r;
}

static int open_group(Vmm *v) {
        char link[PATH_MAX], target[PATH_MAX], group_path[80];
        struct vfio_group_status status = { .argsz = sizeof(status) };
        const char *group;
        ssize_t n;

        snprintf(link, sizeof(link), "/sys/bus/mdev/devices/%s/iommu_group", v->mdev);
        n = readlink(link, target, sizeof(target) - 1);
        if (n < 0)
                return fail(link);
        target[n] = '\0';
        group = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
        if (snprintf(group_path, sizeof(group_path), "/dev/vfio/%.64s", group) >= (int) sizeof(group_path))
                return -ENAMETOOLONG;
        v->group_fd = open(group_path, O_RDWR | O_CLOEXEC);
        if (v->group_fd < 0)
                return fail(group_path);
        if (ioctl(v->group_fd, VFIO_GROUP_GET_STATUS, &status) < 0)
                return fail("VFIO_GROUP_GET_STATUS");
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
                errno = EBUSY;
                return fail("group not viable");
        }
        return 0;
}

/* The VMM's side of the group/container path, up to the device fd migd gets a copy of. */
static int open_device(Vmm *v) {
        struct vfio_device_info info = { .argsz = sizeof(info) };
        int r;

        v->container_fd = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (v->container_fd < 0)
                return fail("/dev/vfio/vfio");
        if (ioctl(v->container_fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
                errno = EPROTO;
                return fail("VFIO_GET_API_VERSION");
        }
        r = open_group(v);
        if (r < 0)
                return r;
        if (ioctl(v->group_fd, VFIO_GROUP_SET_CONTAINER, &v->container_fd) < 0)
                return fail("VFIO_GROUP_SET_CONTAINER");
        if (ioctl(v->container_fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0 &&
            ioctl(v->container_fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU) < 0)
                return fail("VFIO_SET_IOMMU");
        v->device_fd = ioctl(v->group_fd, VFIO_GROUP_GET_DEVICE_FD, v->mdev);
        if (v->device_fd < 0)
                return fail("VFIO_GROUP_GET_DEVICE_FD");
        if (ioctl(v->device_fd, VFIO_DEVICE_GET_INFO, &info) < 0)
                return fail("VFIO_DEVICE_GET_INFO");
        return 0;
}

static int append_interrupts(Vmm *v, sd_bus_message *m) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sah}");
        if (r >= 0 && v->n_msi > 0) {
                r = sd_bus_message_open_container(m, 'e', "sah");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "msi");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "h");
                for (unsigned i = 0; r >= 0 && i < v->n_msi; i++)
                        r = sd_bus_message_append(m, "h", v->msi_fds[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* Prints the object path migd gives the device; errors are migd's own words. */
static int register_device(Vmm *v, sd_bus *bus) {
        __attribute__((cleanup(sd_bus_message_unrefp))) sd_bus_message *m = NULL, *reply = NULL;
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, "org.vfiomig.Migd1", "/org/vfiomig/Migd1",
                                           "org.vfiomig.Migd1.Manager", "RegisterDevice");
        if (r >= 0)
                r = sd_bus_message_append(m, "sh", v->name, v->device_fd);
        if (r >= 0)
                r = append_interrupts(v, m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 2, "sysfs_path", "s", "", "interrupts_at", "s",
                                          v->interrupts_at);
        if (r >= 0)
                r = sd_bus_call(bus, m, 10 * 1000000, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                printf("%s\n", path);
        else
                fprintf(stderr, "mini-vmm: RegisterDevice %s: %s (%s)\n", v->name,
                        error.message ?: strerror(-r), error.name ?: "-");
        fflush(stdout);
        return r;
}

static int connect_bus(const char *address, sd_bus **ret) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_negotiate_fds(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "mini-vmm: cannot connect to %s: %s\n", address, strerror(-r));
                sd_bus_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

/* Written whole and renamed into place, so a reader never sees half a number. */
static void write_count(Vmm *v) {
        char tmp[PATH_MAX];
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s.tmp", v->count_file);
        f = fopen(tmp, "we");
        if (!f)
                return;
        fprintf(f, "%llu\n", (unsigned long long) v->signals);
        if (fclose(f) == 0)
                (void) rename(tmp, v->count_file);
}

/* The guest's side of the interrupts: every signal on the VMM's own eventfds, until SIGTERM. */
static int serve(Vmm *v) {
        struct pollfd pfd[MAX_VECTORS + 1];
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return fail("sigprocmask");
        pfd[0] = (struct pollfd) { .fd = signalfd(-1, &mask, SFD_CLOEXEC), .events = POLLIN };
        if (pfd[0].fd < 0)
                return fail("signalfd");
        for (unsigned i = 0; i < v->n_msi; i++)
                pfd[i + 1] = (struct pollfd) { .fd = v->msi_fds[i], .events = POLLIN };
        write_count(v);
        for (;;) {
                if (poll(pfd, v->n_msi + 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return fail("poll");
                }
                if (pfd[0].revents)
                        return 0;
                for (unsigned i = 0; i < v->n_msi; i++) {
                        uint64_t value;

                        if (pfd[i + 1].revents && read(v->msi_fds[i], &value, sizeof(value)) == sizeof(value)) {
                                v->signals += value;
                                write_count(v);
                        }
                }
        }
}

static int parse_args(Vmm *v, int argc, char **argv) {
        static const struct option options[] = {
                { "bus", required_argument, NULL, 'b' },
                { "name", required_argument, NULL, 'n' },
                { "mdev", required_argument, NULL, 'm' },
                { "msi", required_argument, NULL, 'i' },
                { "interrupts-at", required_argument, NULL, 'a' },
                { "count-file", required_argument, NULL, 'c' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'b': v->bus_address = optarg; break;
                case 'n': v->name = optarg; break;
                case 'm': v->mdev = optarg; break;
                case 'i': v->n_msi = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'a': v->interrupts_at = optarg; break;
                case 'c': v->count_file = optarg; break;
                default: return -EINVAL;
                }
        if (!v->bus_address || !v->name || !v->mdev || !v->count_file || v->n_msi > MAX_VECTORS) {
                fprintf(stderr, "usage: mini-vmm --bus ADDRESS --name NAME --mdev UUID --count-file PATH "
                                "[--msi N (<= %d)] [--interrupts-at registration|restore]\n", MAX_VECTORS);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv) {
        Vmm v = { .interrupts_at = "registration", .container_fd = -1, .group_fd = -1, .device_fd = -1 };
        sd_bus *bus = NULL;
        int r;

        r = parse_args(&v, argc, argv);
        if (r < 0)
                return 2;
        r = open_device(&v);
        for (unsigned i = 0; r >= 0 && i < v.n_msi; i++) {
                v.msi_fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (v.msi_fds[i] < 0)
                        r = fail("eventfd");
        }
        if (r >= 0)
                r = connect_bus(v.bus_address, &bus);
        if (r >= 0)
                r = register_device(&v, bus);
        /* migd holds its own copies now; the bus is not needed to count interrupts. */
        sd_bus_flush_close_unref(bus);
        if (r >= 0)
                r = serve(&v);
        return r < 0 ? 1 : 0;
}
