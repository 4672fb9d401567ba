/*
 * edgenode-monitor: watches one run of one container, independent of the daemon.
 *
 *   edgenode-monitor DIR ID BUNDLE LOG_MAX_BYTES LOG_KEEP GRACE_MS RUNTIME [RUNTIME_ARGS...]
 *
 * Theory of operation. The first process forks the monitor and waits for it to report on a
 * pipe; it prints "running PID" and exits 0 once the container runs, or prints the failure
 * and exits 1, so the caller learns the outcome without polling. The monitor:
 *
 *  - becomes the child subreaper, starts `RUNTIME run --detach` with the container's stdout
 *    and stderr on two pipes, and, once the runtime has exited, inherits the container's
 *    init: it alone learns the exit code;
 *  - writes what the pipes carry to DIR/logs/container.log in the CRI log format
 *    ("<RFC 3339 time> <stdout|stderr> <F|P> <text>"), rotating at LOG_MAX_BYTES and keeping
 *    LOG_KEEP older files (container.log.1 is the newest of them);
 *  - on SIGTERM stops the container: RUNTIME kill ID TERM, then KILL after GRACE_MS; on
 *    SIGINT (a shorter grace period ran out) sends the KILL at once;
 *  - keeps DIR/status.json current (written to a temporary file, then renamed):
 *    {"state": "running"|"stopping"|"exited"|"failed", "pid", "monitor_pid", "exit_code",
 *     "started_at", "finished_at", "stop_requested"};
 *  - when the container has exited, deletes it from the runtime and exits.
 *
 * It applies no restart policy: the node decides whether and when to start the container
 * again (sandbox/_lifecycle.py), as a kubelet does. Written in C, and not in Python like the
 * rest, because one runs per container: it starts in about a millisecond and keeps a few
 * hundred kilobytes, where an interpreter costs tens of milliseconds and megabytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536
#define DRAIN_MS 1000

static const char *dir, *id, *bundle;
static char **runtime;
static int runtime_argc;
static long long log_max;
static int log_keep;
static long long grace_ms;

static int log_fd = -1;
static long long log_size;
static char log_path[4096];

static pid_t container_pid;
static const char *state = "starting";
static int exit_code = -1;
static double started_at = -1, finished_at = -1;
static int stop_requested;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void write_status(void) {
    char tmp[4096], path[4096], buf[1024], num[3][32];
    snprintf(tmp, sizeof tmp, "%s/status.json.tmp", dir);
    snprintf(path, sizeof path, "%s/status.json", dir);
    if (container_pid > 0) snprintf(num[0], sizeof num[0], "%d", (int)container_pid);
    else strcpy(num[0], "null");
    if (exit_code >= 0) snprintf(num[1], sizeof num[1], "%d", exit_code);
    else strcpy(num[1], "null");
    if (finished_at >= 0) snprintf(num[2], sizeof num[2], "%.6f", finished_at);
    else strcpy(num[2], "null");
    char started[32];
    if (started_at >= 0) snprintf(started, sizeof started, "%.6f", started_at);
    else strcpy(started, "null");
    int n = snprintf(buf, sizeof buf,
                     "{\"state\": \"%s\", \"pid\": %s, \"monitor_pid\": %d, \"exit_code\": %s, "
                     "\"started_at\": %s, \"finished_at\": %s, \"stop_requested\": %s}\n",
                     state, num[0], (int)getpid(), num[1], started, num[2],
                     stop_requested ? "true" : "false");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (write(fd, buf, n) != n) { close(fd); return; }
    close(fd);
    rename(tmp, path);
}

/* -- logs ------------------------------------------------------------------------------ */

static void log_open(void) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (log_fd < 0) die("cannot open %s: %s", log_path, strerror(errno));
    struct stat st;
    log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
}

/* Rotate so that container.log always exists for a reader: the full file gets a second
 * name (.1) by a hard link, then a new empty file replaces container.log by rename. */
static void log_rotate(void) {
    char from[4200], to[4200], fresh[4200];
    for (int n = log_keep - 1; n >= 1; n--) {
        snprintf(from, sizeof from, "%s.%d", log_path, n);
        snprintf(to, sizeof to, "%s.%d", log_path, n + 1);
        rename(from, to);
    }
    if (log_keep > 0) {
        snprintf(to, sizeof to, "%s.1", log_path);
        unlink(to);
        if (link(log_path, to) != 0) fprintf(stderr, "link %s: %s\n", to, strerror(errno));
    }
    snprintf(fresh, sizeof fresh, "%s.new", log_path);
    int fd = open(fresh, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0 || rename(fresh, log_path) != 0) {
        if (fd >= 0) close(fd);
        ftruncate(log_fd, 0); /* could not replace it: start the same file over */
        log_size = 0;
        return;
    }
    close(log_fd);
    log_fd = fd;
    log_size = 0;
}

