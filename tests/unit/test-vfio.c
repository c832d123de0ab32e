/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vfio backend without hardware: ioctl arguments, sysfs resolution and discovery on a fake tree, config,
 * error paths, and the qualification run against a sim device. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon-config.h"
#include "manager.h"
#include "sim.h"
#include "util.h"
#include "vfio-manager.h"
#include "vfio.h"

static void test_irq_set(void) {
        int fds[3] = { 10, -1, 12 };
        struct vfio_irq_set *s;
        void *p = NULL;
        size_t n = 0;

        g_assert_cmpint(vfio_irq_set_new(IRQ_INDEX_MSIX, 1, 3, fds, &p, &n), ==, 0);
        s = p;
        g_assert_cmpuint(n, ==, sizeof(*s) + 3 * sizeof(int32_t));
        g_assert_cmpuint(s->argsz, ==, n);
        g_assert_cmpuint(s->flags, ==, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER);
        g_assert_cmpuint(s->index, ==, VFIO_PCI_MSIX_IRQ_INDEX);
        g_assert_cmpuint(s->start, ==, 1);
        g_assert_cmpuint(s->count, ==, 3);
        g_assert_cmpint(((int32_t *) s->data)[0], ==, 10);
        g_assert_cmpint(((int32_t *) s->data)[1], ==, -1);
        g_assert_cmpint(((int32_t *) s->data)[2], ==, 12);
        free(p);

        /* Count 0: DATA_NONE, the uAPI's "all vectors of the index off". */
        g_assert_cmpint(vfio_irq_set_new(IRQ_INDEX_INTX, 0, 0, NULL, &p, &n), ==, 0);
        s = p;
        g_assert_cmpuint(s->flags, ==, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER);
        g_assert_cmpuint(n, ==, sizeof(*s));
        free(p);

        g_assert_cmpint(vfio_irq_set_new(_IRQ_INDEX_MAX, 0, 1, fds, &p, &n), ==, -EINVAL);
        g_assert_cmpint(vfio_irq_set_new(IRQ_INDEX_MSI, 0, 1, NULL, &p, &n), ==, -EINVAL);
        g_assert_cmpint(vfio_irq_set_new(IRQ_INDEX_MSI, UINT32_MAX, 2, fds, &p, &n), ==, -EINVAL);
}

static void test_feature(void) {
        struct vfio_device_feature_mig_state st = { .device_state = VFIO_DEVICE_STATE_STOP_COPY, .data_fd = -1 };
        struct vfio_device_feature *f;
        void *p = NULL;
        size_t n = 0;

        g_assert_cmpint(vfio_feature_new(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, &st, sizeof(st),
                                         &p, &n), ==, 0);
        f = p;
        g_assert_cmpuint(n, ==, sizeof(*f) + sizeof(st));
        g_assert_cmpuint(f->argsz, ==, n);
        g_assert_cmpuint(f->flags, ==, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE | VFIO_DEVICE_FEATURE_SET);
        g_assert_cmpint(memcmp(f->data, &st, sizeof(st)), ==, 0);
        /* The state values go to the kernel as they are. */
        g_assert_cmpuint(((struct vfio_device_feature_mig_state *) f->data)->device_state, ==, MIG_STATE_STOP_COPY);
        free(p);

        g_assert_cmpint(vfio_feature_new(0x10000, VFIO_DEVICE_FEATURE_GET, NULL, 0, &p, &n), ==, -EINVAL);
        g_assert_cmpint(vfio_feature_new(1, 5, NULL, 0, &p, &n), ==, -EINVAL);
}

static void touch(const char *root, const char *rel, const char *content) {
        g_autofree char *path = g_build_filename(root, rel, NULL), *dir = g_path_get_dirname(path);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_true(g_file_set_contents(path, content, -1, NULL));
}

static void link_to(const char *root, const char *rel, const char *target) {
        g_autofree char *path = g_build_filename(root, rel, NULL), *dir = g_path_get_dirname(path);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_cmpint(symlink(target, path), ==, 0);
}

