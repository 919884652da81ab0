"""JSON Schema test suite conformance: constrain vs llguidance vs xgrammar in one run.

Thin wrapper over ``constrain conformance`` (constrain/cli/conformance.py); same options.
Example: ``python bench/json_schema_test_suite.py --drafts draft2020-12,draft7``.
"""

import sys

from constrain.cli.conformance import main

if __name__ == "__main__":
    sys.exit(main())
