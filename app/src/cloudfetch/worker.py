"""Celery entry point: `celery -A cloudfetch.worker worker -Q transfers,media,index` (and one
`celery -A cloudfetch.worker beat` in the fleet for the torrent poll)."""

from cloudfetch import services
from cloudfetch.config import load_settings
from cloudfetch.tasks import celery_app

services.configure(load_settings())
app = celery_app
