"""The one compiled part of scarce: crop-window JPEG decoding (``scarce.shards._jpeg_crop``, libjpeg-turbo).

Everything else is declared in pyproject.toml. The extension needs libjpeg-turbo's headers (Debian:
``libjpeg62-turbo-dev``, installed by ``make setup``); it is optional, so without them the install still works
and scarce decodes whole JPEGs instead (and says so once).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("scarce.shards._jpeg_crop", ["src/scarce/shards/_jpeg_crop.c"], libraries=["jpeg"],
                             extra_compile_args=["-O2"], optional=True)])
