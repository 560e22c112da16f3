"""The RQ worker: fetches the wanted commit, renders, applies, prunes, records."""
