/* PID 1 of every sandbox: unpacks the program, runs it, reaps zombies, reports.
 *
 * Built statically into the sandbox image (`assay image build`) as /usr/local/libexec/assay-init
 * and started as `assay-init`. The engine writes one frame to the container's stdin:
 *
 *     "ASSAY4" + 10 ASCII digits (header length) + header
 *              + 10 ASCII digits (stdin length) + the program's stdin
 *
 * where the header is the nonce (32 hex digits), then the compile command and the run
 * command, then for each file its path and its bytes; each field is 10 ASCII digits (length
 * in bytes) and the bytes, and a command is its arguments, each ended by a NUL (an empty
 * compile command: nothing to compile). This process writes the files into the working
 * directory and puts the program's stdin into a memory file.
 *
 * With a compile command it first runs the compiler (stdin empty, its stdout and stderr both
 * on stderr, in order) and reports it with a trailer whose JSON says "phase": "compile". If
 * the compiler failed, that is all. Otherwise it waits for "ASSAYG" on stdin (the engine
 * may change the sandbox's limits in between), then runs the program: the child execs the
 * run command with the memory file as its fd 0. When that child exits, the same trailer line
 * goes to stdout and to stderr,
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
 * The container's stdin is the engine's lifeline: the engine holds it open from the moment
 * the sandbox starts (warm or not) until it is done with it, and Docker closes it when the
 * engine's process dies (the container is created with StdinOnce). End of stdin while waiting
 * for a frame, or anything at all on stdin while a program runs, means the owner is gone:
 * this process kills everything in the sandbox and exits, and Docker removes the container
 * (AutoRemove). So no sandbox outlives the process that created it, idle or running.
 *
 * It is C, not Python, because it runs once per sandbox: a second interpreter would cost
 * every execution ~25 ms of CPU (see docs/decisions/0001).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <grp.h>
#include <stdint.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define NONCE_SIZE 32
#define LENGTH_SIZE 10
#define MAGIC_SIZE 6
#define SINGLE_MAGIC "ASSAY4"
#define GO_MAGIC "ASSAYG"
#define MAX_ARGS 1024
#define OWNER_GONE 137
#define BATCH_MAGIC "ASSAYB"

static char nonce[NONCE_SIZE + 1];
static sigset_t original_mask; /* the program gets it back: SIGCHLD is blocked here only */
static int child_signals = -1; /* signalfd: SIGCHLD, polled beside stdin */
static char facts[256] = "\"kernel\": null"; /* what the sandbox is, for every trailer */
static char isolation_error[512]; /* non-empty: the sandbox is not what the engine expects */

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

/* Evidence of the isolation this sandbox really has, reported in every trailer: the kernel
 * it sees (gVisor's differs from the host's), its seccomp mode, and what io_uring_setup
 * answers (Assay's profile refuses it with EPERM; 0 means the call was allowed). The engine
 * says what it expects in the environment (ASSAY_EXPECT_KERNEL: "=release" or "!release";
 * ASSAY_EXPECT_IO_URING_ERRNO); when the evidence differs, no program runs here at all. */
static void observe_sandbox(void) {
    struct utsname names;
    memset(&names, 0, sizeof names);
    char kernel[160] = "?", escaped_kernel[200];
    if (uname(&names) == 0) snprintf(kernel, sizeof kernel, "%s", names.release);
    long seccomp = -1;
    FILE *status = fopen("/proc/self/status", "re");
    if (status != NULL) {
        char line[256];
        while (fgets(line, sizeof line, status) != NULL)
            if (sscanf(line, "Seccomp: %ld", &seccomp) == 1) break;
        fclose(status);
    }
    int io_uring = ENOSYS;
#ifdef SYS_io_uring_setup
    unsigned char params[120]; /* struct io_uring_params, zeroed: a valid request */
    memset(params, 0, sizeof params);
    long ring = syscall(SYS_io_uring_setup, 1, params);
    io_uring = ring >= 0 ? 0 : errno;
    if (ring >= 0) close((int)ring);
#endif
    size_t at = 0;
    for (const char *c = kernel; *c && at + 2 < sizeof escaped_kernel; c++)
        if (*c != '"' && *c != '\\' && (unsigned char)*c >= 0x20) escaped_kernel[at++] = *c;
    escaped_kernel[at] = 0;
    snprintf(facts, sizeof facts, "\"kernel\": \"%s\", \"seccomp\": %ld, \"io_uring_errno\": %d",
             escaped_kernel, seccomp, io_uring);

    const char *kernel_wanted = getenv("ASSAY_EXPECT_KERNEL");
    const char *io_uring_wanted = getenv("ASSAY_EXPECT_IO_URING_ERRNO");
    if (kernel_wanted != NULL && kernel_wanted[0] != 0) {
        int same = strcmp(kernel_wanted + 1, names.release) == 0;
        if ((kernel_wanted[0] == '=') != same)
            snprintf(isolation_error, sizeof isolation_error,
                     "isolation not in force: the sandbox sees kernel %.150s, expected %s %.150s",
                     escaped_kernel, kernel_wanted[0] == '=' ? "the host's" : "another than",
                     kernel_wanted + 1);
    }
    if (isolation_error[0] == 0 && io_uring_wanted != NULL && atoi(io_uring_wanted) != io_uring)
        snprintf(isolation_error, sizeof isolation_error,
                 "isolation not in force: io_uring_setup answered errno %d, expected %s (the seccomp "
                 "profile)", io_uring, io_uring_wanted);
    unsetenv("ASSAY_EXPECT_KERNEL"); /* the program's environment is the engine's, no more */
    unsetenv("ASSAY_EXPECT_IO_URING_ERRNO");
}