static void log_line(const char *stream, char flag, const char *text, size_t len) {
    char head[96];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t h = strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    h += snprintf(head + h, sizeof head - h, ".%06ldZ %s %c ", ts.tv_nsec / 1000, stream, flag);
    /* One write per line: head, text, newline. */
    char *line = malloc(h + len + 1);
    if (!line) return;
    memcpy(line, head, h);
    memcpy(line + h, text, len);
    line[h + len] = '\n';
    ssize_t w = write(log_fd, line, h + len + 1);
    free(line);
    if (w > 0) log_size += w;
    if (log_max > 0 && log_size >= log_max) log_rotate();
}

struct stream {
    int fd;
    const char *name;
    char partial[CHUNK];
    size_t have;
};

static struct stream streams[2];

static void stream_feed(struct stream *s, const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            log_line(s->name, 'F', s->partial, s->have);
            s->have = 0;
        } else {
            s->partial[s->have++] = data[i];
            if (s->have == CHUNK) {
                log_line(s->name, 'P', s->partial, s->have);
                s->have = 0;
            }
        }
    }
}

static void stream_flush(struct stream *s) {
    if (s->have) log_line(s->name, 'F', s->partial, s->have);
    s->have = 0;
}

/* Read what is ready; close the stream at end of file. */
static void stream_read(struct stream *s) {
    char buf[CHUNK];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n > 0) {
        stream_feed(s, buf, (size_t)n);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(s->fd);
        s->fd = -1;
    }
}

/* -- the runtime ----------------------------------------------------------------------- */

static sigset_t handled;

