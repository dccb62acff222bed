"""Rendered samples in numpy, without torch: ``SampleRenderer(config, size).render(seed, index)``.

Sample dict::

    rgb       uint8   (H, W, 3)
    depth     float32 (H, W)      metres along the optical axis, 0 = background
    semantic  uint8   (H, W)      class ids (0 = background), exact
    instance  uint16  (H, W)      instance ids 1..N (0 = background), exact
    boxes     float32 (N, 4)      x0, y0, x1, y1 of the visible pixels, x1 / y1 exclusive; all 0 if hidden
    classes   int64   (N,)        class id per instance
    poses     float32 (N, 4, 4)   object-to-camera, OpenCV camera axes (x right, y down, z forward), metres
    K         float32 (3, 3)

``scarce render`` (and its spawned workers) renders with this module and encodes the record with
:func:`scarce.shards.schemas.encode_rendered`; :class:`scarce.render.dataset.RenderedDataset` (torch) makes the
training sample of the same render.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from scarce._errors import ScarceError
from scarce.render.config import RENDER_SIZE, RenderConfig, default_objects, load_config
from scarce.render.presets import PRESETS, get_preset
from scarce.render.renderer import FrameRenderer, RawFrame
from scarce.render.sampling import SceneParams, sample_scene
from scarce.render.scene import RenderScene, photo_bank, photo_sources, procedural_pattern, smooth_noise

__all__ = [
    "SampleRenderer",
    "boxes_from_instances",
    "resolve_config",
]


def resolve_config(config_or_preset: RenderConfig | str | os.PathLike) -> RenderConfig:
    """A :class:`RenderConfig`, a preset name (``synthetic-flat``, ``photo-clutter``, ...) or a YAML path."""
    if isinstance(config_or_preset, RenderConfig):
        cfg = config_or_preset
    elif str(config_or_preset) in PRESETS:
        cfg = get_preset(str(config_or_preset))
    elif str(config_or_preset).endswith((".yaml", ".yml")):
        cfg = load_config(config_or_preset)
    else:
        raise ScarceError(
            f"unknown render preset or config {str(config_or_preset)!r}; valid presets are {sorted(PRESETS)}, "
            "or give a configs/render/*.yaml path"
        )
    if not cfg.objects:
        cfg = cfg.replace(objects=default_objects())
    return cfg


def boxes_from_instances(instance: np.ndarray, n: int) -> np.ndarray:
    """``(n, 4)`` float32 xyxy boxes (x1, y1 exclusive) of ids 1..n in ``instance``; zeros for absent ids."""
    boxes = np.zeros((n, 4), np.float32)
    rows = np.zeros((n + 1, instance.shape[0]), bool)
    cols = np.zeros((n + 1, instance.shape[1]), bool)
    ids = instance.astype(np.intp)
    # One pass over the image: which ids occur in each row / column.
    r_idx, c_idx = np.nonzero(ids)
    v = ids[r_idx, c_idx]
    rows[v, r_idx] = True
    cols[v, c_idx] = True
    for k in range(1, n + 1):
        ys, xs = np.flatnonzero(rows[k]), np.flatnonzero(cols[k])
        if ys.size:
            boxes[k - 1] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


class SampleRenderer:
    """Renders samples of one config at one size; holds the GL context, so make one per process.

    Args:
        config: render configuration, preset name or YAML path.
        size: ``(H, W)`` of the outputs.
    """

    def __init__(self, config: RenderConfig | str, size: tuple[int, int] = RENDER_SIZE):
        self.config = resolve_config(config)
        self.height, self.width = (int(size[0]), int(size[1]))
        self.frame = self._frame_renderer()
        self.scene = RenderScene(self.config, self.height, self.width)
        names = photo_sources(self.config)["background"]
        self.photos = photo_bank(self.height, self.width, names) if names else ()
        self._noise: np.ndarray | None = None

    def _frame_renderer(self):
        """What draws the frames: an object with ``render(scene, seg_node_map) -> RawFrame`` and ``close()``."""
        return FrameRenderer(self.height, self.width, msaa=self.config.msaa)

    def render(self, seed: int, index: int) -> dict[str, np.ndarray]:
        """Sample ``index`` of the dataset with ``seed`` (see the module docstring for the keys)."""
        params, seg = self.set_scene(seed, index)
        return self.outputs(self.frame.render(self.scene.scene, seg), params)

    def set_scene(self, seed: int, index: int) -> tuple[SceneParams, dict]:
        """Sample the scene of ``index`` and pose it; return its parameters and the id pass's node map."""
        params = sample_scene(self.config, seed, index, self.scene.radii, len(self.scene.textures), len(self.photos))
        return params, self.scene.apply(params)

    def outputs(self, raw: RawFrame, params: SceneParams) -> dict[str, np.ndarray]:
        """The sample dict of a rendered frame: masks, depth, finished colour, boxes, poses, K."""
        n = len(params.kinds)
        semantic = np.ascontiguousarray(raw.ids[..., 0])
        instance = raw.ids[..., 1].astype(np.uint16)
        depth = np.where(instance > 0, raw.depth, np.float32(0.0))
        rgb = self._finish_rgb(raw.rgba, params)
        world_to_cam = np.linalg.inv(params.camera_pose)
        poses = np.stack([world_to_cam @ self.scene.object_pose(params, i) for i in range(n)])
        classes = np.array([self.config.objects[k].class_id for k in params.kinds], np.int64)
        return {
            "rgb": rgb,
            "depth": depth,
            "semantic": semantic,
            "instance": instance,
            "boxes": boxes_from_instances(instance, n),
            "classes": classes,
            "poses": poses.astype(np.float32),
            "K": self.scene.K.astype(np.float32),
        }

    def _background(self, params) -> np.ndarray:
        h, w = self.height, self.width
        if params.background == "photo":
            photo = self.photos[params.bg_index]
            y = int(params.bg_offset[0] * (photo.shape[0] - h + 1))
            x = int(params.bg_offset[1] * (photo.shape[1] - w + 1))
            return photo[y : y + h, x : x + w]
        if params.background == "noise":
            rng = np.random.default_rng(params.aux_seed)
            return smooth_noise(rng, h, w, int(rng.integers(3, 12)))
        if params.background == "pattern":
            # Its own stream: aux_seed and aux_seed + 1 seed the noise background and the sensor noise.
            return procedural_pattern(np.random.default_rng([params.aux_seed, 2]), h, w)
        return np.broadcast_to((params.bg_color * 255.0 + 0.5).astype(np.uint8), (h, w, 3))

    def _finish_rgb(self, rgba: np.ndarray, params) -> np.ndarray:
        """Composite the premultiplied render over the background, then sensor blur and noise."""
        plain = params.background in ("solid", "gray")  # already the clear colour (RenderScene.apply)
        jitter = (params.brightness, params.contrast, params.hue_shift) != (1.0, 1.0, 0.0)
        if plain and params.noise_std == 0 and params.blur_sigma == 0 and not jitter:
            return np.ascontiguousarray(rgba[..., :3])
        img = rgba[..., :3].astype(np.float32)
        if not plain:
            img += (1.0 - rgba[..., 3:4].astype(np.float32) / 255.0) * self._background(params)
        if jitter:
            img = _colour_jitter(img, params.brightness, params.contrast, params.hue_shift)
        if params.blur_sigma > 0:
            img = cv2.GaussianBlur(img, (0, 0), params.blur_sigma)
        if params.noise_std > 0:
            # A random window of a fixed noise field: drawing H*W*3 normals per sample cost more than the
            # whole composite (2.4 of 4.3 ms at 256x256).
            field = self._noise_field()
            rng = np.random.default_rng(params.aux_seed + 1)
            y = int(rng.integers(0, field.shape[0] - self.height + 1))
            x = int(rng.integers(0, field.shape[1] - self.width + 1))
            img += field[y : y + self.height, x : x + self.width] * np.float32(params.noise_std)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def _noise_field(self) -> np.ndarray:
        if self._noise is None:
            rng = np.random.default_rng(4321)  # fixed: part of the code, like the texture bank
            self._noise = rng.standard_normal((2 * self.height, 2 * self.width, 3), dtype=np.float32)
        return self._noise

    def close(self) -> None:
        self.frame.close()


def _colour_jitter(img: np.ndarray, brightness: float, contrast: float, hue_degrees: float) -> np.ndarray:
    """float32 ``(H, W, 3)`` in 0-255: hue rotated about the grey axis, contrast about the mean, then gain.

    The hue rotation is the 3x3 rotation of RGB space about (1, 1, 1): one small matrix product, where an HSV
    round trip would cost several passes over the image.
    """
    if hue_degrees:
        a = np.radians(hue_degrees)
        c, s, k = np.cos(a), np.sin(a), 1.0 / 3.0
        r = np.sqrt(k)
        rot = c * np.eye(3) + (1 - c) * k * np.ones((3, 3)) + s * r * np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]])
        img = img @ rot.T.astype(np.float32)
    if contrast != 1.0:
        mean = img.mean()
        img = (img - mean) * np.float32(contrast) + mean
    if brightness != 1.0:
        img = img * np.float32(brightness)
    return img
