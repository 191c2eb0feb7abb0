"""The persister: reads the persist stream, writes batches to the database, then acknowledges."""
