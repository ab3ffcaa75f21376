"""Every error Lookalike reports, defined once: what the API answers and what the batch jobs print.

An `ApiError` becomes `{"error": {"code": ..., "message": ...}}` with its status (see
`lookalike.service`). A user-caused one is a 4xx whose message a person understands; anything
unexpected becomes a 500 that leaks no internals. A `JobError` stops a batch job (indexing,
rollback, eval) or a service's start-up with a message that says what to do; each CLI catches
that one type.

    ApiError                     500 internal_error
    ├── BadRequest               400 bad_request
    │   ├── MissingField             missing_field        the multipart form lacks `image`
    │   ├── EmptyUpload              empty_upload
    │   └── PhotoWithHandle          photo_with_handle    a search sends a photo and names `photo=<handle>` too
    ├── Unauthorized             401 unauthorized
    │   ├── AdminTokenRequired       admin_token_required a missing or wrong LOOKALIKE_ADMIN_TOKEN
    │   └── InternalTokenRequired    internal_token_required  POST /v1/reload without LOOKALIKE_INTERNAL_TOKEN
    ├── Forbidden                403 forbidden
    │   └── OriginNotAllowed         origin_not_allowed   a browser's preflight from a site not in GATEWAY_ALLOWED_ORIGINS
    ├── NotFound                 404 not_found
    │   └── UnknownItem              unknown_item
    ├── UploadTimedOut           408 upload_timeout       a body too slow, or stalled
    ├── Gone                     410 gone
    │   ├── PhotoExpired             photo_expired        `photo=<handle>` this gateway doesn't hold (expired,
    │   │                                                 evicted, another replica's, from before a restart)
    │   └── QueryIdExpired           query_id_expired     a vote or event names a search older than its lifetime
    ├── VersionSkew              409 version_skew         a search names an index version the similarity service
    │                                                     does not hold (a reload is under way); the gateway retries
    ├── IndexMismatch            409 index_model_mismatch the index was built with other weights
    │   ├── QuantisedModelInvalid    quantised_model_invalid  the version's int8 model is unusable
    │   ├── NetworkModelInvalid      network_model_invalid  the version's fp32 ONNX network is missing (built
    │   │                                                 before ONNX serving), altered, or unloadable
    │   ├── TextModelMismatch        text_model_mismatch  the version's text vectors came from another TEXT_MODEL
    │   └── ProjectionMismatch       projection_mismatch  the version's projection is not the one its manifest names
    ├── PayloadTooLarge          413 payload_too_large
    │   ├── UploadTooLarge           upload_too_large     more bytes than MAX_UPLOAD_BYTES
    │   ├── EventTooLarge            event_too_large      an analytics event's body over 4 KiB
    │   └── TooManyPixels            too_many_pixels      (an ImageRejected)
    ├── UnsupportedMediaType     415 unsupported_media_type
    │   └── NotAnImage               not_an_image         (an ImageRejected)
    ├── HeadersTooLarge          431 headers_too_large    the request line and headers pass HTTP_MAX_HEADER_BYTES
    ├── Unprocessable            422 unprocessable
    │   ├── BrokenImage              broken_image         (an ImageRejected)
    │   ├── ImageTooSmall            image_too_small      (an ImageRejected)
    │   ├── UnknownCategory          unknown_category
    │   ├── BadTextQuery             bad_text_query       empty, over 200 characters, or only stop words
    │   ├── WrongDimension           wrong_dimension
    │   ├── BadBox                   bad_box              `box` is not x0,y0,x1,y1 in 0..1, or is inverted
    │   │   └── BoxTooSmall              box_too_small        the region holds fewer pixels than the model's input
    │   ├── BadFilter                bad_filter           a `where` that is not column<op>value
    │   │   └── UnknownColumn            unknown_column       a `where` on a column the catalogue lacks
    │   ├── NotInCatalog             not_in_catalog       a vote, like or unlike names no catalogue product
    │   ├── BadPhotoHandle           bad_photo_handle     `photo=` is not a handle this API hands out
    │   ├── BadQueryId               bad_query_id         a `query_id` forged, malformed, or another session's
    │   ├── NotShown                 item_not_shown       a vote or event names a product its search did not show
    │   ├── BadEvent                 bad_event            an analytics event that is not JSON of the documented shape
    │   └── MissingSession           missing_session      feedback without X-Session-ID or the cookie
    ├── TooManyRequests          429 too_many_requests    (with Retry-After)
    │   ├── RateLimited              rate_limited         one client address used its fair share of searches,
    │   │                                                 votes or events (GATEWAY_*_PER_MINUTE)
    │   ├── FeedbackRateLimited      feedback_rate_limited   too many votes from one session this minute
    │   └── FeedbackCapReached       feedback_cap_reached    a session's votes reached the cap
    └── ServiceUnavailable       503 service_unavailable  (also: another service is down or slow)
        ├── NotReady                 not_ready            no index loaded yet
        ├── Overloaded               overloaded           the classifier's queue is full
        ├── Busy                     busy                 too many upload bytes in flight
        ├── TooManyConnections       too_many_connections HTTP_MAX_CONNECTIONS reached
        ├── FeedbackUnavailable      feedback_unavailable the feedback database can't be reached
        └── VectorStoreUnavailable   vector_store_unavailable  Milvus (VECTOR_STORE=milvus) is down or slow

    ImageRejected: mixed into the four image errors above, so the indexing job skips a
    photo for the reason a shopper would be given, without catching HTTP errors.
    HeadersTooLarge and TooManyConnections are answered by the HTTP protocol (lookalike.http_protocol),
    before a request reaches the app: `response_bytes` writes them.

    JobError
    ├── WeightsUnavailable       the requested weights cannot be loaded
    ├── TorchStepDied            the process running a torch step ended without an answer
    ├── TextModelUnavailable     the sentence model TEXT_MODEL names cannot be found or loaded
    ├── IndexExtraMissing        the job needs torch (the `index` extra), which a serving install leaves out
    ├── EmptyCatalog             no usable image in the catalogue folder
    ├── IndexBusy                another indexing job holds the index root
    ├── NoSuchVersion            rollback to a version that is not there
    ├── UnusableIndexType        a Faiss factory string Faiss cannot build
    ├── BadReduction             a REDUCE that is not none, pca:D or pca-whiten:D, or asks more than the photos span
    ├── SelfEvalRegressed        the publish gate: the new version finds its own products worse than the served one
    ├── QuerySetError            a query set's labels.csv is unusable
    ├── SynonymsError            a store's synonyms.txt has a line that is not Solr synonym syntax
    ├── QuantisationFailed       the int8 model could not be exported or quantised
    ├── EvalError                the evaluation cannot run
    ├── StackNotReady            services a job started on loopback for itself did not become ready
    ├── FeedbackDatabaseError    the gateway can't open or migrate FEEDBACK_DB_URL at start-up
    ├── FeedError                a product feed can't be read or parsed (or declares entities)
    ├── CategoryMappingError     the feed's category mapping file has a line that is not `category: value`
    ├── SafetyStop               a feed run would drop too many served products (publish with --force)
    └── VectorStoreFailed        the job could not write a version's vectors to Milvus
"""

