"""The model side: which models there are (registry), where they are served (endpoints), and one call
to a model with its cache and timeout (cache, call). The backends that speak to them are harness/backends/."""
