import sys

from constrain.cli.main import main

sys.exit(main())
