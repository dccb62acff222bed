"""Real offscreen rendering (EGL, Mesa llvmpipe on CPU): exact masks, depth, boxes, K, determinism, PLY, fork."""

import multiprocessing as mp
import os

import numpy as np
import pytest
import torch

from scarce._errors import ScarceError
from scarce.render import CLASS_NAMES, RenderConfig, RenderedDataset, SampleRenderer, get_preset
from scarce.render.config import Intrinsics, ObjectSpec, load_config
from scarce.render.sampling import fibonacci_sphere, look_at
from scarce.shards.schemas import decode_rendered, encode_rendered, rendered_sample

SIZE = (64, 80)  # non-square on purpose: catches swapped axes


@pytest.fixture(scope="module")
def flat():
    r = SampleRenderer("synthetic-flat", SIZE)
    yield r
    r.close()


@pytest.fixture(scope="module")
def clutter():
    r = SampleRenderer("photo-clutter", SIZE)
    yield r
    r.close()


@pytest.fixture(scope="module")
def randomized():
    r = SampleRenderer("randomized", SIZE)
    yield r
    r.close()


def _samples(renderer, n=6):
    return [renderer.render(7, i) for i in range(n)]


def test_mask_ids_are_exactly_the_placed_ids(flat, clutter, randomized):
    seen = set()
    for renderer in (flat, clutter, randomized):
        for s in _samples(renderer):
            n = len(s["classes"])
            inst, sem = s["instance"], s["semantic"]
            assert inst.dtype == np.uint16 and sem.dtype == np.uint8
            ids = set(np.unique(inst).tolist()) - {0}
            assert ids <= set(range(1, n + 1)) and ids, "instance ids must be 1..N, no blended values"
            # each instance's pixels carry exactly its class id, and background is 0 in both masks
            for k in ids:
                assert set(np.unique(sem[inst == k]).tolist()) == {int(s["classes"][k - 1])}
            assert np.all(sem[inst == 0] == 0)
            seen |= set(s["classes"].tolist())
    assert seen <= set(range(1, len(CLASS_NAMES)))


def test_depth_positive_exactly_on_objects(flat, clutter, randomized):
    for renderer in (flat, clutter, randomized):
        for s in _samples(renderer):
            d = s["depth"]
            assert d.dtype == np.float32
            np.testing.assert_array_equal(d > 0, s["instance"] > 0)
            near, far = 0.05, 5.0
            assert d[d > 0].min() > near and d.max() < far


def test_boxes_match_masks(clutter):
    for s in _samples(clutter):
        for k, box in enumerate(s["boxes"], start=1):
            ys, xs = np.nonzero(s["instance"] == k)
            if ys.size == 0:
                np.testing.assert_array_equal(box, 0)
            else:
                np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.parametrize("preset", ["clutter", "randomized"])
def test_rerender_gives_identical_bytes(preset, request):
    renderer = request.getfixturevalue(preset)
    a = renderer.render(3, 5)
    renderer.render(3, 0)  # other samples in between change the scene state
    b = renderer.render(3, 5)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    c = renderer.render(4, 5)  # another seed is another sample
    assert a["rgb"].tobytes() != c["rgb"].tobytes()


def test_presets_share_geometry_but_not_appearance(flat, clutter):
    a, b = flat.render(0, 1), clutter.render(0, 1)
    np.testing.assert_array_equal(a["semantic"], b["semantic"])
    np.testing.assert_array_equal(a["poses"], b["poses"])
    assert np.abs(a["rgb"].astype(int) - b["rgb"].astype(int)).mean() > 10


def _single_object_config(spec, **kw):
    base = {"objects": (spec,), "num_objects": (1, 1), "spread": 0.0, "distance": (0.5, 0.5),
            "background": {"solid": 1.0}}
    base.update(kw)
    return RenderConfig(**base)


