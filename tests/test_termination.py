"""SIGTERM stops a run as Ctrl-C does whichever process it reaches first: a DataLoader worker killed by it
is the stop, raised once, not a failed worker; other worker deaths stay failures."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from i3d_lightning.runtime import termination
from tests.conftest import REPO_ROOT
from tests.test_datamodule import _custom_dataset, _datamodule

# Each scenario runs in the same fresh process, one after the other: a loader of two workers over slow
# items, signals sent from another process (as a scheduler's are: a worker's own parent may stop it
# quietly), and what reached the main loop printed as "<scenario>: <outcome>".
_SCENARIOS = textwrap.dedent("""
    import contextlib, os, signal, subprocess, time
    from torch.utils.data import DataLoader
    from i3d_lightning.errors import Terminated
    from i3d_lightning.runtime.termination import guard_worker_deaths, sigterm_as_interrupt

    class Slow:
        def __len__(self):
            return 100_000

        def __getitem__(self, index):
            time.sleep(0.01)
            return index

    def kill(how, *pids):
        subprocess.run(["kill", how, *map(str, pids)], check=True)

    def first_handler(then, workers):
        # Lightning's SIGTERM handler runs before the one it found (ours) and logs: a worker that dies
        # meanwhile has its SIGCHLD handled first. Here it certainly dies meanwhile.
        def handler(signum, frame):
            kill("-TERM", *workers)
            time.sleep(2)
            then(signum, frame)
        return handler

    def outcome(scenario, inside):
        guard_worker_deaths()
        # Items as they are (no tensors): a worker killed while it shares a tensor would fail otherwise.
        loader = iter(DataLoader(Slow(), num_workers=2, batch_size=1, collate_fn=list))
        next(loader)
        workers = [worker.pid for worker in loader._workers]
        context = sigterm_as_interrupt() if inside else contextlib.nullcontext()
        with context:
            try:
                if scenario == "lightning first":
                    signal.signal(signal.SIGTERM, first_handler(signal.getsignal(signal.SIGTERM), workers))
                    kill("-TERM", os.getpid())
                elif scenario == "ours first":
                    kill("-TERM", os.getpid(), *workers)
                else:
                    kill("-KILL" if scenario == "worker killed" else "-TERM", workers[0])
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    next(loader)
                return "nothing"
            except Terminated:
                try:  # a second SIGTERM during the graceful shutdown must not break it
                    kill("-TERM", os.getpid())
                    time.sleep(1)
                except Terminated:
                    return "Terminated twice"
                return "Terminated"
            except RuntimeError as error:
                return f"RuntimeError: {error}"
            finally:
                del loader

    for scenario, inside in (("lightning first", True), ("ours first", True), ("worker killed", True),
                             ("worker terminated outside", False)):
        print(f"{scenario}: {outcome(scenario, inside)}", flush=True)
""")


def test_a_worker_dying_of_sigterm_is_the_stop_whichever_handler_runs_first(tmp_path):
    script = tmp_path / "scenarios.py"
    script.write_text(_SCENARIOS)
    done = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    outcomes = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert outcomes.get("lightning first") == "Terminated", done.stdout + done.stderr[-3000:]
    assert outcomes.get("ours first") == "Terminated", done.stdout + done.stderr[-3000:]
    # Not every worker death is the stop: one killed otherwise, or by SIGTERM outside a command's run,
    # is still torch's failure (which the commands report naming the video).
    said = done.stdout + done.stderr[-3000:]
    assert outcomes.get("worker killed", "").startswith("RuntimeError: DataLoader worker (pid"), said
    assert outcomes.get("worker terminated outside", "").startswith("RuntimeError: DataLoader worker (pid"), said


def test_the_datamodule_guards_the_loaders_that_have_workers(tmp_path):
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        datamodule = _datamodule(_custom_dataset(tmp_path / "videos"), num_workers=0)
        datamodule.setup("fit")
        datamodule.train_dataloader()
        assert not isinstance(signal.getsignal(signal.SIGCHLD), termination._WorkerDeathGuard)
        datamodule.num_workers = 2
        datamodule.train_dataloader()
        assert isinstance(signal.getsignal(signal.SIGCHLD), termination._WorkerDeathGuard)
    finally:
        signal.signal(signal.SIGCHLD, previous)
