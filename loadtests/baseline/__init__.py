"""The textbook baseline: what most Python users would write (Starlette + encode/broadcaster).

It runs in its own virtualenv (``.venv-baseline``, see ``requirements.txt``) and is never imported
by the project.
"""
