/*
 * checker: a tiny static helper run INSIDE containers by the integration tests.
 *
 * It reports what the process can observe about itself (ids, capabilities, namespaces, limits,
 * mounts, fds, ...) as ONE JSON object on stdout, so Python tests compare those facts with the
 * config.json they gave the runtime instead of trusting the runtime's own view.  It is linked
 * statically because a test rootfs (busybox) has no libc to offer.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o checker checker.c
 *
 * Subcommands (argv[1]):
 *   report                 everything about this process, see cmd_report()
 *   stat PATH...           lstat() facts per path
 *   access PATH...         errno of really opening each path for reading / writing
 *   read PATH...           file contents as strings
 *   sysctl KEY...          /proc/sys values, dotted keys
 *   exit N | sleep SECONDS | kill-self SIG
 *   trap FILE              record the first signal received into FILE, then exit 0
 *   write PATH TEXT        create/truncate PATH with TEXT, prints {"errno": n}
 *   cat PATH               raw copy of PATH to stdout
 * Exit status: 0; 2 for an unknown subcommand or missing arguments; 1 when stdout (or `cat`'s
 * input) fails.
 *
 * No heap: every buffer is static and sized for what /proc realistically returns.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define FILEBUF_SIZE (16 << 20)  /* big enough for a busy host's mountinfo */
#define MAX_FDS 65536
#define READ_CHUNK ((size_t)1 << 16)
#define IOPRIO_WHO_PROCESS 1

static unsigned char filebuf[FILEBUF_SIZE];
static char statusbuf[1 << 16];
static gid_t groups[65536];
static int fds[MAX_FDS];

/* ---------------------------------------------------------------- JSON writer ------------ */

/* Per nesting level: how many members were written, to place commas. */
static int j_count[64];
static int j_depth;
static int j_after_key;
static int j_any;  /* something was written: main() ends the document with a newline */

static void j_sep(void)
{
	j_any = 1;
	if (j_after_key) {
		j_after_key = 0;
		return;
	}
	if (j_depth > 0 && j_count[j_depth - 1]++ > 0)
		putchar(',');
}

static void j_open(char c)
{
	j_sep();
	putchar(c);
	j_count[j_depth++] = 0;
}

