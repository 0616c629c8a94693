"""Sample the gateway with py-spy during a step (``--profile DIR``) and summarize where its time went.

py-spy writes collapsed stacks (``frame;frame;... count``), readable by flamegraph.pl or speedscope; the summary
prints the functions with the most samples, by self time and including callees, so a run's log shows the hot spots.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from bench.servers import VENV_BIN

LINE_NUMBER = re.compile(r":\d+\)$")
ROOT_FRAMES = re.compile(
    r"<module>|run_forever|_run_once|entrypoint|Thread\.|_bootstrap|_worker|Server\.run|CommandLineInterface|"
    r"Reactor\.run|Handle\._run|_WorkItem\.run|thread_handler|callWithContext|callWithLogger"
)
"""Frames on nearly every stack (event loop, thread start-up): not informative as "including callees"."""


async def start(pid: int, duration_s: float, output: Path) -> asyncio.subprocess.Process:
    """Start ``py-spy record`` on ``pid`` writing collapsed stacks to ``output``.

    ``--gil`` keeps only samples of the thread holding the GIL: where the process' Python CPU time goes, without
    threads that merely wait (daphne's executor threads, blocked on SQLite or the GIL).
    """
    argv = [
        str(VENV_BIN / "py-spy"),
        "record",
        "--nonblocking",
        "--format",
        "raw",
        "-r",
        "200",
        "-d",
        str(max(1, round(duration_s))),
        "-o",
        str(output),
        "--pid",
        str(pid),
    ]
    return await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True
    )


async def finish(process: asyncio.subprocess.Process, timeout_s: float = 15.0) -> None:
    try:
        await asyncio.wait_for(process.wait(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()


def summarize(path: Path, top: int = 12) -> str:
    """The ``top`` functions by self and by inclusive share of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return f"(no profile at {path})"
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return f"(empty profile at {path})"
    parts = [f"profile {path.name}: {total} samples", "  self:"]
    parts += [f"    {n / total:6.1%}  {frame[:150]}" for frame, n in own.most_common(top)]
    parts.append("  including callees:")
    informative = [(frame, n) for frame, n in inclusive.most_common() if not ROOT_FRAMES.search(frame)]
    parts += [f"    {n / total:6.1%}  {frame[:150]}" for frame, n in informative[:top]]
    return "\n".join(parts)
