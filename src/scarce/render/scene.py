"""Meshes, textures and backgrounds, and the reusable pyrender scene (the class table is in ``config``).

The built-in procedural objects are the default, so nothing has to be downloaded or shipped. Files load with
trimesh: PLY with per-vertex colours (LineMOD's format), OBJ, GLB.

Photo provenance: :func:`photo_sources` says which of scikit-image's photos a config can draw from, for
backgrounds and for textures; the scene and the sample renderer load exactly those (``randomized`` draws
none: its textures and backgrounds are procedural patterns).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from scarce._errors import DataNotFoundError, ScarceError
from scarce.render._gl import import_pyrender
from scarce.render.config import DISTRACTOR_SHAPES, PROCEDURAL_SHAPES, ObjectSpec, RenderConfig

__all__ = [
    "PATTERN_KINDS",
    "RenderScene",
    "distractor_mesh",
    "load_mesh",
    "pattern_bank",
    "photo_bank",
    "photo_names",
    "photo_sources",
    "procedural_mesh",
    "procedural_pattern",
    "texture_bank",
    "texture_images",
]

# Photos scikit-image ships in its wheel (no download): backgrounds and texture crops (photo_sources).
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
_FLAT_SHADED = {"cube", "cylinder", "cone"}
# Procedural patterns (textures and `pattern` backgrounds); solid colours are the `solid` background and the
# untextured material.
PATTERN_KINDS = ("value_noise", "fine_noise", "stripes", "checkers", "linear_gradient", "radial_gradient")
# The procedural texture bank: fixed, like texture_bank's seed (part of the code, not of a sample). Enough
# textures for variety; each also gets a random tint and repeat scale per sample, and uploading more would
# only cost memory and start-up time.
_PATTERN_BANK_SEED = 2017  # Tobin et al.'s year; any fixed value would do
_PATTERN_BANK_SIZE = 48
_TEXTURE_PIXELS = 128


@functools.cache
def procedural_mesh(name: str):
    """A built-in shape as a ``trimesh.Trimesh`` centred at the origin, bounding-sphere radius about 0.5."""
    import trimesh

    makers = {
        "cube": lambda: trimesh.creation.box(extents=(0.58, 0.58, 0.58)),
        "sphere": lambda: trimesh.creation.icosphere(subdivisions=3, radius=0.5),
        "cylinder": lambda: trimesh.creation.cylinder(radius=0.3, height=0.8, sections=32),
        "cone": lambda: trimesh.creation.cone(radius=0.4, height=0.8, sections=32),
        "torus": lambda: trimesh.creation.torus(major_radius=0.35, minor_radius=0.13, major_sections=32, minor_sections=16),
        "capsule": lambda: trimesh.creation.capsule(height=0.6, radius=0.2, count=[16, 16]),
    }
    if name not in makers:
        raise ScarceError(f"unknown built-in shape {name!r}; valid values are {sorted(makers)} or a mesh file path")
    mesh = makers[name]()
    mesh.apply_translation(-mesh.bounding_box.centroid)
    return mesh


def load_mesh(path: str | Path, scale: float = 1.0):
    """Load a PLY (vertex colours kept), OBJ or GLB file as one ``trimesh.Trimesh`` in the file's units x scale."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"mesh file {str(path)!r} not found. Give `mesh:` a built-in shape {list(PROCEDURAL_SHAPES)} or a "
            "PLY / OBJ / GLB path (relative paths are resolved against the config file's folder)."
        )
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as err:  # trimesh raises many kinds
        raise ScarceError(f"{path}: cannot read the mesh ({type(err).__name__}: {err})") from err
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ScarceError(f"{path}: no triangles found; expected a triangle mesh (PLY / OBJ / GLB)")
    if scale != 1.0:
        mesh.apply_scale(scale)
    return mesh


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def photo_sources(config: RenderConfig) -> dict[str, tuple[str, ...]]:
    """The scikit-image photos ``config`` can draw from, by use: ``{"background": names, "texture": names}``.

    The one place that decides it: :class:`RenderScene` (textures) and ``SampleRenderer`` (backgrounds) load
    these names and no other photo.
    """
    backgrounds = _PHOTOS if config.background.get("photo", 0) > 0 else ()
    textures = _PHOTOS if config.texture_prob > 0 and config.texture_set == "photo-mix" else ()
    return {"background": backgrounds, "texture": textures}


