"""S3 credentials: the configured keys, or else the standard AWS chain, resolved once at start-up.

With ``DARKROOM_STORAGE__ACCESS_KEY``/``SECRET_KEY`` unset, botocore's chain is used, the same one
every AWS tool follows: the ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` variables, a profile
of ``~/.aws/credentials`` or ``~/.aws/config`` (``AWS_PROFILE`` or ``DARKROOM_STORAGE__PROFILE``),
a web identity token (IRSA on EKS: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), the
container or instance role. Temporary credentials refresh themselves. Both adapters (boto3 and
minio) use the same resolved credentials. No credentials at all is a :class:`StorageConfigError`
at start-up, never a default secret: the dev stack's keys are given only by the dev stack and demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import botocore.session
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError

from storage.errors import StorageConfigError

if TYPE_CHECKING:
    from pipeline.settings import StorageSettings

NO_CREDENTIALS = (
    "no S3 credentials: set DARKROOM_STORAGE__ACCESS_KEY and DARKROOM_STORAGE__SECRET_KEY, or provide them the "
    "standard AWS way (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/credentials, "
    "a web identity token (IRSA), or an instance/container role)"
)


def aws_session(settings: StorageSettings) -> botocore.session.Session:
    """A private botocore session holding the credentials of ``settings``; raises StorageConfigError without any."""
    if (settings.access_key is None) != (settings.secret_key is None):
        raise StorageConfigError(
            "DARKROOM_STORAGE__ACCESS_KEY and DARKROOM_STORAGE__SECRET_KEY go together: set both, "
            "or neither to use the standard AWS credential chain"
        )
    try:
        session = botocore.session.Session(profile=settings.profile)
        if settings.access_key is not None and settings.secret_key is not None:
            session.set_credentials(settings.access_key, settings.secret_key.get_secret_value())
        credentials = session.get_credentials()
    except BotoCoreError as exc:  # e.g. ProfileNotFound, an unreadable config file, a failed web identity call
        raise StorageConfigError(f"S3 credentials could not be resolved: {exc}") from exc
    if credentials is None:
        raise StorageConfigError(NO_CREDENTIALS)
    return session


def resolve_credentials(settings: StorageSettings) -> Credentials:
    """The credentials of ``settings`` (refreshable when temporary); raises StorageConfigError without any."""
    credentials: Credentials = aws_session(settings).get_credentials()
    return credentials
