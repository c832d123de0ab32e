/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Backend-independent device handling: every arc and state change goes through here. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "device.h"
#include "util.h"

static const char *const irq_index_names[_IRQ_INDEX_MAX] = {
        [IRQ_INDEX_INTX] = "intx",
        [IRQ_INDEX_MSI] = "msi",
        [IRQ_INDEX_MSIX] = "msix",
};

const char *irq_index_to_string(IrqIndex i) {
        return i >= 0 && i < _IRQ_INDEX_MAX ? irq_index_names[i] : NULL;
}

IrqIndex irq_index_from_string(const char *s) {
        for (IrqIndex i = 0; s && i < _IRQ_INDEX_MAX; i++)
                if (strcasecmp(s, irq_index_names[i]) == 0)
                        return i;
        return _IRQ_INDEX_INVALID;
}

void device_info_done(DeviceInfo *i) {
        if (!i)
                return;
        free(i->driver);
        free(i->mdev_type);
        *i = (DeviceInfo) {};
}

int device_new(const char *id, const BackendOps *ops, void *backend_data, sd_event *event, Device **ret) {
        Device *d;

        assert(id);
        assert(ops);
        assert(ret);

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->id = strdup(id);
        if (!d->id) {
                free(d);
                return -ENOMEM;
        }
        d->ops = ops;
        d->backend_data = backend_data;
        d->event = event ? sd_event_ref(event) : NULL;
        d->state = MIG_STATE_ERROR;
        *ret = d;
        return 0;
}

Device *device_free(Device *d) {
        if (!d)
                return NULL;
        if (d->ops->close)
                d->ops->close(d);
        device_drop_restore_fds(d);
        device_info_done(&d->info);
        sd_event_unref(d->event);
        free(d->id);
        free(d);
        return NULL;
}

void device_freep(Device **d) {
        device_free(*d);
}

int device_set_restore_fds(Device *d, IrqIndex index, int *fds, uint32_t count) {
        int *copy;

        assert(d);
        assert(index >= 0 && index < _IRQ_INDEX_MAX);

        copy = count > 0 ? malloc(count * sizeof(int)) : NULL;
        if (count > 0 && !copy)
                return -ENOMEM;
        if (count > 0)
                memcpy(copy, fds, count * sizeof(int));
        for (uint32_t v = 0; v < d->n_restore_fds[index]; v++)
                close(d->restore_fds[index][v]);
        free(d->restore_fds[index]);
        d->restore_fds[index] = copy;
        d->n_restore_fds[index] = count;
        return 0;
}

bool device_has_restore_fds(const Device *d) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++)
                if (d->n_restore_fds[idx] > 0)
                        return true;
        return false;
}

void device_drop_restore_fds(Device *d) {
        for (IrqIndex idx = 0; idx < _IRQ_INDEX_MAX; idx++) {
                for (uint32_t v = 0; v < d->n_restore_fds[idx]; v++)
                        close(d->restore_fds[idx][v]);
                free(d->restore_fds[idx]);
                d->restore_fds[idx] = NULL;
                d->n_restore_fds[idx] = 0;
        }
}

static void device_note_state(Device *d, MigState new_state) {
        MigState old_state = d->state;

        d->state = new_state;
        if (old_state != new_state && d->on_state_changed)
                d->on_state_changed(d, old_state, new_state, d->userdata);
}

int device_refresh_state(Device *d) {
        MigState s;
        int r;

        assert(d);

        r = d->ops->get_state(d, &s);
        if (r < 0)
                return r;
        device_note_state(d, s);
        return 0;
}

int device_open(Device *d) {
        DeviceInfo info = {};
        int r;

        assert(d);

        if (d->ops->open) {
                r = d->ops->open(d);
                if (r < 0)
                        return r;
        }
        r = d->ops->get_info(d, &info);
        if (r < 0)
                return r;
        device_info_done(&d->info);
        d->info = info;
        return device_refresh_state(d);
}

int device_set_state(Device *d, MigState to, int *ret_data_fd) {
        int fd = -1, r;

        assert(d);

        r = d->ops->set_state(d, to, &fd);
        if (r < 0) {
                /* A failed arc may have left the device in ERROR; what it says now is the truth. */
                (void) device_refresh_state(d);
                return r;
        }
        device_note_state(d, to);
        if (ret_data_fd)
                *ret_data_fd = fd;
        else if (fd >= 0)
                close(fd);
        return 0;
}

int device_walk_to(Device *d, MigState target, int *ret_data_fd) {
        _cleanup_close_ int last_fd = -1;
        MigState path[MIG_PATH_MAX];
        size_t n;
        int r;

        assert(d);

        r = mig_path(d->state, target, d->info.mig_flags, path, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                int fd = -1;

                r = device_set_state(d, path[i], &fd);
                if (r < 0)
                        return r;
                if (fd >= 0) {
                        closep(&last_fd);
                        last_fd = fd;
                }
        }
        if (ret_data_fd)
                *ret_data_fd = TAKE_FD(last_fd);
        return 0;
}

int device_set_irqs(Device *d, IrqIndex index, uint32_t start, uint32_t count, const int *eventfds) {
        uint32_t enabled = 0;
        int r;

        assert(d);
        assert(index >= 0 && index < _IRQ_INDEX_MAX);

        r = d->ops->set_irqs(d, index, start, count, eventfds);
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < count; i++)
                enabled += eventfds[i] >= 0;
        d->irq_enabled[index] = start == 0 ? enabled : d->irq_enabled[index] + enabled;
        return 0;
}

int device_disable_irqs(Device *d, IrqIndex index) {
        int r;

        assert(d);
        assert(index >= 0 && index < _IRQ_INDEX_MAX);

        r = d->ops->disable_irqs(d, index);
        if (r < 0)
                return r;
        d->irq_enabled[index] = 0;
        return 0;
}

int device_reset(Device *d) {
        int r;

        assert(d);

        r = d->ops->reset(d);
        if (r < 0)
                return r;
        for (IrqIndex i = 0; i < _IRQ_INDEX_MAX; i++)
                d->irq_enabled[i] = 0;
        return device_refresh_state(d);
}
