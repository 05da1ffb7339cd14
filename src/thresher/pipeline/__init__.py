"""Recipes: a seeded list of steps, run with a trace of what each step removed."""
