"""mypage.project: bring a booking's my page entry up to date with the source of truth."""
from celery import shared_task

from models import db
from models.mypage import project_ids
from tasks.policy import RETRY_POLICY


@shared_task(name="mypage.project", **RETRY_POLICY)
def project(booking_id: str) -> int:
    written = project_ids([booking_id])
    db.session.commit()
    return written
