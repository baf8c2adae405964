//! The one error type of the API, shared by every transport.
//!
//! Each variant is a `google.rpc.Status` code of contract A.3. Transports map it exactly once:
//! `handler::rest` to an HTTP status and JSON body, `handler::grpc` to a `tonic::Status` with
//! details. Every error carries an `ErrorInfo` (machine-readable `reason` plus metadata) and an
//! `InvalidArgument` also carries one `BadRequest` field violation per problem found.

use std::fmt;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "flowpipe.io";

/// gRPC status codes (the numbers are part of the REST error body, contract A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// One problem with one field of a request (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `stages[2].input_queue`.
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// What every error says besides its code: a human message and the `ErrorInfo` detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub message: String,
    /// `ErrorInfo.reason`: UPPER_SNAKE_CASE, stable, for programs to switch on.
    pub reason: &'static str,
    /// `ErrorInfo.metadata`, e.g. `flow` → the flow's name.
    pub metadata: Vec<(&'static str, String)>,
}

impl Detail {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Detail {
            message: message.into(),
            reason,
            metadata: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl ToString) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }
}

/// An API error. See the module docs for how transports render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed or breaks a validation rule (contract B.5).
    InvalidArgument {
        detail: Detail,
        violations: Vec<FieldViolation>,
    },
    NotFound(Detail),
    AlreadyExists(Detail),
    /// A version precondition failed, or a write lost too many races in a row.
    Aborted(Detail),
    FailedPrecondition(Detail),
    /// The request or the spec is larger than allowed. RESOURCE_EXHAUSTED over gRPC; HTTP 413
    /// over REST (contract B.5 overrides the generic 429 for this case).
    TooLarge(Detail),
    Unauthenticated(Detail),
    Unimplemented(Detail),
    /// The store cannot be reached or did not answer in time. A write may or may not have been
    /// applied; retrying create, update and rollback is safe (an equal spec makes no new version).
    Unavailable(Detail),
    /// The whole request took longer than the server allows.
    DeadlineExceeded(Detail),
    /// A bug or corrupt stored data. Never returned for bad input.
    Internal(Detail),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most violations one error reports: enough for any real spec, bounded for hostile ones
/// (10,000 broken stages must not produce a multi-megabyte error).
pub const MAX_REPORTED_VIOLATIONS: usize = 100;

impl Error {
    /// An INVALID_ARGUMENT listing `violations` (at most [`MAX_REPORTED_VIOLATIONS`] of them, the
    /// last one saying how many more were found).
    pub fn invalid(reason: &'static str, mut violations: Vec<FieldViolation>) -> Self {
        let total = violations.len();
        let message = match violations.as_slice() {
            [] => "invalid request".to_string(),
            [one] => format!("invalid {}: {}", one.field, one.description),
            [first, ..] => format!(
                "{total} problems found; first: {}: {}",
                first.field, first.description
            ),
        };
        if total > MAX_REPORTED_VIOLATIONS {
            violations.truncate(MAX_REPORTED_VIOLATIONS - 1);
            violations.push(FieldViolation::new(
                "",
                format!(
                    "{} more problems not listed",
                    total - (MAX_REPORTED_VIOLATIONS - 1)
                ),
            ));
        }
        Error::InvalidArgument {
            detail: Detail::new(reason, message),
            violations,
        }
    }

    /// An INVALID_ARGUMENT about one field.
    pub fn invalid_field(
        reason: &'static str,
        field: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Error::invalid(reason, vec![FieldViolation::new(field, description)])
    }

    pub fn flow_not_found(name: &str) -> Self {
        Error::NotFound(
            Detail::new("FLOW_NOT_FOUND", format!("flow \"{name}\" not found")).with("flow", name),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(Detail::new("STORE_UNAVAILABLE", message))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(Detail::new("INTERNAL", message))
    }

    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Aborted(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::TooLarge(_) => Code::ResourceExhausted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
        }
    }

    pub fn detail(&self) -> &Detail {
        match self {
            Error::InvalidArgument { detail, .. }
            | Error::NotFound(detail)
            | Error::AlreadyExists(detail)
            | Error::Aborted(detail)
            | Error::FailedPrecondition(detail)
            | Error::TooLarge(detail)
            | Error::Unauthenticated(detail)
            | Error::Unimplemented(detail)
            | Error::Unavailable(detail)
            | Error::DeadlineExceeded(detail)
            | Error::Internal(detail) => detail,
        }
    }

    pub fn message(&self) -> &str {
        &self.detail().message
    }

    pub fn reason(&self) -> &'static str {
        self.detail().reason
    }

    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::InvalidArgument { violations, .. } => violations,
            _ => &[],
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_violation_is_named_in_the_message() {
        let e = Error::invalid_field("INVALID_FLOW_SPEC", "stages[1].type", "is required");
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "invalid stages[1].type: is required");
        assert_eq!(e.violations().len(), 1);
    }

    #[test]
    fn violations_are_capped_with_a_count_of_the_rest() {
        let many = (0..250)
            .map(|i| FieldViolation::new(format!("stages[{i}].type"), "is required"))
            .collect();
        let e = Error::invalid("INVALID_FLOW_SPEC", many);
        assert_eq!(e.violations().len(), MAX_REPORTED_VIOLATIONS);
        assert!(e.message().starts_with("250 problems found"));
        assert_eq!(
            e.violations().last().unwrap().description,
            "151 more problems not listed"
        );
    }
}
