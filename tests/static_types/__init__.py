"""Static checks of the public API's types (mypy and pyright; never run)."""
