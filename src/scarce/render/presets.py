"""The built-in domain presets: same classes and geometry distribution, different appearance.

``synthetic-flat`` (source domain): flat random colours, plain backgrounds, a fixed light.
``photo-clutter`` (target domain): photo backgrounds and textures, point lights, varied light, sensor noise
and blur. Only appearance differs, so a model trained on one and tested on the other measures a domain shift.
``randomized`` (a source domain; Tobin et al. 2017, Tremblay et al. 2018): domain randomization with no
photo at all (procedural textures and backgrounds), random light colours and counts, distractor objects
written as background, colour jitter, sensor noise and blur. It never draws on photo-clutter's photos
(``scene.photo_sources``; tested), so it stays a fair source domain for that target.
"""

from __future__ import annotations

from scarce._errors import ScarceError
from scarce.render.config import RenderConfig, default_objects

__all__ = ["PRESETS", "get_preset"]

_GEOMETRY = {"num_objects": (2, 5), "distance": (0.35, 0.65), "spread": 0.12, "viewpoints": "random"}

PRESETS: dict[str, RenderConfig] = {
    "synthetic-flat": RenderConfig(
        **_GEOMETRY,
        texture_prob=0.0,
        roughness=(1.0, 1.0),
        ambient=(0.35, 0.35),
        directional=(0.8, 0.8),
        fixed_light=True,
        background={"solid": 0.5, "gray": 0.5},
    ),
    "photo-clutter": RenderConfig(
        **_GEOMETRY,
        texture_prob=0.8,
        roughness=(0.3, 1.0),
        ambient=(0.05, 0.4),
        directional=(0.3, 1.3),
        point_lights=2,
        point_intensity=(0.02, 0.12),
        background={"photo": 0.8, "noise": 0.2},
        noise_std=(1.0, 8.0),
        blur_sigma=(0.0, 1.2),
    ),
    "randomized": RenderConfig(
        **_GEOMETRY,
        texture_prob=0.7,
        texture_set="procedural",
        texture_tint=0.7,
        texture_scale=(1.5, 12.0),
        roughness=(0.2, 1.0),
        ambient=(0.05, 0.5),
        directional=(0.2, 1.5),
        light_saturation=(0.0, 0.6),
        point_lights=4,
        point_intensity=(0.0, 0.25),
        point_light_prob=0.5,
        background={"pattern": 0.8, "solid": 0.1, "gray": 0.1},
        distractors=(0, 4),
        distractor_size=(0.03, 0.15),
        noise_std=(0.0, 10.0),
        blur_sigma=(0.0, 1.5),
        brightness=(0.7, 1.3),
        contrast=(0.7, 1.3),
        hue_shift=(-20.0, 20.0),
    ),
}


def get_preset(name: str) -> RenderConfig:
    """The preset ``name`` with the built-in objects filled in."""
    if name not in PRESETS:
        raise ScarceError(f"unknown render preset {name!r}; valid presets are {sorted(PRESETS)}")
    return PRESETS[name].replace(objects=default_objects())
