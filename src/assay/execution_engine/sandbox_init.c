/* PID 1 of every sandbox: unpacks the program, runs it, reaps zombies, reports.
 *
 * Built statically into the sandbox image (`assay image build`) as /usr/local/libexec/assay-init
 * and started as `assay-init python3 main.py`. The engine writes to the container's stdin:
 *
 *     "ASSAY2" + 10 ASCII digits (header length) + header + the program's own stdin
 *
 * where the header is the nonce (32 hex digits), then for each file its path and its text,
 * each as 10 ASCII digits (length in bytes) and the bytes. This process writes the files into
 * the working directory, forks, and the child execs the command with the rest of stdin as
 * its fd 0. When that child exits, the same trailer line goes to stdout and to stderr,
 *
 *     "\0ASSAY-TRAILER-" + nonce + ":" + JSON + "\n"
 *
 * with the exit status, resource usage and the OOM kills counted by the sandbox's memory
 * cgroup, and this process exits with the child's code (128 + signal when killed). PID 1
 * exiting makes the kernel kill whatever the program left behind. Each pipe keeps its order,
 * so once the engine has read the trailer on both streams it has every byte the program
 * wrote. The nonce is never in the program's memory (the child execs straight after fork),
 * and this process is non-dumpable, so the program cannot ptrace it to forge the trailer.
 *
 * It is C, not Python, because it runs once per sandbox: a second interpreter would cost
 * every execution ~25 ms of CPU (see docs/decisions/0001).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define NONCE_SIZE 32
#define LENGTH_SIZE 10

static char nonce[NONCE_SIZE + 1];

static int read_exact(char *buffer, size_t count) {
    while (count > 0) {
        ssize_t got = read(0, buffer, count);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        buffer += got;
        count -= (size_t)got;
    }
    return 0;
}

static void write_all(int fd, const char *data, size_t count) {
    while (count > 0) {
        ssize_t put = write(fd, data, count);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) return; /* nobody reads that stream: the engine uses Docker's view */
        data += put;
        count -= (size_t)put;
    }
}

static void say(const char *text) { write_all(2, text, strlen(text)); }

static void trailer(const char *json) {
    char line[1024];
    int size = snprintf(line, sizeof line, "%cASSAY-TRAILER-%s:%s\n", 0, nonce, json);
    if (size <= 0 || (size_t)size >= sizeof line) return;
    write_all(1, line, (size_t)size);
    write_all(2, line, (size_t)size);
}

/* JSON string body of `text` (quotes, backslashes and control characters escaped). */
static void json_escape(const char *text, char *out, size_t room) {
    size_t at = 0;
    for (; *text && at + 7 < room; text++) {
        unsigned char c = (unsigned char)*text;
        if (c == '"' || c == '\\') {
            out[at++] = '\\';
            out[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(out + at, room - at, "\\u%04x", c);
        } else {
            out[at++] = (char)c;
        }
    }
    out[at] = 0;
}

static void setup_error(const char *what, const char *path, int error) {
    char message[512], escaped[700], json[800];
    snprintf(message, sizeof message, "%s %s: %s", what, path, strerror(error));
    json_escape(message, escaped, sizeof escaped);
    snprintf(json, sizeof json, "{\"setup_error\": \"%s\"}", escaped);
    trailer(json);
}

/* OOM kills in this sandbox's memory cgroup so far (cgroup v1 or v2); -1 if not visible. */
static long oom_kills(void) {
    static const char *const counters[] = {
        "/sys/fs/cgroup/memory/memory.oom_control",
        "/sys/fs/cgroup/memory.events",
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++) {
        FILE *file = fopen(counters[i], "re");
        if (file == NULL) continue;
        char name[64];
        long value;
        while (fscanf(file, "%63s %ld", name, &value) == 2) {
            if (strcmp(name, "oom_kill") == 0) {
                fclose(file);
                return value;
            }
        }
        fclose(file);
    }
    return -1;
}

static int make_parents(char *path) {
    for (char *slash = strchr(path + 1, '/'); slash != NULL; slash = strchr(slash + 1, '/')) {
        *slash = 0;
        int failed = mkdir(path, 0777) != 0 && errno != EEXIST;
        *slash = '/';
        if (failed) return -1;
    }
    return 0;
}

/* Writes the header's files; on failure reports it and returns -1. */
static int write_files(char *header, size_t size) {
    size_t at = NONCE_SIZE;
    while (at < size) {
        char *fields[2];
        size_t lengths[2];
        for (int i = 0; i < 2; i++) {
            char digits[LENGTH_SIZE + 1];
            if (at + LENGTH_SIZE > size) goto malformed;
            memcpy(digits, header + at, LENGTH_SIZE);
            digits[LENGTH_SIZE] = 0;
            at += LENGTH_SIZE;
            lengths[i] = strtoul(digits, NULL, 10);
            if (lengths[i] > size - at) goto malformed;
            fields[i] = header + at;
            at += lengths[i];
        }
        char path[4096];
        if (lengths[0] == 0 || lengths[0] >= sizeof path) goto malformed;
        memcpy(path, fields[0], lengths[0]);
        path[lengths[0]] = 0;
        if (make_parents(path) != 0) {
            setup_error("cannot write the program's files:", path, errno);
            return -1;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd < 0) {
            setup_error("cannot write the program's files:", path, errno);
            return -1;
        }
        const char *data = fields[1];
        size_t left = lengths[1];
        while (left > 0) {
            ssize_t put = write(fd, data, left);
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) {
                int error = put < 0 ? errno : EIO;
                close(fd);
                setup_error("cannot write the program's files:", path, error);
                return -1;
            }
            data += put;
            left -= (size_t)put;
        }
        close(fd);
    }
    return 0;
malformed:
    setup_error("malformed header", "(files)", EINVAL);
    return -1;
}

