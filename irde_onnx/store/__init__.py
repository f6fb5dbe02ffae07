"""The router folder: its file names, ``router.json``, generations, the lock and the graph file."""