static void trailer(const char *json) {
    char line[1536];
    size_t length = strlen(json);
    if (length < 2 || json[length - 1] != '}') return;
    int size = snprintf(line, sizeof line, "%cASSAY-TRAILER-%s:%.*s, %s}\n", 0, nonce,
                        (int)(length - 1), json, facts);
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

/* The value of `key` in the first readable of two cgroup files (v1 or v2 layout) of "key
 * value" lines; -1 if neither is visible. */
static long cgroup_counter(const char *v1, const char *v2, const char *key) {
    const char *const paths[] = {v1, v2};
    for (size_t i = 0; i < 2; i++) {
        FILE *file = fopen(paths[i], "re");
        if (file == NULL) continue;
        char name[64];
        long value, found = -1;
        while (found < 0 && fscanf(file, "%63s %ld", name, &value) == 2)
            if (strcmp(name, key) == 0) found = value;
        fclose(file);
        if (found >= 0) return found;
    }
    return -1;
}

/* OOM kills in this sandbox's memory cgroup so far. */
static long oom_kills(void) {
    return cgroup_counter("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events",
                          "oom_kill");
}

/* Times the sandbox's pids cgroup refused a fork so far. */
static long pids_refusals(void) {
    return cgroup_counter("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events", "max");
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

/* Writes the header's files (from offset `at`); on failure reports it and returns -1. */
static int write_files(char *header, size_t size, size_t at) {
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

static void exec_child(char **argv, int stdin_fd, int merge) {
    if (dup2(stdin_fd, 0) < 0) _exit(SETUP_FAILED);
    if (merge && dup2(2, 1) < 0) _exit(SETUP_FAILED); /* a compiler's output, in one stream */
    close(child_signals);
    sigprocmask(SIG_SETMASK, &original_mask, NULL);
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

/* Reads a 10-digit length from stdin; -1 on EOF or garbage. */
static int read_length(size_t *length) {
    char digits[LENGTH_SIZE + 1];
    if (read_exact(digits, LENGTH_SIZE) != 0) return -1;
    digits[LENGTH_SIZE] = 0;
    char *end;
    *length = strtoul(digits, &end, 10);
    return *end == 0 ? 0 : -1;
}

/* The commands of the current frame (argv arrays into `header_copy`; compile_argv[0] == NULL:
 * nothing to compile). */
static char *header_copy;
static char *compile_argv[MAX_ARGS + 1];
static char *run_argv[MAX_ARGS + 1];

/* Splits a field of NUL-ended arguments into `argv`; -1 if malformed (or too many). */
static int split_command(char *field, size_t length, char **argv) {
    size_t count = 0, at = 0;
    while (at < length) {
        char *end = memchr(field + at, 0, length - at);
        if (end == NULL || count >= MAX_ARGS) return -1;
        argv[count++] = field + at;
        at = (size_t)(end - field) + 1;
    }
    argv[count] = NULL;
    return 0;
}

/* One length-prefixed field of the header at *at; -1 past its end. */
static int next_field(char *header, size_t size, size_t *at, char **field, size_t *length) {
    char digits[LENGTH_SIZE + 1];
    if (*at + LENGTH_SIZE > size) return -1;
    memcpy(digits, header + *at, LENGTH_SIZE);
    digits[LENGTH_SIZE] = 0;
    *at += LENGTH_SIZE;
    *length = strtoul(digits, NULL, 10);
    if (*length > size - *at) return -1;
    *field = header + *at;
    *at += *length;
    return 0;
}

/* After the magic: the header (nonce, commands, files). Returns 0, or -1 with the reason
 * reported. */
static int read_header(void) {
    size_t size;
    char *header;
    if (read_length(&size) != 0 || size < NONCE_SIZE || (header = malloc(size + 1)) == NULL) {
        say("assay: bad sandbox header\n");
        return -1;
    }
    if (read_exact(header, size) != 0) {
        free(header);
        say("assay: bad sandbox header\n");
        return -1;
    }
    memcpy(nonce, header, NONCE_SIZE);
    nonce[NONCE_SIZE] = 0;
    free(header_copy);
    header_copy = header;
    size_t at = NONCE_SIZE, lengths[2];
    char *fields[2];
    for (int i = 0; i < 2; i++)
        if (next_field(header, size, &at, &fields[i], &lengths[i]) != 0) {
            setup_error("malformed header", "(commands)", EINVAL);
            return -1;
        }
    if (split_command(fields[0], lengths[0], compile_argv) != 0 ||
        split_command(fields[1], lengths[1], run_argv) != 0 || run_argv[0] == NULL) {
        setup_error("malformed header", "(commands)", EINVAL);
        return -1;
    }
    return write_files(header, size, at);
}

/* The program's stdin follows its header as a 10-digit length and the bytes; it goes into a
 * memory file that becomes the program's fd 0 (stdin itself stays the owner's lifeline). */
static int read_stdin_file(void) {
    size_t size;
    if (read_length(&size) != 0) {
        say("assay: bad sandbox header\n");
        return -1;
    }
    int fd = memfd_create("stdin", MFD_CLOEXEC);
    char buffer[65536];
    while (size > 0) {
        size_t chunk = size < sizeof buffer ? size : sizeof buffer;
        if (read_exact(buffer, chunk) != 0) {
            say("assay: bad sandbox header\n");
            if (fd >= 0) close(fd);
            return -1;
        }
        if (fd >= 0) write_all(fd, buffer, chunk);
        size -= chunk;
    }
    if (fd < 0 || lseek(fd, 0, SEEK_SET) != 0) {
        setup_error("cannot store", "stdin", errno);
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

/* -- batch mode: the reset between two programs --------------------------------------- */

/* What batch mode wipes between programs: every place a program can write. */
static const char *const scratch_dirs[] = {"/workspace", "/tmp", "/dev/shm", "/dev/mqueue"};
#define WIPE_MAX_DEPTH 64
static mode_t workspace_mode = 0700; /* as found when the batch began */

/* Reaps what has already died, then kills everything else in the sandbox (the PID namespace)
 * and reaps it, until nothing but this process is left. Returns how many were still alive. */
static int kill_the_rest(void) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    int alive = 0;
    while (kill(-1, SIGKILL) == 0) { /* ESRCH: nobody left to signal */
        pid_t pid = waitpid(-1, NULL, 0);
        if (pid > 0) alive++;
        else if (errno == ECHILD) break;
    }
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    return alive;
}

/* Removes everything inside the directory `fd` (closed here); 0 when it is all gone. */
static int wipe(int fd, int depth) {
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        close(fd);
        return -1;
    }
    int failed = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
        struct stat info;
        if (fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) != 0) {
            failed = 1;
            continue;
        }
        if (S_ISDIR(info.st_mode)) {
            if (depth >= WIPE_MAX_DEPTH) {
                failed = 1;
                continue;
            }
            fchmodat(fd, name, 0700, 0); /* the program may have locked itself out of it */
            int child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (child < 0 || wipe(child, depth + 1) != 0) failed = 1;
        }
        if (unlinkat(fd, name, S_ISDIR(info.st_mode) ? AT_REMOVEDIR : 0) != 0) failed = 1;
    }
    closedir(dir);
    return failed ? -1 : 0;
}

/* SysV IPC objects live in the sandbox's IPC namespace, outside any directory. */
static int ipc_objects(void) {
    static const char *const tables[] = {"/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"};
    int count = 0;
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        FILE *file = fopen(tables[i], "re");
        if (file == NULL) continue;
        int c, lines = 0;
        while ((c = fgetc(file)) != EOF) lines += c == '\n';
        fclose(file);
        if (lines > 1) count += lines - 1; /* the first line is the heading */
    }
    return count;
}

/* Kills what the program left, wipes every scratch directory and says what, if anything,
 * the program did to the sandbox that the next program must not inherit (NULL: nothing). */
static const char *reset(long pids_before) {
    const char *damage = NULL;
    if (kill_the_rest() > 0) damage = "left processes running";
    long pids_after = pids_refusals();
    if (pids_before >= 0 && pids_after > pids_before && damage == NULL)
        damage = "hit the process limit";
    for (size_t i = 0; i < sizeof scratch_dirs / sizeof *scratch_dirs; i++) {
        struct statvfs space;
        if (statvfs(scratch_dirs[i], &space) == 0 && damage == NULL &&
            ((space.f_blocks > 0 && space.f_bavail == 0) || (space.f_files > 0 && space.f_favail == 0)))
            damage = "filled a scratch file system"; /* (mqueue has neither blocks nor inodes) */
        int fd = open(scratch_dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) continue; /* not mounted in this sandbox */
        if (wipe(fd, 0) != 0 && damage == NULL) damage = "left files that cannot be removed";
    }
    chmod(scratch_dirs[0], workspace_mode); /* the program owns it, and may chmod it */
    if (ipc_objects() > 0 && damage == NULL) damage = "left SysV IPC objects";
    return damage;
}

/* -- one program ---------------------------------------------------------------------- */

/* The owner is gone (see the top of this file): nothing it started may go on running. */
static void owner_gone(pid_t child) {
    if (getpid() == 1) kill_the_rest();
    else if (child > 0) kill(child, SIGKILL); /* run as an ordinary process (the unit tests) */
    _exit(OWNER_GONE);
}

/* Waits for `child` to exit while watching stdin, which must stay silent while a program
 * runs; returns its wait status and resource usage. */
static int wait_for(pid_t child, struct rusage *usage) {
    for (;;) {
        int status;
        pid_t pid;
        while ((pid = wait4(-1, &status, WNOHANG, usage)) > 0)
            if (pid == child) return status; /* others: reparented orphans, reaped */
        if (pid < 0 && errno == ECHILD) return -1;
        struct pollfd watched[2] = {{child_signals, POLLIN, 0}, {0, POLLIN, 0}};
        if (poll(watched, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (watched[1].revents) owner_gone(child);
        if (watched[0].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(child_signals, &info, sizeof info) < 0 && errno == EINTR) {
            }
        }
    }
}

/* The trailer of one phase: `status` from wait4, `usage` its resource use. */
static void report(const char *phase, int status, const struct rusage *usage, long oom_before,
                   const char *found) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    long oom_after = oom_kills();
    char kills[32] = "null", signal_number[16] = "null", damaged[96] = "null", json[700];
    if (oom_before >= 0 && oom_after >= 0) snprintf(kills, sizeof kills, "%ld", oom_after - oom_before);
    if (WIFSIGNALED(status)) snprintf(signal_number, sizeof signal_number, "%d", WTERMSIG(status));
    if (found != NULL) snprintf(damaged, sizeof damaged, "\"%s\"", found);
    double cpu = (double)usage->ru_utime.tv_sec + usage->ru_utime.tv_usec / 1e6 +
                 (double)usage->ru_stime.tv_sec + usage->ru_stime.tv_usec / 1e6;
    snprintf(json, sizeof json,
             "{\"phase\": \"%s\", \"exit_code\": %d, \"signal\": %s, \"cpu_time_seconds\": %.6f, "
             "\"peak_memory_bytes\": %ld, \"oom_kills\": %s, \"damage\": %s}",
             phase, code, signal_number, cpu, usage->ru_maxrss * 1024L, kills, damaged);
    trailer(json);
}

/* Runs `argv` with `stdin_fd` (closed here) as its stdin and waits for it: its wait status,
 * or -1 when it could not be started (reported). */
static int spawn(char **argv, int stdin_fd, int merge, struct rusage *usage) {
    pid_t child = fork();
    if (child < 0) {
        setup_error("cannot fork", argv[0], errno);
        close(stdin_fd);
        return -1;
    }
    if (child == 0) exec_child(argv, stdin_fd, merge);
    close(stdin_fd);
    memset(usage, 0, sizeof *usage);
    return wait_for(child, usage);
}

/* Runs the frame's program (compiling it first when it has a compile command), whose files
 * are written, with `stdin_fd` as its stdin; returns its exit code (128 + signal), or the
 * compiler's when that failed. In batch mode `damage` receives what the reset found (NULL:
 * the sandbox is clean for the next). */
static int run_program(int stdin_fd, const char **damage) {
    if (isolation_error[0] != 0) {
        char escaped[700], json[800];
        json_escape(isolation_error, escaped, sizeof escaped);
        snprintf(json, sizeof json, "{\"setup_error\": \"%s\"}", escaped);
        trailer(json);
        close(stdin_fd);
        if (damage != NULL) *damage = "is not isolated as expected";
        return SETUP_FAILED;
    }
    long oom_before = oom_kills();
    long pids_before = damage != NULL ? pids_refusals() : -1;
    struct rusage usage;
    if (compile_argv[0] != NULL) {
        int nothing = memfd_create("empty", MFD_CLOEXEC);
        int status = nothing < 0 ? -1 : spawn(compile_argv, nothing, 1, &usage);
        if (status < 0) {
            if (nothing < 0) setup_error("cannot create", "the compiler's stdin", errno);
            close(stdin_fd);
            if (damage != NULL) *damage = "could not compile";
            return SETUP_FAILED;
        }
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        /* What the compiler left never runs beside the program (or the next one). */
        const char *found = NULL;
        if (damage != NULL && code != 0) found = reset(pids_before);
        else if (getpid() == 1) kill_the_rest();
        report("compile", status, &usage, oom_before, found);
        if (code != 0) {
            close(stdin_fd);
            if (damage != NULL) *damage = found;
            return code;
        }
        /* The engine says when to go on (it may lower the memory limit first); an end of
         * stdin instead means the owner is gone. */
        char magic[MAGIC_SIZE];
        if (read_exact(magic, MAGIC_SIZE) != 0 || memcmp(magic, GO_MAGIC, MAGIC_SIZE) != 0)
            owner_gone(0);
        oom_before = oom_kills();
    }
    int status = spawn(run_argv, stdin_fd, 0, &usage);
    if (status < 0) {
        if (damage != NULL) *damage = "could not fork";
        return SETUP_FAILED;
    }
    /* Before the trailer: nothing the program left may write after it. */
    const char *found = damage != NULL ? reset(pids_before) : NULL;
    report("run", status, &usage, oom_before, found);
    if (damage != NULL) *damage = found;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Reads the magic of the next frame; 1 on a clean end of stdin before it (the owner closed
 * the sandbox, or is gone), -1 on garbage. */
static int read_magic(const char *expected) {
    char magic[MAGIC_SIZE];
    ssize_t got;
    while ((got = read(0, magic, 1)) < 0 && errno == EINTR) {
    }
    if (got == 0) return 1;
    if (got < 0 || read_exact(magic + 1, MAGIC_SIZE - 1) != 0 ||
        memcmp(magic, expected, MAGIC_SIZE) != 0) {
        say("assay: bad sandbox header\n");
        return -1;
    }
    return 0;
}

/* Batch mode: programs one after another until stdin ends (0) or one damages the sandbox. */
static int run_batch(void) {
    if (getpid() != 1) { /* the reset kills every process it can signal */
        say("assay: batch mode runs only as a sandbox's PID 1\n");
        return SETUP_FAILED;
    }
    struct stat workspace;
    if (stat(scratch_dirs[0], &workspace) == 0) workspace_mode = workspace.st_mode & 07777;
    for (;;) {
        if (read_header() != 0) return SETUP_FAILED;
        int stdin_fd = read_stdin_file();
        if (stdin_fd < 0) return SETUP_FAILED;
        const char *damage = NULL;
        run_program(stdin_fd, &damage);
        if (damage != NULL) return SETUP_FAILED; /* the engine replaces this sandbox */
        int next = read_magic(BATCH_MAGIC);
        if (next != 0) return next > 0 ? 0 : SETUP_FAILED; /* 0: the engine closed the batch */
    }
}


/* -- live mode: one sandbox, many commands and file operations ------------------------ */

/* After "ASSAYL" the engine and this process exchange messages, each a 9-byte head (its type,
 * a 4-byte id and a 4-byte payload length, big-endian) and the payload:
 *
 *   engine -> here  'X' run a command: fields (4-byte length + bytes each) argv (arguments
 *                       each ended by NUL), env (NAME=value each ended by NUL), cwd, user;
 *                       then 4-byte timeout (ms), 4-byte output cap per stream (bytes),
 *                       1 byte: 1 if its stdin follows, 0 for an empty one
 *                   'W' write a file: fields path, user; 4-byte timeout; its bytes follow
 *                   'R' read a file: fields path, user; 4-byte timeout; 8-byte largest size
 *                   'I' stdin (or file) bytes for a command;  'E' their end
 *                   'K' kill a command's process tree (the caller gave up)
 *   here -> engine  'H' hello (id 0): JSON, the sandbox's isolation facts
 *                   'O' stdout bytes (a read file's bytes);  'e' stderr bytes
 *                   'Z' a command is done: JSON with its returncode, whether it timed out,
 *                       what it could not start (errno), what was cut
 *
 * A command runs in a session (and process group) of its own, as the sandbox's user or, in
 * a root sandbox, the one it names; at its time limit, or on 'K', every process of that
 * session is killed. It is done once it has exited and its output pipes have ended, or
 * 100 ms after its exit if something it left in the background still holds them. File
 * operations run as commands too (a child that does not exec), so they have the same user,
 * limits and errors. An end of stdin means the owner is gone: everything is killed. */

#define LIVE_MAGIC "ASSAYL"
#define MAX_SLOTS 64
#define MAX_MESSAGE (4u << 20)
#define MAX_PENDING (4u << 20)
#define LINGER_MS 100
#define KIND_EXEC 0
#define KIND_WRITE 1
#define KIND_READ 2
/* Why a child could not start, sent over its error pipe with the errno. */
#define FAIL_EXEC 1
#define FAIL_USER 2
#define FAIL_CWD 3
#define FAIL_FILE 4
#define FAIL_SETUP 5

struct slot {
    int used;
    uint32_t id;
    int kind;
    pid_t pid;
    int in_fd, out_fd, err_fd, fail_fd; /* -1 when closed */
    char *pending; /* stdin not yet taken by the child */
    size_t pending_length, pending_at;
    int input_ended;
    uint64_t cap; /* per stream */
    uint64_t sent[2];
    int cut[2];
    long long deadline_ms, exited_ms;
    int exited, status, timed_out, killed;
    int fail_kind, fail_errno;
};

static struct slot slots[MAX_SLOTS];
static char **base_env;

static long long now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void put32(unsigned char *at, uint32_t value) {
    at[0] = (unsigned char)(value >> 24);
    at[1] = (unsigned char)(value >> 16);
    at[2] = (unsigned char)(value >> 8);
    at[3] = (unsigned char)value;
}

static uint32_t get32(const unsigned char *at) {
    return (uint32_t)at[0] << 24 | (uint32_t)at[1] << 16 | (uint32_t)at[2] << 8 | at[3];
}

static void send_message(char type, uint32_t id, const char *data, size_t length) {
    unsigned char head[9];
    head[0] = (unsigned char)type;
    put32(head + 1, id);
    put32(head + 5, (uint32_t)length);
    write_all(1, (const char *)head, sizeof head);
    if (length) write_all(1, data, length);
}

static struct slot *find_slot(uint32_t id) {
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].used && slots[i].id == id) return &slots[i];
    return NULL;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Every process of session `sid` (a command's tree: its children stay in its session unless
 * they make one of their own). */
static void kill_session(pid_t sid) {
    if (sid <= 1) return;
    kill(-sid, SIGKILL);
    DIR *proc = opendir("/proc");
    if (proc == NULL) return;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        pid_t pid = (pid_t)atoi(entry->d_name);
        if (pid <= 1) continue;
        char path[64], line[512];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t got = read(fd, line, sizeof line - 1);
        close(fd);
        if (got <= 0) continue;
        line[got] = 0;
        char *after = strrchr(line, ')'); /* the name may hold spaces and parentheses */
        int ppid, pgrp, session;
        char state;
        if (after != NULL && sscanf(after + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) == 4 &&
            session == sid)
            kill(pid, SIGKILL);
    }
    closedir(proc);
}

