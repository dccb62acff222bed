"""Random scene parameters: a pure function of ``(config, seed, index)``.

Conventions: world z is up; the scene centre is the world origin. Camera poses are camera-to-world in the
OpenCV convention (x right, y down, z forward), so an object pose in the camera frame is
``inv(camera_pose) @ object_pose`` and projects with K as ``u = fx x / z + cx``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from scarce.render.config import BACKGROUND_KINDS, DISTRACTOR_SHAPES, PROCEDURAL_SHAPES, RenderConfig

__all__ = ["SceneParams", "fibonacci_sphere", "look_at", "random_rotation", "rng_for", "sample_scene"]

# Distractor centres stay this far from the camera (metres): more than the near plane (5 cm) plus the largest
# distractor radius of the presets (7.5 cm), so the near plane does not cut them open.
_DISTRACTOR_CLEARANCE = 0.15


def rng_for(seed: int, index: int) -> np.random.Generator:
    """The generator for sample ``index``: independent of every other index, worker and call order."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` nearly evenly spread unit vectors (the book's 7.3 ``fibonacci_sphere``), shape ``(n, 3)``."""
    i = np.arange(n, dtype=np.float64)
    offset = 2.0 / n
    y = i * offset - 1.0 + offset / 2.0
    r = np.sqrt(np.clip(1.0 - y * y, 0.0, None))
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([np.cos(phi) * r, np.sin(phi) * r, y], axis=1)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0), roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV axes) of a camera at ``eye`` looking at ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    up = np.asarray(up, float)
    if abs(np.dot(z, up)) > 0.999:  # looking straight up / down: any horizontal up will do
        up = np.array([0.0, 1.0, 0.0])
    x = np.cross(z, up)  # image x to the right of "up" (y down)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    if roll_deg:
        c, s = np.cos(np.radians(roll_deg)), np.sin(np.radians(roll_deg))
        R = R @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, eye
    return T


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation (from a uniform unit quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass
class SceneParams:
    """All random choices of one sample (enough to render it and nothing more).

    Attributes:
        camera_pose: camera-to-world 4x4, OpenCV axes.
        kinds: ``(N,)`` index into the config's object list per instance (instance id = position + 1).
        poses: ``(N, 4, 4)`` object-to-world rigid poses.
        scales: ``(N,)`` uniform scale per instance (mesh units -> metres).
        colors: ``(N, 4)`` RGBA base colour factors in [0, 1].
        roughness: ``(N,)``.
        textures: ``(N,)`` texture bank index, -1 for none.
        ambient: ambient light level.
        light_dir: world direction the directional light travels, ``(3,)``; light_intensity its intensity.
        point_positions: ``(P, 3)`` world positions; point_intensity ``(P,)``.
        background: kind name; bg_color ``(3,)`` in [0, 1]; bg_index photo index; bg_offset crop offset in
            [0, 1)^2; bg_seed for the noise background.
        noise_std, blur_sigma: sensor effects.
        aux_seed: seeds any remaining per-pixel randomness (noise images, pattern backgrounds).
        light_colors: ``(1 + P, 3)`` RGB of the directional light, then of each point light.
        texture_scales: ``(N,)`` triplanar texture repeats per instance.
        brightness, contrast, hue_shift: whole-image colour jitter (1, 1, 0 = none).
        distractor_kinds: ``(M,)`` index into :data:`DISTRACTOR_SHAPES`; distractor_poses ``(M, 4, 4)``
            object-to-world; distractor_sizes ``(M,)`` bounding-sphere diameters (metres);
            distractor_colors ``(M, 4)``; distractor_roughness ``(M,)``; distractor_textures ``(M,)`` (-1: none);
            distractor_texture_scales ``(M,)``.
    """

    camera_pose: np.ndarray
    kinds: np.ndarray
    poses: np.ndarray
    scales: np.ndarray
    colors: np.ndarray
    roughness: np.ndarray
    textures: np.ndarray
    ambient: float
    light_dir: np.ndarray
    light_intensity: float
    point_positions: np.ndarray
    point_intensity: np.ndarray
    background: str
    bg_color: np.ndarray
    bg_index: int
    bg_offset: np.ndarray
    noise_std: float
    blur_sigma: float
    aux_seed: int
    light_colors: np.ndarray
    texture_scales: np.ndarray
    brightness: float
    contrast: float
    hue_shift: float
    distractor_kinds: np.ndarray
    distractor_poses: np.ndarray
    distractor_sizes: np.ndarray
    distractor_colors: np.ndarray
    distractor_roughness: np.ndarray
    distractor_textures: np.ndarray
    distractor_texture_scales: np.ndarray


def _uniform(rng: np.random.Generator, r) -> float:
    lo, hi = float(r[0]), float(r[1])
    return lo if lo == hi else float(rng.uniform(lo, hi))


def _place(rng: np.random.Generator, radii: np.ndarray, spread: float, tries: int = 50) -> np.ndarray:
    """Object centres in a cube of half-size ``spread`` whose bounding spheres do not intersect (best effort)."""
    centres = np.zeros((len(radii), 3))
    for i, r in enumerate(radii):
        best, best_gap = None, -np.inf
        for _ in range(tries):
            c = rng.uniform(-spread, spread, size=3)
            gaps = [np.linalg.norm(c - centres[j]) - r - radii[j] for j in range(i)]
            gap = min(gaps) if gaps else np.inf
            if gap >= 0:
                best = c
                break
            if gap > best_gap:
                best, best_gap = c, gap
        centres[i] = best
    return centres


def sample_scene(
    config: RenderConfig, seed: int, index: int, radii: np.ndarray, texture_count: int, photo_count: int
) -> SceneParams:
    """Draw the random parameters of sample ``index``.

    Args:
        config: the render configuration.
        seed: dataset seed.
        index: sample index.
        radii: ``(K,)`` bounding-sphere radius of each object kind at scale 1 (mesh units).
        texture_count: size of the texture bank (0: no textures possible).
        photo_count: number of background photos.
    """
    rng = rng_for(seed, index)
    objects = config.objects
    lo, hi = config.num_objects
    n = int(rng.integers(lo, hi + 1))
    kinds = rng.integers(0, len(objects), size=n)

    # Scale: built-in shapes get a random metric size; files keep their own size times `scale`.
    scales = np.empty(n)
    for i, k in enumerate(kinds):
        spec = objects[k]
        if not _is_builtin(spec.mesh):
            scales[i] = 1.0  # files are loaded already scaled by `spec.scale`
        else:
            scales[i] = _uniform(rng, spec.size) / (2.0 * radii[k])
    world_radii = radii[kinds] * scales
    centres = _place(rng, world_radii, config.spread)
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        if config.rotate_objects:
            poses[i, :3, :3] = random_rotation(rng)
        poses[i, :3, 3] = centres[i]

    # Camera.
    if config.viewpoints == "fibonacci":
        points = fibonacci_sphere(config.num_views)
        direction = points[index % config.num_views]
    else:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
    if config.upper_hemisphere:
        direction[2] = abs(direction[2])
    distance = _uniform(rng, config.distance)
    roll = _uniform(rng, config.roll)
    camera_pose = look_at(direction * distance, np.zeros(3), roll_deg=roll)

    # Appearance.
    colors = _colors(rng, n)
    roughness = rng.uniform(config.roughness[0], config.roughness[1], size=n)
    textures = _textures(rng, config, colors, texture_count)

    # Light.
    cam_forward = camera_pose[:3, 2]
    if config.fixed_light:
        ambient = 0.5 * (config.ambient[0] + config.ambient[1])
        light_intensity = 0.5 * (config.directional[0] + config.directional[1])
        light_dir = cam_forward.copy()
    else:
        ambient = _uniform(rng, config.ambient)
        light_intensity = _uniform(rng, config.directional)
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        if np.dot(d, cam_forward) < 0:  # light from the camera's side, so the visible faces are lit
            d = -d
        light_dir = d
    point_positions = rng.normal(size=(config.point_lights, 3))
    point_positions /= np.linalg.norm(point_positions, axis=1, keepdims=True) + 1e-12
    point_positions *= rng.uniform(0.3, 0.8, size=(config.point_lights, 1))
    point_intensity = rng.uniform(config.point_intensity[0], config.point_intensity[1], size=config.point_lights)

    # Background and sensor.
    kinds_bg = [k for k in BACKGROUND_KINDS if config.background.get(k, 0) > 0]
    probs = np.array([config.background[k] for k in kinds_bg], float)
    background = kinds_bg[int(rng.choice(len(kinds_bg), p=probs / probs.sum()))]
    if background == "photo" and photo_count == 0:
        background = "noise"
    bg_color = rng.uniform(0, 1, size=3)
    if background == "gray":
        bg_color[:] = bg_color[0]
    bg_index = int(rng.integers(0, max(photo_count, 1)))
    bg_offset = rng.uniform(0, 1, size=2)
    noise_std = _uniform(rng, config.noise_std)
    blur_sigma = _uniform(rng, config.blur_sigma)
    aux_seed = int(rng.integers(0, 2**31 - 1))

    # Domain randomization, drawn after everything above, so configs without it keep all their earlier draws
    # (their samples did not change when it was added), and distractors last of all: a config that differs only
    # in `distractors` renders the same scene, objects and light, with the distractors added.
    light_colors = np.ones((1 + config.point_lights, 3))
    if config.light_saturation[1] > 0:
        for i in range(len(light_colors)):
            light_colors[i] = colorsys.hsv_to_rgb(rng.uniform(), _uniform(rng, config.light_saturation), 1.0)
    if config.point_light_prob < 1.0:
        point_intensity = point_intensity * (rng.uniform(size=config.point_lights) < config.point_light_prob)
    texture_scales = _texture_scales(rng, config, n)
    brightness = _uniform(rng, config.brightness)
    contrast = _uniform(rng, config.contrast)
    hue_shift = _uniform(rng, config.hue_shift)
    m = int(rng.integers(config.distractors[0], config.distractors[1] + 1)) if config.distractors[1] else 0
    distractor_kinds = rng.integers(0, len(DISTRACTOR_SHAPES), size=m)
    distractor_sizes = rng.uniform(config.distractor_size[0], config.distractor_size[1], size=m)
    distractor_poses = np.tile(np.eye(4), (m, 1, 1))
    for i in range(m):
        distractor_poses[i, :3, :3] = random_rotation(rng)
        distractor_poses[i, :3, 3] = _distractor_centre(rng, config.spread, camera_pose[:3, 3])
    distractor_colors = _colors(rng, m)
    distractor_roughness = rng.uniform(config.roughness[0], config.roughness[1], size=m)
    distractor_textures = _textures(rng, config, distractor_colors, texture_count)
    distractor_texture_scales = _texture_scales(rng, config, m)
    return SceneParams(
        camera_pose=camera_pose,
        kinds=kinds,
        poses=poses,
        scales=scales,
        colors=colors,
        roughness=roughness,
        textures=textures,
        ambient=ambient,
        light_dir=light_dir,
        light_intensity=light_intensity,
        point_positions=point_positions,
        point_intensity=point_intensity,
        background=background,
        bg_color=bg_color,
        bg_index=bg_index,
        bg_offset=bg_offset,
        noise_std=noise_std,
        blur_sigma=blur_sigma,
        aux_seed=aux_seed,
        light_colors=light_colors,
        texture_scales=texture_scales,
        brightness=brightness,
        contrast=contrast,
        hue_shift=hue_shift,
        distractor_kinds=distractor_kinds,
        distractor_poses=distractor_poses,
        distractor_sizes=distractor_sizes,
        distractor_colors=distractor_colors,
        distractor_roughness=distractor_roughness,
        distractor_textures=distractor_textures,
        distractor_texture_scales=distractor_texture_scales,
    )


def _colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 4)`` RGBA: uniform hue, saturation and value in [0.5, 1], opaque."""
    colors = np.ones((n, 4))
    for i in range(n):
        h, s, v = rng.uniform(0, 1), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)
        colors[i, :3] = colorsys.hsv_to_rgb(h, s, v)
    return colors


def _textures(rng: np.random.Generator, config: RenderConfig, colors: np.ndarray, texture_count: int) -> np.ndarray:
    """Texture bank index per row of ``colors`` (-1: none); textured rows' colours become tints (in place)."""
    textures = np.full(len(colors), -1)
    if texture_count and config.texture_prob > 0:
        has = rng.uniform(size=len(colors)) < config.texture_prob
        textures[has] = rng.integers(0, texture_count, size=int(has.sum()))
        # Textures keep their own colours, tinted by `texture_tint` of the random colour.
        colors[has, :3] = (1.0 - config.texture_tint) + config.texture_tint * colors[has, :3]
    return textures


def _texture_scales(rng: np.random.Generator, config: RenderConfig, n: int) -> np.ndarray:
    lo, hi = config.texture_scale
    return np.full(n, float(lo)) if lo == hi else rng.uniform(lo, hi, size=n)


def _distractor_centre(rng: np.random.Generator, spread: float, camera: np.ndarray) -> np.ndarray:
    """A point in a cube twice the objects' spread, pulled part of the way towards the camera, so distractors
    occlude objects as often as they sit beside or behind them (Tremblay et al. 2018 scatter them through the
    whole view)."""
    point = rng.uniform(-2.0 * spread, 2.0 * spread, size=3)
    pull = rng.uniform(0.0, 0.6)
    from_camera = point - camera
    dist = max(float(np.linalg.norm(from_camera)), 1e-9)
    # Part of the way from the point to the clearance sphere around the camera; a point inside it goes out to it.
    new_dist = dist - pull * (dist - _DISTRACTOR_CLEARANCE) if dist > _DISTRACTOR_CLEARANCE else _DISTRACTOR_CLEARANCE
    return camera + from_camera * (new_dist / dist)


def _is_builtin(mesh: str) -> bool:
    return mesh in PROCEDURAL_SHAPES