static void j_close(char c)
{
	putchar(c);
	j_depth--;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, surrogates, > U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4;
	else
		return 0;
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* A JSON string; bytes that are not valid UTF-8 become \u00XX (their Latin-1 reading). */
static void j_strn(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, len;

	j_sep();
	putchar('"');
	while (i < n) {
		unsigned char c = s[i];
		if (c >= 0x80) {
			len = utf8_len(s + i, n - i);
			if (len == 0) {
				printf("\\u%04x", c);
				len = 1;
			} else {
				fwrite(s + i, 1, len, stdout);
			}
			i += len;
			continue;
		}
		switch (c) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\b': fputs("\\b", stdout); break;
		case '\f': fputs("\\f", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		default:
			if (c < 0x20)
				printf("\\u%04x", c);
			else
				putchar(c);
		}
		i++;
	}
	putchar('"');
}

static void j_str(const char *s) { j_strn(s, strlen(s)); }
static void j_int(long long v) { j_sep(); printf("%lld", v); }
static void j_bool(int v) { j_sep(); fputs(v ? "true" : "false", stdout); }
static void j_null(void) { j_sep(); fputs("null", stdout); }

static void j_key(const char *k)
{
	j_str(k);
	putchar(':');
	j_after_key = 1;
}

/* {"errno": n} as a value. */
static void j_errno_obj(int err)
{
	j_open('{');
	j_key("errno");
	j_int(err);
	j_close('}');
}

/* ---------------------------------------------------------------- helpers ---------------- */

/* Read a whole file into buf; returns its length, or -errno (-EFBIG when it does not fit). */
static long read_file(const char *path, unsigned char *buf, size_t size)
{
	size_t len = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return -errno;
	for (;;) {
		if (len == size) {
			close(fd);
			return -EFBIG;
		}
		/* Bounded chunks: /proc/sys handlers kmalloc the whole count and fail with ENOMEM. */
		r = read(fd, buf + len, size - len < READ_CHUNK ? size - len : READ_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			close(fd);
			return -err;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	return (long)len;
}

/* Emit the raw text of a file as a string value, or {"errno": n}. */
static void j_file(const char *path)
{
	long n = read_file(path, filebuf, sizeof(filebuf));

	if (n < 0)
		j_errno_obj((int)-n);
	else
		j_strn((const char *)filebuf, (size_t)n);
}

/* Value of "Key:" in /proc/self/status (already in statusbuf), leading blanks skipped; or NULL. */
static const char *status_field(const char *key, size_t *len)
{
	size_t klen = strlen(key);
	const char *line = statusbuf;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			const char *v = line + klen + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			*len = end ? (size_t)(end - v) : strlen(v);
			return v;
		}
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* Signal number from "15", "TERM" or "SIGTERM"; -1 when unknown. */
static int parse_signal(const char *s)
{
	static const char *const names[] = {
		"", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV",
		"USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN",
		"TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
	};
	char *end;
	long n = strtol(s, &end, 10);
	size_t i;

	if (*s && *end == '\0')
		return (n >= 1 && n <= 64) ? (int)n : -1;
	if (strncmp(s, "SIG", 3) == 0)
		s += 3;
	for (i = 1; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

/* ---------------------------------------------------------------- report ----------------- */

static void report_ids(void)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	int i, n;

	getresuid(&ru, &eu, &su);
	getresgid(&rg, &eg, &sg);
	j_key("uid"); j_int(ru);
	j_key("euid"); j_int(eu);
	j_key("suid"); j_int(su);
	j_key("gid"); j_int(rg);
	j_key("egid"); j_int(eg);
	j_key("sgid"); j_int(sg);
	n = getgroups(sizeof(groups) / sizeof(groups[0]), groups);
	j_key("groups");
	j_open('[');
	for (i = 0; i < n; i++)
		j_int(groups[i]);
	j_close(']');
}

static void report_rlimits(void)
{
	static const char *const names[] = {
		"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
		"RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
		"RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
		"RLIMIT_RTPRIO", "RLIMIT_RTTIME",
	};
	struct rlimit rl;
	int i;

	j_key("rlimits");
	j_open('{');
	for (i = 0; i < 16; i++) {
		j_key(names[i]);
		if (getrlimit(i, &rl) < 0) {
			j_errno_obj(errno);
			continue;
		}
		j_open('[');
		j_int(rl.rlim_cur == RLIM_INFINITY ? -1 : (long long)rl.rlim_cur);
		j_int(rl.rlim_max == RLIM_INFINITY ? -1 : (long long)rl.rlim_max);
		j_close(']');
	}
	j_close('}');
}

static void report_status(void)
{
	static const char *const keys[] = {
		"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
		"SigIgn", "SigBlk", "SigCgt",
	};
	const char *v;
	size_t i, len;

	j_key("umask");
	v = status_field("Umask", &len);
	if (v)
		j_int(strtol(v, NULL, 8));
	else
		j_null();
	j_key("status");
	j_open('{');
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		v = status_field(keys[i], &len);
		if (v) {
			j_key(keys[i]);
			j_strn(v, len);
		}
	}
	j_close('}');
}

static void report_ns(void)
{
	DIR *d = opendir("/proc/self/ns");
	struct dirent *e;
	struct stat st;
	char path[PATH_MAX];

	j_key("ns");
	j_open('{');
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/ns/%s", e->d_name);
		j_key(e->d_name);
		/* stat() follows the magic link to the nsfs inode: equal inodes = same namespace. */
		if (stat(path, &st) == 0)
			j_int((long long)st.st_ino);
		else
			j_null();
	}
	if (d)
		closedir(d);
	j_close('}');
}

static void report_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[64], target[PATH_MAX + 1];
	int i, n = 0, self = d ? dirfd(d) : -1;
	ssize_t len;

	while (d && (e = readdir(d)) != NULL && n < MAX_FDS) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == self)
			continue;
		fds[n++] = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	qsort(fds, (size_t)n, sizeof(fds[0]), cmp_int);
	j_key("fds");
	j_open('[');
	for (i = 0; i < n; i++)
		j_int(fds[i]);
	j_close(']');
	j_key("fd_targets");
	j_open('{');
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		snprintf(target, sizeof(target), "%d", fds[i]);
		j_key(target);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			j_null();
		else
			j_strn(target, (size_t)len);
	}
	j_close('}');
}

