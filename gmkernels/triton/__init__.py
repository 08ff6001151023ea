"""Triton kernels (imported only when the Triton backend is used)."""
