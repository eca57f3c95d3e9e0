//! The JSON of the Jobs device API (developer guide, "Jobs device MQTT API operations"): the
//! requests a device sends, parsed strictly enough that a wrong type is `InvalidRequest` and a
//! payload that is not a JSON object is `InvalidJson`, and the rejection every refusal answers
//! with (`code`, `message`, `clientToken` echoed, `timestamp`, and `executionState` when there is
//! one).

use serde_json::{Map, Value};

use super::execution::{JobStatus, StatusDetails};

/// AWS's error codes in a rejection (the `RejectedErrorCode` enumeration of the SDKs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request was sent to a topic in the Jobs namespace that no API maps to.
    InvalidTopic,
    /// The payload is not valid UTF-8 JSON (an object).
    InvalidJson,
    /// A field is missing, of the wrong type, or out of range.
    InvalidRequest,
    /// The update moves the execution to a status its current status does not allow.
    InvalidStateTransition,
    /// No such job execution for this thing.
    ResourceNotFound,
    /// `expectedVersion` is not the execution's `versionNumber`.
    VersionMismatch,
    /// The execution is in a terminal status.
    TerminalStateReached,
}

impl ErrorCode {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidTopic => "InvalidTopic",
            ErrorCode::InvalidJson => "InvalidJson",
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::InvalidStateTransition => "InvalidStateTransition",
            ErrorCode::ResourceNotFound => "ResourceNotFound",
            ErrorCode::VersionMismatch => "VersionMismatch",
            ErrorCode::TerminalStateReached => "TerminalStateReached",
        }
    }
}

/// A refusal: the code, a message, and the execution's state if there is one.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The code.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
    /// The execution's `JobExecutionState`, for a version mismatch or a refused move.
    pub state: Option<Value>,
}

impl Rejection {
    /// A rejection without execution state.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            state: None,
        }
    }

    /// The `rejected` payload.
    pub fn to_json(&self, client_token: Option<&str>, now: u64) -> Value {
        let mut v = Map::new();
        v.insert("code".into(), self.code.name().into());
        v.insert("message".into(), self.message.clone().into());
        v.insert("timestamp".into(), now.into());
        if let Some(t) = client_token {
            v.insert("clientToken".into(), t.into());
        }
        if let Some(s) = &self.state {
            v.insert("executionState".into(), s.clone());
        }
        Value::Object(v)
    }
}

/// A request's JSON object (an empty payload counts as `{}`, as the SDKs send for `get`).
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
}

/// Limits of `statusDetails` (AWS IoT API reference, `UpdateJobExecution`): keys of
/// `[a-zA-Z0-9:_-]`, at most 128 characters; values at most 1,024; here at most 10 entries, so a
/// device's words fit the relay log's cause.
const DETAIL_ENTRIES: usize = 10;