/* A sysfs with a vfio-pci device, a variant-driver device, a NIC on its own driver and an mtty mdev. */
static char *fake_sysfs(void) {
        char *root = g_dir_make_tmp("migd-sysfs-XXXXXX", NULL);
        const char *uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";
        g_autofree char *mdev = g_strdup_printf("devices/virtual/mtty/mtty/%s", uuid);

        g_assert_nonnull(root);
        touch(root, "devices/pci0000:00/0000:00:03.0/vendor", "0x1af4\n");
        touch(root, "devices/pci0000:00/0000:00:03.0/device", "0x1041\n");
        link_to(root, "devices/pci0000:00/0000:00:03.0/driver", "../../../bus/pci/drivers/vfio-pci");
        link_to(root, "devices/pci0000:00/0000:00:03.0/iommu_group", "../../../kernel/iommu_groups/7");
        touch(root, "devices/pci0000:00/0000:00:03.0/vfio-dev/vfio3/dev", "511:3\n");
        touch(root, "devices/pci0000:00/0000:00:04.0/vendor", "0x15b3\n");
        touch(root, "devices/pci0000:00/0000:00:04.0/device", "0x101e\n");
        link_to(root, "devices/pci0000:00/0000:00:04.0/driver", "../../../bus/pci/drivers/mlx5_vfio_pci");
        touch(root, "devices/pci0000:00/0000:00:05.0/vendor", "0x8086\n");
        link_to(root, "devices/pci0000:00/0000:00:05.0/driver", "../../../bus/pci/drivers/e1000e");
        link_to(root, "bus/pci/devices/0000:00:03.0", "../../../devices/pci0000:00/0000:00:03.0");
        link_to(root, "bus/pci/devices/0000:00:04.0", "../../../devices/pci0000:00/0000:00:04.0");
        link_to(root, "bus/pci/devices/0000:00:05.0", "../../../devices/pci0000:00/0000:00:05.0");
        g_autofree char *uevent = g_strdup_printf("%s/uevent", mdev), *type = g_strdup_printf("%s/mdev_type", mdev),
                        *driver = g_strdup_printf("%s/driver", mdev),
                        *bus = g_strdup_printf("bus/mdev/devices/%s", uuid),
                        *target = g_strdup_printf("../../../%s", mdev);

        touch(root, "devices/virtual/mtty/mtty/mdev_supported_types/mtty-2/name", "Dual port serial\n");
        touch(root, uevent, "");
        link_to(root, type, "../mdev_supported_types/mtty-2");
        link_to(root, driver, "../../../../../bus/mdev/drivers/mtty");
        link_to(root, bus, target);
        return root;
}

static void rm_rf(const char *root) {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", root);
        g_assert_cmpint(system(cmd), ==, 0);
}

static void test_resolve(void) {
        g_autofree char *root = fake_sysfs(), *expect = NULL, *real_root = realpath(root, NULL);
        char *path = NULL;

        g_assert_cmpint(vfio_resolve_path(root, "0000:00:03.0", &path), ==, 0);
        expect = g_strdup_printf("%s/devices/pci0000:00/0000:00:03.0", real_root);
        g_assert_cmpstr(path, ==, expect);
        free(path);
        g_assert_cmpint(vfio_resolve_path(root, "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001", &path), ==, 0);
        g_assert_true(g_str_has_suffix(path, "/devices/virtual/mtty/mtty/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"));
        free(path);
        g_assert_cmpint(vfio_resolve_path(root, expect, &path), ==, 0);
        free(path);

        path = NULL;
        g_assert_cmpint(vfio_resolve_path(root, "0000:00:09.0", &path), ==, -ENOENT);
        g_assert_cmpint(vfio_resolve_path(root, "00:03.0", &path), ==, -EINVAL);
        g_assert_cmpint(vfio_resolve_path(root, "not-a-uuid", &path), ==, -EINVAL);
        g_assert_null(path);
        rm_rf(root);
}

