"""Write ``duck.ply``: the procedural rubber duck scarce ships as the default model of ``linemod_views.yaml``.

A stand-in for LineMOD's duck (``LINEMOD/duck/mesh.ply``) in the same format: a triangle mesh in millimetres with
per-vertex colours, about 100 mm across (LineMOD gives its duck a 107 mm diameter), roughly centred on its origin.
Built from ellipsoids (body, head, tail, beak, eyes); the same bytes on every run::

    python -m scarce.render.meshes.make_duck            # rewrites src/scarce/render/meshes/duck.ply
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["duck_mesh", "write_ply", "main"]

DUCK_PLY = Path(__file__).with_name("duck.ply")
YELLOW, ORANGE, BLACK = (246, 196, 32), (236, 112, 24), (24, 22, 20)
# (centre, radii, tilt about y in degrees, colour, icosphere subdivisions), millimetres, z up, beak towards +x.
PARTS = (
    ((0.0, 0.0, 22.0), (44.0, 30.0, 24.0), 0.0, YELLOW, 3),  # body
    ((26.0, 0.0, 54.0), (17.0, 16.0, 17.0), 0.0, YELLOW, 3),  # head
    ((-39.0, 0.0, 34.0), (13.0, 9.0, 6.0), -35.0, YELLOW, 2),  # tail
    ((43.5, 0.0, 50.0), (10.0, 7.5, 3.5), 10.0, ORANGE, 2),  # beak
    ((37.5, 9.0, 60.0), (3.0, 3.0, 3.0), 0.0, BLACK, 1),  # eyes
    ((37.5, -9.0, 60.0), (3.0, 3.0, 3.0), 0.0, BLACK, 1),
)


def _ellipsoid(centre, radii, tilt_degrees: float, subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    a = np.radians(tilt_degrees)
    tilt = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    vertices = (sphere.vertices * np.asarray(radii)) @ tilt.T + np.asarray(centre)
    return vertices, np.asarray(sphere.faces)


def duck_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices float32 (V, 3) mm, colours uint8 (V, 3), faces int32 (F, 3))`` of the duck."""
    rng = np.random.default_rng(7)
    vertices, colours, faces = [], [], []
    offset = 0
    for centre, radii, tilt, colour, subdivisions in PARTS:
        v, f = _ellipsoid(centre, radii, tilt, subdivisions)
        # A little mottling, as on a moulded toy: +-6 levels per vertex.
        c = np.clip(np.asarray(colour) + rng.integers(-6, 7, (len(v), 3)), 0, 255)
        vertices.append(v)
        colours.append(c)
        faces.append(f + offset)
        offset += len(v)
    v = np.concatenate(vertices)
    v -= (v.min(0) + v.max(0)) / 2  # centred on its bounding box, as LineMOD's models roughly are
    return v.astype(np.float32), np.concatenate(colours).astype(np.uint8), np.concatenate(faces).astype(np.int32)


def write_ply(path: str | Path, vertices: np.ndarray, colours: np.ndarray, faces: np.ndarray) -> None:
    """A binary little-endian PLY with ``x y z`` (float), ``red green blue`` (uchar) and triangle faces."""
    header = (f"ply\nformat binary_little_endian 1.0\ncomment scarce procedural duck (millimetres)\n"
              f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    vertex = np.zeros(len(vertices), dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vertex["xyz"], vertex["rgb"] = vertices, colours
    face = np.zeros(len(faces), dtype=[("n", "u1"), ("idx", "<i4", 3)])
    face["n"], face["idx"] = 3, faces
    Path(path).write_bytes(header.encode("ascii") + vertex.tobytes() + face.tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DUCK_PLY), help=f"output file (default {DUCK_PLY})")
    args = parser.parse_args(argv)
    vertices, colours, faces = duck_mesh()
    write_ply(args.out, vertices, colours, faces)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {len(vertices)} vertices, {len(faces)} faces, {size} bytes, "
          f"{np.ptp(vertices, 0).round(1).tolist()} mm", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
