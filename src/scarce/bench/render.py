"""``scarce bench render``: frames per second with all outputs, next to plain pyrender rendering the same scenes.

Both sides render the same samples: scene ``i`` of repeat ``r`` is ``sample_scene(config, seed 0, r * frames + i)``
(the same objects, poses, materials, lights, camera and size), posed in the same :class:`RenderScene` (every mesh
uploaded once, per sample only poses, materials, lights and camera change, as pyrender's documentation advises),
and turned into the same outputs by the same post-processing (colour composite, semantic and instance masks, depth,
boxes, poses, K; no file encoding). Only the drawing differs:

- **plain pyrender** (the anchor): pyrender's own ``OffscreenRenderer``, as a pyrender user produces these outputs,
  ``render(scene, RenderFlags.RGBA)`` for colour + depth, then ``render(scene, RenderFlags.SEG, node_map)`` for
  the ids. That is pyrender's PBR shader (per fragment) and a 4x multisampled framebuffer (pyrender fixes the sample
  count) for both passes: the colour pass multisampled, the SEG pass with multisampling switched off (exact ids, the
  same pixels as scarce's) but still drawn into the 4-sample buffer and resolved; depth read back and linearised in
  both passes, every mesh node (hidden ones too) sorted by distance in each pass, ``glGetUniformLocation`` for every
  uniform of every draw. Without subclassing pyrender's renderer (which is what scarce does) none of this is a
  setting a pyrender user can change.
- **scarce** (:class:`~scarce.render.renderer.FrameRenderer`): a per-vertex Lambert / Blinn-Phong shader, the
  config's MSAA (``msaa: 2`` in the presets; ``--msaa`` measures others) in the colour pass only, the id pass in the
  single-sample framebuffer (exact ids, depth of the same pass, read once), a fixed draw order of the visible nodes,
  memoised uniform locations.

Each side runs in ``--workers`` spawned processes (each its own GL context) that stay up for the whole run. A
repeat renders ``--frames`` scenes on every side, ``--chunk`` frames at a time, the sides taking turns (A B, B A,
...), so load from other jobs falls on both alike; both sides of a repeat render the same scene indices. Reported:
median and range of frames/s (all workers, wall time) and CPU ms per frame (user + system of the workers, all
llvmpipe threads), and the ratio scarce / plain per repeat. ``--passes`` adds a one-process breakdown of a frame's
CPU time by stage. A worker that fails stops the run with exit status 1.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import queue as queue_module
import time

import numpy as np

from scarce._errors import ScarceError
from scarce._progress import progress
from scarce.bench import median_range
from scarce.render._gl import import_pyrender, mark_context_created
from scarce.render.sample_renderer import SampleRenderer
from scarce.render.renderer import RawFrame

__all__ = ["PlainFrameRenderer", "PlainSampleRenderer", "Results", "main", "measure", "pass_times", "render_samples"]

SIDES = ("plain", "scarce")
WARMUP_SEED = 1  # warm-up scenes come from another seed than the measured ones (seed 0)
_WORKER_TIMEOUT_S = 600


class PlainFrameRenderer:
    """pyrender's ``OffscreenRenderer`` used as its documentation shows: a colour + depth pass and a SEG pass.

    The interface of :class:`~scarce.render.renderer.FrameRenderer` (``render``, ``render_colour``,
    ``render_ids``, ``close``), so :class:`PlainSampleRenderer` differs from scarce's sample renderer in this alone.
    pyrender reads and linearises the depth in both passes; the frame keeps the SEG pass's, whose surfaces are the
    ids' (every visible node is in the node map).
    """

    def __init__(self, height: int, width: int) -> None:
        pyrender = import_pyrender()
        from pyrender.constants import RenderFlags

        self._flags = RenderFlags
        self._osr = pyrender.OffscreenRenderer(width, height)
        mark_context_created()

    def render(self, scene, seg_node_map: dict) -> RawFrame:
        rgba = self.render_colour(scene)
        ids, depth = self.render_ids(scene, seg_node_map)
        return RawFrame(rgba=rgba, ids=ids, depth=depth)

    def render_colour(self, scene) -> np.ndarray:
        rgba, _ = self._osr.render(scene, self._flags.RGBA)
        return rgba

    def render_ids(self, scene, seg_node_map: dict) -> tuple[np.ndarray, np.ndarray]:
        return self._osr.render(scene, self._flags.SEG, seg_node_map)  # depth in metres, 0 where nothing is drawn

    def close(self) -> None:
        self._osr.delete()


class PlainSampleRenderer(SampleRenderer):
    """scarce's :class:`~scarce.render.sample_renderer.SampleRenderer` (same scenes, same outputs) drawing with
    :class:`PlainFrameRenderer`."""

    def _frame_renderer(self) -> PlainFrameRenderer:
        return PlainFrameRenderer(self.height, self.width)


def _sample_renderer(side: str, config, size) -> SampleRenderer:
    return (PlainSampleRenderer if side == "plain" else SampleRenderer)(config, size)


def _cpu() -> float:
    return time.process_time()  # user + system of all threads of this process (llvmpipe rasterises in threads)


def _gl_renderer() -> str:
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode()
    except Exception:  # the name is only for the report
        return "?"


def _worker(side, config, size, rank, workers, commands, results, barrier) -> None:
    """One rendering process: warm up, then render the frames each command names, in step with its group."""
    try:
        renderer = _sample_renderer(side, config, size)
        for i in range(5):  # shaders compile, buffers upload
            renderer.render(WARMUP_SEED, rank + i * workers)
        results.put(("ready", rank, _gl_renderer()))
        while (command := commands.get()) is not None:
            frames, first = command
            barrier.wait(timeout=_WORKER_TIMEOUT_S)
            cpu0, start = _cpu(), time.perf_counter()
            for i in range(frames):
                renderer.render(0, first + rank + i * workers)
            results.put(("done", rank, (start, time.perf_counter(), frames, _cpu() - cpu0)))
    except BaseException as err:  # reported to the parent, which stops the run with this line
        first_line = (str(err).splitlines() or [""])[0]
        results.put(("error", rank, f"{type(err).__name__}: {first_line[:300]}"))


class _Group:
    """``workers`` processes rendering one side, started once and driven command by command."""

    def __init__(self, ctx, side: str, config, size, workers: int, name: str) -> None:
        self.side, self.name, self.workers = side, name, workers
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(workers)]
        barrier = ctx.Barrier(workers)
        self.procs = [ctx.Process(target=_worker, daemon=True,
                                  args=(side, config, size, rank, workers, self.commands[rank], self.results, barrier))
                      for rank in range(workers)]
        for p in self.procs:
            p.start()
        self.gl = [self._receive("ready") for _ in self.procs][0]

    def _receive(self, kind: str):
        deadline = time.monotonic() + _WORKER_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                got, rank, payload = self.results.get(timeout=1.0)
            except queue_module.Empty:
                dead = [p.exitcode for p in self.procs if p.exitcode is not None]
                if dead:
                    raise ScarceError(f"bench render: a {self.name} worker exited (status {dead[0]}) without a result")
                continue
            if got == "error":
                raise ScarceError(f"bench render: {self.name} worker {rank} failed: {payload}")
            assert got == kind, (got, kind)
            return payload
        raise ScarceError(f"bench render: no answer from the {self.name} workers in {_WORKER_TIMEOUT_S} s")

    def measure(self, frames: int, first: int) -> tuple[int, float, float]:
        """Render scenes ``first .. first + frames - 1`` over the workers: (frames, wall seconds, CPU seconds)."""
        per = frames // self.workers
        for q in self.commands:
            q.put((per, first))
        spans = [self._receive("done") for _ in self.procs]
        return (sum(s[2] for s in spans), max(s[1] for s in spans) - min(s[0] for s in spans),
                sum(s[3] for s in spans))

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()


def render_samples(side: str, config, size, indices) -> list[dict[str, np.ndarray]]:
    """Samples ``indices`` (seed 0) drawn by one side, as the benchmark draws them (for checks)."""
    renderer = _sample_renderer(side, config, size)
    try:
        return [renderer.render(0, i) for i in indices]
    finally:
        renderer.close()


def _in_fresh_process(function, *args):
    """``function(*args)`` in a spawned process: one side's GL state never meets the other's (scarce memoises
    pyrender's uniform lookups per context, which a plain renderer in the same process would not expect)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def pass_times(side: str, config, size, frames: int) -> dict[str, float]:
    """CPU ms per frame of each stage, in this process: sampling + posing, colour pass, id pass, outputs."""
    renderer = _sample_renderer(side, config, size)
    for i in range(5):
        renderer.render(WARMUP_SEED, i)
    stages = dict.fromkeys(("sample + pose scene", "colour pass", "id pass", "outputs (masks, boxes, composite)"), 0.0)
    names = list(stages)
    for i in range(frames):
        t0 = _cpu()
        params, seg = renderer.set_scene(0, i)
        t1 = _cpu()
        rgba = renderer.frame.render_colour(renderer.scene.scene)
        t2 = _cpu()
        ids, depth = renderer.frame.render_ids(renderer.scene.scene, seg)
        t3 = _cpu()
        renderer.outputs(RawFrame(rgba=rgba, ids=ids, depth=depth), params)
        t4 = _cpu()
        for name, dt in zip(names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[name] += dt
    renderer.close()
    return {name: 1000 * total / frames for name, total in stages.items()}


class Results(dict):
    """``{row name: [{"fps", "cpu_ms"} per repeat]}``, plus ``gl``, the GL renderer's name."""

    gl: str = "?"


def measure(rows: dict[str, tuple[str, object]], size: tuple[int, int], workers: int, frames: int, repeats: int,
            chunk: int = 50) -> Results:
    """Frames/s and CPU ms per frame of each row, ``{name: (side, config)}`` with side ``plain`` or ``scarce``.

    Every row runs in ``workers`` spawned processes kept up for the whole measurement; a repeat renders scenes
    ``r * frames .. (r + 1) * frames - 1`` (seed 0) on every row, ``chunk`` frames at a time, the rows taking turns
    (A B, B A, ...). ``frames`` and ``chunk`` must be multiples of ``workers``.
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    groups: dict[str, _Group] = {}
    results = Results({name: [] for name in rows})
    try:
        for name, (side, cfg) in rows.items():
            groups[name] = _Group(ctx, side, cfg, size, workers, name)
        results.gl = next(iter(groups.values())).gl
        for r in progress(range(repeats), desc="bench render", unit="repeats"):
            # Chunk by chunk, in the order A B, B A, A B, ...: load that comes and goes falls on every row alike.
            totals = {name: np.zeros(3) for name in rows}
            for c, first in enumerate(range(0, frames, chunk)):
                n = min(chunk, frames - first)
                for name in (list(rows) if (r + c) % 2 == 0 else list(rows)[::-1]):
                    totals[name] += groups[name].measure(n, r * frames + first)
            for name, (done, seconds, cpu) in totals.items():
                results[name].append({"fps": done / seconds, "cpu_ms": 1000 * cpu / done})
    finally:
        for group in groups.values():
            group.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scarce bench render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", nargs=2, type=int, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes per side")
    parser.add_argument("--frames", type=int, default=400, help="frames per measurement, split over the workers "
                        "(default 400)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per side, alternating which goes "
                        "first; median and range are reported (default 5)")
    parser.add_argument("--chunk", type=int, default=50, help="frames per side before the other side's turn "
                        "(default 50)")
    parser.add_argument("--preset", default="synthetic-flat", help="preset (synthetic-flat, photo-clutter, "
                        "randomized) or a configs/render/*.yaml path")
    parser.add_argument("--msaa", type=int, nargs="+", default=None, metavar="N", help="scarce's colour-pass MSAA "
                        "samples, one scarce row each (default: the config's); e.g. --msaa 0 2 4 for the A/B")
    parser.add_argument("--no-anchor", action="store_true", help="skip plain pyrender")
    parser.add_argument("--passes", type=int, default=0, metavar="N", help="also the CPU time of each stage of a "
                        "frame, over N frames in this process, for each side")
    parser.add_argument("--lp-threads", type=int, default=None, help="LP_NUM_THREADS for every worker (Mesa "
                        "llvmpipe rasterizer threads per context; default: Mesa's, one per CPU)")
    args = parser.parse_args(argv)
    for flag in ("workers", "frames", "repeats", "chunk"):
        if getattr(args, flag) < 1:
            raise ScarceError(f"--{flag} {getattr(args, flag)}: expected a positive number")
    if args.frames < args.workers:
        raise ScarceError(f"--frames {args.frames}: expected at least one frame per worker ({args.workers})")
    from scarce.render._gl import select_backend
    from scarce.render.sample_renderer import resolve_config

    select_backend()  # probe once here (in a subprocess); the workers inherit the choice
    if args.lp_threads is not None:
        os.environ["LP_NUM_THREADS"] = str(args.lp_threads)  # spawned workers inherit it
    size = tuple(args.size)
    config = resolve_config(args.preset)
    if config.texture_prob > 0 and not args.no_anchor:
        raise ScarceError(
            f"--preset {args.preset}: plain pyrender cannot draw this config's textures (pyrender's shader samples "
            "textures at UV coordinates, which the procedural meshes do not have; scarce maps them triplanar in its "
            "own shader). Measure it with --no-anchor, or compare on a config without textures (synthetic-flat)")
    frames = args.frames - args.frames % args.workers
    chunk = max(args.workers, args.chunk - args.chunk % args.workers)
    rows = {} if args.no_anchor else {"plain pyrender (PBR, MSAA 4; colour+depth pass, SEG pass)": ("plain", config)}
    for msaa in args.msaa or [config.msaa]:
        rows[f"scarce {args.preset}, msaa {msaa} (all outputs)"] = ("scarce", config.replace(msaa=msaa))

    load_before = os.getloadavg()
    print(f"# scarce bench render  {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
          f"{os.cpu_count()} CPUs  PYOPENGL_PLATFORM={os.environ.get('PYOPENGL_PLATFORM')}  "
          f"LP_NUM_THREADS={os.environ.get('LP_NUM_THREADS', 'default')}")
    print(f"# {size[0]}x{size[1]}, {args.workers} worker(s) per side, {args.repeats} repeats x {frames} frames, the "
          f"same scenes on every side (seed 0, scene r*{frames}+i in repeat r), sides alternating every {chunk} "
          f"frames; load average "
          f"before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)

    results = measure(rows, size, args.workers, frames, args.repeats, chunk)
    load_after = os.getloadavg()

    print(f"# GL renderer: {results.gl}")
    print(f"{'what':<58} {'frames/s median (range)':>24} {'CPU ms/frame':>18}")
    for name in rows:
        fps = [m["fps"] for m in results[name]]
        cpu = [m["cpu_ms"] for m in results[name]]
        print(f"{name:<58} {median_range(fps):>24} {median_range(cpu):>18}")
    plain = next((n for n in rows if rows[n][0] == "plain"), None)
    if plain is not None:
        for name in rows:
            if name == plain:
                continue
            ratios = [s["fps"] / p["fps"] for s, p in zip(results[name], results[plain])]
            cpu = [p["cpu_ms"] / s["cpu_ms"] for s, p in zip(results[name], results[plain])]
            print(f"# {name}: {median_range(ratios, '.2f')}x plain pyrender's frames/s per repeat "
                  f"({', '.join(f'{x:.2f}' for x in ratios)}); CPU per frame {median_range(cpu, '.2f')}x less")
    if args.passes:
        print(f"\n# CPU ms per frame by stage, one process, {args.passes} frames each (best read as ratios)")
        sides = [("plain", config)] if not args.no_anchor else []
        sides += [("scarce", cfg) for side, cfg in rows.values() if side == "scarce"]
        for side, cfg in sides:
            times = _in_fresh_process(pass_times, side, cfg, size, args.passes)
            label = "plain pyrender" if side == "plain" else f"scarce, msaa {cfg.msaa}"
            print(f"{label:<24} " + "  ".join(f"{k} {v:.2f}" for k, v in times.items())
                  + f"  total {sum(times.values()):.2f}")
    print(f"# load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return 0