def test_projection_with_K_lands_on_the_rendered_mesh():
    import trimesh

    from scarce.render.scene import procedural_mesh

    cfg = _single_object_config(ObjectSpec("sphere", 2, "sphere", size=(0.1, 0.1)), spread=0.08)
    r = SampleRenderer(cfg, SIZE)
    try:
        for i in range(4):
            s = r.render(1, i)
            K, pose = s["K"].astype(np.float64), s["poses"][0].astype(np.float64)
            # the pose maps mesh coordinates (scaled to metres) into the OpenCV camera frame
            verts = procedural_mesh("sphere").vertices * (0.1 / (2 * 0.5))
            cam = verts @ pose[:3, :3].T + pose[:3, 3]
            uv = cam @ K.T
            uv = uv[:, :2] / uv[:, 2:]
            ys, xs = np.nonzero(s["instance"] == 1)
            # the centre projects onto the blob's centroid (pixel centres are at +0.5)
            c = K @ pose[:3, 3]
            assert abs(c[0] / c[2] - (xs.mean() + 0.5)) < 0.75 and abs(c[1] / c[2] - (ys.mean() + 0.5)) < 0.75
            # and the projected silhouette matches the rendered box within a pixel
            x0, y0, x1, y1 = s["boxes"][0]
            assert abs(uv[:, 0].min() - x0) < 1.0 and abs(uv[:, 0].max() - x1) < 1.0
            assert abs(uv[:, 1].min() - y0) < 1.0 and abs(uv[:, 1].max() - y1) < 1.0
            # depth at the blob centre = distance of the sphere's front surface along the ray
            assert abs(s["depth"][int(c[1] / c[2]), int(c[0] / c[2])] - (pose[2, 3] - 0.05)) < 0.005
    finally:
        r.close()
    del trimesh


def test_ply_with_vertex_colors_round_trips(tmp_path):
    import trimesh

    from scarce.render.scene import load_mesh

    mesh = trimesh.creation.box(extents=(60.0, 60.0, 60.0))  # millimetres, like LineMOD
    color = np.array([200, 30, 90, 255], np.uint8)
    mesh.visual.vertex_colors = np.tile(color, (len(mesh.vertices), 1))
    path = tmp_path / "obj_01.ply"
    mesh.export(path)
    loaded = load_mesh(path, scale=0.001)
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], np.tile(color[:3], (len(mesh.vertices), 1)))
    assert np.allclose(loaded.extents, 0.06)

    spec = ObjectSpec("duck", 1, str(path), scale=0.001, appearance="mesh")
    # ambient 1, no directional light: pixels show the vertex colour itself
    cfg = _single_object_config(spec, ambient=(1.0, 1.0), directional=(0.0, 0.0), fixed_light=True)
    r = SampleRenderer(cfg, SIZE)
    try:
        s = r.render(0, 0)
    finally:
        r.close()
    inner = s["instance"] == 1
    inner[1:-1, 1:-1] &= inner[:-2, 1:-1] & inner[2:, 1:-1] & inner[1:-1, :-2] & inner[1:-1, 2:]  # drop edges
    px = s["rgb"][inner].astype(int)
    assert px.size and np.abs(px - color[:3]).max() <= 2


def test_records_round_trip_through_shards(tmp_path, clutter):
    from scarce.shards import read_records, write_shards

    samples = [clutter.render(2, i) for i in range(3)]
    manifest = write_shards((encode_rendered(s) for s in samples), tmp_path, prefix="render", num_shards=1)
    assert manifest["num_records"] == 3
    back = [decode_rendered(r) for r in read_records(tmp_path / "render-00000-of-00001.tfrecord")]
    for s, b in zip(samples, back):
        want = rendered_sample(s)
        for key, value in want.items():
            assert torch.equal(value, b[key]), key
    assert back[0]["image"].shape == (3, *SIZE) and back[0]["mask"].dtype == torch.int64


def test_closing_a_renderer_mid_frame_keeps_the_other_rendering():
    """The garbage collector may close a dropped renderer inside another one's frame (it did, in the full suite)."""
    a, b = SampleRenderer("synthetic-flat", (16, 16)), SampleRenderer("synthetic-flat", (16, 16))
    want = a.render(0, 0)
    inner = a.frame._renderer.render

    def render_after_closing_b(*args, **kwargs):
        b.close()
        return inner(*args, **kwargs)

    a.frame._renderer.render = render_after_closing_b
    try:
        got = a.render(0, 0)
    finally:
        a.frame._renderer.render = inner
        a.close()
    for key, value in want.items():
        assert np.array_equal(value, got[key]), key


