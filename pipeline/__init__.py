"""The darkroom framework: events, topics, publisher, stage runner, dead letters, settings, CLI."""
