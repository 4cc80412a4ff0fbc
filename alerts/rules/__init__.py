"""The default rule set shipped with Voxwatch (YAML files, loaded by alerts.ruleset.load_rules)."""
