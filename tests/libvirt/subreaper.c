/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test helper: runs a command as a child subreaper, so QEMU processes libvirtd daemonizes are reaped at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t forward_signal;

static void on_signal(int sig) {
        forward_signal = sig;
}

int main(int argc, char *argv[]) {
        struct sigaction sa = { .sa_handler = on_signal };
        int status = 0, main_status = 0;
        pid_t main_pid, pid;

        if (argc < 2) {
                fprintf(stderr, "usage: subreaper COMMAND [ARGS...]\n");
                return 2;
        }
        /* Orphans (QEMU after libvirtd forked it) become our children instead of waiting for a slow init. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
                fprintf(stderr, "subreaper: PR_SET_CHILD_SUBREAPER: %s\n", strerror(errno));
                return 1;
        }
        main_pid = fork();
        if (main_pid < 0)
                return 1;
        if (main_pid == 0) {
                execvp(argv[1], argv + 1);
                fprintf(stderr, "subreaper: %s: %s\n", argv[1], strerror(errno));
                _exit(127);
        }
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGINT, &sa, NULL);
        for (;;) {
                pid = waitpid(-1, &status, 0);
                if (pid < 0 && errno == EINTR) {
                        if (forward_signal)
                                (void) kill(main_pid, forward_signal);
                        forward_signal = 0;
                        continue;
                }
                if (pid < 0)
                        break; /* ECHILD: the command and every orphan are gone */
                if (pid == main_pid)
                        main_status = status;
        }
        return WIFEXITED(main_status) ? WEXITSTATUS(main_status) : 128 + WTERMSIG(main_status);
}
