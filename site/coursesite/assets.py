"""Files the pages load, all from the site itself: a page must render on a closed network, and a
request to a CDN that fails is a console error a reader sees as a broken page.

MathJax 3 comes from the `sphinx-mathjax-offline` package (a pinned copy of MathJax's files). Only the
TeX-to-HTML bundle and what it may load later (fonts, TeX extensions, the accessibility menu) are
copied: the package's other bundles would add about 15 MB that no page asks for.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

MATHJAX_ENTRY = "mathjax/tex-chtml.js"        # relative to _static
_MATHJAX_PACKAGE = "sphinx-mathjax-offline"
_KEEP = ("tex-chtml.js", "output/chtml", "input/tex/extensions", "a11y", "ui", "sre", "adaptors")


def mathjax_source() -> Path:
    spec = importlib.util.find_spec(_MATHJAX_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{_MATHJAX_PACKAGE} is not installed: `make site` installs requirements-site.txt")
    return Path(spec.origin).parent / "static" / "mathjax"


def copy_mathjax(static_out: Path) -> None:
    """Copy the parts of MathJax that tex-chtml.js uses into `static_out`/mathjax."""
    src, dst = mathjax_source(), static_out / "mathjax"
    for part in _KEEP:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
        else:
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / part, dst / part)
