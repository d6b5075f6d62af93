"""Recipes for the shipped style packs and the builder behind ``make styles``.

Each ``*.json`` file beside this module describes one pack in ``assets/styles/``: where its
teachers come from (package, version, file, sha256, licence), the photos it learns from and is
judged on, the distillation settings, and the targets every style must meet before it ships.
``python -m training.recipes.build`` rebuilds the packs from nothing.
"""

from .recipe import Recipe, RecipeError, TeacherSource, load_recipe, recipe_paths

__all__ = ["Recipe", "RecipeError", "TeacherSource", "load_recipe", "recipe_paths"]
