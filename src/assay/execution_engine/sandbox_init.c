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
    if (memcmp(magic, SINGLE_MAGIC, MAGIC_SIZE) != 0) {
        say("assay: bad sandbox header\n");
        return SETUP_FAILED;
    }
    if (read_header() != 0) return SETUP_FAILED;
    int stdin_fd = read_stdin_file();
    if (stdin_fd < 0) return SETUP_FAILED;
    return run_program(stdin_fd, NULL);
}