static void exec_child(char **argv) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) { /* the program, not PID 1, is what the kernel kills first */
        write_all(fd, "1000", 4);
        close(fd);
    }
    execvp(argv[0], argv);
    char message[600];
    snprintf(message, sizeof message, "assay: cannot start %s: %s\n", argv[0], strerror(errno));
    say(message);
    _exit(127);
}

int main(int argc, char **argv) {
    static char *fallback[] = {"python3", "main.py", NULL};
    char **command = argc > 1 ? argv + 1 : fallback;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    char head[6 + LENGTH_SIZE + 1];
    if (read_exact(head, 6 + LENGTH_SIZE) != 0 || memcmp(head, "ASSAY2", 6) != 0) {
        say("assay: bad sandbox header\n");
        return SETUP_FAILED;
    }
    head[6 + LENGTH_SIZE] = 0;
    size_t size = strtoul(head + 6, NULL, 10);
    char *header = malloc(size + 1);
    if (header == NULL || size < NONCE_SIZE || read_exact(header, size) != 0) {
        say("assay: bad sandbox header\n");
        return SETUP_FAILED;
    }
    memcpy(nonce, header, NONCE_SIZE);
    nonce[NONCE_SIZE] = 0;
    if (write_files(header, size) != 0) return SETUP_FAILED;
    free(header);

    long oom_before = oom_kills();
    pid_t child = fork();
    if (child < 0) {
        setup_error("cannot fork", command[0], errno);
        return SETUP_FAILED;
    }
    if (child == 0) exec_child(command);
    close(0);
    for (;;) {
        int status;
        struct rusage usage;
        pid_t pid = wait4(-1, &status, 0, &usage);
        if (pid < 0) {
            if (errno == EINTR) continue;
            return SETUP_FAILED;
        }
        if (pid != child) continue; /* a reparented orphan: reaped, nothing to report */
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        long oom_after = oom_kills();
        char kills[32] = "null", signal_number[16] = "null", json[512];
        if (oom_before >= 0 && oom_after >= 0) snprintf(kills, sizeof kills, "%ld", oom_after - oom_before);
        if (WIFSIGNALED(status)) snprintf(signal_number, sizeof signal_number, "%d", WTERMSIG(status));
        double cpu = (double)usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
                     (double)usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
        snprintf(json, sizeof json,
                 "{\"exit_code\": %d, \"signal\": %s, \"cpu_time_seconds\": %.6f, "
                 "\"peak_memory_bytes\": %ld, \"oom_kills\": %s}",
                 code, signal_number, cpu, usage.ru_maxrss * 1024L, kills);
        trailer(json);
        return code;
    }
}