/* A user of /etc/passwd by name or uid: 0 if found. */
static int lookup_user(const char *user, uid_t *uid, gid_t *gid, char *home, size_t room) {
    FILE *passwd = fopen("/etc/passwd", "re");
    if (passwd == NULL) return -1;
    char line[1024];
    int found = -1;
    while (found != 0 && fgets(line, sizeof line, passwd) != NULL) {
        char *fields[7];
        char *cursor = line;
        int count = 0;
        for (; count < 7; count++) {
            fields[count] = cursor;
            char *colon = strchr(cursor, ':');
            if (colon == NULL) break;
            *colon = 0;
            cursor = colon + 1;
        }
        if (count < 6) continue;
        char *newline = strchr(fields[count < 7 ? count : 6], '\n');
        if (newline != NULL) *newline = 0;
        if (strcmp(fields[0], user) == 0 || strcmp(fields[2], user) == 0) {
            *uid = (uid_t)strtoul(fields[2], NULL, 10);
            *gid = (gid_t)strtoul(fields[3], NULL, 10);
            snprintf(home, room, "%s", fields[5]);
            found = 0;
        }
    }
    fclose(passwd);
    return found;
}

static void child_fail(int fail_fd, int kind, int error) {
    int report[2] = {kind, error};
    if (write(fail_fd, report, sizeof report) < 0) {
    }
    _exit(kind == FAIL_EXEC ? (error == ENOENT ? 127 : 126) : 126);
}