def test_fibonacci_and_look_at():
    pts = fibonacci_sphere(10)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0, atol=1e-12)
    for p in pts:
        T = look_at(p * 0.7, np.zeros(3))
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(T[:3, 2], -p, atol=1e-9)  # optical axis towards the target


def test_configs_parse_and_bad_keys_name_the_file(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs" / "render"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} >= {"synthetic_flat.yaml", "photo_clutter.yaml", "randomized.yaml",
                                       "linemod_views.yaml"}
    for f in files:
        assert isinstance(load_config(f), RenderConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_objectz: [1, 2]\n")
    with pytest.raises(ScarceError, match="bad.yaml.*num_objectz"):
        load_config(bad)
    with pytest.raises(ScarceError, match="valid presets"):
        RenderedDataset("no-such-preset", 4)
    assert Intrinsics().matrix(480, 640)[0, 0] == pytest.approx(572.4114)
    assert get_preset("synthetic-flat").objects[0].class_id == 1
    for bad, match in (({"texture_set": "photos"}, "texture_set='photos'.*procedural"),
                       ({"distractors": (3, 1)}, r"distractors=\(3, 1\).*lo <= hi"),
                       ({"background": {"patterns": 1.0}}, "background=.*pattern"),
                       ({"point_light_prob": 1.5}, r"point_light_prob=1.5.*\[0, 1\]")):
        with pytest.raises(ScarceError, match=match):
            RenderConfig(**bad)


@pytest.mark.parametrize("name", ["synthetic-flat", "photo-clutter", "randomized"])
def test_preset_yaml_is_the_preset(name):
    """configs/render/<name>.yaml spells out presets.PRESETS[name], the source of truth: keep them equal."""
    from pathlib import Path

    from scarce.render import PRESETS

    path = Path(__file__).resolve().parents[1] / "configs" / "render" / f"{name.replace('-', '_')}.yaml"
    assert load_config(path) == PRESETS[name], f"{path} and render/presets.py disagree; edit both"


def _loader(ds, ctx):
    return torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context=ctx, timeout=120)


def _check_fork_then_parent():
    """Run in a fresh process: fork workers render; then the parent; then fork again must fail, not hang."""
    ds = RenderedDataset("photo-clutter", num_samples=4, seed=11, size=(32, 32))
    batches = list(_loader(ds, "fork"))
    images = torch.cat([b["image"] for b in batches])
    for i in range(4):  # the parent renders the same bytes as the workers
        assert torch.equal(ds[i]["image"], images[i])
    try:
        list(_loader(ds, "fork"))
    except Exception as err:  # DataLoader re-raises the worker's error
        assert "forked from one that had already created an OpenGL context" in str(err)
    else:
        raise AssertionError("a forked worker rendered after the parent created a context")
    assert torch.equal(torch.cat([b["image"] for b in _loader(ds, "spawn")]), images)


def test_dataloader_fork_workers_do_not_hang():
    # In a spawned interpreter: this pytest process may already hold a GL context from other tests.
    proc = mp.get_context("spawn").Process(target=_check_fork_then_parent)
    proc.start()
    proc.join(timeout=240)
    if proc.is_alive():
        proc.kill()
        pytest.fail("rendering DataLoader workers hung")
    assert proc.exitcode == 0


def test_rendered_dataset_sample_contract():
    ds = RenderedDataset("synthetic-flat", num_samples=2, seed=0, size=(16, 24))
    s = ds[1]
    assert s["image"].shape == (3, 16, 24) and s["image"].dtype == torch.float32
    assert 0.0 <= float(s["image"].min()) and float(s["image"].max()) <= 1.0
    assert s["mask"].shape == (16, 24) and s["mask"].dtype == torch.int64
    assert s["depth"].shape == (16, 24) and s["instance"].dtype == torch.int64
    assert s["K"].shape == (3, 3) and s["poses"].shape[1:] == (4, 4)
    with pytest.raises(IndexError):
        ds.render(2)
    assert os.environ.get("PYOPENGL_PLATFORM") in ("egl", "osmesa")


