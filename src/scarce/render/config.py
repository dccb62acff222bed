"""The render configuration: one dataclass, read from YAML (``configs/render/*.yaml``) or a preset.

A sample is a pure function of ``(RenderConfig, seed, index)``: nothing else (worker, order, run, machine)
enters the random draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scarce._errors import ScarceError

__all__ = [
    "BACKGROUND_KINDS",
    "CLASS_NAMES",
    "DEFAULT_TEXTURE_SCALE",
    "DISTRACTOR_SHAPES",
    "KINECT",
    "NUM_CLASSES",
    "PACKAGED_MESHES",
    "PROCEDURAL_SHAPES",
    "RENDER_SIZE",
    "TEXTURE_SETS",
    "Intrinsics",
    "ObjectSpec",
    "RenderConfig",
    "default_objects",
    "load_config",
]

Range = tuple[float, float]

# The one class table of the built-in objects: id = position; 0 is background.
CLASS_NAMES: tuple[str, ...] = ("background", "cube", "sphere", "cylinder", "cone", "torus", "capsule")
NUM_CLASSES = len(CLASS_NAMES)  # including background 0
PROCEDURAL_SHAPES: tuple[str, ...] = CLASS_NAMES[1:]
# Mesh files shipped inside the package, by the name a config gives `mesh:`. ``duck``: a procedural stand-in for
# LineMOD's duck in its format (PLY, vertex colours, millimetres), written by ``scarce.render.meshes.make_duck``.
PACKAGED_MESHES: dict[str, Path] = {"duck": Path(__file__).with_name("meshes") / "duck.ply"}
# ``(H, W)`` rendered when no size is given: the one default of the renderer, the datasets and ``scarce render``.
RENDER_SIZE: tuple[int, int] = (256, 256)
# Shapes of the distractor objects (domain randomization): none of them is a class, so they are written as
# background. Kept apart from CLASS_NAMES on purpose (tested disjoint): a distractor that looked like a class
# would teach the network that such shapes are background.
DISTRACTOR_SHAPES: tuple[str, ...] = ("icosahedron", "plate", "rod", "blob_a", "blob_b", "blob_c")
# Background kinds, in the order sampling draws them (append new kinds at the end: existing configs keep their
# random draws).
BACKGROUND_KINDS: tuple[str, ...] = ("solid", "gray", "noise", "photo", "pattern")
# Texture banks: ``photo-mix`` (crops of scikit-image photos and six patterns: photo-clutter) or ``procedural``
# (patterns only, no photo: randomized).
TEXTURE_SETS: tuple[str, ...] = ("photo-mix", "procedural")
# Triplanar texture repeats per unit of mesh length (object space) when a config does not randomize it.
DEFAULT_TEXTURE_SCALE = 4.0


# Each distractor slot is a scene node per shape, built once per process: a bound keeps that scene small.
_MAX_DISTRACTORS = 16


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera; ``fx, fy, cx, cy`` are for a ``width x height`` image and scale with the output size."""

    fx: float = 572.4114
    fy: float = 573.5704
    cx: float = 325.2611
    cy: float = 242.0489
    width: int = 640
    height: int = 480
    near: float = 0.05
    far: float = 5.0

    def matrix(self, height: int, width: int) -> np.ndarray:  # noqa: F821
        """The 3x3 K for an ``height x width`` output (the image is resized, not cropped)."""
        import numpy as np

        sx, sy = width / self.width, height / self.height
        return np.array(
            [[self.fx * sx, 0.0, self.cx * sx], [0.0, self.fy * sy, self.cy * sy], [0.0, 0.0, 1.0]], dtype=np.float64
        )


# The book's Kinect values (LineMOD), 640x480.
KINECT = Intrinsics()


@dataclass(frozen=True)
class ObjectSpec:
    """One kind of object.

    Attributes:
        name: class name (``CLASS_NAMES`` of the built-ins, or your own).
        class_id: semantic id written to the masks (1..255; 0 is background).
        mesh: a built-in procedural shape (``cube``, ``sphere``, ...), a mesh shipped with scarce
            (:data:`PACKAGED_MESHES`: ``duck``), or a path to a PLY / OBJ / GLB file.
        scale: multiplies the mesh coordinates (LineMOD PLYs are in millimetres: 0.001).
        size: for built-in shapes, the bounding-sphere diameter range in metres (ignored for files).
        appearance: ``random`` (sampled colours / textures) or ``mesh`` (the file's vertex colours / texture).
    """

    name: str
    class_id: int
    mesh: str
    scale: float = 1.0
    size: Range = (0.08, 0.16)
    appearance: str = "random"