static pid_t spawn(char **extra, int out, int err) {
    char *argv[64];
    int n = 0;
    for (int i = 0; i < runtime_argc && n < 40; i++) argv[n++] = runtime[i];
    for (int i = 0; extra[i] && n < 63; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        sigprocmask(SIG_UNBLOCK, &handled, NULL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(out >= 0 ? out : null, 1);
        dup2(err >= 0 ? err : null, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int run_runtime(char **extra) {
    pid_t pid = spawn(extra, -1, -1);
    int status;
    if (pid < 0) return -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void signal_container(const char *sig) {
    char *args[] = {"kill", (char *)id, (char *)sig, NULL};
    run_runtime(args);
}

static void delete_container(void) {
    char *args[] = {"delete", "--force", (char *)id, NULL};
    run_runtime(args);
}

/* Start the container; 0 when it runs. */
static int start(char *why, size_t why_len) {
    char pid_file[4200];
    int out[2], err[2];
    snprintf(pid_file, sizeof pid_file, "%s/container.pid", dir);
    unlink(pid_file);
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return -1;
    }
    char *args[] = {"run", "--detach", "--pid-file", pid_file, "--bundle", (char *)bundle,
                    (char *)id, NULL};
    started_at = now_s();
    pid_t rt = spawn(args, out[1], err[1]);
    close(out[1]);
    close(err[1]);
    streams[0] = (struct stream){.fd = out[0], .name = "stdout"};
    streams[1] = (struct stream){.fd = err[0], .name = "stderr"};
    int status, rc;
    while (waitpid(rt, &status, 0) < 0 && errno == EINTR) {}
    rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *f = fopen(pid_file, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1) pid = 0;
        fclose(f);
    }
    if (rc != 0 || pid <= 0) {
        /* What the runtime said is in the streams: keep it in the log. */
        long long until = mono_ms() + 200;
        while (mono_ms() < until && (streams[0].fd >= 0 || streams[1].fd >= 0)) {
            struct pollfd p[2] = {{streams[0].fd, POLLIN, 0}, {streams[1].fd, POLLIN, 0}};
            if (poll(p, 2, 50) <= 0) continue;
            for (int i = 0; i < 2; i++)
                if (p[i].revents) stream_read(&streams[i]);
        }
        stream_flush(&streams[0]);
        stream_flush(&streams[1]);
        snprintf(why, why_len, "the runtime could not start the container (exit %d); see its log",
                 rc);
        return -1;
    }
    container_pid = pid;
    return 0;
}

/* The container's exit code once it has exited, else -1 (other orphans are reaped too). */
static int reap(void) {
    int status, code = -1;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (pid == container_pid)
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return code;
}

int main(int argc, char **argv) {
    if (argc < 8) {
        fprintf(stderr,
                "usage: %s DIR ID BUNDLE LOG_MAX_BYTES LOG_KEEP GRACE_MS RUNTIME [ARGS...]\n",
                argv[0]);
        return 2;
    }
    dir = argv[1];
    id = argv[2];
    bundle = argv[3];
    log_max = atoll(argv[4]);
    log_keep = atoi(argv[5]);
    grace_ms = atoll(argv[6]);
    runtime = argv + 7;
    runtime_argc = argc - 7;

    int report[2];
    if (pipe2(report, O_CLOEXEC)) die("pipe: %s", strerror(errno));
    pid_t child = fork();
    if (child < 0) die("fork: %s", strerror(errno));
    if (child > 0) {
        /* The caller's process: relay the monitor's first report, then leave. */
        close(report[1]);
        char msg[512] = {0};
        ssize_t n = 0, got;
        while ((got = read(report[0], msg + n, sizeof msg - 1 - n)) > 0) n += got;
        if (n <= 0) {
            fputs("failed: the monitor ended before reporting\n", stdout);
            return 1;
        }
        fputs(msg, stdout);
        return strncmp(msg, "running", 7) == 0 ? 0 : 1;
    }
    close(report[0]);
    setsid();
    int null = open("/dev/null", O_RDWR);
    char err_path[4200];
    snprintf(err_path, sizeof err_path, "%s/monitor.err", dir);
    int err = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(null, 0);
    dup2(null, 1);
    dup2(err >= 0 ? err : null, 2);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGCHLD);
    sigaddset(&handled, SIGHUP);
    sigprocmask(SIG_BLOCK, &handled, NULL);
    int sfd = signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);

    char logs[4000];
    snprintf(logs, sizeof logs, "%s/logs", dir);
    mkdir(logs, 0750);
    snprintf(log_path, sizeof log_path, "%s/container.log", logs);
    log_open();

    char why[256];
    char msg[300];
    if (start(why, sizeof why) != 0) {
        state = "failed";
        finished_at = now_s();
        write_status();
        delete_container();
        snprintf(msg, sizeof msg, "failed: %s\n", why);
        if (write(report[1], msg, strlen(msg)) < 0) {}
        return 1;
    }
    state = "running";
    write_status();
    snprintf(msg, sizeof msg, "running %d\n", (int)container_pid);
    if (write(report[1], msg, strlen(msg)) < 0) {}
    close(report[1]);

    long long kill_at = -1, drain_until = -1;
    int code = -1;
    for (;;) {
        struct pollfd p[3] = {{sfd, POLLIN, 0},
                              {streams[0].fd, POLLIN, 0},
                              {streams[1].fd, POLLIN, 0}};
        int timeout = 1000;
        long long now = mono_ms();
        if (kill_at >= 0) timeout = kill_at > now ? (int)(kill_at - now) : 0;
        if (drain_until >= 0) timeout = drain_until > now ? (int)(drain_until - now) : 0;
        int ready = poll(p, 3, timeout);
        if (ready < 0 && errno != EINTR) break;
        if (ready > 0 && p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGTERM && code < 0 && !stop_requested) {
                    stop_requested = 1;
                    state = "stopping";
                    write_status();
                    signal_container("TERM");
                    kill_at = mono_ms() + grace_ms;
                } else if (si.ssi_signo == SIGINT && code < 0) {
                    stop_requested = 1;
                    state = "stopping";
                    write_status();
                    kill_at = mono_ms(); /* no more grace: SIGKILL now */
                }
            }
        }
        for (int i = 0; i < 2; i++)
            if (ready > 0 && p[i + 1].revents) stream_read(&streams[i]);
        if (kill_at >= 0 && mono_ms() >= kill_at && code < 0) {
            signal_container("KILL");
            kill_at = -1;
        }
        if (code < 0) {
            code = reap();
            if (code >= 0) {
                kill_at = -1;
                drain_until = mono_ms() + DRAIN_MS;
            }
        } else {
            reap();
        }
        if (code >= 0 && ((streams[0].fd < 0 && streams[1].fd < 0) || mono_ms() >= drain_until))
            break;
    }
    stream_flush(&streams[0]);
    stream_flush(&streams[1]);
    exit_code = code;
    finished_at = now_s();
    container_pid = 0;
    state = "exited";
    delete_container();
    write_status();
    return 0;
}