/* In the child: become `user` (a root sandbox only; "" keeps the sandbox's own). */
static void become(const char *user, int fail_fd, char *home, size_t room) {
    home[0] = 0;
    if (user[0] == 0) return;
    uid_t uid;
    gid_t gid;
    if (lookup_user(user, &uid, &gid, home, room) != 0) child_fail(fail_fd, FAIL_USER, ENOENT);
    if (uid == getuid()) return;
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
        child_fail(fail_fd, FAIL_USER, errno);
}

static void copy_fd(int from, int to, int fail_fd) {
    char buffer[65536];
    for (;;) {
        ssize_t got = read(from, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) child_fail(fail_fd, FAIL_FILE, errno);
        if (got == 0) return;
        char *at = buffer;
        while (got > 0) {
            ssize_t put = write(to, at, (size_t)got);
            if (put < 0 && errno == EINTR) continue;
            if (put <= 0) child_fail(fail_fd, FAIL_FILE, put < 0 ? errno : EIO);
            at += put;
            got -= put;
        }
    }
}

struct command {
    int kind;
    char *argv[MAX_ARGS * 64 + 1];
    char *env[4097];
    char *cwd, *user, *path;
    uint64_t max_size;
};

/* The child of a command: its pipes become fds 0-2; then exec (or the file operation). */
static void start_child(struct command *command, int in, int out, int err, int fail_fd) {
    setsid();
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) child_fail(fail_fd, FAIL_SETUP, errno);
    close(child_signals);
    sigprocmask(SIG_SETMASK, &original_mask, NULL);
    int score = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (score >= 0) {
        write_all(score, "1000", 4);
        close(score);
    }
    char home[512];
    become(command->user, fail_fd, home, sizeof home);
    if (command->kind == KIND_WRITE) {
        if (make_parents(command->path) != 0) child_fail(fail_fd, FAIL_FILE, errno);
        int fd = open(command->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (fd < 0) child_fail(fail_fd, FAIL_FILE, errno);
        copy_fd(0, fd, fail_fd);
        if (close(fd) != 0) child_fail(fail_fd, FAIL_FILE, errno);
        _exit(0);
    }
    if (command->kind == KIND_READ) {
        int fd = open(command->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) child_fail(fail_fd, FAIL_FILE, errno);
        struct stat info;
        if (fstat(fd, &info) != 0) child_fail(fail_fd, FAIL_FILE, errno);
        if (S_ISDIR(info.st_mode)) child_fail(fail_fd, FAIL_FILE, EISDIR);
        if (S_ISREG(info.st_mode) && (uint64_t)info.st_size > command->max_size)
            child_fail(fail_fd, FAIL_FILE, EFBIG);
        copy_fd(fd, 1, fail_fd);
        _exit(0);
    }
    if (command->cwd[0] != 0 && chdir(command->cwd) != 0) child_fail(fail_fd, FAIL_CWD, errno);
    /* The sandbox's environment, then the command's (its names win). */
    static char *merged[8192];
    size_t count = 0;
    for (char **e = base_env; *e != NULL && count < 4096; e++) {
        size_t name = strcspn(*e, "=");
        int overridden = 0;
        for (char **o = command->env; *o != NULL; o++)
            if (strncmp(*o, *e, name + 1) == 0) overridden = 1;
        if (home[0] != 0 && strncmp(*e, "HOME=", 5) == 0) overridden = 1;
        if (!overridden) merged[count++] = *e;
    }
    static char home_entry[520];
    if (home[0] != 0) {
        snprintf(home_entry, sizeof home_entry, "HOME=%s", home);
        merged[count++] = home_entry;
    }
    for (char **o = command->env; *o != NULL && count < 8190; o++) merged[count++] = *o;
    merged[count] = NULL;
    environ = merged;
    execvp(command->argv[0], command->argv);
    child_fail(fail_fd, FAIL_EXEC, errno);
}

