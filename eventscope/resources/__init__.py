"""Files eventscope ships beside its code (the POM that fetches the Kafka broker jars)."""
