"""Figures for bmdqct results (matplotlib, imported only here).

Computation lives in the pipeline modules; these functions only draw results
that were already computed. Every function accepts an optional ``ax`` and returns
the matplotlib Axes (or Figure for multi-panel pictures). ``import bmdqct`` never
imports this subpackage.
"""
