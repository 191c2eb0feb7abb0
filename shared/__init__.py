"""What the gateway and the persister both need: settings, schema, keys, tables, store."""
