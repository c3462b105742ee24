"""WSGI entry point for any server: `gunicorn wsgi:app` (or `python -m gateway web`)."""
from gateway import create_app
from gateway.logs import configure

configure()
app = create_app()
