"""Process-group teardown shared by the distillation trainers and their entry points.

Why: gloo runs each collective on a worker thread, and that thread drops its reference to the finished work after
the Python caller has returned. When it holds the last reference, the work's tensors are released there, which
takes the GIL. If the interpreter is already finalising (the collective was the script's last Python step, e.g. the
loss gather at the end of `Trainer.train`), taking the GIL ends the thread inside a destructor and the process
aborts ("terminate called without an active exception", SIGABRT) after a successful run. Releasing the GIL for a
moment before finalisation lets those threads finish. The helpers are no-ops outside a distributed world.
"""

from __future__ import annotations

import atexit
import time

_AT_EXIT_REGISTERED = False
# Long enough for a runnable worker thread to be scheduled on a loaded machine; paid once per process exit.
_WORKER_DRAIN_SECONDS = 0.1


def _destroy_if_initialized() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        time.sleep(_WORKER_DRAIN_SECONDS)  # GIL released: finished collectives are freed on their worker threads
        dist.destroy_process_group()


def shutdown_distributed() -> None:
    """Wait for every rank, then tear the default process group down (call once at the end of a script)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    _destroy_if_initialized()


def destroy_process_group_at_exit() -> None:
    """Register (once per process) an exit hook that destroys a still-initialised default process group.

    The hook runs before interpreter teardown, so scripts that build a trainer and simply return (as most
    `accelerate launch` scripts do) exit cleanly. It does not wait for the other ranks: at exit a rank that
    still needs this one fails either way.
    """
    global _AT_EXIT_REGISTERED
    if not _AT_EXIT_REGISTERED:
        atexit.register(_destroy_if_initialized)
        _AT_EXIT_REGISTERED = True