static void test_discover(void) {
        g_autofree char *root = fake_sysfs();
        struct json_object *a = NULL, *o;
        const char *s;

        g_assert_cmpint(vfio_discover(root, &a), ==, 0);
        /* The e1000e NIC is not a VFIO device. */
        g_assert_cmpuint(json_object_array_length(a), ==, 3);
        o = json_object_array_get_idx(a, 0);
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "name")), ==, "0000:00:03.0");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "driver")), ==, "vfio-pci");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "vendor_id")), ==, "0x1af4");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "iommu_group")), ==, "7");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "cdev")), ==, "vfio3");
        o = json_object_array_get_idx(a, 1);
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "driver")), ==, "mlx5_vfio_pci");
        g_assert_null(json_object_object_get(o, "cdev"));
        o = json_object_array_get_idx(a, 2);
        s = json_object_get_string(json_object_object_get(o, "bus"));
        g_assert_cmpstr(s, ==, "mdev");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "mdev_type")), ==, "mtty-2");
        g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "driver")), ==, "mtty");
        json_object_put(a);
        rm_rf(root);

        g_assert_true(vfio_pci_driver_name("vfio-pci"));
        g_assert_true(vfio_pci_driver_name("hisi_acc_vfio_pci"));
        g_assert_false(vfio_pci_driver_name("_vfio_pci"));
        g_assert_false(vfio_pci_driver_name("e1000e"));
        g_assert_false(vfio_pci_driver_name(NULL));
}

/* Opening fails with the errno and leaves no device half open. */
static void test_open_errors(void) {
        g_autofree char *root = fake_sysfs();
        Device *d = NULL;
        VfioConfig c;

        g_assert_cmpint(vfio_config_init(&c, "gone"), ==, 0);
        c.path = strdup("0000:00:09.0");
        g_assert_cmpint(vfio_device_new(&c, root, NULL, &d), ==, 0);
        g_assert_true(device_is_vfio(d));
        g_assert_false(vfio_device_is_registered(d));
        g_assert_cmpint(device_open(d), ==, -ENOENT);
        device_free(d);

        /* A real path without an IOMMU group (the fake tree has none for 00:04.0): no group to open. */
        free(c.path);
        c.path = strdup("0000:00:04.0");
        c.access = VFIO_ACCESS_GROUP;
        g_assert_cmpint(vfio_device_new(&c, root, NULL, &d), ==, 0);
        g_assert_cmpint(device_open(d), ==, -ENOENT);
        device_free(d);

        /* The cdev is there in sysfs but not in /dev of this fake tree, or /dev/iommu is missing. */
        free(c.path);
        c.path = strdup("0000:00:03.0");
        c.access = VFIO_ACCESS_CDEV;
        g_assert_cmpint(vfio_device_new(&c, root, NULL, &d), ==, 0);
        g_assert_cmpint(device_open(d), <, 0);
        device_free(d);

        c.access = VFIO_ACCESS_FD;
        g_assert_cmpint(vfio_device_new(&c, root, NULL, &d), ==, -EINVAL);
        vfio_config_done(&c);

        /* Not a VFIO device fd. */
        g_assert_cmpint(vfio_device_new_from_fd("x", open("/dev/null", O_RDWR | O_CLOEXEC), NULL, NULL, NULL, &d), ==,
                        -EBADF);
        g_assert_cmpint(vfio_device_new_from_fd("a/b", -1, NULL, NULL, NULL, &d), ==, -EINVAL);
        rm_rf(root);
}

