//! The two renderings of the core's [`Error`], each written once: REST ([`RestError`], an HTTP
//! status and the contract's JSON body, A.3) and gRPC ([`grpc_status`], a `tonic::Status` with
//! details in `grpc-status-details-bin`).

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tonic_types::{ErrorDetails, StatusExt};

use flowpipe_core::error::ERROR_DOMAIN;
use flowpipe_core::{Advice, Code, Error};

use crate::telemetry::ErrorCode;

/// Logs errors that are the server's (or its store's) fault; client errors are the client's
/// business and are only visible in the access log's status code.
fn log_server_fault(e: &Error) {
    if matches!(
        e.code(),
        Code::Internal | Code::Unavailable | Code::DeadlineExceeded
    ) {
        tracing::error!(code = ?e.code(), reason = e.reason(), "{}", e.message());
    }
}

/// HTTP status of a gRPC code (contract A.3).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        // 499 "client closed request", as grpc-gateway.
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Internal | Code::Unknown | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// An error as a REST response: what every handler, extractor and middleware of the router
/// fails with, so every failure has the contract's shape.
#[derive(Debug)]
pub struct RestError(pub Error);

impl From<Error> for RestError {
    fn from(e: Error) -> Self {
        RestError(e)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let RestError(e) = self;
        // A too-large request is 413 over REST (contract B.5), RESOURCE_EXHAUSTED in the body.
        let status = match &e {
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            e => http_status(e.code()),
        };
        log_server_fault(&e);
        let mut body = e.status_json();
        if let Some(advice) = &e.detail().advice {
            body["message"] = format!("{}; {}", e.message(), rest_advice(advice)).into();
        }
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (status, body).into_response();
        // For the request's span (crate::telemetry::http): the contract's code, not only the
        // HTTP status.
        resp.extensions_mut().insert(ErrorCode {
            code: e.code() as i32,
            reason: e.reason(),
        });
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"flowpipe\""),
            );
        }
        resp
    }
}

/// What a REST client does about an error.
fn rest_advice(advice: &Advice) -> String {
    match advice {
        Advice::UpdateFlow { flow } => format!("use PUT /v1/flows/{flow} to change it"),
    }
}

/// What a gRPC client (`flowctl`, grpcurl) does about an error.
fn grpc_advice(advice: &Advice) -> String {
    match advice {
        Advice::UpdateFlow { flow } => {
            format!("use UpdateFlow to change it (flowctl update --name {flow} <file>)")
        }
    }
}

/// An error as a gRPC status.
pub fn grpc_status(e: Error) -> tonic::Status {
    let d = e.detail();
    let mut details = ErrorDetails::new();
    let metadata: HashMap<String, String> = d
        .metadata
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    details.set_error_info(d.reason, ERROR_DOMAIN, metadata);
    for v in e.violations() {
        details.add_bad_request_violation(&v.field, &v.description);
    }
    log_server_fault(&e);
    let message = match &d.advice {
        Some(advice) => format!("{}; {}", d.message, grpc_advice(advice)),
        None => d.message.clone(),
    };
    tonic::Status::with_error_details(tonic::Code::from_i32(e.code() as i32), message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_contract_status() {
        let table = [
            (Code::InvalidArgument, 400),
            (Code::FailedPrecondition, 400),
            (Code::OutOfRange, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Cancelled, 499),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn grpc_status_carries_the_same_details() {
        let e = Error::flow_not_found("x");
        let s = grpc_status(e);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "flow \"x\" not found");
        let d = s.get_error_details();
        let info = d.error_info().unwrap();
        assert_eq!(info.reason, "FLOW_NOT_FOUND");
        assert_eq!(info.metadata["flow"], "x");
    }
}
