/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The benchmark's baseline: the same number of bytes over a plain TCP loopback socket, 1 MiB writes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void *drain(void *userdata) {
        int fd = *(int *) userdata, c = accept(fd, NULL, NULL);
        static char buf[CHUNK];
        uint64_t *total = calloc(1, sizeof(uint64_t));
        ssize_t n;

        while (c >= 0 && (n = read(c, buf, sizeof(buf))) > 0)
                *total += (uint64_t) n;
        if (c >= 0)
                close(c);
        return total;
}

int main(int argc, char *argv[]) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        uint64_t bytes, sent = 0, start, *received;
        static char buf[CHUNK];
        int lfd, fd, one = 1;
        pthread_t t;

        if (argc != 2 || (bytes = strtoull(argv[1], NULL, 10)) == 0) {
                fprintf(stderr, "usage: tcp-copy BYTES\n");
                return 2;
        }
        memset(buf, 0x5a, sizeof(buf));
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0 ||
            getsockname(lfd, (struct sockaddr *) &sa, &len) < 0) {
                perror("tcp-copy: listen");
                return 1;
        }
        pthread_create(&t, NULL, drain, &lfd);
        start = now_usec();
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                perror("tcp-copy: connect");
                return 1;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while (sent < bytes) {
                size_t n = bytes - sent < CHUNK ? (size_t) (bytes - sent) : CHUNK;
                ssize_t k = write(fd, buf, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("tcp-copy: write");
                        return 1;
                }
                sent += (uint64_t) k;
        }
        close(fd);
        pthread_join(t, (void **) &received);
        printf("%llu %llu\n", (unsigned long long) *received, (unsigned long long) (now_usec() - start));
        free(received);
        close(lfd);
        return 0;
}
