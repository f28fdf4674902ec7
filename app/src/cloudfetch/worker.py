"""Celery entry point: `celery -A cloudfetch.worker worker -Q transfers,media,index` (and one
`celery -A cloudfetch.worker beat` in the fleet for the torrent poll)."""

from cloudfetch import services
from cloudfetch.celery_app import celery_init_app
from cloudfetch.config import load_settings

settings = load_settings()
services.configure(settings)
app = celery_init_app(settings)