@dataclass(frozen=True)
class RenderConfig:
    """Everything that defines a rendered dataset (besides the seed and the output size).

    Ranges ``(lo, hi)`` are sampled uniformly per sample; ``lo == hi`` fixes the value.
    """

    objects: tuple[ObjectSpec, ...] = ()
    """Object kinds; empty = the built-in procedural classes (:data:`CLASS_NAMES`)."""
    num_objects: tuple[int, int] = (2, 5)
    """Objects per scene (inclusive range); kinds drawn uniformly with replacement."""
    intrinsics: Intrinsics = KINECT
    viewpoints: str = "random"
    """``random`` (uniform on the sphere) or ``fibonacci`` (sample i uses point i % num_views of the book's
    Fibonacci sphere)."""
    num_views: int = 10
    upper_hemisphere: bool = False
    """Keep viewpoints above the horizon (z >= 0)."""
    distance: Range = (0.45, 0.8)
    """Camera distance to the scene centre, metres."""
    spread: float = 0.12
    """Objects are placed in a cube of this half-size (metres) around the scene centre, not interpenetrating."""
    rotate_objects: bool = True
    """Random object orientations; false keeps every model in its file's orientation (the book's 7.3: a fixed
    model seen from the Fibonacci viewpoints)."""
    roll: Range = (0.0, 0.0)
    """Camera roll about its optical axis, degrees."""
    colors: str = "random"
    """``random`` (uniform hue, saturation 0.5-1, value 0.5-1) per instance."""
    texture_prob: float = 0.0
    """Probability that an instance gets a texture (from ``texture_set``, triplanar-mapped)."""
    texture_set: str = "photo-mix"
    """Texture bank: ``photo-mix`` (crops of scikit-image's photos, checkers, stripes, value noise) or
    ``procedural`` (noise at several scales, fine noise, stripes, checkers, linear and radial gradients; no
    photo)."""
    texture_tint: float = 0.4
    """How strongly a random colour tints a texture: colour factor ``(1 - t) + t * random colour`` (0: the
    texture's own colours)."""
    texture_scale: Range = (DEFAULT_TEXTURE_SCALE, DEFAULT_TEXTURE_SCALE)
    """Triplanar texture repeats per unit of mesh length (a built-in mesh is about 1 unit across), per
    instance."""
    roughness: Range = (0.5, 1.0)
    ambient: Range = (0.05, 0.4)
    """Ambient light level (the book's U(0.05, 0.4))."""
    directional: Range = (0.6, 1.2)
    """Directional light intensity; its direction is random in the hemisphere facing the camera."""
    fixed_light: bool = False
    """Directional light along the optical axis at the midpoint of ``directional``, ambient at its midpoint."""
    point_lights: int = 0
    """Number of point lights (fixed per config; a different count compiles another shader)."""
    point_intensity: Range = (0.05, 0.2)
    point_light_prob: float = 1.0
    """Probability that each point light is on in a sample (off = intensity 0: the count stays fixed)."""
    light_saturation: Range = (0.0, 0.0)
    """Saturation of each light's colour (random hue, value 1); 0 = white light."""
    background: dict[str, float] = field(default_factory=lambda: {"solid": 1.0})
    """Background kind -> probability: ``solid`` (random colour), ``gray`` (random gray), ``noise`` (smooth
    colour noise), ``photo`` (crops of the colour photos scikit-image ships), ``pattern`` (a procedural pattern
    drawn per sample: value noise at several scales, fine noise, stripes, checkers, linear / radial gradient)."""
    distractors: tuple[int, int] = (0, 0)
    """Distractor objects per scene (inclusive range): shapes of :data:`DISTRACTOR_SHAPES`, drawn in colour
    and written as background (no instance, box or pose)."""
    distractor_size: Range = (0.03, 0.15)
    """Distractor bounding-sphere diameter range, metres."""
    noise_std: Range = (0.0, 0.0)
    """Gaussian sensor noise, standard deviation in 8-bit levels."""
    blur_sigma: Range = (0.0, 0.0)
    """Gaussian blur sigma in pixels (0 = none)."""
    brightness: Range = (1.0, 1.0)
    """Image gain (1 = unchanged), after compositing."""
    contrast: Range = (1.0, 1.0)
    """Contrast factor about the image mean (1 = unchanged)."""
    hue_shift: Range = (0.0, 0.0)
    """Hue rotation of the whole image, degrees (0 = unchanged)."""
    msaa: int = 2
    """Multisampling samples for the colour image: 0 (off), 2 or 4. Masks and depth never use it (exact).
    On Mesa llvmpipe 4 samples cost about twice the CPU of 2 for the colour pass (docs/rendering.md)."""

    def __post_init__(self):
        lo, hi = self.num_objects
        if not 1 <= lo <= hi:
            raise ScarceError(f"num_objects={self.num_objects!r}: expected 1 <= lo <= hi, e.g. [2, 5]")
        if self.viewpoints not in ("random", "fibonacci"):
            raise ScarceError(f"viewpoints={self.viewpoints!r}: expected 'random' or 'fibonacci'")
        if isinstance(self.msaa, bool) or self.msaa not in (0, 2, 4):
            raise ScarceError(f"msaa={self.msaa!r}: expected the number of samples, 0 (off), 2 or 4")
        valid_bg = set(BACKGROUND_KINDS)
        bad = set(self.background) - valid_bg
        if bad or not self.background or sum(self.background.values()) <= 0:
            raise ScarceError(
                f"background={self.background!r}: expected a mapping from {sorted(valid_bg)} to probabilities "
                "with a positive sum, e.g. {solid: 1.0}"
            )
        if self.texture_set not in TEXTURE_SETS:
            raise ScarceError(f"texture_set={self.texture_set!r}: expected one of {list(TEXTURE_SETS)}")
        lo, hi = self.distractors
        if not 0 <= lo <= hi <= _MAX_DISTRACTORS:
            raise ScarceError(f"distractors={self.distractors!r}: expected 0 <= lo <= hi <= {_MAX_DISTRACTORS}, "
                              "e.g. [0, 4]")
        for name in ("texture_prob", "texture_tint", "point_light_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ScarceError(f"{name}={getattr(self, name)!r}: expected a value in [0, 1]")
        for name in ("texture_scale", "distractor_size", "brightness", "contrast", "light_saturation", "noise_std",
                     "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ScarceError(f"{name}={getattr(self, name)!r}: expected a range 0 <= lo <= hi")
        if not self.hue_shift[0] <= self.hue_shift[1]:
            raise ScarceError(f"hue_shift={self.hue_shift!r}: expected a range lo <= hi in degrees, e.g. [-20, 20]")
        for spec in self.objects:
            if not 1 <= spec.class_id <= 255:
                raise ScarceError(f"object {spec.name!r}: class_id={spec.class_id} must be in 1..255 (0 = background)")
            if spec.appearance not in ("random", "mesh"):
                raise ScarceError(f"object {spec.name!r}: appearance={spec.appearance!r}; expected 'random' or 'mesh'")

    def replace(self, **changes: Any) -> RenderConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>", base: Path | None = None) -> RenderConfig:
        """Build from plain data (YAML); unknown keys raise an error naming ``source`` and the valid keys. Relative
        mesh paths resolve against ``base`` (default: the folder of ``source``)."""
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ScarceError(f"{source}: unknown render option(s) {sorted(unknown)}; valid options are {sorted(names)}")
        if base is None:
            base = Path(source).parent if source != "<dict>" else Path(".")
        if "objects" in data:
            objs = []
            for i, o in enumerate(data["objects"] or ()):
                try:
                    spec = ObjectSpec(**o)
                except TypeError as err:
                    raise ScarceError(f"{source}: objects[{i}]: {err}; fields are name, class_id, mesh, scale, size, "
                                      "appearance") from None
                objs.append(_resolve_mesh_path(spec, base))
            data["objects"] = tuple(objs)
        if "intrinsics" in data:
            try:
                data["intrinsics"] = Intrinsics(**data["intrinsics"])
            except TypeError as err:
                raise ScarceError(f"{source}: intrinsics: {err}; fields are fx, fy, cx, cy, width, height, near, far") from None
        for key, value in list(data.items()):
            if isinstance(value, list):
                data[key] = tuple(value)
        return cls(**data)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_objects() -> tuple[ObjectSpec, ...]:
    """One :class:`ObjectSpec` per built-in shape, class id = its index in :data:`CLASS_NAMES`."""
    return tuple(ObjectSpec(name=n, class_id=i, mesh=n) for i, n in enumerate(CLASS_NAMES) if i > 0)


def _resolve_mesh_path(spec: ObjectSpec, base: Path) -> ObjectSpec:
    if spec.mesh in PROCEDURAL_SHAPES:
        return spec
    if spec.mesh in PACKAGED_MESHES:
        return dataclasses.replace(spec, mesh=str(PACKAGED_MESHES[spec.mesh]))
    path = Path(spec.mesh).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()  # relative to the config file, wherever scarce runs from
    return dataclasses.replace(spec, mesh=str(path))


def load_config(path: str | Path) -> RenderConfig:
    """Read a render YAML file (``configs/render/*.yaml``); see :class:`RenderConfig` for the keys.

    Relative mesh paths resolve against the file's folder, except in the packaged configs (which sit inside the
    installed package, next to no user data): those resolve against the working directory."""
    from scarce.packaged_configs import CONFIG_ROOT

    path = Path(path)
    if not path.is_file():
        raise ScarceError(f"render config {str(path)!r} not found; the packaged ones are render/NAME "
                          "(`scarce configs list`)")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ScarceError(f"{path}: expected a mapping of render options at the top level")
    packaged = path.resolve().is_relative_to(CONFIG_ROOT.resolve())
    return RenderConfig.from_dict(data, source=str(path), base=Path.cwd() if packaged else None)
