/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Durable migration records: what recovery after kill -9 needs to decide which side runs the device. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "util.h"

static int mkdir_parents(const char *dir) {
        _cleanup_free_ char *copy = strdup(dir);

        if (!copy)
                return -ENOMEM;
        for (char *p = copy + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        if (mkdir(copy, 0750) < 0 && errno != EEXIST)
                                return -errno;
                        *p = '/';
                }
        if (mkdir(copy, 0750) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int write_all(int fd, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, buf, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += k;
                n -= (size_t) k;
        }
        return 0;
}

static int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

static bool id_is_safe(const char *id) {
        return id[0] && id[0] != '.' && !strchr(id, '/');
}

int journal_save(const char *dir, const char *id, struct json_object *record) {
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -1;
        const char *text;
        int r;

        assert(dir);
        assert(id);
        assert(record);

        if (!id_is_safe(id))
                return -EINVAL;
        r = mkdir_parents(dir);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s.json", dir, id) < 0 || asprintf(&tmp, "%s/.%s.json.tmp", dir, id) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        text = json_object_to_json_string_ext(record, JSON_C_TO_STRING_PLAIN);
        r = write_all(fd, text, strlen(text));
        if (r >= 0)
                r = write_all(fd, "\n", 1);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        /* The rename is only durable once the directory entry is on disk too. */
        return fsync_dir(dir);
}

static void add_error(struct json_object *errors, const char *dir, const char *name, const char *what) {
        char line[1024];

        snprintf(line, sizeof(line), "%s/%s: %s", dir, name, what);
        json_object_array_add(errors, json_object_new_string(line));
}

int journal_load_all(const char *dir, struct json_object **ret, struct json_object **ret_errors) {
        _cleanup_json_ struct json_object *records = json_object_new_object(), *errors = json_object_new_array();
        DIR *d;
        struct dirent *de;

        assert(dir);
        assert(ret);

        if (!records || !errors)
                return -ENOMEM;
        d = opendir(dir);
        if (!d && errno != ENOENT)
                return -errno;
        while (d && (de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *id = NULL;
                struct json_object *record;
                size_t len = strlen(de->d_name);

                if (de->d_name[0] == '.' || len <= 5 || !streq(de->d_name + len - 5, ".json"))
                        continue;
                if (asprintf(&path, "%s/%s", dir, de->d_name) < 0 || !(id = strndup(de->d_name, len - 5))) {
                        closedir(d);
                        return -ENOMEM;
                }
                record = json_object_from_file(path);
                if (!record || !json_object_is_type(record, json_type_object)) {
                        json_object_put(record);
                        add_error(errors, dir, de->d_name, "not a JSON object; skipped");
                        continue;
                }
                json_object_object_add(records, id, record);
        }
        if (d)
                closedir(d);
        *ret = TAKE_PTR(records);
        if (ret_errors)
                *ret_errors = TAKE_PTR(errors);
        return 0;
}

int journal_remove(const char *dir, const char *id) {
        _cleanup_free_ char *path = NULL;

        if (!id_is_safe(id))
                return -EINVAL;
        if (asprintf(&path, "%s/%s.json", dir, id) < 0)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return fsync_dir(dir);
}
