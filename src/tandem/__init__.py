"""Tandem: a self-hosted, end-to-end encrypted cloud drive with a two-way sync client."""

import sys

__version__ = "0.1.0"

# httpx imports its own command-line tool when rich, click and pygments are installed (they
# are: Tandem's CLI uses two of them): 30-100 ms of every `tandem` start, for a tool never run
# here. Marked absent, httpx defines a plain `main` of its own instead (its __init__ does).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