from __future__ import annotations

from http import HTTPStatus

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """`{"error": {"code": "...", "message": "..."}}`, the body of every non-2xx answer."""

    error: ErrorDetail


class ApiError(Exception):
    """An error with a status, a machine-readable code and a human message."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON envelope, as sent."""
        return ErrorEnvelope(error=ErrorDetail(code=self.code, message=self.message)).model_dump_json().encode()

    def closing_headers(self, body: bytes) -> list[tuple[str, str]]:
        """The headers of an answer that carries `body` and closes the connection, its own headers included."""
        return [("content-type", "application/json"), ("content-length", str(len(body))), ("connection", "close"),
                *self.headers.items()]

    def response_bytes(self) -> bytes:
        """The whole HTTP/1.1 answer, closing the connection: for a protocol that answers before the app."""
        body = self.body()
        head = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
                *(f"{name}: {value}" for name, value in self.closing_headers(body))]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class MissingField(BadRequest):
    code = "missing_field"


class EmptyUpload(BadRequest):
    code = "empty_upload"


class PhotoWithHandle(BadRequest):
    """A search that uploads a photo and also names an earlier one by `photo=<handle>`: which is meant?"""

    code = "photo_with_handle"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class AdminTokenRequired(Unauthorized):
    """An operator endpoint called without the right `Authorization: Bearer $LOOKALIKE_ADMIN_TOKEN`."""

    code = "admin_token_required"