static const char *fail_name(int kind, int error) {
    switch (kind) {
    case FAIL_EXEC: return error == ENOENT ? "not_found" : "permission_denied";
    case FAIL_USER: return "unknown_user";
    case FAIL_CWD: return "bad_cwd";
    case FAIL_FILE: return "file";
    case FAIL_SETUP: return "setup";
    default: return NULL;
    }
}

/* Sends a slot's 'Z' and frees it, once it has exited and its pipes are done. */
static void finish(struct slot *slot) {
    char json[512], failure[64] = "null";
    int code = WIFEXITED(slot->status) ? WEXITSTATUS(slot->status) : 128 + WTERMSIG(slot->status);
    const char *name = fail_name(slot->fail_kind, slot->fail_errno);
    if (name != NULL) snprintf(failure, sizeof failure, "\"%s\"", name);
    char message[300] = "";
    if (slot->fail_kind) json_escape(strerror(slot->fail_errno), message, sizeof message);
    int size = snprintf(json, sizeof json,
                        "{\"returncode\": %d, \"timed_out\": %s, \"killed\": %s, \"failure\": %s, "
                        "\"errno\": %d, \"error\": \"%s\", \"stdout_bytes\": %llu, "
                        "\"stderr_bytes\": %llu, \"stdout_truncated\": %s, \"stderr_truncated\": %s}",
                        code, slot->timed_out ? "true" : "false", slot->killed ? "true" : "false",
                        failure, slot->fail_errno, message, (unsigned long long)slot->sent[0],
                        (unsigned long long)slot->sent[1], slot->cut[0] ? "true" : "false",
                        slot->cut[1] ? "true" : "false");
    send_message('Z', slot->id, json, size > 0 ? (size_t)size : 0);
    close_fd(&slot->in_fd);
    close_fd(&slot->out_fd);
    close_fd(&slot->err_fd);
    close_fd(&slot->fail_fd);
    free(slot->pending);
    memset(slot, 0, sizeof *slot);
}

