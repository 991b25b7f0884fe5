"""Placeholder collected by tests/realkernel/conftest.py as the real-kernel guest suite.

This file holds no tests: the conftest's ``pytest_pycollect_makemodule`` turns it into one host
item per guest test found (statically) in tests/guest/, grouped by topology. See conftest.py.
"""
