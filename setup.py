"""Build hook for the one C extension (everything else is in pyproject.toml).

``optional=True``: a machine without a C compiler still installs constrain; the DFA matcher
then fills masks through its pure-Python path (same masks, ~0.5 us more per call).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "constrain._native",
            sources=["native/maskwriter.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
