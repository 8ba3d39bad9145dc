"""The chaos suite (`make chaos`): faults struck at the running shop, the
invariants checked afterwards from SQL. Never imported by the app."""
