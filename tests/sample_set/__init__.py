"""The generator of the bundled sample prompt set (`generate.py`), kept out of the runtime package."""