def photo_names(config: RenderConfig) -> frozenset[str]:
    """Every scikit-image photo ``config`` can draw from (backgrounds and textures)."""
    return frozenset(name for names in photo_sources(config).values() for name in names)


@functools.cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


@functools.lru_cache(maxsize=8)
def photo_bank(height: int, width: int, names: tuple[str, ...] = _PHOTOS) -> tuple[np.ndarray, ...]:
    """Background photos resized so an ``height x width`` crop covers 3/4 of each side (fixed at import)."""
    out = []
    for img in map(_photo, names):
        h, w = img.shape[:2]
        s = max(height / (0.75 * h), width / (0.75 * w))
        out.append(_resize(img, max(height, round(h * s)), max(width, round(w * s))))
    return tuple(out)


def texture_images(config: RenderConfig) -> tuple[np.ndarray, ...]:
    """The texture bank of ``config`` (empty when nothing is textured), uint8 ``(128, 128, 3)`` each."""
    if config.texture_prob == 0:
        return ()
    if config.texture_set == "procedural":
        return pattern_bank()
    return texture_bank(photo_sources(config)["texture"])


@functools.lru_cache(maxsize=2)
def texture_bank(photos: tuple[str, ...] = _PHOTOS, size: int = _TEXTURE_PIXELS) -> tuple[np.ndarray, ...]:
    """``photo-mix`` textures: crops of ``photos``, checkers, stripes and smooth noise, ``(size, size, 3)``."""
    rng = np.random.default_rng(1234)  # fixed: the bank is part of the code, not of a sample
    out = []
    for img in map(_photo, photos):
        h, w = img.shape[:2]
        c = min(h, w) // 2
        y, x = (h - c) // 2, (w - c) // 2
        out.append(_resize(img[y : y + c, x : x + c], size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    for period in (16, 32):
        a, b = rng.uniform(0, 255, size=(2, 3))
        out.append(np.where((((yy // period) + (xx // period)) % 2)[..., None] == 0, a, b).astype(np.uint8))
        a, b = rng.uniform(0, 255, size=(2, 3))
        out.append(np.where(((xx + yy) // period % 2)[..., None] == 0, a, b).astype(np.uint8))
    for cells in (4, 8):
        out.append(smooth_noise(rng, size, size, cells))
    return tuple(out)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Colour value noise: a ``cells x cells`` random grid bilinearly upsampled, uint8 ``(H, W, 3)``."""
    grid = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.uint8)
    return _resize(grid, height, width)


@functools.lru_cache(maxsize=1)
def pattern_bank(count: int = _PATTERN_BANK_SIZE, size: int = _TEXTURE_PIXELS) -> tuple[np.ndarray, ...]:
    """The ``procedural`` texture bank: ``count`` patterns, every kind of :data:`PATTERN_KINDS` in turn, no photo."""
    rng = np.random.default_rng(_PATTERN_BANK_SEED)
    return tuple(procedural_pattern(rng, size, size, PATTERN_KINDS[i % len(PATTERN_KINDS)]) for i in range(count))


@functools.lru_cache(maxsize=4)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy, xx


def procedural_pattern(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> np.ndarray:
    """A random procedural pattern, uint8 ``(H, W, 3)``, drawn entirely from ``rng`` (no photo, no file).

    Kinds (:data:`PATTERN_KINDS`; ``None`` draws one): ``value_noise`` (2-4 octaves of smooth noise, the coarsest
    2-8 cells across), ``fine_noise`` (noise cells of 1-3 pixels), ``stripes`` (random angle, period 3 pixels to
    a third of the image, duty cycle, hard or sinusoidal), ``checkers`` (random angle and period), and
    ``linear_gradient`` / ``radial_gradient`` (random direction or centre and extent). Noise is in colour or
    between two random colours, the others between two random colours.
    """
    if kind is None:
        kind = PATTERN_KINDS[int(rng.integers(len(PATTERN_KINDS)))]
    size = max(height, width)
    if kind in ("value_noise", "fine_noise"):
        if kind == "value_noise":
            octaves, cells = int(rng.integers(2, 5)), int(rng.integers(2, 9))
            img = np.zeros((height, width, 3), np.float32)
            for octave in range(octaves):  # each octave twice as fine and half as strong
                img += smooth_noise(rng, height, width, min(cells << octave, size)) * np.float32(0.5**octave)
        else:
            img = smooth_noise(rng, height, width, max(2, size // int(rng.integers(1, 4)))).astype(np.float32)
        lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
        img = (img - lo) / np.maximum(hi - lo, 1e-6)  # octaves average towards grey: stretch back to full range
        if rng.uniform() < 0.5:
            return (img * 255.0 + 0.5).astype(np.uint8)
        return _between_two_colours(rng, img[..., 0])
    yy, xx = _pixel_grid(height, width)
    angle = rng.uniform(0.0, np.pi)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = xx * c + yy * s
    if kind == "stripes":
        period = np.exp(rng.uniform(np.log(3.0), np.log(max(4.0, size / 3.0))))
        phase = (u / np.float32(period) + np.float32(rng.uniform())) % np.float32(1.0)
        if rng.uniform() < 0.3:
            t = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(2 * np.pi) * phase)
        else:
            t = (phase < np.float32(rng.uniform(0.3, 0.7))).astype(np.float32)
    elif kind == "checkers":
        period = np.float32(np.exp(rng.uniform(np.log(3.0), np.log(max(4.0, size / 3.0)))))
        v = yy * c - xx * s
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == "linear_gradient":
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    elif kind == "radial_gradient":
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.3, 1.2) * size
        t = np.minimum(np.sqrt((yy - np.float32(cy)) ** 2 + (xx - np.float32(cx)) ** 2) / np.float32(radius), 1.0)
    else:
        raise ScarceError(f"unknown pattern kind {kind!r}; valid kinds are {list(PATTERN_KINDS)}")
    return _between_two_colours(rng, t)


def _between_two_colours(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """``t`` in [0, 1] ``(H, W)`` -> uint8 ``(H, W, 3)`` from one random colour to another."""
    a, b = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    return (a + t[..., None].astype(np.float32) * (b - a) + np.float32(0.5)).astype(np.uint8)


def _blob(seed: int):
    """A random convex blob: the hull of 24 Gaussian points stretched along random axes (fixed by ``seed``)."""
    import trimesh

    rng = np.random.default_rng(seed)
    points = rng.normal(size=(24, 3)) * rng.uniform(0.4, 1.0, size=3)
    return trimesh.convex.convex_hull(points)


@functools.cache
def distractor_mesh(name: str):
    """A distractor shape (:data:`DISTRACTOR_SHAPES`): centred, bounding-sphere diameter exactly 1 (so a
    distractor's scale is its size in metres). None is a class shape: no cube, sphere, cylinder, ..."""
    import trimesh

    makers = {
        "icosahedron": lambda: trimesh.creation.icosahedron(),
        "plate": lambda: trimesh.creation.box(extents=(1.0, 0.6, 0.04)),
        "rod": lambda: trimesh.creation.cylinder(radius=0.04, height=1.0, sections=6),  # a thin hexagonal bar
        "blob_a": lambda: _blob(1),
        "blob_b": lambda: _blob(2),
        "blob_c": lambda: _blob(3),
    }
    if name not in makers:
        raise ScarceError(f"unknown distractor shape {name!r}; valid values are {sorted(makers)}")
    mesh = makers[name]()
    mesh.apply_translation(-mesh.bounding_box.centroid)
    mesh.apply_scale(0.5 / _bounding_radius(mesh))
    return mesh


def _bounding_radius(mesh) -> float:
    return float(np.linalg.norm(mesh.vertices - mesh.bounding_box.centroid, axis=1).max())


class RenderScene:
    """A pyrender scene built once per process and updated per sample (poses, materials, lights, camera).

    Meshes are uploaded once: for each instance slot and object kind there is one mesh node, shown or hidden
    per sample, so no GL buffer is created or freed while rendering. Textures stay on the GPU through an
    always-hidden holder mesh that references all of them.

    Args:
        config: the render configuration (its ``objects`` must be filled in).
        height: output height.
        width: output width.
    """

    def __init__(self, config: RenderConfig, height: int, width: int):
        pr = import_pyrender()
        self.pr = pr
        self.config = config
        self.height, self.width = height, width
        self.max_instances = config.num_objects[1]
        if self.max_instances > 255:
            raise ScarceError(f"num_objects={config.num_objects!r}: at most 255 objects per scene")
        self.trimeshes = [self._trimesh(spec) for spec in config.objects]
        self.radii = np.array([_bounding_radius(m) for m in self.trimeshes])
        self.centroids = np.array([m.bounding_box.centroid for m in self.trimeshes])
        self.textures = [pr.Texture(source=t, source_channels="RGB") for t in texture_images(config)]
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.2, 0.2, 0.2])

        # slots[s][k] = (node, mesh, solid material, [textured materials]); distractor_slots[s][d] the same for
        # distractor shape d.
        self.slots = [[self._make_slot(tm, keep=spec.appearance == "mesh", smooth=spec.mesh not in _FLAT_SHADED)
                       for spec, tm in zip(config.objects, self.trimeshes)] for _ in range(self.max_instances)]
        self.distractor_slots = [[self._make_slot(distractor_mesh(name), keep=False, smooth=False)
                                  for name in DISTRACTOR_SHAPES] for _ in range(config.distractors[1])]
        if self.textures:
            holder = pr.Mesh.from_trimesh(procedural_mesh("cube"), smooth=False)
            holder.primitives[0].material = pr.MetallicRoughnessMaterial(baseColorTexture=self.textures[0])
            for t in self.textures[1:]:
                p = pr.Primitive(positions=np.zeros((3, 3), np.float32),
                                 material=pr.MetallicRoughnessMaterial(baseColorTexture=t))
                holder.primitives.append(p)
            holder.is_visible = False
            self.scene.add(holder)

        fx = config.intrinsics.matrix(height, width)
        cam = pr.IntrinsicsCamera(fx=fx[0, 0], fy=fx[1, 1], cx=fx[0, 2], cy=fx[1, 2],
                                  znear=config.intrinsics.near, zfar=config.intrinsics.far)
        self.K = fx
        self.camera_node = self.scene.add(cam)
        self.sun = pr.DirectionalLight(color=np.ones(3), intensity=1.0)
        self.sun_node = self.scene.add(self.sun)
        self.points = []
        for _ in range(config.point_lights):
            light = pr.PointLight(color=np.ones(3), intensity=0.1)
            self.points.append((light, self.scene.add(light)))
        self.visible: list = []

    def _trimesh(self, spec: ObjectSpec):
        if spec.mesh in PROCEDURAL_SHAPES:
            return procedural_mesh(spec.mesh)
        return load_mesh(spec.mesh, spec.scale)

    def _make_slot(self, tm, keep: bool, smooth: bool):
        pr = self.pr
        if keep:
            mesh = pr.Mesh.from_trimesh(tm, smooth=smooth and tm.visual.kind != "face")
            solid, textured = None, []
        else:
            solid = pr.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0)
            import trimesh

            plain = trimesh.Trimesh(vertices=tm.vertices, faces=tm.faces, process=False)  # the material decides
            mesh = pr.Mesh.from_trimesh(plain, material=solid, smooth=smooth)
            textured = [pr.MetallicRoughnessMaterial(baseColorFactor=[1.0] * 4, metallicFactor=0.0, baseColorTexture=t)
                        for t in self.textures]
        mesh.is_visible = False
        node = self.scene.add(mesh)
        return node, mesh, solid, textured

    def apply(self, params) -> dict:
        """Show the instances of ``params`` (a :class:`~scarce.render.sampling.SceneParams`), set the camera
        and lights; return the SEG colour map ``node -> (class_id, instance_id, 0)``."""
        for mesh in self.visible:
            mesh.is_visible = False
        self.visible = []
        self.scene.scarce_draw_order = []
        seg = {}
        for i, kind in enumerate(params.kinds):
            node = self._show(self.slots[i][kind], params.colors[i], params.roughness[i], params.textures[i],
                              params.texture_scales[i], self.node_matrix(params, i))
            seg[node] = np.array([self.config.objects[kind].class_id, i + 1, 0], dtype=np.float64)
        for j, shape in enumerate(params.distractor_kinds):
            matrix = params.distractor_poses[j].copy()
            matrix[:3, :3] *= params.distractor_sizes[j]  # distractor meshes are 1 across: scale = size
            node = self._show(self.distractor_slots[j][shape], params.distractor_colors[j],
                              params.distractor_roughness[j], params.distractor_textures[j],
                              params.distractor_texture_scales[j], matrix)
            # Drawn in the id pass as background (class 0, instance 0): where a distractor hides an object,
            # the masks say background, exactly, and it gets no instance, box or pose.
            seg[node] = np.zeros(3)
        self.scene.set_pose(self.camera_node, params.camera_pose @ _CV_TO_GL)
        self.scene.ambient_light = np.full(3, params.ambient)
        # Plain backgrounds are the clear colour (anti-aliased by MSAA, nothing to composite); others are
        # composited afterwards through the alpha channel, so they are cleared transparent.
        plain = params.background in ("solid", "gray")
        self.scene.bg_color = np.append(params.bg_color, 1.0) if plain else np.zeros(4)
        self.sun.intensity = params.light_intensity
        self.sun.color = params.light_colors[0]
        self.scene.set_pose(self.sun_node, _light_pose(params.light_dir))
        for (light, node), pos, inten, color in zip(self.points, params.point_positions, params.point_intensity,
                                                    params.light_colors[1:]):
            light.intensity = float(inten)
            light.color = color
            pose = np.eye(4)
            pose[:3, 3] = pos
            self.scene.set_pose(node, pose)
        return seg

    def _show(self, slot, color, roughness, texture: int, texture_scale: float, matrix: np.ndarray):
        """Make ``slot`` visible with its material for this sample, at ``matrix`` (mesh-to-world, scale
        included); return its node."""
        node, mesh, solid, textured = slot
        if solid is not None:
            mat = textured[texture] if texture >= 0 else solid
            mat.baseColorFactor = color
            mat.roughnessFactor = float(roughness)
            mat.scarce_texture_scale = float(texture_scale)  # read by the renderer (lit.frag's triplanar repeats)
            mesh.primitives[0].material = mat
        mesh.is_visible = True
        self.visible.append(mesh)
        self.scene.scarce_draw_order.append(node)
        self.scene.set_pose(node, matrix)
        return node

    def object_pose(self, params, i: int) -> np.ndarray:
        """Object-to-world rigid pose of instance ``i``'s mesh origin (metres)."""
        kind = params.kinds[i]
        pose = params.poses[i].copy()
        pose[:3, 3] -= pose[:3, :3] @ (self.centroids[kind] * params.scales[i])
        return pose

    def node_matrix(self, params, i: int) -> np.ndarray:
        # The sampled pose is about the mesh's bounding-box centre; object_pose moves it to the mesh origin.
        m = self.object_pose(params, i)
        m[:3, :3] *= params.scales[i]
        return m


# OpenCV camera axes (x right, y down, z forward) -> OpenGL camera axes (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def _light_pose(direction: np.ndarray) -> np.ndarray:
    """A pose whose -z axis is ``direction`` (pyrender's directional lights shine along -z)."""
    z = -np.asarray(direction, float)
    z /= np.linalg.norm(z)
    a = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(a, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    return pose
