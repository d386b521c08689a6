"""tests/verl/inside/ imports verl, so it runs only in verl's own environment, started by test_real_verl.py."""

collect_ignore = ["inside"]
