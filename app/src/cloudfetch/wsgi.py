"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py cloudfetch.wsgi:app`."""

from cloudfetch.web import create_app

app = create_app()
