/*
 * rss_spawn: run a command as the child of a tiny process and report the child's peak RSS.
 *
 * Usage: rss_spawn FD PROG [ARG...]
 * Runs PROG (looked up in PATH), waits for it with wait4(2) and writes one line
 * "<raw wait status> <ru_maxrss in KiB>" to the already open file descriptor FD.  Exits 0 once
 * the line is written, 1 when fork/wait fails, 2 on bad usage; PROG's own status is in the line.
 *
 * Why a helper: Linux records the high-water RSS of the memory map a process leaves at execve(2)
 * in the process's ru_maxrss (fs/exec.c, setmax_mm_hiwater_rss).  A child forked or vforked by
 * the Python benchmark therefore reports at least the benchmark interpreter's own peak RSS,
 * whatever it runs.  Forked from this static, heap-less program instead, the floor is the
 * helper's few hundred KiB, far below any runtime command measured with it.
 *
 * Build (bench/rss.py does it into its temporary directory): gcc -static -O2 -o rss_spawn rss_spawn.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int fd, status;
	pid_t pid;
	struct rusage ru;

	if (argc < 3)
		return 2;
	fd = atoi(argv[1]);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		close(fd);
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			return 1;
	if (dprintf(fd, "%d %ld\n", status, ru.ru_maxrss) < 0)
		return 1;
	return 0;
}
