"""One module per measurement step; each returns flat observation records (see models.py)."""
