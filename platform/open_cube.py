"""``from spectralearth.platform import open_cube``: the cube reader at the top of the platform.

``platform/`` has no ``__init__.py`` (so that it can never shadow the standard
library's ``platform``), which makes ``spectralearth.platform`` a namespace package
without attributes of its own. ``from spectralearth.platform import open_cube`` then
imports this submodule, and this module puts the function in its own place in
``sys.modules``: the import system binds whatever ``sys.modules`` holds under a
module's name once it has run, so the name imported is the function
:func:`spectralearth.platform.cube.open_cube` itself.
"""

import sys

from spectralearth.platform.cube.open import open_cube

sys.modules[__name__] = open_cube