class InternalTokenRequired(Unauthorized):
    """An internal write route (POST /v1/reload) without `Authorization: Bearer $LOOKALIKE_INTERNAL_TOKEN`."""

    code = "internal_token_required"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class OriginNotAllowed(Forbidden):
    """A cross-origin preflight from a site the gateway's GATEWAY_ALLOWED_ORIGINS does not list."""

    code = "origin_not_allowed"


class NotFound(ApiError):
    status, code = 404, "not_found"


class UnknownItem(NotFound):
    code = "unknown_item"


class UploadTimedOut(ApiError):
    status, code = 408, "upload_timeout"


class Gone(ApiError):
    status, code = 410, "gone"


class PhotoExpired(Gone):
    """A photo handle this gateway does not hold: the client sends the photo again and gets a new one."""

    code = "photo_expired"


class QueryIdExpired(Gone):
    """A vote or event names a search older than GATEWAY_QUERY_ID_TTL_S: the shopper searches again."""

    code = "query_id_expired"


class VersionSkew(ApiError):
    """A search started on one index version reached a similarity service that holds another: the two services
    are between reloads. The gateway waits until they agree and retries once; a shopper never sees it."""

    status, code = 409, "version_skew"


class IndexMismatch(ApiError):
    status, code = 409, "index_model_mismatch"


class QuantisedModelInvalid(IndexMismatch):
    """The index version's int8 model is missing, altered since indexing, or not loadable."""

    code = "quantised_model_invalid"


class NetworkModelInvalid(IndexMismatch):
    """The index version's fp32 ONNX network is missing (a version built before ONNX serving), altered, or not loadable."""

    code = "network_model_invalid"


class TextModelMismatch(IndexMismatch):
    """The version's text vectors came from another sentence model than the service's TEXT_MODEL."""

    code = "text_model_mismatch"


class ProjectionMismatch(IndexMismatch):
    """The version's projection file is missing or is not the one its manifest's digest names."""

    code = "projection_mismatch"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UploadTooLarge(PayloadTooLarge):
    code = "upload_too_large"


class EventTooLarge(PayloadTooLarge):
    """An analytics event's body larger than any event needs: refused before it is parsed."""

    code = "event_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class HeadersTooLarge(ApiError):
    status, code = 431, "headers_too_large"


class Unprocessable(ApiError):
    status, code = 422, "unprocessable"


class UnknownCategory(Unprocessable):
    code = "unknown_category"


class BadTextQuery(Unprocessable):
    """Words to search by that hold nothing searchable, or too much."""

    code = "bad_text_query"


class WrongDimension(Unprocessable):
    code = "wrong_dimension"


class BadBox(Unprocessable):
    code = "bad_box"


class BoxTooSmall(BadBox):
    code = "box_too_small"


class BadFilter(Unprocessable):
    code = "bad_filter"


class UnknownColumn(BadFilter):
    code = "unknown_column"


class NotInCatalog(Unprocessable):
    """A vote, `like` or `unlike` names a product the serving index does not hold."""

    code = "not_in_catalog"


class BadPhotoHandle(Unprocessable):
    """`photo=` that cannot be a handle: wrong length or characters. Never echoed back in full."""

    code = "bad_photo_handle"


