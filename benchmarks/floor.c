/* The floor: a relay that copies bytes between its own stdio and a child's, and does
 * nothing else. One poll loop; each wake-up is one read and one write for the side that
 * has data, so that what it adds to a call is the two pipe hops and two wake-ups any
 * proxy must pay. Compiled by benchmarks/run.py at run time: floor CMD [ARGS...]
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char buffer[1 << 20];

/* Writes all of n bytes (a large message may take more than one write to a full pipe). */
static int write_all(int fd, const char *data, ssize_t n) {
    while (n > 0) {
        ssize_t done = write(fd, data, (size_t)n);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += done;
        n -= done;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: floor CMD [ARGS...]\n");
        return 2;
    }
    int to_child[2], from_child[2];
    if (pipe(to_child) || pipe(from_child)) {
        perror("pipe");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        dup2(to_child[0], 0);
        dup2(from_child[1], 1);
        close(to_child[0]);
        close(to_child[1]);
        close(from_child[0]);
        close(from_child[1]);
        execvp(argv[1], argv + 1);
        perror("exec");
        _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    struct pollfd fds[2] = {{0, POLLIN, 0}, {from_child[0], POLLIN, 0}};
    int out[2] = {to_child[1], 1};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int side = 0; side < 2; side++) {
            if (fds[side].fd < 0 || !(fds[side].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(fds[side].fd, buffer, sizeof buffer);
            if (n <= 0) {
                if (side == 1)
                    goto done; /* the child closed its stdout */
                close(out[0]); /* the client closed stdin: EOF to the child */
                fds[0].fd = -1;
                continue;
            }
            if (write_all(out[side], buffer, n) < 0 && side == 1)
                goto done;
        }
    }
done:;
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
