//! The one error type of the API, shared by every transport.
//!
//! Each variant is a `google.rpc.Status` code of contract A.3. Transports map it exactly once
//! (`flowpipe-api`'s `error` module): to an HTTP status and JSON body for REST, and to a
//! `tonic::Status` with details for gRPC. Every error carries an `ErrorInfo` (machine-readable `reason` plus metadata) and an
//! `InvalidArgument` also carries one `BadRequest` field violation per problem found.

use std::fmt;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "flowpipe.io";

/// gRPC status codes (the numbers are part of the REST error body, contract A.3).
///
/// [`Error::code`] yields only the codes an [`Error`] variant stands for; the others complete
/// A.3's table, so transports can map any code to its HTTP status and stores can name the codes
/// etcd answers with. The HTTP status given for each is A.3's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `CANCELLED`, HTTP 499: the caller gave up on the call.
    Cancelled = 1,
    /// `UNKNOWN`, HTTP 500: an error with no better code (typically from another server).
    Unknown = 2,
    /// `INVALID_ARGUMENT`, HTTP 400: the request is wrong whatever the stored state is.
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED`, HTTP 504: the call ran out of time before it completed.
    DeadlineExceeded = 4,
    /// `NOT_FOUND`, HTTP 404: no such flow, flow version or schema (a deleted one included).
    NotFound = 5,
    /// `ALREADY_EXISTS`, HTTP 409: CreateFlow of a live flow with a different spec.
    AlreadyExists = 6,
    /// `PERMISSION_DENIED`, HTTP 403: the caller may not do this (contract B.4's guard against
    /// cross-site writes).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED`, HTTP 429; [`Error::TooLarge`] has this code but is HTTP 413.
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION`, HTTP 400: the system is not in the state the call needs (a read at
    /// a store revision that is gone).
    FailedPrecondition = 9,
    /// `ABORTED`, HTTP 409: a concurrency conflict (a failed version precondition, or a write
    /// that lost too many races); retrying the whole request can succeed.
    Aborted = 10,
    /// `OUT_OF_RANGE`, HTTP 400. etcd answers a read at a compacted or future revision with it.
    OutOfRange = 11,
    /// `UNIMPLEMENTED`, HTTP 501: the operation is not supported by this server.
    Unimplemented = 12,
    /// `INTERNAL`, HTTP 500: a bug or corrupt stored data, never bad input.
    Internal = 13,
    /// `UNAVAILABLE`, HTTP 503: the service or its store cannot answer now; retrying may help.
    Unavailable = 14,
    /// `DATA_LOSS`, HTTP 500: unrecoverable loss or corruption of data.
    DataLoss = 15,
    /// `UNAUTHENTICATED`, HTTP 401: the request has no valid credentials.
    Unauthenticated = 16,
}

/// One problem with one field of a request (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `stages[2].input_queue`.
    pub field: String,
    /// What is wrong with the field, for people (e.g. `is required`); the path is not repeated.
    pub description: String,
}

impl FieldViolation {
    /// A problem `description` with `field` (a path such as `stages[2].input_queue`, `body` for
    /// the request body as a whole, or empty for a note about the request, such as how many
    /// violations were left out).
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// What the caller can do about an error, said by the transport that received the call in its
/// own terms (a REST client has a path and a method, a `flowctl` user has commands): the core
/// names the remedy, never an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    /// Change the live flow with UpdateFlow instead of creating it again.
    UpdateFlow {
        /// The flow's name.
        flow: String,
    },
}

/// What every error says besides its code: a human message and the `ErrorInfo` detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    /// `google.rpc.Status.message`: one sentence for people, not meant to be parsed. Transports
    /// add the [`Advice`], if any, in their own terms.
    pub message: String,
    /// `ErrorInfo.reason`: UPPER_SNAKE_CASE, stable, for programs to switch on.
    pub reason: &'static str,
    /// `ErrorInfo.metadata`, e.g. `flow` → the flow's name.
    pub metadata: Vec<(&'static str, String)>,
    /// What the caller can do about it.
    pub advice: Option<Advice>,
}

impl Detail {
    /// A detail with `reason` and `message`, and no metadata yet (see [`Detail::with`]).
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Detail {
            message: message.into(),
            reason,
            metadata: Vec::new(),
            advice: None,
        }
    }

    /// Adds what the caller can do about the error.
    pub fn advise(mut self, advice: Advice) -> Self {
        self.advice = Some(advice);
        self
    }

    /// Adds the `ErrorInfo.metadata` entry `key` → `value` (its `Display` form), such as
    /// `("flow", name)` or `("active_version", v)`.
    pub fn with(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }
}

/// An API error. See the module docs for how transports render it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed or breaks a validation rule (contract B.5).
    InvalidArgument {
        /// The message (naming the first violation) and `ErrorInfo`.
        detail: Detail,
        /// One `BadRequest` field violation per problem found, at most
        /// [`MAX_REPORTED_VIOLATIONS`] when built by [`Error::invalid`].
        violations: Vec<FieldViolation>,
    },
    /// No such flow, flow version or schema. A deleted flow or schema is not found either
    /// (contract B.4).
    NotFound(Detail),
    /// CreateFlow of a name whose live flow has a different spec (an equal spec is returned
    /// unchanged instead, contract B.4).
    AlreadyExists(Detail),
    /// A version precondition failed, or a write lost too many races in a row.
    Aborted(Detail),
    /// The store can no longer (or cannot yet) serve a read at the revision the request needs
    /// (reason `REVISION_UNAVAILABLE`; an expired page token is INVALID_ARGUMENT instead).
    FailedPrecondition(Detail),
    /// The request or the spec is larger than allowed. RESOURCE_EXHAUSTED over gRPC; HTTP 413
    /// over REST (contract B.5 overrides the generic 429 for this case).
    TooLarge(Detail),
    /// The request has no valid credentials, on a server that requires them.
    Unauthenticated(Detail),
    /// The caller may not do this: a write a browser sent from another site without a JSON
    /// content type (contract B.4's guard against cross-site request forgery).
    PermissionDenied(Detail),
    /// The operation is not supported by this server.
    Unimplemented(Detail),
    /// The store cannot be reached or did not answer in time. A write may or may not have been
    /// applied; retrying create, update and rollback is safe (an equal spec makes no new version).
    Unavailable(Detail),
    /// The whole request took longer than the server allows.
    DeadlineExceeded(Detail),
    /// A bug or corrupt stored data. Never returned for bad input.
    Internal(Detail),
}

/// `std::result::Result` with [`Error`] as the default error type.
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

    /// NOT_FOUND for flow `name` (reason `FLOW_NOT_FOUND`, metadata `flow`), also what a
    /// deleted flow answers.
    pub fn flow_not_found(name: &str) -> Self {
        Error::NotFound(
            Detail::new("FLOW_NOT_FOUND", format!("flow \"{name}\" not found")).with("flow", name),
        )
    }

    /// UNAVAILABLE with reason `STORE_UNAVAILABLE`: the store did not answer. `message` is
    /// returned to the client as it is.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::Unavailable(Detail::new("STORE_UNAVAILABLE", message))
    }

    /// INTERNAL with reason `INTERNAL`: a bug or corrupt stored data. `message` is returned to the
    /// client as it is.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(Detail::new("INTERNAL", message))
    }

    /// The gRPC code this error is rendered with ([`Error::TooLarge`] is RESOURCE_EXHAUSTED).
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::Aborted(_) => Code::Aborted,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::TooLarge(_) => Code::ResourceExhausted,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// The message and `ErrorInfo` every variant carries.
    pub fn detail(&self) -> &Detail {
        match self {
            Error::InvalidArgument { detail, .. }
            | Error::NotFound(detail)
            | Error::AlreadyExists(detail)
            | Error::Aborted(detail)
            | Error::FailedPrecondition(detail)
            | Error::TooLarge(detail)
            | Error::Unauthenticated(detail)
            | Error::PermissionDenied(detail)
            | Error::Unimplemented(detail)
            | Error::Unavailable(detail)
            | Error::DeadlineExceeded(detail)
            | Error::Internal(detail) => detail,
        }
    }

    /// `google.rpc.Status.message`.
    pub fn message(&self) -> &str {
        &self.detail().message
    }

    /// `ErrorInfo.reason` (e.g. `FLOW_NOT_FOUND`), stable for programs to switch on.
    pub fn reason(&self) -> &'static str {
        self.detail().reason
    }

    /// The `BadRequest` field violations: empty for every variant but
    /// [`Error::InvalidArgument`].
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Error::InvalidArgument { violations, .. } => violations,
            _ => &[],
        }
    }

    /// The error as the contract's `google.rpc.Status` JSON body (A.3): `code`, `message`, and
    /// `details` with an `ErrorInfo` and, for INVALID_ARGUMENT, a `BadRequest` listing every
    /// field violation. What REST answers, and what `flowpipe-validate --json` prints.
    pub fn status_json(&self) -> serde_json::Value {
        use serde_json::{Value, json};
        let d = self.detail();
        let metadata: serde_json::Map<String, Value> = d
            .metadata
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect();
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": d.reason,
            "domain": ERROR_DOMAIN,
            "metadata": metadata,
        })];
        if !self.violations().is_empty() {
            let violations: Vec<Value> = self
                .violations()
                .iter()
                .map(|v| json!({"field": v.field, "description": v.description}))
                .collect();
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": violations,
            }));
        }
        json!({"code": self.code() as i32, "message": d.message, "details": details})
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

    #[test]
    fn json_body_has_error_info_and_bad_request() {
        let e = Error::invalid(
            "INVALID_FLOW_SPEC",
            vec![FieldViolation::new("stages[1].input_queue", "nope")],
        );
        let v = e.status_json();
        assert_eq!(v["code"], 3);
        assert_eq!(
            v["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
        assert_eq!(v["details"][0]["domain"], "flowpipe.io");
        assert_eq!(
            v["details"][1]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(
            v["details"][1]["fieldViolations"][0]["field"],
            "stages[1].input_queue"
        );
    }
}
