//! The status each error answers with, decided here for every handler: the caller's fault is a
//! 4xx, the relay's own failure (I/O, storage) a 500, never a 409.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::json;

use crate::engine;

/// The status an engine error answers with.
pub fn engine_status(e: &engine::Error) -> StatusCode {
    use engine::Error as E;
    match e {
        E::UnknownCampaign(_) | E::UnknownDevice { .. } => StatusCode::NOT_FOUND,
        E::Completed(_)
        | E::AlreadyPaused(_)
        | E::NotPaused(_)
        | E::PausedByRule { .. }
        | E::NotRollbackable { .. }
        | E::NothingToRollBack(_)
        | E::NothingToQuarantine(_) => StatusCode::CONFLICT,
        E::Log(_)
        | E::Mirror(_)
        | E::CorruptMirror { .. }
        | E::CorruptLog { .. }
        | E::InvalidField { .. }
        | E::DeliveryMismatch { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal: `{"ok": false, "error": message}` with `status`.
pub(crate) fn refuse(status: StatusCode, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "ok": false, "error": message.to_string() }))
}
