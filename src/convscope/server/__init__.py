"""The live explorer (``convscope serve``): a FastAPI app over the Python API. Needs the
``serve`` extra (``pip install 'convscope[serve]'``: fastapi and uvicorn)."""
