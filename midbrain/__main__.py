"""``python -m midbrain``: the same as the ``midbrain`` command."""

from midbrain.entry import main

main()