impl Fields {
    /// Parses `payload`: `InvalidJson` unless a JSON object (or empty).
    pub fn parse(payload: &[u8]) -> Result<Self, Rejection> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { map: Map::new() });
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(map)) => Ok(Self { map }),
            Ok(_) => Err(Rejection::new(
                ErrorCode::InvalidJson,
                "the payload is not a JSON object",
            )),
            Err(e) => Err(Rejection::new(
                ErrorCode::InvalidJson,
                format!("the payload is not JSON: {e}"),
            )),
        }
    }

    /// `clientToken`, if it is a string of at most 64 characters (echoed in every answer).
    pub fn client_token(&self) -> Option<&str> {
        self.map
            .get("clientToken")
            .and_then(Value::as_str)
            .filter(|t| t.len() <= 64)
    }

    /// Checks `clientToken` (a string of 1 to 64 characters if present).
    pub fn check_client_token(&self) -> Result<(), Rejection> {
        match self.map.get("clientToken") {
            None => Ok(()),
            Some(Value::String(t)) if (1..=64).contains(&t.len()) => Ok(()),
            Some(_) => Err(invalid("clientToken is not a string of 1 to 64 characters")),
        }
    }

    /// An optional non-negative integer field.
    pub fn number(&self, name: &str) -> Result<Option<u64>, Rejection> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(format!("{name} is not a non-negative integer"))),
        }
    }

    /// An optional boolean field, `false` if absent.
    pub fn flag(&self, name: &str) -> Result<bool, Rejection> {
        self.flag_or(name, false)
    }

    /// An optional boolean field, `default` if absent.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, Rejection> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(format!("{name} is not a boolean"))),
        }
    }

    /// `status`: required, one of the statuses a device may set.
    pub fn status(&self) -> Result<JobStatus, Rejection> {
        let s = self
            .map
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("status is missing or not a string"))?;
        let status =
            JobStatus::parse(s).ok_or_else(|| invalid(format!("{s:?} is not a job status")))?;
        if !status.device_may_set() {
            return Err(Rejection::new(
                ErrorCode::InvalidStateTransition,
                format!("a device cannot set {s}"),
            ));
        }
        Ok(status)
    }

    /// `statusDetails`: an object of string values, within AWS's limits.
    pub fn status_details(&self) -> Result<StatusDetails, Rejection> {
        let mut out = StatusDetails::new();
        let map = match self.map.get("statusDetails") {
            None | Some(Value::Null) => return Ok(out),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(invalid("statusDetails is not an object")),
        };
        if map.len() > DETAIL_ENTRIES {
            return Err(invalid(format!(
                "statusDetails has {} entries (at most {DETAIL_ENTRIES})",
                map.len()
            )));
        }
        for (k, v) in map {
            let key_ok = (1..=128).contains(&k.len())
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_-".contains(&b));
            let Some(v) = v.as_str().filter(|v| v.len() <= 1024) else {
                return Err(invalid(format!(
                    "statusDetails.{k} is not a string of at most 1,024 characters"
                )));
            };
            if !key_ok {
                return Err(invalid(format!("statusDetails key {k:?} is not allowed")));
            }
            out.insert(k.clone(), v.to_owned());
        }
        Ok(out)
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::new(ErrorCode::InvalidRequest, message)
}

/// The device's words as one line for the relay log: `k=v, k=v` (the log's cause keeps 128
/// bytes of it).
pub fn words(details: &StatusDetails) -> String {
    details
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T: std::fmt::Debug>(r: Result<T, Rejection>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(code(Fields::parse(b"{not json")), ErrorCode::InvalidJson);
        assert_eq!(code(Fields::parse(b"[1]")), ErrorCode::InvalidJson);
        assert!(Fields::parse(b"").is_ok());
        let f = Fields::parse(
            br#"{"status":"SUCCEEDED","expectedVersion":2,"clientToken":"t","statusDetails":{"boot-check":"ok"}}"#,
        )
        .unwrap();
        assert_eq!(f.status().unwrap(), JobStatus::Succeeded);
        assert_eq!(f.number("expectedVersion").unwrap(), Some(2));
        assert_eq!(f.client_token(), Some("t"));
        assert_eq!(f.status_details().unwrap()["boot-check"], "ok");
        let bad = |s: &str| Fields::parse(s.as_bytes()).unwrap();
        assert_eq!(code(bad("{}").status()), ErrorCode::InvalidRequest);
        assert_eq!(
            code(bad(r#"{"status":"DONE"}"#).status()),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(bad(r#"{"status":"CANCELED"}"#).status()),
            ErrorCode::InvalidStateTransition
        );
        assert_eq!(
            code(bad(r#"{"expectedVersion":"2"}"#).number("expectedVersion")),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(bad(r#"{"statusDetails":{"a":1}}"#).status_details()),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(bad(r#"{"statusDetails":{"a b":"x"}}"#).status_details()),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(bad(r#"{"clientToken":7}"#).check_client_token()),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn rejections_echo_the_client_token() {
        let r = Rejection::new(ErrorCode::VersionMismatch, "v").to_json(Some("tok"), 7);
        assert_eq!(r["code"], "VersionMismatch");
        assert_eq!(r["clientToken"], "tok");
        assert_eq!(r["timestamp"], 7);
    }
}