static void report_sched(void)
{
	cpu_set_t set;
	int cpu;

	j_key("personality"); j_int(personality(0xffffffff));
	j_key("sched_policy"); j_int(sched_getscheduler(0));
	j_key("ioprio"); j_int(syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0));
	j_key("affinity");
	j_open('[');
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
			if (CPU_ISSET(cpu, &set))
				j_int(cpu);
	j_close(']');
}

static int cmd_report(void)
{
	static char cwd[PATH_MAX];
	struct utsname u;
	long n;
	char **e;

	/* Read status first: later steps open fds, and nothing here should change what it says. */
	n = read_file("/proc/self/status", (unsigned char *)statusbuf, sizeof(statusbuf) - 1);
	statusbuf[n > 0 ? n : 0] = '\0';

	j_open('{');
	j_key("pid"); j_int(getpid());
	j_key("ppid"); j_int(getppid());
	report_ids();
	report_status();
	j_key("cwd");
	if (getcwd(cwd, sizeof(cwd)))
		j_str(cwd);
	else
		j_null();
	j_key("env");
	j_open('[');
	for (e = environ; e && *e; e++)
		j_str(*e);
	j_close(']');
	uname(&u);
	j_key("hostname"); j_str(u.nodename);
	j_key("domainname"); j_str(u.domainname);
	report_rlimits();
	n = read_file("/proc/self/oom_score_adj", filebuf, 64);
	filebuf[n > 0 ? n : 0] = '\0';
	j_key("oom_score_adj"); j_int(n > 0 ? atoi((char *)filebuf) : 0);
	report_ns();
	j_key("uid_map"); j_file("/proc/self/uid_map");
	j_key("gid_map"); j_file("/proc/self/gid_map");
	j_key("cgroup"); j_file("/proc/self/cgroup");
	report_fds();
	report_sched();
	j_key("mountinfo"); j_file("/proc/self/mountinfo");
	j_key("tty"); j_bool(isatty(0));
	j_key("sid"); j_int(getsid(0));
	j_key("pgid"); j_int(getpgid(0));
	j_key("no_new_privs"); j_int(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	j_key("dumpable"); j_int(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	j_close('}');
	return 0;
}

/* ---------------------------------------------------------------- per-path commands ------ */

static const char *file_type(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	case S_IFLNK: return "lnk";
	default: return "unknown";
	}
}

static void stat_one(const char *path)
{
	struct stat st;

	j_open('{');
	if (lstat(path, &st) < 0) {
		j_key("exists"); j_bool(0);
		j_key("errno"); j_int(errno);
	} else {
		j_key("exists"); j_bool(1);
		j_key("type"); j_str(file_type(st.st_mode));
		j_key("mode"); j_int(st.st_mode & 07777);
		j_key("uid"); j_int(st.st_uid);
		j_key("gid"); j_int(st.st_gid);
		j_key("major"); j_int(major(st.st_rdev));
		j_key("minor"); j_int(minor(st.st_rdev));
	}
	j_close('}');
}

/* 0 if open(path, flags) works, else its errno.  O_NONBLOCK so a FIFO never blocks the probe. */
static int try_open(const char *path, int flags)
{
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* Whether the directory is writable, by creating (and removing) a probe file in it. */
static int try_dir_write(const char *dir)
{
	char probe[PATH_MAX];
	int fd;

	if (snprintf(probe, sizeof(probe), "%s/.checker-probe-%d", dir, (int)getpid()) >= (int)sizeof(probe))
		return ENAMETOOLONG;
	fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	close(fd);
	return unlink(probe) < 0 ? errno : 0;
}

static void access_one(const char *path)
{
	struct stat st;
	int rd, wr;

	if (stat(path, &st) < 0) {
		rd = wr = errno;
	} else if (S_ISDIR(st.st_mode)) {
		rd = try_open(path, O_RDONLY | O_DIRECTORY);
		wr = try_dir_write(path);
	} else {
		/* O_WRONLY without O_TRUNC: probing must not change the file. */
		rd = try_open(path, O_RDONLY);
		wr = try_open(path, O_WRONLY);
	}
	j_open('{');
	j_key("read"); j_int(rd);
	j_key("write"); j_int(wr);
	j_close('}');
}

static void sysctl_one(const char *key)
{
	char path[PATH_MAX];
	size_t i, start = 0;
	long n;

	/* /proc/sys/net/ipv4/ip_forward for net.ipv4.ip_forward (sysctl(8) naming). */
	snprintf(path, sizeof(path), "/proc/sys/%s", key);
	for (i = strlen("/proc/sys/"); path[i]; i++)
		if (path[i] == '.')
			path[i] = '/';
	n = read_file(path, filebuf, sizeof(filebuf));
	if (n < 0) {
		j_errno_obj((int)-n);
		return;
	}
	while ((long)start < n && isspace(filebuf[start]))
		start++;
	while (n > (long)start && isspace(filebuf[n - 1]))
		n--;
	j_strn((const char *)filebuf + start, (size_t)n - start);
}

static int per_path(int argc, char **argv, void (*fn)(const char *))
{
	int i;

	j_open('{');
	for (i = 2; i < argc; i++) {
		j_key(argv[i]);
		fn(argv[i]);
	}
	j_close('}');
	return 0;
}

/* ---------------------------------------------------------------- process commands ------- */

static int usage(void)
{
	fputs("usage: checker report | stat|access|read|sysctl ARG... | exit N | sleep SECONDS |\n"
	      "       kill-self SIG | trap FILE | write PATH TEXT | cat PATH | try SYSCALL\n", stderr);
	return 2;
}

static const char *trap_file;

/* Async-signal-safe: only open/write/close/_exit, and a hand-made decimal conversion. */
static void trap_handler(int sig)
{
	char buf[8];
	int i = sizeof(buf), fd;

	buf[--i] = '\n';
	do {
		buf[--i] = (char)('0' + sig % 10);
		sig /= 10;
	} while (sig > 0);
	fd = open(trap_file, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd >= 0) {
		/* A failed write has nowhere to be reported; the test then misses the line and fails. */
		ssize_t r = write(fd, buf + i, sizeof(buf) - (size_t)i);
		(void)r;
		close(fd);
	}
	_exit(0);
}

static int cmd_trap(const char *file)
{
	struct sigaction sa;
	sigset_t none;
	int sig, fd;

	trap_file = file;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = trap_handler;
	sigfillset(&sa.sa_mask);
	/* SIGKILL/SIGSTOP cannot be caught; 32 and 33 are reserved by glibc and sigaction refuses them. */
	for (sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &sa, NULL);
	/* An inherited blocked mask would hide the signal the test sends. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* "ready" only once the handlers are in place, so a test that waits for it cannot race them. */
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6)
		return 1;
	close(fd);
	for (;;)
		pause();
}

static int cmd_sleep(const char *arg)
{
	double secs = strtod(arg, NULL);
	struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

static int cmd_kill_self(const char *arg)
{
	int sig = parse_signal(arg);
	sigset_t set;

	if (sig < 0)
		return usage();
	/* Default action and unblocked, so the signal really ends (or stops) the process. */
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	return 0;
}

static int cmd_write(const char *path, const char *text)
{
	size_t len = strlen(text), off = 0;
	ssize_t r;
	int err = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);

	if (fd < 0) {
		err = errno;
	} else {
		while (off < len) {
			r = write(fd, text + off, len - off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				err = errno;
				break;
			}
			off += (size_t)r;
		}
		if (close(fd) < 0 && err == 0)
			err = errno;
	}
	j_errno_obj(err);
	return 0;
}

static int cmd_cat(const char *path)
{
	long n = read_file(path, filebuf, sizeof(filebuf));

	if (n < 0) {
		fprintf(stderr, "checker: cat %s: %s\n", path, strerror((int)-n));
		return 1;
	}
	fwrite(filebuf, 1, (size_t)n, stdout);
	return 0;
}

/* ---------------------------------------------------------------- main ------------------- */

/*
 * try SYSCALL: make one harmless call with the raw syscall and exit with its errno (0: it
 * worked).  Reported through the exit status alone, so it works when `write` is the call a
 * seccomp profile denies.
 */
static int cmd_try(const char *name)
{
	long r = -1;
	char buf[PATH_MAX];
	sigset_t set;
	struct sigaction old;
	int fd = dup(0);

	errno = 0;
	if (strcmp(name, "close_range") == 0)
		r = syscall(436, 1000000, 1000001, 0);
	else if (strcmp(name, "fcntl") == 0)
		r = syscall(SYS_fcntl, 0, F_GETFD);
	else if (strcmp(name, "getcwd") == 0)
		r = syscall(SYS_getcwd, buf, sizeof(buf));
	else if (strcmp(name, "rt_sigaction") == 0)
		r = syscall(SYS_rt_sigaction, SIGUSR1, NULL, &old, 8);
	else if (strcmp(name, "rt_sigprocmask") == 0)
		r = syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &set, 8);
	else if (strcmp(name, "write") == 0)
		r = syscall(SYS_write, 1, "", 0);
	else if (strcmp(name, "openat") == 0)
		r = syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	else if (strcmp(name, "close") == 0)
		r = syscall(SYS_close, fd);
	else
		return 2;
	_exit(r < 0 ? (errno ? errno : 255) : 0);
}

