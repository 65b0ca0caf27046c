"""Sphinx settings of the course website (`make site`; site/coursesite does the course-specific part).

Pages come from the executed masters with their stored outputs: myst-nb never runs a notebook here.
Every link to the repository, and every Colab badge, comes from `[tool.coursekit] repo` in
pyproject.toml (coursekit.publishing), the setting `make release REPO=...` writes.
"""

import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent
ROOT = SITE.parent
sys.path[:0] = [str(SITE), str(ROOT)]          # coursesite, and coursekit without installing it

from coursekit.publishing import find_project, read_setting  # noqa: E402

REPO = read_setting(find_project(ROOT))
if REPO.is_placeholder:
    print(f"warning: [tool.coursekit] repo is still the placeholder {REPO}: the site's Colab badges and "
          "repository links point nowhere yet (README, 'Publishing the course')", file=sys.stderr)

project = "Quantization, hands-on"
author = "the course's authors"
copyright = "the course's authors; code MIT"
html_title = project

extensions = ["myst_nb", "sphinx.ext.mathjax", "coursesite.extension"]
course_repo = str(REPO)
course_notebooks = str(ROOT / "notebooks")
course_readme = str(ROOT / "README.md")
course_solutions = False                       # `make site SOLUTIONS=1` sets it (-D course_solutions=1)

root_doc = "index"
exclude_patterns = ["_build", "coursesite", "**/.ipynb_checkpoints", "README.md"]

# Notebooks: stored outputs only, exactly as tested.
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}                          # no widget manager from a CDN (widgets become read-outs)
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# MathJax from the site itself (coursesite/assets.py copies it), never from a CDN.
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_copy_source = False                       # the masters are in the repository; search reads the pages
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "top_of_page_buttons": [],                 # pages are generated: there is no source file to edit
    "footer_icons": [{
        "name": "Repository",
        "url": REPO.git_url,
        "html": "Repository",
        "class": "",
    }] if REPO.git_url.startswith("https://") else [],
}


def _solutions_banner(app, config):
    if config.course_solutions:
        config.html_theme_options = {**config.html_theme_options,
                                     "announcement": "Instructor build: the exercises' solutions are shown."}


def setup(app):
    app.connect("config-inited", _solutions_banner)
