"""See the package docstring of constrain for the layer order."""