def test_cli_writes_shards_preview_and_same_bytes_with_workers(tmp_path):
    from scarce.cli import main as scarce_main
    from scarce.shards import read_records

    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        argv = ["render", "--preset", "synthetic-flat", "--out", str(out), "--num-samples", "6", "--shards", "2",
                "--size", "32", "40", "--seed", "5", "--workers", str(workers)]
        with pytest.raises(SystemExit) as exc:
            scarce_main(argv)
        assert exc.value.code == 0
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(["data-00000-of-00002.tfrecord", "data-00000-of-00002.tfrecord.index",
                            "data-00001-of-00002.tfrecord", "data-00001-of-00002.tfrecord.index",
                            "data.manifest.json", "preview.png", "render_config.json"])
    for name in ("data-00000-of-00002.tfrecord", "data-00001-of-00002.tfrecord"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    recs = list(read_records(outs[0] / "data-00001-of-00002.tfrecord"))
    assert len(recs) == 3
    s = decode_rendered(recs[0])  # record 1 of the dataset (round-robin)
    ds = RenderedDataset("synthetic-flat", num_samples=6, seed=5, size=(32, 40))
    assert torch.equal(s["image"], ds[1]["image"]) and torch.equal(s["mask"], ds[1]["mask"])


def test_msaa_only_touches_rgb():
    from scarce.render.sampling import sample_scene

    outs, alphas = {}, {}
    for samples in (0, 2, 4):
        r = SampleRenderer(get_preset("photo-clutter").replace(msaa=samples), SIZE)
        try:
            outs[samples] = r.render(9, 2)
            params = sample_scene(r.config, 9, 2, r.scene.radii, len(r.scene.textures), len(r.photos))
            alphas[samples] = r.frame.render(r.scene.scene, r.scene.apply(params)).rgba[..., 3]
        finally:
            r.close()
    for samples in (2, 4):  # masks and depth are the same exact pass whatever the colour pass does
        for key in ("semantic", "instance", "depth", "boxes"):
            np.testing.assert_array_equal(outs[0][key], outs[samples][key])
        assert not np.array_equal(outs[0]["rgb"], outs[samples]["rgb"])
    assert set(np.unique(alphas[0]).tolist()) <= {0, 255}  # no coverage without MSAA
    assert len(set(np.unique(alphas[4]).tolist()) - {0, 255}) >= 2  # partial coverage on the edges
    with pytest.raises(ScarceError, match="msaa"):
        get_preset("synthetic-flat").replace(msaa=3)


_BROKEN_EGL = "/nonexistent/egl_vendor.json"  # libglvnd then finds no EGL vendor: EGL cannot start


def test_no_backend_error_lists_debian_packages(monkeypatch):
    from scarce.render import _gl

    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", _BROKEN_EGL)
    monkeypatch.setattr(_gl, "BACKENDS", ("egl",))
    with pytest.raises(_gl.GLBackendError, match="libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libosmesa6"):
        _gl.select_backend()
    assert "PYOPENGL_PLATFORM" not in os.environ


def _osmesa_usable() -> bool:
    import ctypes.util
    import importlib.metadata

    version = tuple(int(p) for p in importlib.metadata.version("PyOpenGL").split(".")[:3])
    return ctypes.util.find_library("OSMesa") is not None and version >= (3, 1, 5)


@pytest.mark.skipif(not _osmesa_usable(), reason="needs libosmesa6 and PyOpenGL >= 3.1.5")
def test_falls_back_to_osmesa_when_egl_fails():
    import subprocess
    import sys

    code = ("from scarce.render._gl import select_backend; assert select_backend() == 'osmesa'; "
            "from scarce.render import SampleRenderer; s = SampleRenderer('synthetic-flat', (32, 32)).render(0, 0); "
            "assert (s['instance'] > 0).any() and ((s['depth'] > 0) == (s['instance'] > 0)).all()")
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env["__EGL_VENDOR_LIBRARY_FILENAMES"] = _BROKEN_EGL
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_linemod_views_config_renders_ten_fibonacci_views(tmp_path):
    import dataclasses
    from pathlib import Path

    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=40.0)  # millimetres, like LineMOD
    mesh.visual.vertex_colors = np.tile([30, 200, 90, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    mesh.apply_translation([5.0, -3.0, 10.0])  # LineMOD models are not centred on their origin
    path = tmp_path / "mesh.ply"
    mesh.export(path)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "render" / "linemod_views.yaml")
    cfg = cfg.replace(objects=(dataclasses.replace(cfg.objects[0], mesh=str(path)),))
    r = SampleRenderer(cfg, (48, 64))
    try:
        samples = [r.render(0, i) for i in range(11)]
    finally:
        r.close()
    centres = []
    for s in samples[:10]:
        assert (s["instance"] == 1).sum() > 20 and (s["semantic"] == 1).sum() == (s["instance"] == 1).sum()
        pose = s["poses"][0].astype(np.float64)
        centre = pose[:3, :3] @ (np.array([5.0, -3.0, 10.0]) * 0.001) + pose[:3, 3]
        assert abs(np.linalg.norm(centre) - 0.6) < 1e-4  # the camera sits on the sphere, looking at the centre
        assert abs(centre[0]) < 1e-4 and abs(centre[1]) < 1e-4
        centres.append(pose[:3, :3].ravel())
    assert len({tuple(np.round(c, 4)) for c in centres}) == 10  # ten different viewpoints
    np.testing.assert_allclose(samples[10]["poses"], samples[0]["poses"], atol=1e-6)  # view 10 = view 0 again


@pytest.mark.parametrize("ext", ["obj", "glb"])
def test_obj_and_glb_meshes_render_with_their_class(tmp_path, ext):
    import trimesh

    path = tmp_path / f"part.{ext}"
    trimesh.creation.cone(radius=30.0, height=80.0).export(path)
    spec = ObjectSpec("part", 9, str(path), scale=0.001, appearance="random")
    r = SampleRenderer(_single_object_config(spec), SIZE)
    try:
        s = r.render(0, 0)
    finally:
        r.close()
    assert set(np.unique(s["semantic"]).tolist()) == {0, 9}
    assert s["classes"].tolist() == [9] and (s["instance"] == 1).sum() > 30


# ------------------------------------------------------------------------------------ domain randomization


def test_distractors_show_in_colour_but_are_background_in_the_masks(flat):
    """Same (seed, index) with and without distractors: everything else is drawn before them, so the masks
    agree except where a distractor hides an object, and there they say background, exactly."""
    from scarce.render.config import DISTRACTOR_SHAPES
    from scarce.render.sampling import sample_scene

    base = get_preset("randomized").replace(distractor_size=(0.08, 0.15))
    with_d, without = SampleRenderer(base.replace(distractors=(4, 4)), SIZE), SampleRenderer(
        base.replace(distractors=(0, 0)), SIZE)
    occluded = shown = 0
    try:
        for i in range(6):
            a, b = with_d.render(7, i), without.render(7, i)
            params = sample_scene(with_d.config, 7, i, with_d.scene.radii, len(with_d.scene.textures), 0)
            assert len(params.distractor_kinds) == 4
            for key in ("classes", "poses", "K"):  # no instance, box or pose of their own
                np.testing.assert_array_equal(a[key], b[key])
            for key in ("semantic", "instance"):
                assert np.all((a[key] == b[key]) | (a[key] == 0)), key
            np.testing.assert_array_equal(a["depth"] > 0, a["instance"] > 0)
            for box_a, box_b in zip(a["boxes"], b["boxes"]):  # a hidden part can only shrink a box
                if box_a.any():
                    assert box_a[0] >= box_b[0] and box_a[1] >= box_b[1] and box_a[2] <= box_b[2] and box_a[3] <= box_b[3]
            occluded += int(((b["semantic"] > 0) & (a["semantic"] == 0)).sum())
            diff = np.abs(a["rgb"].astype(int) - b["rgb"].astype(int)).sum(axis=2)
            shown += int(((diff > 60) & (a["semantic"] == 0) & (b["semantic"] == 0)).sum())
            # randomized draws its geometry as the other presets do: same objects as synthetic-flat
            np.testing.assert_array_equal(b["semantic"], flat.render(7, i)["semantic"])
    finally:
        with_d.close()
        without.close()
    assert occluded > 20, "no distractor hid any object in 6 samples"
    assert shown > 100, "distractors are not visible in the colour images"
    assert not set(DISTRACTOR_SHAPES) & set(CLASS_NAMES)


def test_distractor_meshes_are_one_across_and_not_class_shapes():
    from scarce.render.config import DISTRACTOR_SHAPES
    from scarce.render.scene import distractor_mesh, procedural_mesh

    def signature(mesh):  # proportions and fullness, whatever the size and orientation
        radius = np.linalg.norm(mesh.vertices - mesh.bounding_box.centroid, axis=1).max()
        extents = np.sort(mesh.bounding_box_oriented.primitive.extents)
        return np.r_[extents / extents[-1], mesh.volume / radius**3], radius

    classes = [signature(procedural_mesh(n))[0] for n in CLASS_NAMES[1:]]
    for name in DISTRACTOR_SHAPES:
        mesh = distractor_mesh(name)
        sig, radius = signature(mesh)
        assert radius == pytest.approx(0.5) and mesh.is_watertight, name
        assert min(np.abs(sig - c).max() for c in classes) > 0.1, f"{name} is shaped like a class"
    with pytest.raises(ScarceError, match="valid values"):
        distractor_mesh("cube")


def test_procedural_patterns_are_deterministic_and_varied():
    from scarce.render.scene import PATTERN_KINDS, pattern_bank, procedural_pattern

    for kind in PATTERN_KINDS:
        a = procedural_pattern(np.random.default_rng(5), 40, 56, kind)
        assert a.shape == (40, 56, 3) and a.dtype == np.uint8
        assert np.array_equal(a, procedural_pattern(np.random.default_rng(5), 40, 56, kind)), kind
        assert not np.array_equal(a, procedural_pattern(np.random.default_rng(6), 40, 56, kind)), kind
        assert len(np.unique(a.reshape(-1, 3), axis=0)) >= 2, kind
    bank = pattern_bank()
    assert len(bank) >= 6 * len(PATTERN_KINDS) and all(t.shape == (128, 128, 3) for t in bank)
    assert len({t.tobytes() for t in bank}) == len(bank)
    with pytest.raises(ScarceError, match="valid kinds"):
        procedural_pattern(np.random.default_rng(0), 8, 8, "plaid")


_BLOCK = 8


def _window_hashes(img: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every 8x8 window of a uint8 ``(H, W, 3)`` image (all offsets), shape ``(H-7, W-7)``.

    Separable polynomial hashing (channels, then rows, then columns, each with odd random weights, modulo
    2^64): a few passes over the image instead of 192 multiplications per window; equal windows hash equal,
    and a hash hit is then checked pixel by pixel.
    """
    w = np.random.default_rng(99).integers(1, 2**62, size=(3, _BLOCK), dtype=np.uint64) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = img.astype(np.uint64) @ np.array([1, 257, 65537], np.uint64)
        rows = sum(h[:, dx : h.shape[1] - _BLOCK + 1 + dx] * w[0, dx] for dx in range(_BLOCK))
        return sum(rows[dy : rows.shape[0] - _BLOCK + 1 + dy] * w[1, dy] for dy in range(_BLOCK))


def _shared_blocks(candidates, sources) -> list:
    """Aligned 8x8 blocks of ``candidates`` (not of one flat colour) that occur anywhere in ``sources``."""
    tables = [_window_hashes(s) for s in sources]
    everything = np.sort(np.concatenate([t.ravel() for t in tables]))
    found = []
    for c, img in enumerate(candidates):
        hashes = _window_hashes(img)[::_BLOCK, ::_BLOCK]
        pos = np.minimum(np.searchsorted(everything, hashes), len(everything) - 1)
        for y, x in zip(*np.nonzero(everything[pos] == hashes)):
            block = img[y * _BLOCK : (y + 1) * _BLOCK, x * _BLOCK : (x + 1) * _BLOCK]
            if block.min(axis=(0, 1)).tolist() == block.max(axis=(0, 1)).tolist():
                continue  # one flat colour says nothing about where it came from
            for src, table in zip(sources, tables):
                for sy, sx in zip(*np.nonzero(table == hashes[y, x])):
                    if np.array_equal(src[sy : sy + _BLOCK, sx : sx + _BLOCK], block):
                        found.append((c, y, x))
    return found


def test_randomized_never_uses_the_photos_of_photo_clutter(randomized, clutter):
    """Issue 13: the randomized source domain must not see the target's photos, by name or by pixels."""
    from scarce.render.sampling import sample_scene
    from scarce.render.scene import _PHOTOS, _photo, photo_bank, photo_names, photo_sources, texture_images

    rand_cfg, clutter_cfg = get_preset("randomized"), get_preset("photo-clutter")
    assert photo_names(clutter_cfg) == set(_PHOTOS)  # the target draws every photo, for both uses
    assert photo_names(rand_cfg).isdisjoint(photo_names(clutter_cfg))
    assert photo_names(rand_cfg) == frozenset() and randomized.photos == ()

    # Pixels: what photo-clutter can show (the photos, its texture bank, its backgrounds at this size) against
    # randomized's texture bank and backgrounds.
    sources = [_photo(n) for n in _PHOTOS] + list(texture_images(clutter_cfg))
    sources += list(photo_bank(*SIZE, photo_sources(clutter_cfg)["background"]))
    backgrounds = []
    for i in range(12):
        params = sample_scene(randomized.config, 0, i, randomized.scene.radii, len(randomized.scene.textures), 0)
        if params.background == "pattern":
            backgrounds.append(np.ascontiguousarray(randomized._background(params)))
    assert len(backgrounds) >= 4
    assert _shared_blocks(list(texture_images(rand_cfg)) + backgrounds, sources) == []

    # The check finds photo pixels where they are: a photo-clutter background crop (at any offset) and its
    # photo-crop textures.
    for i in range(12):
        params = sample_scene(clutter.config, 0, i, clutter.scene.radii, len(clutter.scene.textures),
                              len(clutter.photos))
        if params.background == "photo":
            crop = np.ascontiguousarray(clutter._background(params))
            break
    assert len(_shared_blocks([crop, texture_images(clutter_cfg)[0]], sources)) >= 60


def test_cli_renders_the_randomized_preset_with_the_same_bytes_for_any_worker_count(tmp_path, capsys):
    from scarce.cli import main as scarce_main

    with pytest.raises(SystemExit) as exc:
        scarce_main(["render", "--help"])
    assert exc.value.code == 0
    assert "randomized" in capsys.readouterr().out
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        with pytest.raises(SystemExit) as exc:
            scarce_main(["render", "--preset", "randomized", "--out", str(out), "--num-samples", "4", "--size", "32",
                         "32", "--workers", str(workers), "--preview", "0"])
        assert exc.value.code == 0
        outs.append((out / "data-00000-of-00001.tfrecord").read_bytes())
    assert outs[0] == outs[1]


def test_readme_linemod_command_runs_as_written_with_the_shipped_duck(tmp_path):
    """The README's LineMOD command, as written but for the output folder and two frames instead of ten."""
    import json
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    from scarce.shards.schemas import read_rendered

    root = Path(__file__).resolve().parents[1]
    line = next(text for text in (root / "README.md").read_text().splitlines()
                if text.startswith("scarce render --config configs/render/linemod_views.yaml"))
    args = shlex.split(line)[1:]
    args[args.index("--out") + 1] = str(tmp_path / "duck")
    args[args.index("--num-samples") + 1] = "2"
    proc = subprocess.run([sys.executable, "-m", "scarce", *args], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "duck" / "data.manifest.json").read_text())["num_records"] == 2
    for sample in read_rendered(tmp_path / "duck" / "data-00000-of-00001.tfrecord"):
        duck = sample["mask"] == 1
        assert sample["image"].shape == (3, 480, 640) and duck.sum() > 2000
        red, green, blue = (sample["image"][c][duck].mean() for c in range(3))
        assert red > blue and green > blue  # the duck's yellow vertex colours, lit


def test_the_shipped_duck_is_what_its_script_writes(tmp_path):
    from scarce.render.config import PACKAGED_MESHES
    from scarce.render.meshes import make_duck
    from scarce.render.scene import load_mesh

    assert make_duck.main(["--out", str(tmp_path / "duck.ply")]) == 0
    assert (tmp_path / "duck.ply").read_bytes() == PACKAGED_MESHES["duck"].read_bytes()
    mesh = load_mesh(PACKAGED_MESHES["duck"], scale=0.001)
    assert 0.09 < np.ptp(mesh.vertices, axis=0).max() < 0.12  # about LineMOD's duck, in metres
    assert PACKAGED_MESHES["duck"].stat().st_size < 100_000
