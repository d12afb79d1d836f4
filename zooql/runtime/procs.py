"""Worker processes of this machine (ADD MODELS' inspection pool, PROBE's process pool):
the multiprocessing context they start from, the watchdog that ends a worker when the
statement's process is gone, and ending a pool at once. Imports no other ZooQL module."""
from __future__ import annotations

import multiprocessing
import os


def owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed owner not yet reaped by its parent is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def watch_owner(owner: int, every: float = 0.5) -> None:
    """End this worker when the statement's process is gone. A pool worker blocks on its
    call queue, whose write end it holds itself, so a SIGKILLed owner would otherwise leave
    the workers (and, through them, the forkserver) alive for good."""
    import threading
    import time

    def watch() -> None:
        while owner_alive(owner):
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="zooql-owner-watch", daemon=True).start()


#: what the forkserver imports once, so that each worker it forks starts without importing torch
PRELOAD = ["zooql.runtime.models"]


def context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)   # no effect once this process's forkserver runs
        return ctx
    return multiprocessing.get_context("spawn")


def end_pool(pool) -> None:
    """Shut a ``ProcessPoolExecutor`` down now: queued jobs cancelled, running workers
    terminated (an interrupt, a failed statement, a dead worker)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