/* The fields of a payload: 4-byte length + bytes each, NUL-terminated in place (the payload
 * has a spare byte after each field: its length prefix of the next, already read). */
static int take_field(unsigned char *payload, size_t size, size_t *at, char **field, size_t *length) {
    if (*at + 4 > size) return -1;
    *length = get32(payload + *at);
    *at += 4;
    if (*length > size - *at) return -1;
    *field = (char *)payload + *at;
    *at += *length;
    return 0;
}

static int split_block(char *block, size_t length, char **out, size_t most) {
    size_t count = 0, at = 0;
    while (at < length) {
        char *end = memchr(block + at, 0, length - at);
        if (end == NULL || count >= most) return -1;
        out[count++] = block + at;
        at = (size_t)(end - block) + 1;
    }
    out[count] = NULL;
    return 0;
}

/* Starts a command from its 'X', 'W' or 'R' payload (kept: its strings are used by the child
 * only, before exec). */
static void start_command(char type, uint32_t id, unsigned char *payload, size_t size) {
    static struct command command;
    memset(&command, 0, sizeof command);
    struct slot *slot = NULL;
    for (int i = 0; i < MAX_SLOTS && slot == NULL; i++)
        if (!slots[i].used) slot = &slots[i];
    char *fields[4];
    size_t lengths[4], at = 0;
    int nfields = type == 'X' ? 4 : 2;
    int bad = find_slot(id) != NULL;
    for (int i = 0; i < nfields && !bad; i++)
        bad = take_field(payload, size, &at, &fields[i], &lengths[i]) != 0;
    uint32_t timeout_ms = 0, cap = 0;
    int has_input = 0;
    if (!bad && at + 4 <= size) timeout_ms = get32(payload + at), at += 4;
    else bad = 1;
    if (!bad && type == 'X') {
        if (at + 5 > size) bad = 1;
        else cap = get32(payload + at), has_input = payload[at + 4], at += 5;
    } else if (!bad && type == 'R') {
        if (at + 8 > size) bad = 1;
        else command.max_size = (uint64_t)get32(payload + at) << 32 | get32(payload + at + 4);
    }
    /* NUL-terminate the string fields: copy them, the payload has no room. */
    char *strings[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < nfields && !bad; i++) {
        strings[i] = malloc(lengths[i] + 2);
        if (strings[i] == NULL) bad = 1;
        else {
            memcpy(strings[i], fields[i], lengths[i]);
            strings[i][lengths[i]] = 0;
            strings[i][lengths[i] + 1] = 0;
        }
    }
    if (!bad && type == 'X') {
        bad = split_block(strings[0], lengths[0], command.argv, sizeof command.argv / sizeof *command.argv - 1) != 0 ||
              command.argv[0] == NULL ||
              split_block(strings[1], lengths[1], command.env, sizeof command.env / sizeof *command.env - 1) != 0;
        command.cwd = strings[2];
        command.user = strings[3];
        command.kind = KIND_EXEC;
    } else if (!bad) {
        command.path = strings[0];
        command.user = strings[1];
        command.kind = type == 'W' ? KIND_WRITE : KIND_READ;
        command.cwd = "";
        bad = command.path[0] == 0;
        has_input = type == 'W';
        cap = 0xffffffffu;
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, fail[2] = {-1, -1};
    if (!bad && slot == NULL) {
        const char *json = "{\"returncode\": 126, \"failure\": \"setup\", \"errno\": 11, \"error\": \"too many commands at once\"}";
        send_message('Z', id, json, strlen(json));
        bad = 2;
    }
    if (!bad && (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
                 pipe2(fail, O_CLOEXEC) != 0))
        bad = 3;
    pid_t pid = -1;
    if (!bad) {
        pid = fork();
        if (pid == 0) {
            close(in[1]);
            close(out[0]);
            close(err[0]);
            close(fail[0]);
            start_child(&command, in[0], out[1], err[1], fail[1]);
        }
        if (pid < 0) bad = 3;
    }
    if (bad == 1) {
        const char *json = "{\"returncode\": 126, \"failure\": \"setup\", \"errno\": 22, \"error\": \"malformed command\"}";
        send_message('Z', id, json, strlen(json));
    } else if (bad == 3) {
        char json[256], message[128];
        json_escape(strerror(errno), message, sizeof message);
        snprintf(json, sizeof json, "{\"returncode\": 126, \"failure\": \"setup\", \"errno\": %d, \"error\": \"%s\"}", errno, message);
        send_message('Z', id, json, strlen(json));
    }
    for (int i = 0; i < 4; i++) free(strings[i]);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    close(fail[1]);
    if (bad) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        close(fail[0]);
        return;
    }
    memset(slot, 0, sizeof *slot);
    slot->used = 1;
    slot->id = id;
    slot->kind = command.kind;
    slot->pid = pid;
    slot->out_fd = out[0];
    slot->err_fd = err[0];
    slot->fail_fd = fail[0];
    slot->in_fd = in[1];
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    slot->cap = cap;
    slot->input_ended = !has_input;
    if (!has_input) close_fd(&slot->in_fd);
    slot->deadline_ms = timeout_ms ? now_ms() + timeout_ms : 0;
}

