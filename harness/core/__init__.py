"""The data and rules every layer shares: the record, the transcript, the settings, where files live,
confidence intervals and the extraction format. Imports nothing else of the harness."""
