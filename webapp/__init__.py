"""The local web app (`python app.py`): load a clip, annotate, propagate, correct and download, in a browser.

A stdlib HTTP server (server.py) serves one static page (static/) and a small JSON and raw-bytes API; the
clip, its annotations and results live on disk in the app's work folder (workspace.py, clip.py); one
propagation runs at a time in a background thread (propagation_job.py) through the loop eval.py uses.
"""
