"""Two passes per frame on one reused OpenGL context: lit colour (MSAA) and exact ids + depth (no MSAA).

:class:`FrameRenderer` wraps ``pyrender.OffscreenRenderer`` with three changes that matter for speed on Mesa
llvmpipe (measured in docs/rendering.md):

- the colour pass uses a light Lambert / Blinn-Phong shader (``shaders/lit.frag``) instead of pyrender's PBR
  shader, and reads back RGBA only (the MSAA-resolved alpha is the coverage used to composite backgrounds);
- the SEG pass draws into the single-sample framebuffer (no MSAA, no resolve blit) and yields both the ids
  (class in R, instance in G) and the depth of the same, exact surfaces;
- depth is read once per frame (pyrender reads and linearises it in every pass).
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np

from scarce._errors import ScarceError
from scarce.render._gl import context_created_before_fork, import_pyrender, mark_context_created
from scarce.render.config import DEFAULT_TEXTURE_SCALE

__all__ = ["SHADER_DIR", "FrameRenderer", "RawFrame"]

SHADER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shaders")


@dataclass
class RawFrame:
    """One rendered frame before post-processing.

    Attributes:
        rgba: uint8 ``(H, W, 4)``, premultiplied colour over black, alpha = coverage.
        ids: uint8 ``(H, W, 3)``; R = class id, G = instance id, exact (no anti-aliasing).
        depth: float32 ``(H, W)``, metres along the optical axis, 0 where nothing was drawn.
    """

    rgba: np.ndarray
    ids: np.ndarray
    depth: np.ndarray


def _make_classes(pyrender):
    from OpenGL import GL
    from pyrender.constants import RenderFlags, TexFlags
    from pyrender.renderer import Renderer
    from pyrender.shader_program import ShaderProgramCache

    class _LitShaderCache(ShaderProgramCache):
        """pyrender's shader cache with ``mesh.vert/frag`` swapped for scarce's light shader."""

        _SWAP = {"mesh.vert": os.path.join(SHADER_DIR, "lit.vert"), "mesh.frag": os.path.join(SHADER_DIR, "lit.frag")}

        def get_program(self, vertex_shader, fragment_shader, geometry_shader=None, defines=None):
            return super().get_program(
                self._SWAP.get(vertex_shader, vertex_shader),
                self._SWAP.get(fragment_shader, fragment_shader),
                geometry_shader,
                defines,
            )

    class _TwoPassRenderer(Renderer):
        msaa = 4  # samples of the colour pass; 0 = none

        def _configure_main_framebuffer(self):
            # pyrender's, with the sample count as a parameter (it hardcodes 4) and no MSAA buffers when off.
            dims = (self.viewport_width, self.viewport_height)
            if self._main_fb is not None and self._main_fb_dims != dims:
                self._delete_main_framebuffer()
            if self._main_fb is not None:
                return
            self._main_fb, self._main_cb, self._main_db = self._framebuffer(0)
            if self.msaa:
                self._main_fb_ms, self._main_cb_ms, self._main_db_ms = self._framebuffer(self.msaa)
            else:
                self._main_fb_ms, self._main_cb_ms, self._main_db_ms = self._main_fb, self._main_cb, self._main_db
            self._main_fb_dims = dims

        def _framebuffer(self, samples):
            w, h = self.viewport_width, self.viewport_height
            cb, db = GL.glGenRenderbuffers(2)
            for rb, fmt in ((cb, GL.GL_RGBA8), (db, GL.GL_DEPTH_COMPONENT24)):
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
                if samples:
                    GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, fmt, w, h)
                else:
                    GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, fmt, w, h)
            fb = GL.glGenFramebuffers(1)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, fb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, cb)
            GL.glFramebufferRenderbuffer(GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, db)
            return fb, cb, db

        def _delete_main_framebuffer(self):
            if self._main_fb is not None and self._main_fb_ms == self._main_fb:
                self._main_fb_ms = self._main_cb_ms = self._main_db_ms = None
                GL.glDeleteFramebuffers(1, [self._main_fb])
                GL.glDeleteRenderbuffers(2, [self._main_cb, self._main_db])
                self._main_fb = self._main_cb = self._main_db = None
                self._main_fb_dims = (None, None)
                return
            super()._delete_main_framebuffer()

        def _sorted_mesh_nodes(self, scene):
            # pyrender sorts every mesh node (hidden ones too) by distance each pass; RenderScene keeps the
            # visible ones in a fixed order, which also keeps the draw order identical in every process.
            order = getattr(scene, "scarce_draw_order", None)
            return super()._sorted_mesh_nodes(scene) if order is None else order

        def _bind_and_draw_primitive(self, primitive, pose, program, flags):
            # lit.frag's triplanar repeats per unit length: per material (RenderScene sets it per sample).
            material = primitive.material
            if not flags & RenderFlags.SEG and material.tex_flags & TexFlags.BASE_COLOR:
                program.set_uniform("texture_scale", getattr(material, "scarce_texture_scale", DEFAULT_TEXTURE_SCALE))
            super()._bind_and_draw_primitive(primitive, pose, program, flags)

        def _configure_forward_pass_viewport(self, flags):
            super()._configure_forward_pass_viewport(flags)
            if flags & RenderFlags.SEG or not self.msaa:
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)

        def _read_main_framebuffer(self, scene, flags):
            width, height = self._main_fb_dims
            if flags & RenderFlags.SEG:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
                ids = GL.glReadPixels(0, 0, width, height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
                depth = GL.glReadPixels(0, 0, width, height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
                ids = np.frombuffer(ids, np.uint8).reshape(height, width, 3)[::-1]
                depth = np.frombuffer(depth, np.float32).reshape(height, width)[::-1]
                return ids, depth
            if self.msaa:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
                GL.glBlitFramebuffer(0, 0, width, height, 0, 0, width, height, GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb)
            rgba = GL.glReadPixels(0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
            return np.frombuffer(rgba, np.uint8).reshape(height, width, 4)[::-1]

    _cache_uniform_locations()
    return _LitShaderCache, _TwoPassRenderer, RenderFlags


_uniform_locations: dict = {}
_active_context = [0]
# Open renderers by id: closing one must give the context back to the one that is rendering (see close()).
_live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _cache_uniform_locations() -> None:
    """Memoise ``glGetUniformLocation`` for pyrender, which asks for every uniform of every draw call.

    Program ids are per context, so the key holds the renderer that is drawing (set by ``render``).
    """
    import pyrender.shader_program as sp

    if getattr(sp, "_scarce_cached", False):
        return
    lookup = sp.glGetUniformLocation

    def cached(program_id, name):
        key = (_active_context[0], program_id, name)
        loc = _uniform_locations.get(key)
        if loc is None:
            loc = _uniform_locations[key] = lookup(program_id, name)
        return loc

    sp.glGetUniformLocation = cached
    sp._scarce_cached = True


def linearize_depth(raw: np.ndarray, znear: float, zfar: float) -> np.ndarray:
    """Window-space depth in [0, 1] -> metres; 1.0 (cleared, nothing drawn) -> 0."""
    ndc = 2.0 * raw - 1.0
    with np.errstate(divide="ignore"):
        metres = (2.0 * znear * zfar) / (zfar + znear - ndc * (zfar - znear))
    return np.where(raw < 1.0, metres, 0.0).astype(np.float32)


class FrameRenderer:
    """An offscreen OpenGL context that renders a pyrender scene into colour, exact ids and depth.

    Create one per process, lazily, in the process that renders (a DataLoader worker, a pool worker).

    Args:
        height: image height in pixels.
        width: image width in pixels.
        msaa: multisampling samples for the colour pass: 0 (off), 2 or 4 (ids and depth never use it).

    Raises:
        ScarceError: in a process forked from one that had already created a GL context (it would hang).
    """

    def __init__(self, height: int, width: int, msaa: int = 4):
        if context_created_before_fork():
            raise ScarceError(
                "this process was forked from one that had already created an OpenGL context, and a new EGL "
                "context here would hang forever. Do not render in the parent before starting DataLoader "
                "workers (RenderedDataset renders lazily inside each worker), or start the workers with "
                "DataLoader(..., multiprocessing_context='spawn')."
            )
        pyrender = import_pyrender()
        cache_cls, renderer_cls, self._flags = _make_classes(pyrender)
        self.height, self.width = int(height), int(width)
        self._osr = pyrender.OffscreenRenderer(self.width, self.height)
        mark_context_created()
        self._platform = self._osr._platform
        # Swap pyrender's renderer (no GL objects yet: its framebuffers are made on the first render).
        self._renderer = renderer_cls(self.width, self.height)
        self._renderer.msaa = int(msaa)
        self._renderer._program_cache = cache_cls()
        self._osr._renderer = self._renderer
        _live[id(self)] = self

    def render(self, scene, seg_node_map: dict) -> RawFrame:
        """Render ``scene`` (its main camera) twice: colour, then ids + depth.

        Args:
            scene: a ``pyrender.Scene`` with ``bg_color`` alpha 0 and a main camera.
            seg_node_map: mesh node -> ``(class_id, instance_id, 0)``; nodes not in it are not drawn in the
                id pass.
        """
        rgba = self.render_colour(scene)
        ids, depth = self.render_ids(scene, seg_node_map)
        return RawFrame(rgba=rgba, ids=ids, depth=depth)

    def render_colour(self, scene) -> np.ndarray:
        """The colour pass alone: ``rgba`` of :class:`RawFrame`."""
        self._platform.make_current()
        _active_context[0] = id(self)
        return self._renderer.render(scene, self._flags.OFFSCREEN)

    def render_ids(self, scene, seg_node_map: dict) -> tuple[np.ndarray, np.ndarray]:
        """The id pass alone: ``ids`` and ``depth`` (metres) of :class:`RawFrame`."""
        self._platform.make_current()
        _active_context[0] = id(self)
        ids, raw_depth = self._renderer.render(scene, self._flags.OFFSCREEN | self._flags.SEG, seg_node_map)
        cam = scene.main_camera_node.camera
        return ids, linearize_depth(raw_depth, cam.znear, cam.zfar)

    def close(self) -> None:
        """Free the GL context (the process must still not fork-and-render afterwards)."""
        if self._osr is None:
            return
        osr, self._osr = self._osr, None
        for key in [k for k in _uniform_locations if k[0] == id(self)]:
            del _uniform_locations[key]
        self._platform.make_current()
        self._renderer.delete()
        if hasattr(self._platform, "_egl_context"):
            # pyrender would also eglTerminate the display, which every other context of this process shares.
            from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglDestroyContext, eglMakeCurrent

            display = self._platform._egl_display
            eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)
            eglDestroyContext(display, self._platform._egl_context)
            self._platform._egl_context = None
            self._platform._egl_display = None
        else:
            self._platform.delete_context()
        osr._renderer = osr._platform = None
        active = _live.get(_active_context[0])
        if active is not None and active is not self and active._osr is not None:
            # Closing unbound every context; the garbage collector may run this in the middle of another
            # renderer's frame, which then fails with "no valid context". Bind that renderer's context again.
            active._platform.make_current()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL may already be gone
            pass
