"""The course as a website: what turns the executed masters into Sphinx pages (`make site`).

pages.py (a master as its page shows it), widgets.py (explorers as their stored read-outs), home.py
(the home page's table of notebooks) and assets.py (MathJax served by the site) need no Sphinx, so
tests read them in the course's own environment; extension.py connects them to a Sphinx build.
"""