static void kill_slot(struct slot *slot, int timed_out) {
    if (slot->exited && slot->killed) return;
    if (timed_out) slot->timed_out = 1;
    else slot->killed = 1;
    kill_session(slot->pid);
    slot->deadline_ms = 0;
    free(slot->pending);
    slot->pending = NULL;
    slot->pending_length = slot->pending_at = 0;
    close_fd(&slot->in_fd);
}

static size_t pending_total(void) {
    size_t total = 0;
    for (int i = 0; i < MAX_SLOTS; i++)
        if (slots[i].used) total += slots[i].pending_length - slots[i].pending_at;
    return total;
}

/* Reads one message from the engine and acts on it; -1 when the owner is gone. */
static int take_message(void) {
    unsigned char head[9];
    if (read_exact((char *)head, sizeof head) != 0) return -1;
    uint32_t id = get32(head + 1), length = get32(head + 5);
    if (length > MAX_MESSAGE) return -1;
    unsigned char *payload = malloc(length + 1);
    if (payload == NULL || read_exact((char *)payload, length) != 0) {
        free(payload);
        return -1;
    }
    struct slot *slot = find_slot(id);
    switch (head[0]) {
    case 'X':
    case 'W':
    case 'R':
        start_command((char)head[0], id, payload, length);
        break;
    case 'I':
        if (slot != NULL && slot->in_fd >= 0 && !slot->input_ended && length > 0) {
            size_t left = slot->pending_length - slot->pending_at;
            if (left == 0) {
                free(slot->pending);
                slot->pending = (char *)payload;
                slot->pending_length = length;
                slot->pending_at = 0;
                payload = NULL;
            } else {
                char *joined = malloc(left + length);
                if (joined != NULL) {
                    memcpy(joined, slot->pending + slot->pending_at, left);
                    memcpy(joined + left, payload, length);
                    free(slot->pending);
                    slot->pending = joined;
                    slot->pending_length = left + length;
                    slot->pending_at = 0;
                }
            }
        }
        break;
    case 'E':
        if (slot != NULL) {
            slot->input_ended = 1;
            if (slot->pending_length == slot->pending_at) close_fd(&slot->in_fd);
        }
        break;
    case 'K':
        if (slot != NULL) kill_slot(slot, 0);
        break;
    default:
        free(payload);
        return -1;
    }
    free(payload);
    return 0;
}

/* Moves a child's output to the engine (what is over its cap is read and dropped). */
static void forward(struct slot *slot, int which) {
    int *fd = which == 0 ? &slot->out_fd : &slot->err_fd;
    char buffer[65536];
    ssize_t got = read(*fd, buffer, sizeof buffer);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (got <= 0) {
        close_fd(fd);
        return;
    }
    uint64_t room = slot->sent[which] < slot->cap ? slot->cap - slot->sent[which] : 0;
    size_t send = (uint64_t)got < room ? (size_t)got : (size_t)room;
    if (send < (size_t)got) slot->cut[which] = 1;
    if (send) send_message(which == 0 ? 'O' : 'e', slot->id, buffer, send);
    slot->sent[which] += send;
}

