"""Read request bodies into memory with a size cap enforced while they stream in.

Nothing is ever written to disk (Starlette's UploadFile spools large files to a temporary
file), and a 50 MB upload is refused after `max_bytes`, not after it has all arrived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

from lookalike.errors import (
    BadRequest,
    EmptyUpload,
    MissingField,
    UnsupportedMediaType,
    UploadTooLarge,
)


def _too_large(max_bytes: int) -> UploadTooLarge:
    return UploadTooLarge(f"The upload is larger than the {max_bytes / 1e6:.0f} MB limit. Please send a smaller photo.")


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes`."""
    _check_declared_length(request, max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    if not body:
        raise EmptyUpload("The request has no body. Send the image bytes.")
    return bytes(body)


class _FieldCollector:
    """python-multipart callbacks that keep the bytes of one named field and drop the rest."""

    def __init__(self, field: str, max_bytes: int) -> None:
        self.field = field.encode()
        self.max_bytes = max_bytes
        self.found = False
        self.data = bytearray()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._in_field = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_cb,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._in_field = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_cb(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._in_field = options.get(b"name") == self.field and not self.found
        self.found = self.found or self._in_field

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_field:
            self.data += data[start:end]
            if len(self.data) > self.max_bytes:
                raise _too_large(self.max_bytes)


async def read_multipart_field(request: Request, field: str, max_bytes: int) -> bytes:
    """The bytes of one multipart/form-data field, e.g. the `image` of a search."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the photo as multipart/form-data with the file in the field `{field}`."
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("The multipart/form-data request has no boundary.")
    # The whole body may hold a little more than the file: headers and other small fields.
    body_limit = max_bytes + 64 * 1024
    _check_declared_length(request, body_limit)
    collector = _FieldCollector(field, max_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise BadRequest("The multipart/form-data body is malformed.") from None
    except ClientDisconnect:
        raise BadRequest("The upload was interrupted.") from None
    if not collector.found:
        raise MissingField(f"The form has no `{field}` field. Attach the photo as `{field}`.")
    if not collector.data:
        raise EmptyUpload(f"The `{field}` field is empty. Choose a photo to upload.")
    return bytes(collector.data)
