"""Built-in components; ``data.extract.database`` lives in ``data/extract/database.py``."""
