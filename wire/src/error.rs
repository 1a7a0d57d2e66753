//! The error answer: an HTTP status, a stable machine code, a message and the offending field,
//! and its one JSON body `{"error":{"code","message","field"},"correlationId"[,"order"]}`.
//!
//! Codes are the contract (docs/errors.md); messages are for humans and may change. The type
//! lives in the wire layer, not in the HTTP layer, because the pipeline stages and the
//! processor decide most answers and must not depend on the HTTP front.

use std::borrow::Cow;

use oms_core::{InstrumentTable, Order, RejectCode, ValidationError};
use serde::Serialize;

use crate::order::OrderJson;

/// Codes that belong to the API layer (validation and reject codes come from the core).
pub const API_CODES: [&str; 25] = [
    "INVALID_JSON",
    "UNKNOWN_FIELD",
    "IDEMPOTENCY_KEY_MISSING",
    "INVALID_IDEMPOTENCY_KEY",
    "IDEMPOTENCY_KEY_IN_USE",
    "IDEMPOTENCY_KEY_REUSED",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "INVALID_ORDER_ID",
    "ORDER_NOT_FOUND",
    "INVALID_PARAMETER",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "UNAUTHORIZED",
    "FORBIDDEN",
    "RATE_LIMITED",
    "HEADERS_TOO_LARGE",
    "MALFORMED_REQUEST",
    "REQUEST_TIMEOUT",
    "OVERLOADED",
    "LOG_UNAVAILABLE",
    "INTERNAL",
    "DUPLICATE_HEADER",
    "INVALID_CORRELATION_ID",
    "BATCH_TOO_LARGE",
];

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub field: Option<Cow<'static, str>>,
    /// Seconds for `Retry-After` (409, 429, 503).
    pub retry_after: Option<u32>,
    /// `Allow` header for 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            allow: None,
        }
    }

    pub fn field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message)
    }

    pub fn not_found() -> Self {
        ApiError::new(404, "NOT_FOUND", "no such route")
    }

    pub fn order_not_found() -> Self {
        ApiError::new(404, "ORDER_NOT_FOUND", "no such order for this account")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = ApiError::new(405, "METHOD_NOT_ALLOWED", format!("allowed: {allow}"));
        e.allow = Some(allow);
        e
    }

    /// 401: no valid credentials (the HTTP layer adds `WWW-Authenticate: Bearer`).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(401, "UNAUTHORIZED", message).field("Authorization")
    }

    /// 403: valid credentials without the role the route needs.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "FORBIDDEN", message)
    }

    pub fn overloaded() -> Self {
        ApiError::new(
            503,
            "OVERLOADED",
            "the order pipeline is full; retry shortly",
        )
        .retry_after(1)
    }

    pub fn log_unavailable(detail: &str) -> Self {
        ApiError::new(
            503,
            "LOG_UNAVAILABLE",
            format!("the order log is unavailable: {detail}"),
        )
        .retry_after(1)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "INTERNAL", message)
    }

    /// A reject code from risk or the processor, mapped to its HTTP status.
    pub fn reject(code: RejectCode) -> Self {
        let status = match code {
            RejectCode::OrderNotOpen | RejectCode::DuplicateClientOrderId => 409,
            RejectCode::InvalidAmend => 400,
            _ => 422,
        };
        ApiError::new(status, code.as_str(), reject_message(code))
    }

    /// The error body, serialized.
    pub fn body(&self, correlation_id: &str) -> Vec<u8> {
        ErrorBody::new(self, correlation_id, None).to_vec()
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError {
            status: 400,
            code: e.code.as_str(),
            message: e.message,
            field: Some(Cow::Borrowed(e.field)),
            retry_after: None,
            allow: None,
        }
    }
}

/// Human text for reject codes.
pub fn reject_message(code: RejectCode) -> &'static str {
    match code {
        RejectCode::InsufficientMargin => "not enough available margin for this order",
        RejectCode::PositionLimitExceeded => {
            "the order could take the position past the instrument's limit"
        }
        RejectCode::MaxNotionalExceeded => "the order's notional is above the instrument's maximum",
        RejectCode::PriceOutOfBand => {
            "the price is outside the allowed band around the reference price"
        }
        RejectCode::TooManyOpenOrders => "the account has too many open orders",
        RejectCode::TradingHalted => "trading is halted for this account or globally",
        RejectCode::MaxQuantityExceeded => "the quantity is above the instrument's maximum",
        RejectCode::DuplicateClientOrderId => {
            "another open order of this account has the same clientOrderId"
        }
        RejectCode::PostOnlyWouldTake => "the post-only order would have taken liquidity",
        RejectCode::SelfTradePrevented => "the order would have traded with the same account",
        RejectCode::FokNotFillable => "the fill-or-kill order could not be filled completely",
        RejectCode::NoLiquidity => "no liquidity within the price band",
        RejectCode::OrderNotOpen => "the order is no longer open",
        RejectCode::InvalidAmend => "the amend changes nothing or leaves no quantity",
    }
}

/// `error` of the error body.
#[derive(Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub field: Option<&'a str>,
}

/// The body of every non-2xx answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
    pub correlation_id: &'a str,
    /// The recorded order of a risk rejection (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderJson<'a>>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(
        e: &'a ApiError,
        correlation_id: &'a str,
        order: Option<(&'a InstrumentTable, &'a Order)>,
    ) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: e.code,
                message: &e.message,
                field: e.field.as_deref(),
            },
            correlation_id,
            order: order.map(|(t, o)| OrderJson::new(t, o).with_timestamp()),
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        crate::to_vec(self, 256)
    }
}
