"""Meshes, textures and backgrounds, and the reusable pyrender scene (the class table is in ``config``).

The built-in procedural objects are the default, so nothing has to be downloaded or shipped. Files load with
trimesh: PLY with per-vertex colours (LineMOD's format), OBJ, GLB.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from scarce._errors import DataNotFoundError, ScarceError
from scarce.render._gl import import_pyrender
from scarce.render.config import PROCEDURAL_SHAPES, ObjectSpec, RenderConfig

__all__ = [
    "RenderScene",
    "load_mesh",
    "photo_bank",
    "procedural_mesh",
    "texture_bank",
]

# Photos scikit-image ships in its wheel (no download): backgrounds and texture crops.
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
_FLAT_SHADED = {"cube", "cylinder", "cone"}


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


@functools.cache
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(np.ascontiguousarray(getattr(skimage.data, n)()[..., :3]) for n in _PHOTOS)


@functools.lru_cache(maxsize=8)
def photo_bank(height: int, width: int) -> tuple[np.ndarray, ...]:
    """Background photos resized so an ``height x width`` crop covers 3/4 of each side (fixed at import)."""
    out = []
    for img in _photos():
        h, w = img.shape[:2]
        s = max(height / (0.75 * h), width / (0.75 * w))
        out.append(_resize(img, max(height, round(h * s)), max(width, round(w * s))))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def texture_bank(size: int = 128) -> tuple[np.ndarray, ...]:
    """Textures for ``texture_prob``: crops of the photos, checkers, stripes and smooth noise, ``(size, size, 3)``."""
    rng = np.random.default_rng(1234)  # fixed: the bank is part of the code, not of a sample
    out = []
    for img in _photos():
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
        self.textures = [pr.Texture(source=t, source_channels="RGB") for t in texture_bank()] if config.texture_prob > 0 else []
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.2, 0.2, 0.2])

        # slots[s][k] = (node, mesh, solid material, [textured materials])
        self.slots = []
        for _ in range(self.max_instances):
            row = []
            for spec, tm in zip(config.objects, self.trimeshes):
                row.append(self._make_slot(spec, tm))
            self.slots.append(row)
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

    def _make_slot(self, spec: ObjectSpec, tm):
        pr = self.pr
        keep = spec.appearance == "mesh"
        smooth = spec.mesh not in _FLAT_SHADED
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
        self.scene.scarce_draw_order = order = []
        seg = {}
        for i, kind in enumerate(params.kinds):
            node, mesh, solid, textured = self.slots[i][kind]
            spec = self.config.objects[kind]
            if solid is not None:
                t = params.textures[i]
                mat = textured[t] if t >= 0 else solid
                mat.baseColorFactor = params.colors[i]
                mat.roughnessFactor = float(params.roughness[i])
                mesh.primitives[0].material = mat
            mesh.is_visible = True
            self.visible.append(mesh)
            order.append(node)
            # The pose is about the mesh's bounding-box centre; the stored pose is the mesh origin's.
            self.scene.set_pose(node, self.node_matrix(params, i))
            seg[node] = np.array([spec.class_id, i + 1, 0], dtype=np.float64)
        self.scene.set_pose(self.camera_node, params.camera_pose @ _CV_TO_GL)
        self.scene.ambient_light = np.full(3, params.ambient)
        # Plain backgrounds are the clear colour (anti-aliased by MSAA, nothing to composite); others are
        # composited afterwards through the alpha channel, so they are cleared transparent.
        plain = params.background in ("solid", "gray")
        self.scene.bg_color = np.append(params.bg_color, 1.0) if plain else np.zeros(4)
        self.sun.intensity = params.light_intensity
        self.scene.set_pose(self.sun_node, _light_pose(params.light_dir))
        for (light, node), pos, inten in zip(self.points, params.point_positions, params.point_intensity):
            light.intensity = float(inten)
            pose = np.eye(4)
            pose[:3, 3] = pos
            self.scene.set_pose(node, pose)
        return seg

    def object_pose(self, params, i: int) -> np.ndarray:
        """Object-to-world rigid pose of instance ``i``'s mesh origin (metres)."""
        kind = params.kinds[i]
        pose = params.poses[i].copy()
        pose[:3, 3] -= pose[:3, :3] @ (self.centroids[kind] * params.scales[i])
        return pose

    def node_matrix(self, params, i: int) -> np.ndarray:
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
