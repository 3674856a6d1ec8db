"""The jobs: one recipe per file, each read top to bottom (docstring with the command, then ``main(argv)``).

Installed as ``hf_transfer.recipes``; ``hf-transfer NAME`` runs ``hf_transfer.recipes.NAME.main`` and ``python
recipes/NAME.py`` runs the same code from a clone. Recipes use only the library's public API and never import
each other (a recipe that needs another job runs it through ``hf_transfer.cli.job``).
"""
