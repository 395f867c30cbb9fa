"""Any S3-compatible store through boto3: ``storage.py`` (the backend), ``client.py`` (client
settings, one request), ``multipart.py`` (streaming uploads), ``errors.py`` (what S3 errors mean).
"""

from backup.storage.s3.client import client_config
from backup.storage.s3.storage import S3Storage

__all__ = ["S3Storage", "client_config"]
