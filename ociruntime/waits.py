"""How long a parent waits for its children: one deadline for every wait (a hung child must
not hang the engine that called us).  Its own module because `start` needs it and must stay
cheap to import."""

from __future__ import annotations

import os

# Generous by default; OCIRUNTIME_WAIT_TIMEOUT (seconds) overrides it, for slow machines and for
# the tests that check what happens on expiry.
DEFAULT_WAIT = 120.0


def wait_timeout() -> float:
    try:
        value = float(os.environ.get("OCIRUNTIME_WAIT_TIMEOUT", DEFAULT_WAIT))
    except ValueError:
        return DEFAULT_WAIT
    # Clamped: socket timeouts overflow on huge values (and inf/nan are no deadline at all).
    return min(value, 86400.0) if value > 0 else DEFAULT_WAIT
