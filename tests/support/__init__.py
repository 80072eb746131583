"""Helpers tests share (and benchmarks may import): media fixtures, test servers. Nothing in the package imports them."""
