"""Seeing the data: profiles, the HTML report and its figures."""
