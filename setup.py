"""Build hook for the one C extension (everything else is in pyproject.toml).

``optional=True``: a machine without a C compiler still installs constrain; the DFA matcher
then fills masks through its pure-Python path (same masks, ~0.5 us more per call), and the
AWRS proposal takes its block maxima with numpy (same values, ~10 us more per step).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "constrain._native",
            sources=["native/maskwriter.c", "native/propose.c", "native/cfgwords.c", "native/records.c", "native/earley.c", "native/cfgwalk.c"],
            # -O3: the block-max loop in propose.c must be vectorised
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