static int run_live(void) {
    if (getpid() != 1) {
        say("assay: live mode runs only as a sandbox's PID 1\n");
        return SETUP_FAILED;
    }
    base_env = environ;
    signal(SIGPIPE, SIG_IGN);
    {
        char json[900], escaped[700];
        json_escape(isolation_error, escaped, sizeof escaped);
        int size = snprintf(json, sizeof json, "{\"setup_error\": %s%s%s, %s}",
                            isolation_error[0] ? "\"" : "", isolation_error[0] ? escaped : "null",
                            isolation_error[0] ? "\"" : "", facts);
        send_message('H', 0, json, (size_t)size);
    }
    if (isolation_error[0] != 0) {
        /* Nothing runs here: the engine removes this sandbox. Wait for it. */
        char sink[4096];
        while (read(0, sink, sizeof sink) > 0) {
        }
        return SETUP_FAILED;
    }
    struct pollfd watched[2 + MAX_SLOTS * 4];
    struct slot *owners[2 + MAX_SLOTS * 4];
    int roles[2 + MAX_SLOTS * 4];
    for (;;) {
        int count = 0;
        long long now = now_ms(), wait = -1;
        watched[count] = (struct pollfd){child_signals, POLLIN, 0};
        owners[count] = NULL;
        roles[count++] = 0;
        if (pending_total() < MAX_PENDING) {
            watched[count] = (struct pollfd){0, POLLIN, 0};
            owners[count] = NULL;
            roles[count++] = 1;
        }
        for (int i = 0; i < MAX_SLOTS; i++) {
            struct slot *slot = &slots[i];
            if (!slot->used) continue;
            if (slot->exited && slot->out_fd < 0 && slot->err_fd < 0) {
                finish(slot);
                continue;
            }
            if (slot->exited && now - slot->exited_ms >= LINGER_MS) {
                /* Something it left in the background holds its output: done without it. */
                close_fd(&slot->out_fd);
                close_fd(&slot->err_fd);
                finish(slot);
                continue;
            }
            if (slot->deadline_ms && now >= slot->deadline_ms) kill_slot(slot, 1);
            long long until = -1;
            if (slot->deadline_ms) until = slot->deadline_ms - now;
            if (slot->exited) until = LINGER_MS - (now - slot->exited_ms);
            if (until >= 0 && (wait < 0 || until < wait)) wait = until;
            int fds[3] = {slot->out_fd, slot->err_fd, slot->fail_fd};
            for (int k = 0; k < 3; k++)
                if (fds[k] >= 0) {
                    watched[count] = (struct pollfd){fds[k], POLLIN, 0};
                    owners[count] = slot;
                    roles[count++] = 2 + k;
                }
            if (slot->in_fd >= 0 && slot->pending_length > slot->pending_at) {
                watched[count] = (struct pollfd){slot->in_fd, POLLOUT, 0};
                owners[count] = slot;
                roles[count++] = 5;
            }
        }
        if (poll(watched, (nfds_t)count, (int)(wait < 0 ? -1 : wait + 1)) < 0) {
            if (errno == EINTR) continue;
            return SETUP_FAILED;
        }
        for (int i = 0; i < count; i++) {
            if (!watched[i].revents) continue;
            struct slot *slot = owners[i];
            switch (roles[i]) {
            case 0: {
                struct signalfd_siginfo info;
                while (read(child_signals, &info, sizeof info) > 0) {
                }
                int status;
                pid_t pid;
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
                    for (int j = 0; j < MAX_SLOTS; j++)
                        if (slots[j].used && slots[j].pid == pid && !slots[j].exited) {
                            slots[j].exited = 1;
                            slots[j].status = status;
                            slots[j].exited_ms = now_ms();
                            if (slots[j].timed_out || slots[j].killed) kill_session(pid);
                            slots[j].deadline_ms = 0;
                        }
                break;
            }
            case 1:
                if (take_message() != 0) owner_gone(0);
                break;
            case 2:
            case 3:
                if (slot->used) forward(slot, roles[i] - 2);
                break;
            case 4: {
                int report[2];
                ssize_t got = read(slot->fail_fd, report, sizeof report);
                if (got == (ssize_t)sizeof report) {
                    slot->fail_kind = report[0];
                    slot->fail_errno = report[1];
                }
                close_fd(&slot->fail_fd);
                break;
            }
            case 5: {
                if (slot->in_fd < 0) break;
                ssize_t put = write(slot->in_fd, slot->pending + slot->pending_at,
                                    slot->pending_length - slot->pending_at);
                if (put > 0) slot->pending_at += (size_t)put;
                else if (put < 0 && errno != EAGAIN && errno != EINTR) {
                    /* It closed its stdin: the rest is dropped. */
                    slot->pending_at = slot->pending_length;
                    slot->input_ended = 1;
                }
                if (slot->pending_at == slot->pending_length) {
                    free(slot->pending);
                    slot->pending = NULL;
                    slot->pending_length = slot->pending_at = 0;
                    if (slot->input_ended) close_fd(&slot->in_fd);
                }
                break;
            }
            }
        }
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    observe_sandbox();
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &original_mask) != 0 ||
        (child_signals = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
        say("assay: cannot watch for the program's exit\n");
        return SETUP_FAILED;
    }

    char magic[MAGIC_SIZE];
    ssize_t got;
    while ((got = read(0, magic, 1)) < 0 && errno == EINTR) {
    }
    if (got == 0) return 0; /* closed before any program: the owner is done with it, or gone */
    if (got < 0 || read_exact(magic + 1, MAGIC_SIZE - 1) != 0) {
        say("assay: bad sandbox header\n");
        return SETUP_FAILED;
    }
    if (memcmp(magic, BATCH_MAGIC, MAGIC_SIZE) == 0) return run_batch();
    if (memcmp(magic, LIVE_MAGIC, MAGIC_SIZE) == 0) return run_live();
    if (memcmp(magic, SINGLE_MAGIC, MAGIC_SIZE) != 0) {
        say("assay: bad sandbox header\n");
        return SETUP_FAILED;
    }
    if (read_header() != 0) return SETUP_FAILED;
    int stdin_fd = read_stdin_file();
    if (stdin_fd < 0) return SETUP_FAILED;
    return run_program(stdin_fd, NULL);
}
