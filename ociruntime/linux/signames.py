"""Signal names and numbers (x86_64), and parsing of user-given signals.

Kept free of ctypes so that ``kill`` can parse its argument without loading libc bindings.
"""

from __future__ import annotations

NSIG = 65  # glibc's _NSIG on x86_64: signals 1..64.
SIGKILL = 9
SIGSTOP = 19
SIGPIPE = 13
SIGRTMIN = 34  # as glibc reports it to programs (the kernel's 32 plus the reserved two)
SIGRTMAX = 64

# x86_64 Linux numbers, including the historical aliases runc/Go and kill(1) accept.
SIGNALS: dict[str, int] = {
    "SIGHUP": 1,
    "SIGINT": 2,
    "SIGQUIT": 3,
    "SIGILL": 4,
    "SIGTRAP": 5,
    "SIGABRT": 6,
    "SIGIOT": 6,
    "SIGBUS": 7,
    "SIGFPE": 8,
    "SIGKILL": 9,
    "SIGUSR1": 10,
    "SIGSEGV": 11,
    "SIGUSR2": 12,
    "SIGPIPE": 13,
    "SIGALRM": 14,
    "SIGTERM": 15,
    "SIGSTKFLT": 16,
    "SIGCHLD": 17,
    "SIGCLD": 17,
    "SIGCONT": 18,
    "SIGSTOP": 19,
    "SIGTSTP": 20,
    "SIGTTIN": 21,
    "SIGTTOU": 22,
    "SIGURG": 23,
    "SIGXCPU": 24,
    "SIGXFSZ": 25,
    "SIGVTALRM": 26,
    "SIGPROF": 27,
    "SIGWINCH": 28,
    "SIGIO": 29,
    "SIGPOLL": 29,
    "SIGPWR": 30,
    "SIGSYS": 31,
    "SIGRTMIN": SIGRTMIN,
    "SIGRTMAX": SIGRTMAX,
}


def _unknown(s: str) -> ValueError:
    return ValueError(f'unknown signal "{s}"')


def _parse_rt(name: str, raw: str) -> int:
    """Parse SIGRTMIN+n / SIGRTMAX-n (``name`` already upper-cased with the SIG prefix)."""
    for base, sign, value in (("SIGRTMIN", "+", SIGRTMIN), ("SIGRTMAX", "-", SIGRTMAX)):
        if name.startswith(base + sign):
            offset = name[len(base) + 1 :]
            if not (offset.isascii() and offset.isdigit()):
                raise _unknown(raw)
            sig = value + int(offset) if sign == "+" else value - int(offset)
            if SIGRTMIN <= sig <= SIGRTMAX:
                return sig
    raise _unknown(raw)


def parse_signal(s: str) -> int:
    """Parse a signal given as a number, a name with or without SIG, any case, or SIGRTMIN+n/SIGRTMAX-n."""
    if s.isascii() and s.isdigit():
        sig = int(s)
        if sig >= NSIG:
            raise _unknown(s)
        return sig
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    if name.startswith(("SIGRTMIN+", "SIGRTMAX-")):
        return _parse_rt(name, s)
    raise _unknown(s)


def signal_name(sig: int) -> str:
    """Canonical name of a signal number (``SIGRTMIN+n`` for real-time ones)."""
    for name, num in SIGNALS.items():
        if num == sig and name not in ("SIGIOT", "SIGCLD", "SIGPOLL"):
            return name
    if SIGRTMIN < sig < SIGRTMAX:
        return f"SIGRTMIN+{sig - SIGRTMIN}"
    return str(sig)


# How Go prints a signal (syscall.Signal.String on linux, its strsignal-like table): runc's
# messages say "signal: killed", so ours must use the same words.  Index = signal number.
_GO_DESCRIPTIONS: tuple[str, ...] = (
    "",
    "hangup",
    "interrupt",
    "quit",
    "illegal instruction",
    "trace/breakpoint trap",
    "aborted",
    "bus error",
    "floating point exception",
    "killed",
    "user defined signal 1",
    "segmentation fault",
    "user defined signal 2",
    "broken pipe",
    "alarm clock",
    "terminated",
    "stack fault",
    "child exited",
    "continued",
    "stopped (signal)",
    "stopped",
    "stopped (tty input)",
    "stopped (tty output)",
    "urgent I/O condition",
    "CPU time limit exceeded",
    "file size limit exceeded",
    "virtual timer expired",
    "profiling timer expired",
    "window changed",
    "I/O possible",
    "power failure",
    "bad system call",
)


def go_signal_text(sig: int) -> str:
    """A signal as Go's ``syscall.Signal.String()`` prints it ("killed"; "signal 34" beyond the table)."""
    if 0 < sig < len(_GO_DESCRIPTIONS):
        return _GO_DESCRIPTIONS[sig]
    return f"signal {sig}"
