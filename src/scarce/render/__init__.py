"""Offscreen rendering of 3D models into training data (pyrender)."""