class BadQueryId(Unprocessable):
    """A `query_id` this gateway did not sign, or signed for another session's search."""

    code = "bad_query_id"


class NotShown(Unprocessable):
    """A vote or event names a product that the search it names did not return."""

    code = "item_not_shown"


class BadEvent(Unprocessable):
    """An analytics event that is not JSON, or names an unknown type, or lacks a field."""

    code = "bad_event"


class MissingSession(Unprocessable):
    code = "missing_session"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class RateLimited(TooManyRequests):
    """One client address (IPv4, or IPv6 /64) sent more searches, votes or events than its fair share."""

    code = "rate_limited"


class FeedbackRateLimited(TooManyRequests):
    code = "feedback_rate_limited"


class FeedbackCapReached(TooManyRequests):
    code = "feedback_cap_reached"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class NotReady(ServiceUnavailable):
    """The service runs but has nothing to serve yet, e.g. no index has been built."""

    code = "not_ready"


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class Busy(ServiceUnavailable):
    code = "busy"


class TooManyConnections(ServiceUnavailable):
    code = "too_many_connections"


class FeedbackUnavailable(ServiceUnavailable):
    code = "feedback_unavailable"


class VectorStoreUnavailable(ServiceUnavailable):
    """The vector engine holding the version's vectors (Milvus) is down, slow or refusing."""

    code = "vector_store_unavailable"


class ImageRejected(ApiError):
    """A photo that can't be used, for a reason a person understands; the indexing job skips it."""


class TooManyPixels(ImageRejected, PayloadTooLarge):
    code = "too_many_pixels"


class NotAnImage(ImageRejected, UnsupportedMediaType):
    code = "not_an_image"


class BrokenImage(ImageRejected, Unprocessable):
    code = "broken_image"


class ImageTooSmall(ImageRejected, Unprocessable):
    code = "image_too_small"


class JobError(Exception):
    """Stops a batch job, or a service's start-up; the message says what to do."""


class WeightsUnavailable(JobError):
    """The requested weights cannot be loaded."""


class TorchStepDied(JobError):
    """The child process running one of the job's torch steps ended without an answer (killed, out of memory)."""


class IndexExtraMissing(JobError):
    """The indexing job needs torch and torchvision (pip install 'lookalike[index]'); a serving install lacks them."""


class TextModelUnavailable(JobError):
    """The sentence model TEXT_MODEL names cannot be found or loaded."""


class EmptyCatalog(JobError):
    """No usable image in the catalogue folder."""


class IndexBusy(JobError):
    """Another indexing job holds the index root."""


class NoSuchVersion(JobError):
    """A rollback to a version that is not published."""


class UnusableIndexType(JobError):
    """A Faiss factory string that Faiss cannot build."""


class BadReduction(JobError):
    """A REDUCE the job cannot learn: not none, pca:D or pca-whiten:D, or more dimensions than there is data."""


class SelfEvalRegressed(JobError):
    """The new version's self-evaluation recall@10 fell more than the margin below the served version's."""


class QuerySetError(JobError):
    """A query set whose labels.csv can't be used."""


class SynonymsError(JobError):
    """A synonyms.txt line that is not `a, b, c` or `a => b`."""


class QuantisationFailed(JobError):
    """The int8 model could not be exported or quantised."""


class EvalError(JobError):
    """The evaluation cannot run."""


class StackNotReady(JobError):
    """Services a job started for itself did not become ready; their own output says why."""


class FeedbackDatabaseError(JobError):
    """The gateway can't open or migrate its feedback database at start-up."""


class FeedError(JobError):
    """A product feed that can't be read: unreachable, too large, malformed, or refused as unsafe XML."""


class CategoryMappingError(JobError):
    """A category mapping file line that is not `category: value`."""


class SafetyStop(JobError):
    """The new version would drop more of the served catalogue than allowed; publishing needs --force."""


class VectorStoreFailed(JobError):
    """The indexing job could not write or drop a version's vectors in the vector engine (Milvus)."""