static int dispatch(int argc, char **argv)
{
	const char *cmd = argv[1];

	if (strcmp(cmd, "report") == 0)
		return cmd_report();
	if (strcmp(cmd, "stat") == 0)
		return per_path(argc, argv, stat_one);
	if (strcmp(cmd, "access") == 0)
		return per_path(argc, argv, access_one);
	if (strcmp(cmd, "read") == 0)
		return per_path(argc, argv, j_file);
	if (strcmp(cmd, "sysctl") == 0)
		return per_path(argc, argv, sysctl_one);
	if (argc < 3)
		return usage();
	if (strcmp(cmd, "exit") == 0)
		exit(atoi(argv[2]));
	if (strcmp(cmd, "try") == 0)
		return cmd_try(argv[2]);
	if (strcmp(cmd, "sleep") == 0)
		return cmd_sleep(argv[2]);
	if (strcmp(cmd, "kill-self") == 0)
		return cmd_kill_self(argv[2]);
	if (strcmp(cmd, "trap") == 0)
		return cmd_trap(argv[2]);
	if (strcmp(cmd, "cat") == 0)
		return cmd_cat(argv[2]);
	if (strcmp(cmd, "write") == 0 && argc >= 4)
		return cmd_write(argv[2], argv[3]);
	return usage();
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2)
		return usage();
	rc = dispatch(argc, argv);
	if (rc == 2)
		return rc;
	/* Every JSON answer ends with a newline, so line-based readers see a complete document. */
	if (j_any)
		putchar('\n');
	if (fflush(stdout) != 0 || ferror(stdout))
		return 1;
	return rc;
}