static void test_config(void) {
        g_autofree char *dir = g_dir_make_tmp("migd-conf-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "migd.conf", NULL);
        Config *c = NULL;
        char *error = NULL;

        g_assert_true(g_file_set_contents(path,
                                          "[Daemon]\nBackends=vfio\n[VfioDevice gpu0]\nPath=0000:3b:00.1\n"
                                          "Access=cdev\nGuestInterrupts=msix:4\n",
                                          -1, NULL));
        g_assert_cmpint(config_load(path, false, &c, &error), ==, 0);
        g_assert_cmpuint(c->n_vfio_devices, ==, 1);
        g_assert_cmpstr(c->vfio_devices[0].path, ==, "0000:3b:00.1");
        g_assert_cmpint(c->vfio_devices[0].access, ==, VFIO_ACCESS_CDEV);
        g_assert_cmpuint(c->vfio_devices[0].guest_irq_count[IRQ_INDEX_MSIX], ==, 4);
        g_assert_nonnull(config_find_vfio_device(c, "gpu0"));
        config_free(c);

        g_assert_true(g_file_set_contents(path, "[VfioDevice x]\nAccess=magic\n", -1, NULL));
        g_assert_cmpint(config_load(path, false, &c, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error, "[VfioDevice x] Access: \"magic\" is not an access method"));
        free(error);
        g_assert_true(g_file_set_contents(path, "[VfioDevice x]\nAccess=group\n", -1, NULL));
        g_assert_cmpint(config_load(path, false, &c, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error, "[VfioDevice x] Path: is required"));
        free(error);
        g_assert_true(g_file_set_contents(path, "[SimDevice x]\n[VfioDevice x]\nPath=/sys/x\n", -1, NULL));
        g_assert_cmpint(config_load(path, false, &c, &error), ==, -EINVAL);
        g_assert_nonnull(strstr(error, "declared twice"));
        free(error);
        unlink(path);
        rmdir(dir);
}

static int count_results(struct json_object *report, const char *result) {
        struct json_object *checks = json_object_object_get(report, "checks");
        int n = 0;

        for (size_t i = 0; i < json_object_array_length(checks); i++)
                n += streq(json_object_get_string(json_object_object_get(json_object_array_get_idx(checks, i),
                                                                         "result")), result);
        return n;
}

static struct json_object *qualify_sim(const char *quirks, uint32_t flags) {
        struct json_object *report = NULL;
        Manager *m = NULL;
        sd_event *e = NULL;
        Device *d = NULL;
        SimConfig c;

        g_assert_cmpint(sd_event_new(&e), >=, 0);
        g_assert_cmpint(manager_new(e, &m), ==, 0);
        g_assert_cmpint(sim_config_init(&c, "q"), ==, 0);
        c.mig_flags = flags;
        if (quirks)
                g_assert_cmpint(sim_config_parse_quirks(&c, quirks, NULL), ==, 0);
        g_assert_cmpint(sim_device_new(&c, e, NULL, &d), ==, 0);
        g_assert_cmpint(device_open(d), ==, 0);
        g_assert_cmpint(device_qualify(m, d, &report), ==, 0);
        g_assert_cmpint(d->state, ==, MIG_STATE_RUNNING);
        device_free(d);
        sim_config_done(&c);
        manager_free(m);
        sd_event_unref(e);
        return report;
}

static void test_qualify_sim(void) {
        struct json_object *r = qualify_sim(NULL, MIG_FLAG_STOP_COPY | MIG_FLAG_P2P | MIG_FLAG_PRE_COPY);

        g_assert_cmpint(count_results(r, "fail"), ==, 0);
        g_assert_cmpint(count_results(r, "pass"), >, 60);
        g_assert_cmpstr(json_object_get_string(json_object_object_get(json_object_object_get(r, "summary"), "verdict")),
                        ==, "qualified");
        json_object_put(r);

        /* A device that interrupts while stopped, or cannot take a legal arc, is not qualified. */
        r = qualify_sim("irq-while-stopped", MIG_FLAG_STOP_COPY);
        g_assert_cmpint(count_results(r, "fail"), ==, 3); /* intx, msi, msix */
        json_object_put(r);
        r = qualify_sim("fail-arc=RUNNING->STOP", MIG_FLAG_STOP_COPY);
        g_assert_cmpint(count_results(r, "fail"), >, 0);
        g_assert_cmpstr(json_object_get_string(json_object_object_get(json_object_object_get(r, "summary"), "verdict")),
                        ==, "not qualified");
        json_object_put(r);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/vfio/irq-set", test_irq_set);
        g_test_add_func("/vfio/feature", test_feature);
        g_test_add_func("/vfio/resolve", test_resolve);
        g_test_add_func("/vfio/discover", test_discover);
        g_test_add_func("/vfio/open-errors", test_open_errors);
        g_test_add_func("/vfio/config", test_config);
        g_test_add_func("/vfio/qualify-sim", test_qualify_sim);
        return g_test_run();
}
