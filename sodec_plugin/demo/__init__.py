"""`sodec demo`: a local web page that shows SODEC next to AVIF, JPEG XL, WebP and JPEG at the same file size.

`comparison` does the work (opening an upload, SODEC's file and decode, the other codecs rate-matched to it,
scores and 1:1 crops) without Gradio; `app` lays it out as a Gradio page. Gradio is imported only when the page
is built, so `import sodec_plugin` and the other `sodec` commands never pay for it (`pip install -e ".[demo]"`).
"""

# The page listens on this machine only unless `sodec demo --host` says otherwise.
DEFAULT_HOST = "127.0.0.1"
