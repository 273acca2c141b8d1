"""The pytest run's machinery: the plugin, the session it opens, the controller that decides what runs
next, model selection, sharding, the task-file cases and the one module of pytest/xdist internals."""
