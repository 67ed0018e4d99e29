"""Helpers for tests: synthetic model files, subprocess servers, Blender drivers."""
